"""The layers along the install extras, guarded two ways.

Statically, every module file found in each layer's folder (a glob, so new files are
covered the day they appear) is parsed and each import it can ever run is checked, lazy
ones inside functions and ``require("x")`` / ``import_module("x")`` calls included:

| layer | may import |
| --- | --- |
| top level: ``errors``, ``spec``, ``_io``, ``_optional``, ``layout``, ... | stdlib, numpy |
| ``inspect.py`` | the above; torch, onnx and the layers only lazily (every format is read here) |
| ``envs/`` | the above + gymnasium (+ what the video extra brings); no torch, onnx or layers |
| ``envs/play.py`` | what ``envs/`` may + ``runtime`` (``pgdeploy run`` as one call) |
| ``cli.py``, ``__main__.py`` | at import: stdlib, click, top level, training.command |
| ``runtime/`` | stdlib, numpy, onnxruntime, top level, itself |
| ``training/`` | anything but ``pgdeploy.export``, ``pgdeploy.cli`` and onnx |
| ``export/``, ``export/c/`` | anything but ``pgdeploy.cli`` |
| ``importers/`` | stdlib, numpy, top level, itself, ``runtime``; torch and ``envs`` only lazily |

Dynamically, fresh interpreters import every module of a layer (and load and act, and run
``pgdeploy inspect`` / ``pgdeploy run``) and list what landed in ``sys.modules``: that
catches what the static view cannot see (an import through another module).
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pgdeploy"
SHIPPED = ROOT / "models" / "CartPole-v1" / "model.onnx"
STDLIB = frozenset(sys.stdlib_module_names)
#: Top-level modules that are not contract modules (stdlib + numpy): they have own rules.
NOT_CONTRACT = ("cli.py", "__main__.py", "inspect.py")
#: The contract modules: every other top-level file (a new one is covered the day it appears).
TOP_LEVEL = tuple(
    sorted(
        "pgdeploy" if path.name == "__init__.py" else f"pgdeploy.{path.stem}"
        for path in PACKAGE.glob("*.py")
        if path.name not in NOT_CONTRACT
    )
)
STRING_IMPORTERS = {"require", "import_module", "__import__"}


# --- static: what each file can import -------------------------------------------------


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def package_of(path: Path) -> str:
    """The package relative imports in ``path`` resolve against."""
    return ".".join(path.relative_to(ROOT).parent.parts)


def imports(source: str, package: str, *, lazy: bool = True) -> set[str]:
    """Every module ``source`` (in ``package``) may import; ``from a import b`` gives a, a.b.

    ``lazy=False`` keeps only what runs at import time (module level, outside functions).
    Blocks under ``if TYPE_CHECKING:`` never run and are skipped.
    """
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if not lazy and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            for alias in node.names:  # a submodule, or just a name defined in ``base``
                full = f"{base}.{alias.name}"
                if not _within(base, ("pgdeploy",)) or full in pgdeploy_modules():
                    found.add(full)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) in STRING_IMPORTERS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    """``name`` is one of ``prefixes`` or inside one ("pgdeploy" itself only exactly)."""
    return any(name == p or (name.startswith(p + ".") and p != "pgdeploy") for p in prefixes)


def violations(
    found: set[str], *, allowed: tuple[str, ...] | None = None, forbidden: tuple[str, ...] = ()
) -> list[str]:
    """Imports outside ``allowed`` (stdlib always allowed) or inside ``forbidden``."""
    bad = {name for name in found if _within(name, forbidden)}
    if allowed is not None:
        bad |= {
            name
            for name in found
            if name.split(".")[0] not in STDLIB and not _within(name, allowed)
        }
    return sorted(bad)


RUNTIME_ALLOWED = ("numpy", "onnxruntime", *TOP_LEVEL, "pgdeploy.runtime")
CONTRACT_ALLOWED = ("numpy", *TOP_LEVEL)
#: What the importers may load at import time: reading zips, JSON and pickle opcodes needs
#: no torch (only ``policy.pth`` does, lazily), so ``pgdeploy inspect`` stays light.
IMPORTERS_AT_IMPORT = ("numpy", *TOP_LEVEL, "pgdeploy.importers", "pgdeploy.runtime")
HEAVY = ("torch", "gymnasium", "onnx", "onnxscript", "matplotlib", "tqdm", "click", "ray")


def check_file(path: Path) -> list[str]:
    """The layer rule for ``path``'s folder, applied to what its source can import."""
    package = package_of(path)
    source = path.read_text(encoding="utf-8")
    everything = imports(source, package)
    folder = path.parent.relative_to(PACKAGE).parts
    if folder == ("runtime",):
        return violations(everything, allowed=RUNTIME_ALLOWED)
    if folder == ("training",):
        return violations(everything, forbidden=("pgdeploy.export", "pgdeploy.cli", "onnx"))
    if folder in (("export",), ("export", "c")):
        return violations(everything, forbidden=("pgdeploy.cli",))
    if folder == ("importers",):
        at_import = imports(source, package, lazy=False)
        return violations(at_import, allowed=IMPORTERS_AT_IMPORT) + violations(
            everything, allowed=(*IMPORTERS_AT_IMPORT, "torch", "pgdeploy.envs")
        )
    if folder == ("envs",):
        gym_side = ("numpy", "gymnasium", "moviepy", "pygame", "pgdeploy.envs", *TOP_LEVEL)
        if path.name == "play.py":
            return violations(everything, allowed=(*gym_side, *RUNTIME_ALLOWED))
        return violations(everything, allowed=gym_side)
    if folder == ():
        if path.name in ("cli.py", "__main__.py", "inspect.py"):
            at_import = imports(source, package, lazy=False)
            flags = ("pgdeploy.training.command",) if path.name == "cli.py" else ()
            return violations(at_import, allowed=("click", *TOP_LEVEL, "pgdeploy.cli", *flags))
        return violations(everything, allowed=CONTRACT_ALLOWED)
    raise AssertionError(
        f"{path.relative_to(ROOT)} is in no layer: give its folder a rule in tests/test_layers.py"
    )


def module_files() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path


@functools.cache
def pgdeploy_modules() -> frozenset[str]:
    return frozenset(module_name(path) for path in module_files())


@pytest.mark.parametrize("path", list(module_files()), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_imports_only_what_its_layer_may(path: Path) -> None:
    assert check_file(path) == [], f"{path.relative_to(ROOT)} imports across its layer"


def test_the_static_check_sees_lazy_string_and_relative_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import gymnasium\n"
        "def f():\n    import torch\n    require('onnx', extra='train', feature='x')\n"
        "from ..export import pipeline\n"
    )
    found = imports(source, "pgdeploy.runtime")
    assert {"torch", "onnx", "pgdeploy.export", "pgdeploy.export.pipeline"} <= found
    assert "gymnasium" not in found  # type-checking only
    assert violations(found, allowed=RUNTIME_ALLOWED) == [
        "onnx",
        "pgdeploy.export",
        "pgdeploy.export.pipeline",
        "torch",
    ]
    assert imports(source, "pgdeploy.runtime", lazy=False) == {
        "typing",
        "typing.TYPE_CHECKING",
        "pgdeploy.export",
        "pgdeploy.export.pipeline",
    }


def test_every_layer_folder_has_files() -> None:
    """The globs above find real files (a moved package would silently check nothing)."""
    folders = {path.parent.name for path in module_files()}
    assert {"pgdeploy", "runtime", "training", "export"} <= folders


# --- dynamic: what a fresh interpreter really imports -----------------------------------


def loaded_after(code: str) -> set[str]:
    """Names in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def import_all(folder: str) -> str:
    names = [module_name(p) for p in module_files() if p.parent == PACKAGE / folder]
    assert names, folder
    return "\n".join(f"import {name}" for name in names)


def offending(loaded: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(name for name in loaded if _within(name, prefixes))


def test_the_probe_sees_what_code_imports() -> None:
    assert offending(loaded_after("import pgdeploy.export"), ("pgdeploy.export",)) == [
        "pgdeploy.export"
    ]


def test_runtime_load_and_act_import_no_torch_gymnasium_onnx_training_or_export() -> None:
    code = (
        f"{import_all('runtime')}\n"
        "import numpy as np\n"
        "from pgdeploy.runtime import Agent\n"
        f"agent = Agent.load({str(SHIPPED)!r}, seed=0)\n"
        "agent.act(np.zeros(4, np.float32)); agent.act_batch(np.zeros((3, 4), np.float32))\n"
        "agent.probs(np.zeros(4, np.float32))"
    )
    forbidden = (*HEAVY, "pgdeploy.training", "pgdeploy.export", "pgdeploy.envs", "pgdeploy.cli")
    assert offending(loaded_after(code), forbidden) == []


def test_top_level_modules_import_only_stdlib_and_numpy() -> None:
    code = "\n".join(
        f"import {module_name(p)}"
        for p in module_files()
        if p.parent == PACKAGE and p.name not in NOT_CONTRACT
    )
    outside = sorted(
        {name.split(".")[0] for name in loaded_after(code)}
        - STDLIB
        - {"numpy", "pgdeploy", "__main__", "sys"}
        - {name for name in loaded_after("") if "." not in name}  # the interpreter's own
    )
    assert outside == []


def test_importers_load_no_torch_onnx_gymnasium_or_export() -> None:
    loaded = loaded_after(import_all("importers"))
    assert "pgdeploy.importers.sb3" in loaded  # the import really happened
    forbidden = (*HEAVY, "onnxruntime", "pgdeploy.training", "pgdeploy.export", "pgdeploy.cli")
    assert offending(loaded, forbidden) == []


def test_training_never_imports_export_or_the_cli() -> None:
    loaded = loaded_after(import_all("training"))
    assert "torch" in loaded  # the import really happened
    assert offending(loaded, ("pgdeploy.export", "pgdeploy.cli", "onnx")) == []


def test_inspect_onnx_and_run_import_no_torch() -> None:
    code = (
        "from pgdeploy.cli import main\n"
        f"model = {str(SHIPPED)!r}\n"
        "for args in (['inspect', model], ['run', model, '--episodes', '1']):\n"
        "    try:\n"
        "        main(args, prog_name='pgdeploy')\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code in (0, None), exc.code\n"
    )
    loaded = loaded_after(code)
    assert "pgdeploy.inspect" in loaded and "gymnasium" in loaded  # both commands ran
    # The CLI builds train's flags from pgdeploy.training.config (torch-free); nothing more.
    assert offending(loaded, ("torch", "matplotlib", "tqdm", "pgdeploy.training.train")) == []


def import_graph() -> dict[str, set[str]]:
    """module -> the pgdeploy modules it may import (lazy imports included)."""
    modules = pgdeploy_modules()
    graph: dict[str, set[str]] = {}
    for path in module_files():
        found = imports(path.read_text(encoding="utf-8"), package_of(path))
        graph[module_name(path)] = {name for name in found if name in modules} - {"pgdeploy"}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), as sorted lists."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                circles.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_module_imports_itself_through_others() -> None:
    # A package's __init__ that lazily re-exports its own modules is its face, not a circle.
    graph = {
        module: {t for t in targets if not (t.startswith(module + ".") and path_is_package(module))}
        for module, targets in import_graph().items()
    }
    assert import_circles(graph) == []


def path_is_package(module: str) -> bool:
    return (ROOT.joinpath(*module.split(".")) / "__init__.py").exists()


def test_the_circle_finder_finds_a_circle() -> None:
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
