"""Compile generated C and run it on observations: the C side of export verification.

A small harness program (libc allowed there, unlike in ``policy.c``) reads float32
observations and uniforms from a file, calls ``pgdeploy_probs``, ``pgdeploy_greedy_heads``
and ``pgdeploy_sample_heads`` on each row, and writes the results back. :class:`CHarness`
wraps it as the ``graph(obs, uniform) -> (probs, greedy, sampled)`` callable that
:func:`pgdeploy.export.verify.compare` checks against the float policy. Its output is
trusted only when it is exactly what the harness writes: exit 0, nothing at all on stdout
or stderr, an output file of exactly the expected size that ends with the nonce it was
given; anything else (say, text printed by code run before ``main``) is an error.

:func:`verification_builds` names the builds export checks: every standard of
:data:`VERIFIED_STANDARDS` at every level of :data:`VERIFIED_OPT_LEVELS`, each with the
warning flags and ``-ffp-contract=off``; :func:`build_harnesses` compiles them in parallel.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from pgdeploy.errors import CompilerError

#: Warnings that fail a build: the generated code compiles without a single one.
WARNING_FLAGS = ("-Wall", "-Wextra", "-Werror", "-pedantic")
#: Flags of the floating-point model export verifies: no FMA contraction (see policy.h).
FP_FLAGS = ("-ffp-contract=off",)
#: The C standards export compiles and verifies the shipped bytes under.
VERIFIED_STANDARDS = ("-std=c99", "-std=c11", "-std=gnu17")
#: The optimisation levels export verifies, each under every standard.
VERIFIED_OPT_LEVELS = ("-O0", "-O2")
#: Flags the generated code must compile under without a single warning.
STRICT_FLAGS = ("-std=c99", *WARNING_FLAGS)
#: Flags of the documented build: optimised, no FMA contraction.
BUILD_FLAGS = (*STRICT_FLAGS, "-O2", *FP_FLAGS)
_COMPILERS = ("cc", "gcc", "clang")
T = TypeVar("T")
#: Bytes of the nonce the harness writes after its results.
NONCE_BYTES = 16


@dataclass(frozen=True)
class Build:
    """One verified build: a C standard and an optimisation level."""

    standard: str
    opt: str

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.standard, *WARNING_FLAGS, self.opt, *FP_FLAGS)

    @property
    def name(self) -> str:
        """``"c99 -O2"``: the standard without ``-std=`` and the level."""
        return f"{self.standard.removeprefix('-std=')} {self.opt}"


def verification_builds() -> tuple[Build, ...]:
    """Every standard at every optimisation level (six builds)."""
    return tuple(Build(s, o) for s in VERIFIED_STANDARDS for o in VERIFIED_OPT_LEVELS)


HARNESS_C = r"""/* pgdeploy verification harness: harness IN N OUT NONCE. With H = PGDEPLOY_N_HEADS,
   IN holds N*OBS_DIM float32 observations then N*H float32 uniforms; OUT receives
   N*N_ACTIONS float32 probabilities, N*H int32 greedy and N*H int32 sampled actions,
   then the 32 hex digits of NONCE. It prints nothing unless it fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    if (argc != 5 || strlen(argv[4]) != 32) {
        return fail("usage: harness IN N OUT NONCE");
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
        || fwrite(argv[4], 1, 32, out) != 32
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
    link: bool = True,
) -> Path:
    """Compile (and link) ``sources`` into ``output``; a CompilerError has the diagnostics."""
    include = sorted({f"-I{s.parent}" for s in sources})
    libraries = ["-lm"] if link else []
    command = [compiler, *flags, *include, *map(str, sources), "-o", str(output), *libraries]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, errors="replace", timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompilerError(f"cannot run the C compiler {compiler!r}: {exc}") from exc
    if done.returncode != 0 or done.stderr.strip():
        raise CompilerError(
            f"the generated C does not compile cleanly with {' '.join(command)}:\n"
            f"{_printable(done.stderr.strip()[:4000])}"
        )
    return output


def _printable(text: str) -> str:
    """Compiler diagnostics for a terminal: printable ASCII and newlines, the rest escaped."""
    return "".join(c if c == "\n" or " " <= c <= "~" else ascii(c)[1:-1] for c in text)


class CHarness:
    """The compiled policy as ``graph(obs, uniform) -> (probs, greedy, sampled)`` tensors."""

    def __init__(
        self,
        executable: Path,
        obs_dim: int,
        n_actions: int,
        n_heads: int = 1,
        build: Build | None = None,
    ) -> None:
        self.executable = executable
        self.obs_dim = obs_dim
        self.n_actions = n_actions
        self.n_heads = n_heads
        self.build_info = build

    @classmethod
    def build(
        cls,
        compiler: str,
        folder: Path,
        obs_dim: int,
        n_actions: int,
        n_heads: int = 1,
        *,
        flags: tuple[str, ...] = BUILD_FLAGS,
        name: str = "harness",
        build: Build | None = None,
    ) -> CHarness:
        """Compile ``folder/policy.c`` with the harness into ``folder/name``."""
        harness = folder / "harness.c"
        if not harness.exists():
            harness.write_text(HARNESS_C, encoding="utf-8")
        exe = compile_c(compiler, [folder / "policy.c", harness], folder / name, flags=flags)
        return cls(exe, obs_dim, n_actions, n_heads, build)

    def __call__(
        self, obs: torch.Tensor, uniform: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = len(obs)
        obs_np = np.ascontiguousarray(obs.numpy(), dtype=np.float32)
        u_np = np.ascontiguousarray(uniform.numpy().reshape(-1), dtype=np.float32)  # (n*H,)
        nonce = secrets.token_hex(NONCE_BYTES).encode("ascii")
        with tempfile.TemporaryDirectory(prefix="pgdeploy-c-") as tmp:
            src, dst = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
            src.write_bytes(obs_np.tobytes() + u_np.tobytes())
            try:
                done = subprocess.run(
                    [str(self.executable), str(src), str(n), str(dst), nonce.decode()],
                    capture_output=True,
                    timeout=300,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise CompilerError(f"the compiled C harness did not run: {exc}") from exc
            raw = dst.read_bytes() if dst.is_file() else b""
        n_probs = n * self.n_actions
        size = 4 * (n_probs + 2 * n * self.n_heads)
        problem = _harness_problem(done, raw, size, nonce)
        if problem:
            raise CompilerError(
                f"the compiled C harness ({self.executable.name}) {problem}, so its results "
                "are not trusted and nothing was written"
            )
        probs = np.frombuffer(raw, np.float32, count=n_probs).reshape(n, self.n_actions)
        actions = np.frombuffer(raw[:size], np.int32, offset=4 * n_probs).astype(np.int64)
        shape = (n,) if self.n_heads == 1 else (n, self.n_heads)  # as the graph's outputs
        greedy, sampled = np.split(actions, 2)
        return (
            torch.from_numpy(probs.copy()),
            torch.from_numpy(greedy.reshape(shape)),
            torch.from_numpy(sampled.reshape(shape)),
        )


def _harness_problem(
    done: subprocess.CompletedProcess[bytes], raw: bytes, size: int, nonce: bytes
) -> str | None:
    """Why a harness run's output cannot be trusted, or None."""
    if done.returncode != 0:
        return f"failed (exit {done.returncode}): {done.stderr[:300]!a}"
    if done.stdout or done.stderr:
        extra = done.stdout[:100] or done.stderr[:100]
        return f"printed text it never prints ({extra!a})"
    if len(raw) != size + len(nonce) or raw[size:] != nonce:
        return f"wrote {len(raw)} bytes, expected {size} and the nonce"
    return None


def build_harnesses(
    compiler: str,
    folder: Path,
    files: dict[str, bytes],
    obs_dim: int,
    n_actions: int,
    n_heads: int,
    builds: Sequence[Build],
    then: Callable[[CHarness], T],
) -> Iterator[T]:
    """Write ``files`` (the exact bytes to verify) into ``folder``, compile one harness per
    build and call ``then`` on it, builds in parallel (one per core), results in order.

    The harness's own object is compiled once (C99, with the header) and linked into
    every build; ``policy.c`` and ``policy.h`` are compiled under each build's flags.
    """
    for name, data in files.items():
        (folder / name).write_bytes(data)
    harness_c = folder / "harness.c"
    harness_c.write_text(HARNESS_C, encoding="utf-8")
    harness_o = compile_c(
        compiler, [harness_c], folder / "harness.o", flags=(*BUILD_FLAGS, "-c"), link=False
    )

    def one(build: Build) -> T:
        exe = folder / f"harness-{build.standard.removeprefix('-std=')}{build.opt}"
        compile_c(compiler, [folder / "policy.c", harness_o], exe, flags=build.flags)
        return then(CHarness(exe, obs_dim, n_actions, n_heads, build))

    with ThreadPoolExecutor(max_workers=max(1, min(len(builds), os.cpu_count() or 1))) as pool:
        yield from pool.map(one, builds)
