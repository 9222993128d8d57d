"""int8 C vs float32 C, per model: agreement, max |dp|, mean return, flash and RAM, ARM runs.

    PYTHONPATH=. python benchmarks/c_int8.py MODEL.pt [MODEL.pt ...] [--trust-env-module]

For each checkpoint: exports float32, int8 and int8-integer C (each verified at export;
the int8 ones against the float policy, with --min-agreement 0 so that every row has
figures, with 100 greedy episodes of each where the env can be made), sizes
``policy.o`` for Cortex-M4F, Cortex-M0 and the host (:mod:`pgdeploy.export.c.footprint`),
and runs both builds' harness under qemu-arm and qemu-aarch64 on 8,192 observations
(4,096 random + 4,096 on-policy), counting actions that differ from the x86 build and the
largest probability difference. Prints one markdown table per model; tools that are
missing are named in the table instead of a figure.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from pgdeploy.errors import CompilerError
from pgdeploy.export import export_c
from pgdeploy.export.c.compile import CHarness, find_compiler
from pgdeploy.export.c.cross import ARCHES, build_cross_harness, missing_tools
from pgdeploy.export.c.footprint import measure
from pgdeploy.export.verify import verification_observations
from pgdeploy.training.checkpoint import load_checkpoint


def _size(source: Path, target: str) -> str:
    try:
        f = measure(source, target)
    except CompilerError as exc:
        return f"n/a ({str(exc)[:40]})"
    return f"{f.flash} / {f.static_ram} + {f.stack_max}"


def _qemu(folder: Path, spec: object, obs: np.ndarray, arch: str) -> str:  # type: ignore[type-arg]
    reason = missing_tools(arch)
    if reason:
        return f"skipped: {reason[:40]}"
    n_heads = spec.action_layout.n_branches  # type: ignore[attr-defined]
    dims = (spec.obs_dim, spec.n_actions, n_heads)  # type: ignore[attr-defined]
    uniforms = torch.from_numpy(
        np.random.default_rng(1).random((len(obs), n_heads), dtype=np.float32)
    )
    host = CHarness.build(find_compiler(), folder, *dims)(torch.from_numpy(obs), uniforms)
    arm = build_cross_harness(arch, folder, *dims)(torch.from_numpy(obs), uniforms)
    differ = int((host[1] != arm[1]).sum() + (host[2] != arm[2]).sum())
    return f"{differ} differ, max dp {float((host[0] - arm[0]).abs().max()):.1e}"


def report(model: Path, trust: bool) -> None:
    checkpoint = load_checkpoint(model)
    spec = checkpoint.spec
    policy = checkpoint.build_policy()
    env_id = spec.env_id if trust else None
    obs = verification_observations(policy, n_random=4096, n_on_policy=4096, seed=0, env=env_id)
    print(f"\n### {spec.env_id} ({model})\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("float32", "int8", "int8-integer"):
            out = Path(tmp) / mode
            # min_agreement 0: report every mode's figures; the default 99.5 % is noted.
            r = export_c(model, out, quantize=mode, trust_env_module=trust, min_agreement=0.0)
            q = r.quantization
            if q is None:
                assert r.check is not None
                agreement = "100 % (verified equal)"
                dp = f"{r.check.max_abs_diff:.1e}"
                returns = "-"
            else:
                on = (
                    "n/a" if q.agreement_on_policy is None else f"{100 * q.agreement_on_policy:.2f}"
                )
                agreement = f"{100 * q.agreement_random:.2f} / {on} %"
                if min(q.agreement_random, q.agreement_on_policy or 1.0) < 0.995:
                    agreement += " (refused at the default 99.5 %)"
                dp = f"{q.max_abs_dp:.3g}"
                returns = (
                    "-"
                    if q.mean_return_float is None
                    else f"{q.mean_return_float:.1f} / {q.mean_return_quantized:.1f}"
                )
            source = out / "policy.c"
            rows.append(
                [
                    mode,
                    agreement,
                    dp,
                    returns,
                    _size(source, "cortex-m4f"),
                    _size(source, "cortex-m0"),
                    _size(source, "host"),
                    *(_qemu(out, spec, obs, arch) for arch in sorted(ARCHES)),
                ]
            )
    head = [
        "C",
        "greedy agreement random / on-policy",
        "max abs(dp)",
        "mean return float / this C (100 greedy)",
        "Cortex-M4F flash / static RAM + stack (B)",
        "Cortex-M0",
        "host",
        *(f"qemu {arch} vs x86 (8,192 obs)" for arch in sorted(ARCHES)),
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--trust-env-module", action="store_true")
    args = parser.parse_args()
    for model in args.models:
        report(model, args.trust_env_module)


if __name__ == "__main__":
    main()
