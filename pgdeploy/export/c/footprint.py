"""Flash and RAM of ``policy.o`` on a microcontroller (or the host), from the compiler.

``policy.c`` is compiled alone with ``-c -fstack-usage``; flash is ``.text`` + ``.rodata``
(the code and the constant weights), static RAM is ``.data`` + ``.bss``, and the stack
is read from the ``.su`` file: the deepest single frame, and the sum of every function's
frame, an upper bound on any call chain (the generated code does not recurse). The
object's undefined symbols are its library calls: on an FPU-less core (Cortex-M0) the
``__aeabi_f*`` software-float routines say what float arithmetic costs there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pgdeploy.errors import CompilerError

#: name -> (compiler, its flags, what it stands for). ``host`` uses the verifying compiler.
TARGETS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "cortex-m4f": (
        "arm-none-eabi-gcc",
        ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os"),
        "Cortex-M4F (arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -Os)",
    ),
    "cortex-m0": (
        "arm-none-eabi-gcc",
        ("-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft", "-Os"),
        "Cortex-M0, no FPU (arm-none-eabi-gcc -mcpu=cortex-m0 -mthumb -Os)",
    ),
    "host": ("cc", ("-Os",), "the host compiler (-Os)"),
}
_COMMON = ("-std=c99", "-ffp-contract=off", "-fstack-usage", "-c")


@dataclass(frozen=True)
class Footprint:
    """Sizes in bytes of one ``policy.o`` build."""

    target: str  #: a key of TARGETS
    compiler: str
    text: int
    rodata: int
    data: int
    bss: int
    stack_max: int  #: the deepest single stack frame
    stack_function: str  #: the function that has it
    stack_total: int  #: every function's frame summed: a bound on any call chain
    library_calls: tuple[str, ...]  #: undefined symbols (libm, software float, memset)

    @property
    def flash(self) -> int:
        return self.text + self.rodata

    @property
    def static_ram(self) -> int:
        return self.data + self.bss

    @property
    def soft_float_calls(self) -> tuple[str, ...]:
        return tuple(s for s in self.library_calls if s.startswith("__aeabi_") and "f" in s[8:])

    def describe(self) -> str:
        """One line for the CLI."""
        return (
            f"{TARGETS[self.target][2]}: flash {self.flash} B (text {self.text} + rodata "
            f"{self.rodata}), static RAM {self.static_ram} B, deepest stack frame "
            f"{self.stack_max} B ({self.stack_function}; all frames {self.stack_total} B)"
        )


def default_target() -> str:
    """``cortex-m4f`` where arm-none-eabi-gcc is installed, else ``host``."""
    return "cortex-m4f" if shutil.which(TARGETS["cortex-m4f"][0]) else "host"


def measure(source: Path, target: str | None = None, *, compiler: str | None = None) -> Footprint:
    """Compile ``source`` (``policy.c``, its header beside it) for ``target`` and size it.

    Raises CompilerError when the target's compiler is missing or fails.
    """
    target = target or default_target()
    source = Path(source).resolve()  # the compiler runs in a temp folder
    name, flags, _ = TARGETS[target]
    cc = shutil.which(compiler or (os.environ.get("CC") if target == "host" else None) or name)
    if cc is None:
        raise CompilerError(
            f"no {compiler or name} on PATH to measure the {target} footprint "
            "(Debian: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)"
        )
    prefix = Path(cc).name[: -len("gcc")] if Path(cc).name.endswith("gcc") else ""
    source = Path(source).resolve()  # the compiler runs in a temporary folder
    with tempfile.TemporaryDirectory(prefix="pgdeploy-size-") as tmp:
        obj = Path(tmp) / "policy.o"
        command = [cc, *_COMMON, *flags, f"-I{source.parent}", str(source), "-o", str(obj)]
        done = _run(command, cwd=tmp)
        if done.returncode != 0:
            raise CompilerError(f"{' '.join(command)} failed:\n{done.stderr.strip()[:2000]}")
        sections = _sections(_tool(prefix, "size"), obj)
        frames = _stack_frames(Path(tmp) / "policy.su")
        calls = _undefined(_tool(prefix, "nm"), obj)
    top = max(frames.items(), key=lambda kv: kv[1], default=("-", 0))
    return Footprint(
        target=target,
        compiler=cc,
        text=sections.get("text", 0),
        rodata=sections.get("rodata", 0),
        data=sections.get("data", 0),
        bss=sections.get("bss", 0),
        stack_max=top[1],
        stack_function=top[0],
        stack_total=sum(frames.values()),
        library_calls=calls,
    )


def _run(command: list[str], cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=False, cwd=cwd
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompilerError(f"cannot run {command[0]!r}: {exc}") from exc


def _tool(prefix: str, name: str) -> str:
    path = shutil.which(prefix + name) or shutil.which(name)
    if path is None:
        raise CompilerError(f"no {prefix + name} (binutils) on PATH to size the object")
    return path


def _sections(size: str, obj: Path) -> dict[str, int]:
    """``size -A``: bytes per kind, ``.text.*``/``.rodata.*`` (e.g. ``.rodata.cst4``) summed."""
    done = _run([size, "-A", str(obj)])
    if done.returncode != 0:
        raise CompilerError(f"{size} -A failed: {done.stderr.strip()[:500]}")
    totals: dict[str, int] = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].startswith(".") or not parts[1].isdigit():
            continue
        kind = parts[0][1:].split(".")[0]
        if kind in ("text", "rodata", "data", "bss"):
            totals[kind] = totals.get(kind, 0) + int(parts[1])
    return totals


def _stack_frames(su: Path) -> dict[str, int]:
    """``file:line:col:function<TAB>bytes<TAB>kind`` lines -> function: bytes."""
    frames: dict[str, int] = {}
    if su.exists():
        for line in su.read_text(errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1].isdigit():
                frames[parts[0].rsplit(":", 1)[-1]] = int(parts[1])
    return frames


def _undefined(nm: str, obj: Path) -> tuple[str, ...]:
    done = _run([nm, "-u", str(obj)])
    return tuple(sorted({p.split()[-1] for p in done.stdout.splitlines() if p.strip()}))
