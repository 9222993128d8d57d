"""The verification harness cross-compiled for ARM and run under qemu user emulation.

Proof that the generated C means the same on the target's architecture: the same
harness as export verification (:mod:`pgdeploy.export.c.compile`), built statically with
``arm-linux-gnueabihf-gcc`` (32-bit ARMv7, hard float) or ``aarch64-linux-gnu-gcc`` and
run by ``qemu-arm`` / ``qemu-aarch64``, so its actions and probabilities can be compared
with the host build's on the same observations. Debian:
``apt-get install gcc-arm-linux-gnueabihf gcc-aarch64-linux-gnu libc6-dev-armhf-cross
libc6-dev-arm64-cross qemu-user``.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from pgdeploy.errors import CompilerError
from pgdeploy.export.c.compile import BUILD_FLAGS, HARNESS_C, CHarness, compile_c

#: name -> (cross compiler, qemu user emulator).
ARCHES: dict[str, tuple[str, str]] = {
    "armhf": ("arm-linux-gnueabihf-gcc", "qemu-arm"),
    "aarch64": ("aarch64-linux-gnu-gcc", "qemu-aarch64"),
}
INSTALL_HINT = (
    "apt-get install gcc-arm-linux-gnueabihf gcc-aarch64-linux-gnu libc6-dev-armhf-cross "
    "libc6-dev-arm64-cross qemu-user"
)


def missing_tools(arch: str) -> str | None:
    """Why ``arch`` cannot be built and run here (a sentence), or None when it can."""
    missing = [tool for tool in ARCHES[arch] if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not on PATH (Debian: {INSTALL_HINT})"
    return None


def build_cross_harness(
    arch: str, folder: Path, obs_dim: int, n_actions: int, n_heads: int = 1
) -> CHarness:
    """Build ``folder/policy.c`` with the harness for ``arch``; calls run under qemu.

    The program is linked statically, so qemu needs no sysroot. A small shell launcher
    (``folder/harness-ARCH``) stands in as the harness's executable.
    """
    reason = missing_tools(arch)
    if reason:
        raise CompilerError(f"cannot build for {arch}: {reason}")
    compiler, qemu = (shutil.which(tool) for tool in ARCHES[arch])
    assert compiler is not None and qemu is not None
    harness = folder / "harness.c"
    harness.write_text(HARNESS_C, encoding="utf-8")
    exe = compile_c(
        compiler,
        [folder / "policy.c", harness],
        folder / f"harness-{arch}.elf",
        flags=(*BUILD_FLAGS, "-static"),
    )
    launcher = folder / f"harness-{arch}"
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(qemu)} {shlex.quote(str(exe))} "$@"\n')
    launcher.chmod(0o755)
    return CHarness(launcher, obs_dim, n_actions, n_heads)
