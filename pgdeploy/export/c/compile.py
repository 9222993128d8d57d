"""Compile generated C and run it on observations: the C side of export verification.

A small harness program (libc allowed there, unlike in ``policy.c``) reads float32
observations and uniforms from a file, calls ``pgdeploy_probs``, ``pgdeploy_greedy`` and
``pgdeploy_sample`` on each row, and writes the results back. :class:`CHarness` wraps it
as the ``graph(obs, uniform) -> (probs, greedy, sampled)`` callable that
:func:`pgdeploy.export.verify.compare` checks against the PyTorch policy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from pgdeploy.errors import CompilerError

#: Flags the generated code must compile under without a single warning.
STRICT_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
#: Flags of the verified build: optimised, no FMA contraction (see policy.h).
BUILD_FLAGS = (*STRICT_FLAGS, "-O2", "-ffp-contract=off")
_COMPILERS = ("cc", "gcc", "clang")

HARNESS_C = r"""/* pgdeploy verification harness: harness IN N OUT. With H = PGDEPLOY_N_HEADS,
   IN holds N*OBS_DIM float32 observations then N*H float32 uniforms; OUT receives
   N*N_ACTIONS float32 probabilities, then N*H int32 greedy and N*H int32 sampled actions. */
#include <stdio.h>
#include <stdlib.h>
#include "policy.h"

static int fail(const char *what)
{
    fprintf(stderr, "harness: %s\n", what);
    return 1;
}

int main(int argc, char **argv)
{
    FILE *in, *out;
    long n, i;
    float *obs, *uniforms, *probs;
    int *greedy, *sampled;
    if (argc != 4) {
        return fail("usage: harness IN N OUT");
    }
    n = atol(argv[2]);
    obs = malloc(sizeof(float) * (size_t)(n * PGDEPLOY_OBS_DIM + 1));
    uniforms = malloc(sizeof(float) * (size_t)(n * PGDEPLOY_N_HEADS + 1));
    probs = malloc(sizeof(float) * (size_t)(n * PGDEPLOY_N_ACTIONS + 1));
    greedy = malloc(sizeof(int) * (size_t)(n * PGDEPLOY_N_HEADS + 1));
    sampled = malloc(sizeof(int) * (size_t)(n * PGDEPLOY_N_HEADS + 1));
    if (!obs || !uniforms || !probs || !greedy || !sampled) {
        return fail("out of memory");
    }
    in = fopen(argv[1], "rb");
    if (!in || fread(obs, sizeof(float), (size_t)(n * PGDEPLOY_OBS_DIM), in)
                   != (size_t)(n * PGDEPLOY_OBS_DIM)
        || fread(uniforms, sizeof(float), (size_t)(n * PGDEPLOY_N_HEADS), in)
               != (size_t)(n * PGDEPLOY_N_HEADS)) {
        return fail("cannot read the input file");
    }
    fclose(in);
    for (i = 0; i < n; ++i) {
        const float *row = obs + i * PGDEPLOY_OBS_DIM;
        pgdeploy_probs(row, probs + i * PGDEPLOY_N_ACTIONS);
        pgdeploy_greedy_heads(row, greedy + i * PGDEPLOY_N_HEADS);
        pgdeploy_sample_heads(row, uniforms + i * PGDEPLOY_N_HEADS, sampled + i * PGDEPLOY_N_HEADS);
    }
    out = fopen(argv[3], "wb");
    if (!out || fwrite(probs, sizeof(float), (size_t)(n * PGDEPLOY_N_ACTIONS), out)
                    != (size_t)(n * PGDEPLOY_N_ACTIONS)
        || fwrite(greedy, sizeof(int), (size_t)(n * PGDEPLOY_N_HEADS), out)
               != (size_t)(n * PGDEPLOY_N_HEADS)
        || fwrite(sampled, sizeof(int), (size_t)(n * PGDEPLOY_N_HEADS), out)
               != (size_t)(n * PGDEPLOY_N_HEADS)
        || fclose(out) != 0) {
        return fail("cannot write the output file");
    }
    free(obs);
    free(uniforms);
    free(probs);
    free(greedy);
    free(sampled);
    return 0;
}
"""


def find_compiler(compiler: str | None = None) -> str:
    """The C compiler to use: ``compiler``, else ``$CC``, else cc, gcc or clang on PATH."""
    wanted = [compiler] if compiler else [os.environ["CC"]] if os.environ.get("CC") else []
    for name in wanted or list(_COMPILERS):
        path = shutil.which(name)
        if path:
            return path
    tried = ", ".join(wanted or _COMPILERS)
    raise CompilerError(
        f"no C compiler found (tried {tried}), so the generated C cannot be verified and "
        "nothing was written; install one (e.g. apt-get install gcc), name one with "
        "compiler=... or $CC, or call export_c(..., verify=False) to write it unverified"
    )


def compile_c(
    compiler: str,
    sources: list[Path],
    output: Path,
    *,
    flags: tuple[str, ...] = BUILD_FLAGS,
) -> Path:
    """Compile and link ``sources`` into ``output``; a CompilerError carries the diagnostics."""
    include = sorted({f"-I{s.parent}" for s in sources})
    command = [compiler, *flags, *include, *map(str, sources), "-o", str(output), "-lm"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompilerError(f"cannot run the C compiler {compiler!r}: {exc}") from exc
    if done.returncode != 0 or done.stderr.strip():
        raise CompilerError(
            f"the generated C does not compile cleanly with {' '.join(command)}:\n"
            f"{done.stderr.strip()[:4000]}"
        )
    return output


class CHarness:
    """The compiled policy as ``graph(obs, uniform) -> (probs, greedy, sampled)`` tensors."""

    def __init__(self, executable: Path, obs_dim: int, n_actions: int, n_heads: int = 1) -> None:
        self.executable = executable
        self.obs_dim = obs_dim
        self.n_actions = n_actions
        self.n_heads = n_heads

    @classmethod
    def build(
        cls, compiler: str, folder: Path, obs_dim: int, n_actions: int, n_heads: int = 1
    ) -> CHarness:
        """Compile ``folder/policy.c`` with the harness into ``folder/harness``."""
        harness = folder / "harness.c"
        harness.write_text(HARNESS_C, encoding="utf-8")
        exe = compile_c(compiler, [folder / "policy.c", harness], folder / "harness")
        return cls(exe, obs_dim, n_actions, n_heads)

    def __call__(
        self, obs: torch.Tensor, uniform: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = len(obs)
        obs_np = np.ascontiguousarray(obs.numpy(), dtype=np.float32)
        u_np = np.ascontiguousarray(uniform.numpy().reshape(-1), dtype=np.float32)  # (n*H,)
        with tempfile.TemporaryDirectory(prefix="pgdeploy-c-") as tmp:
            src, dst = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
            src.write_bytes(obs_np.tobytes() + u_np.tobytes())
            try:
                done = subprocess.run(
                    [str(self.executable), str(src), str(n), str(dst)],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise CompilerError(f"the compiled C harness did not run: {exc}") from exc
            if done.returncode != 0:
                raise CompilerError(
                    f"the compiled C harness failed (exit {done.returncode}): {done.stderr}"
                )
            raw = dst.read_bytes()
        n_probs = n * self.n_actions
        probs = np.frombuffer(raw, np.float32, count=n_probs).reshape(n, self.n_actions)
        actions = np.frombuffer(raw, np.int32, offset=4 * n_probs).astype(np.int64)
        shape = (n,) if self.n_heads == 1 else (n, self.n_heads)  # as the graph's outputs
        greedy, sampled = np.split(actions, 2)
        return (
            torch.from_numpy(probs.copy()),
            torch.from_numpy(greedy.reshape(shape)),
            torch.from_numpy(sampled.reshape(shape)),
        )
