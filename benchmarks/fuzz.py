"""Long fuzz run of the loader and the observation checks (not part of the test suite).

    PYTHONPATH=. python benchmarks/fuzz.py [--examples 5000] [--seed 0] [--model model.onnx]

Feeds hypothesis-generated arrays to act/act_batch/probs (reject and clip agents), random
bytes and corrupted copies of a real model to ``Agent.load``, and graph-level mutations
of a real model (operator swaps, shape edits, metadata edits, invalid UTF-8 in the
metadata), and with ``--checkpoint-cases N`` hostile resume states of a real
``model.pt`` (tests/checkpoint_attacks.py), and counts outcomes. A "crash" is the process
dying (it would not get to print); an "untyped error" is any exception that is not a
pgdeploy error. Both must be 0. ``--seed`` fixes every generator, so a run can be split
into chunks and totalled.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import resource
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pgdeploy.errors import ObservationError, PgdeployError
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


#: Operators swapped in: allowed ones, refused ones, and names no runtime knows.
SWAP_OPS = (
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Relu",
    "Softmax",
    "Identity",
    "Gemm",
    "MatMul",
    "Cast",
    "Max",
    "Min",
    "ArgMax",
    "ReduceSum",
    "Concat",
    "Reshape",
    "Gather",
    "Equal",
    "Split",
    "Loop",
    "Scan",
    "If",
    "ConstantOfShape",
    "Multinomial",
    "RandomNormal",
    "RandomUniform",
    "Expand",
    "Tile",
    "Range",
    "OneHot",
    "Pad",
    "NonZero",
    "TopK",
    "Einsum",
    "NoSuchOp",
    "",
)
DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft", "com.example.evil")
META_VALUES = (
    "",
    "{",
    "null",
    "[]",
    "NaN",
    "Infinity",
    '"x"',
    "1e999",
    "-1",
    "[" * 2000 + "]" * 2000,
    '{"a":' * 500 + "1" + "}" * 500,
    "\\ud800",
    "\\u0000",
    "9" * 5000,
)


def mutate_graph(base: Any, rng: random.Random) -> tuple[str, bytes]:
    """One graph-level mutation of ``base`` (an onnx.ModelProto): (kind, serialized bytes)."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(base)
    graph = model.graph
    kind = rng.choice(("operator swap", "shape edit", "metadata edit", "metadata bytes"))
    for _ in range(rng.randint(1, 3)):
        if kind == "operator swap":
            node = rng.choice(graph.node)
            node.op_type = rng.choice(SWAP_OPS)
            if rng.random() < 0.2:
                node.domain = rng.choice(DOMAINS)
            if rng.random() < 0.2:
                node.attribute.add().CopyFrom(
                    onnx.helper.make_attribute("axis", rng.randint(-3, 3))
                )
        elif kind == "shape edit":
            target = rng.random()
            if target < 0.4:
                tensor = rng.choice(graph.initializer)
                dims = [
                    rng.choice((0, 1, 2, 4, 128, 2**20, 2**31, 2**40))
                    for _ in range(rng.randint(0, 4))
                ]
                del tensor.dims[:]
                tensor.dims.extend(dims)
            else:
                values = list(graph.input) + list(graph.output)
                shape = rng.choice(values).type.tensor_type.shape
                if shape.dim and rng.random() < 0.7:
                    dim = rng.choice(shape.dim)
                    if rng.random() < 0.5:
                        dim.dim_value = rng.choice((0, 1, 2, 3, 5, 2**24, 2**40))
                    else:
                        dim.dim_param = rng.choice(("batch", "n", ""))
                else:
                    shape.dim.add().dim_value = rng.choice((1, 2, 7))
        elif kind == "metadata edit":
            prop = rng.choice(model.metadata_props)
            try:
                spec = json.loads(prop.value)
            except (ValueError, RecursionError):
                spec = None
            if (
                prop.key.endswith(".spec")
                and isinstance(spec, dict)
                and spec
                and rng.random() < 0.6
            ):
                field = rng.choice(sorted(spec))
                spec[field] = rng.choice(
                    (None, -1, 0, 1, 3, 2**40, 1.5, "nan", [], [None], [1e39, -1e39], {}, "x:y")
                )
                prop.value = json.dumps(spec)
            else:
                prop.value = rng.choice(META_VALUES)
            if rng.random() < 0.1:
                model.metadata_props.add(key=f"pgdeploy.{rng.randint(0, 9)}", value="{}")
    data = model.SerializeToString()
    if kind == "metadata bytes":
        where = (data.rfind if rng.random() < 0.8 else data.find)(b"CartPole-v1")
        if where >= 0:
            at = where + rng.randrange(len(b"CartPole-v1"))
            data = data[:at] + bytes([rng.randint(0x80, 0xFF)]) + data[at + 1 :]
    return kind, data


def run(
    model: Path, examples: int, seed: int, folder: Path, targets: set[str] | None = None
) -> None:
    agents = [Agent.load(model, seed=0), Agent.load(model, seed=0, out_of_bounds="clip")]
    real = model.read_bytes()
    import onnx

    base = onnx.load(str(model))
    target = folder / "fuzz.onnx"
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

    @hypothesis_seed(seed)
    @many
    @given(hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)))
    def observations(obs: np.ndarray) -> None:
        for agent in agents:
            for call in (agent.act, agent.act_batch, agent.probs):
                record("observations", lambda c=call: _finite(c(obs)), ObservationError)

    @hypothesis_seed(seed)
    @many
    @given(
        st.lists(st.one_of(st.floats(), st.integers(), st.text(max_size=2), st.none()), max_size=6)
    )
    def python_lists(obs: list[Any]) -> None:
        for agent in agents:
            record("python lists", lambda a=agent: _finite(a.act(obs)), ObservationError)

    @hypothesis_seed(seed)
    @many
    @given(st.binary(max_size=4096))
    def random_bytes(data: bytes) -> None:
        record("random bytes", lambda: _load(data, target), PgdeployError)

    @hypothesis_seed(seed)
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
        record("corrupted model", lambda: _load(bytes(data), target), PgdeployError)

    def graph_mutations() -> None:
        rng = random.Random(seed)
        for _ in range(3 * examples):
            kind, data = mutate_graph(base, rng)
            record(f"graph {kind}", lambda d=data: _load(d, target), PgdeployError)

    tests = (observations, python_lists, random_bytes, corrupted_model, graph_mutations)
    for test in [t for t in tests if targets is None or t.__name__ in targets]:
        start = time.perf_counter()
        test()
        print(f"{test.__name__}: done in {time.perf_counter() - start:.1f} s", flush=True)


def _finite(out: Any) -> None:
    if not np.isfinite(np.asarray(out, np.float64)).all():
        raise AssertionError(f"non-finite output {out!r}")


def _load(data: bytes, path: Path) -> None:
    path.write_bytes(data)
    agent = Agent.load(path, deterministic=True)
    zeros = np.zeros(agent.spec.obs_dim, np.float32)
    _finite(agent.act(zeros))
    _finite(agent.act_batch(np.stack([zeros, zeros, zeros])))


def checkpoint_cases(cases: int, seed: int, folder: Path) -> None:
    """Resume states from tests/checkpoint_attacks.py: 1-3 hostile members at a time applied
    to a real checkpoint, each put through what a resume trusts (the plain-data bounds, the
    checkpoint's structure, resume_state, restoring the weights and optimiser). Every case
    must end in a pgdeploy error: one that resumes counts as "accepted" and must be 0 too."""
    import torch

    from pgdeploy.training.checkpoint import checkpoint_from_dict
    from pgdeploy.training.checkpoint_safety import check_plain_data
    from pgdeploy.training.config import TrainConfig
    from pgdeploy.training.launch import resolve_config
    from pgdeploy.training.optim import Adam
    from pgdeploy.training.resume import resume_state
    from pgdeploy.training.train import train
    from tests.checkpoint_attacks import mutations, random_mutation

    config = TrainConfig(env_id="tests.tiny_envs:Guess-v0", num_envs=2, hidden_sizes=(8,),
                         total_timesteps=200, stop_on_solve=False)  # fmt: skip
    train(config, out_dir=folder / "run")
    base = torch.load(folder / "run" / "model.pt", weights_only=True)
    base["config"]["total_timesteps"] = 10**6
    family = list(mutations(base))
    rng = random.Random(seed)
    # One policy and optimiser for every case: a restore that refuses changes nothing.
    policy = checkpoint_from_dict(base, source="base").build_policy()
    optimizer = Adam(policy.parameters(), lr=0.01)

    def attempt(data: dict[str, Any]) -> None:  # what `pgdeploy train --resume` trusts
        check_plain_data(data, source="fuzz")
        checkpoint = checkpoint_from_dict(data, source="fuzz")
        config = resolve_config(resume=checkpoint).config  # refuses module env ids
        resumed = resume_state(checkpoint, config, checkpoint.spec)
        resumed.restore(checkpoint, policy, optimizer)
        counts["checkpoint mutations: accepted"] += 1

    for _ in range(cases):
        _, data = random_mutation(base, rng, family)
        record("checkpoint mutations", lambda data=data: attempt(data), PgdeployError)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="hypothesis examples per target")
    parser.add_argument("--model", type=Path, default=None, help="an exported model.onnx")
    parser.add_argument("--seed", type=int, default=0, help="seed of every generator")
    parser.add_argument("--json", type=Path, default=None, help="also write the counts here")
    parser.add_argument(
        "--targets",
        default=None,
        help="comma-separated subset of: observations, python_lists, random_bytes, "
        "corrupted_model, graph_mutations, checkpoints (default: all)",
    )
    parser.add_argument(
        "--checkpoint-cases",
        type=int,
        default=0,
        help="hostile checkpoint/resume-state cases to run (target 'checkpoints')",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        targets = set(args.targets.split(",")) if args.targets else None
        if targets is None or targets - {"checkpoints"}:
            model = args.model or make_model(Path(folder))
            run(model, args.examples, args.seed, Path(folder), targets)
        if args.checkpoint_cases:
            checkpoint_cases(args.checkpoint_cases, args.seed, Path(folder))
        wall = time.perf_counter() - start
    for key in sorted(counts):
        print(f"{key}: {counts[key]}")
    total = sum(v for k, v in counts.items() if k.endswith("examples"))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"total calls: {total}; untyped errors: {len(untyped)}; crashes: 0; {wall:.0f} s; "
        f"peak RSS {peak_mib:.0f} MiB"
    )
    if args.json is not None:
        summary = {
            "seed": args.seed,
            "examples": args.examples,
            "total": total,
            "untyped": len(untyped),
            "wall_s": wall,
            "peak_rss_mib": peak_mib,
            "counts": dict(counts),
            "untyped_samples": untyped[:5],
        }
        args.json.write_text(json.dumps(summary, indent=2))
    for text in untyped[:5]:
        print(text)
    raise SystemExit(1 if untyped else 0)


if __name__ == "__main__":
    main()
