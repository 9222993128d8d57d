"""Long fuzz run of the loader and the observation checks (not part of the test suite).

    PYTHONPATH=. python benchmarks/fuzz.py [--examples 5000] [--model model.onnx]

Feeds hypothesis-generated arrays to act/act_batch/probs (reject and clip agents), random
bytes and corrupted copies of a real model to ``Agent.load``, and counts outcomes. A
"crash" is the process dying (it would not get to print); an "untyped error" is any
exception that is not the documented pgdeploy error. Both must be 0.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pgdeploy.errors import ModelLoadError, ObservationError
from pgdeploy.runtime import Agent

counts: collections.Counter[str] = collections.Counter()
untyped: list[str] = []


def record(name: str, fn: Callable[[], Any], expected: type[Exception]) -> None:
    counts[f"{name}: examples"] += 1
    try:
        fn()
        counts[f"{name}: ok"] += 1
    except expected:
        counts[f"{name}: typed error"] += 1
    except Exception:
        untyped.append(f"{name}: {traceback.format_exc(limit=3)}")


def make_model(folder: Path) -> Path:
    from pgdeploy.export import export_checkpoint
    from pgdeploy.training.config import TrainConfig
    from pgdeploy.training.train import train

    train(TrainConfig(seed=0, num_envs=4, hidden_sizes=(16,), total_timesteps=1000), out_dir=folder)
    export_checkpoint(folder / "model.pt", n_random=256, n_on_policy=256)
    return folder / "model.onnx"


def run(model: Path, examples: int) -> None:
    agents = [Agent.load(model, seed=0), Agent.load(model, seed=0, out_of_bounds="clip")]
    real = model.read_bytes()
    many = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    dtypes = st.one_of(
        hnp.floating_dtypes(),
        hnp.integer_dtypes(),
        hnp.unsigned_integer_dtypes(),
        hnp.boolean_dtypes(),
        hnp.complex_number_dtypes(),
        hnp.datetime64_dtypes(),
        hnp.unicode_string_dtypes(),
    )

    @many
    @given(hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)))
    def observations(obs: np.ndarray) -> None:
        for agent in agents:
            for call in (agent.act, agent.act_batch, agent.probs):
                record("observations", lambda c=call: _finite(c(obs)), ObservationError)

    @many
    @given(
        st.lists(st.one_of(st.floats(), st.integers(), st.text(max_size=2), st.none()), max_size=6)
    )
    def python_lists(obs: list[Any]) -> None:
        for agent in agents:
            record("python lists", lambda a=agent: _finite(a.act(obs)), ObservationError)

    @many
    @given(st.binary(max_size=4096))
    def random_bytes(data: bytes) -> None:
        record("random bytes", lambda: _load(data), ModelLoadError)

    @many
    @given(
        st.integers(min_value=0),
        st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=16),
    )
    def corrupted_model(cut: int, edits: list[tuple[int, int]]) -> None:
        data = bytearray(real)
        for position, value in edits:
            data[position % len(data)] = value
        data = data[: len(data) - cut % len(data)] if cut else data
        record("corrupted model", lambda: _load(bytes(data)), ModelLoadError)

    for test in (observations, python_lists, random_bytes, corrupted_model):
        start = time.perf_counter()
        test()
        print(f"{test.__name__}: done in {time.perf_counter() - start:.1f} s", flush=True)


def _finite(out: Any) -> None:
    if not np.isfinite(np.asarray(out, np.float64)).all():
        raise AssertionError(f"non-finite output {out!r}")


def _load(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(data)
        agent = Agent.load(path, deterministic=True)
        _finite(agent.act(np.zeros(agent.spec.obs_dim, np.float32)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="hypothesis examples per target")
    parser.add_argument("--model", type=Path, default=None, help="an exported model.onnx")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or make_model(Path(folder))
        start = time.perf_counter()
        run(model, args.examples)
        wall = time.perf_counter() - start
    for key in sorted(counts):
        print(f"{key}: {counts[key]}")
    total = sum(v for k, v in counts.items() if k.endswith("examples"))
    print(f"total calls: {total}; untyped errors: {len(untyped)}; crashes: 0; {wall:.0f} s")
    for text in untyped[:5]:
        print(text)
    raise SystemExit(1 if untyped else 0)


if __name__ == "__main__":
    main()
