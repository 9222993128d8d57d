"""Optional imports: one helper, the extra and the exact pip command named, real bugs kept."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from pgdeploy._optional import DISTRIBUTION, require
from pgdeploy.errors import MissingDependencyError

PACKAGE = Path(__file__).resolve().parents[1] / "pgdeploy"


def test_require_returns_the_module() -> None:
    assert require("json", extra="train", feature="a test") is sys.modules["json"]


def test_absent_module_names_the_extra_and_the_pip_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(
        MissingDependencyError,
        match=r"^reading YAML needs the 'yaml' package, which is not installed; install the "
        r"'train' extra with: pip install \"pgdeploy-rl\[train\]\"$",
    ) as info:
        require("yaml", extra="train", feature="reading YAML")
    assert isinstance(info.value, ImportError)  # code catching ImportError keeps working


def test_a_broken_import_inside_an_installed_module_is_not_masked(tmp_path: Path) -> None:
    (tmp_path / "pgdeploy_half_installed.py").write_text("import pgdeploy_its_missing_dep\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ModuleNotFoundError, match="pgdeploy_its_missing_dep"):
            require("pgdeploy_half_installed", extra="train", feature="a test")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("pgdeploy_half_installed", None)


def test_the_distribution_name_is_the_one_pyproject_declares() -> None:
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(rf'^name = "{re.escape(DISTRIBUTION)}"$', pyproject, re.MULTILINE)


def _swallowing_handlers(source: str) -> list[int]:
    """Lines of ``except ImportError`` handlers that swallow it instead of raising."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ExceptHandler) or node.type is None:
            continue
        caught = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
        if not any(getattr(c, "id", None) in IMPORT_ERRORS for c in caught):
            continue
        if not any(isinstance(n, ast.Raise) for n in ast.walk(node)):
            bad.append(node.lineno)
    return bad


IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def test_the_handler_check_sees_a_bare_import_error_handler() -> None:
    source = "try:\n    import x\nexcept ImportError:\n    x = None\n"
    assert _swallowing_handlers(source) == [3]
    named = "try:\n    import x\nexcept ImportError as e:\n    raise missing('x') from e\n"
    assert _swallowing_handlers(named) == []


def test_only_the_helper_names_extras() -> None:
    """Optional imports go through ``require`` or raise ``missing(...)``: no module builds a
    MissingDependencyError itself or silently swallows an ImportError."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_optional.py":
            continue
        source = path.read_text(encoding="utf-8")
        where = str(path.relative_to(PACKAGE))
        if re.search(r"(?<!class )MissingDependencyError\(", source):
            offenders.append(f"{where}: builds MissingDependencyError")
        offenders += [f"{where}:{line}" for line in _swallowing_handlers(source)]
    assert offenders == []
