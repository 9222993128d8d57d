"""Valid env steps/s of the rollout collector of whichever pgdeploy tree is first on sys.path.

    PYTHONPATH=TREE python benchmarks/collector_rate.py ENV_ID VECTORIZATION COLLECTS

Prints "<steps/s> <how the envs were stepped>". Works with the layout before issue 9
(``pgdeploy.rollout``, no ``vectorization`` argument: "default" is all it has) and after
it, so benchmarks/pipeline_speed.py can compare today's collector with the one the issue
measured, each in its own process. Weights: a freshly initialised policy (torch seed 0);
one collect to warm up, then ``COLLECTS`` timed; only steps inside episodes are counted.
"""

from __future__ import annotations

import inspect
import sys
import time
from typing import Any


def main() -> None:
    env_id, mode, collects = sys.argv[1], sys.argv[2], int(sys.argv[3])
    import torch

    from pgdeploy.envs.making import policy_spec

    try:  # the layout before issue 9
        from pgdeploy.policy import SoftmaxPolicy  # type: ignore[import-not-found]
        from pgdeploy.rollout import RolloutCollector  # type: ignore[import-not-found]
    except ImportError:
        from pgdeploy.training.policy import SoftmaxPolicy
        from pgdeploy.training.rollout import RolloutCollector

    spec = policy_spec(env_id)
    torch.manual_seed(0)
    weights = SoftmaxPolicy(spec, hidden_sizes=(128,)).state_dict()
    options: dict[str, Any] = {"num_envs": 16, "seed": 0, "hidden_sizes": (128,), "obs_clip": 10.0}
    if mode != "default":
        if "vectorization" not in inspect.signature(RolloutCollector).parameters:
            raise SystemExit(f"this tree's collector has no vectorization argument ({mode!r})")
        options["vectorization"] = mode
    collector = RolloutCollector(spec, **options)
    try:
        collector.collect(weights)
        steps, seconds = 0, 0.0
        for _ in range(collects):
            start = time.perf_counter()
            batch = collector.collect(weights)
            seconds += time.perf_counter() - start
            steps += int(batch.lengths.sum())
        print(f"{steps / seconds:.1f} {getattr(collector, 'vectorization', 'sync')}")
    finally:
        collector.close()


if __name__ == "__main__":
    main()
