"""The README and docs as a user copies them: every ``pgdeploy`` command line parses with
today's CLI (its command and flags exist), and no install line fetches another project (the
unrelated ``pgdeploy`` on PyPI): each names this project as ``pgdeploy-rl`` or a path."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from pgdeploy.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Where install lines may also hide: error texts, skip reasons, docstrings, the Makefile.
SOURCES = [*DOCS, ROOT / "Makefile", *sorted(ROOT.glob("pgdeploy/**/*.py"))]
SOURCES += sorted(ROOT.glob("tests/*.py")) + sorted(ROOT.glob("benchmarks/*.py"))
SOURCES.remove(Path(__file__).resolve())  # it spells the bad forms out to test the grep


def command_lines(path: Path) -> list[str]:
    lines = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", path.read_text(), re.S):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("pgdeploy "):
                lines.append(line.split(" #")[0].strip())
    return lines


CASES = [(path.name, line) for path in DOCS for line in command_lines(path)]


def test_the_docs_have_commands_to_check() -> None:
    assert len([c for c in CASES if c[0] == "README.md"]) >= 8


@pytest.mark.parametrize(("doc", "line"), CASES)
def test_every_documented_command_parses(doc: str, line: str) -> None:
    name, *rest = shlex.split(line)[1:]
    ctx = click.Context(main, info_name="pgdeploy")
    command = main.get_command(ctx, name)
    assert command is not None, f"{doc}: {line!r}: no command {name!r}"
    try:
        command.make_context(name, rest, parent=ctx)
    except click.UsageError as exc:
        raise AssertionError(f"{doc}: {line!r}: {exc.format_message()}") from exc


#: A requirement naming a distribution that starts with "pgdeploy" but is not pgdeploy-rl.
OTHER_PROJECT = re.compile(
    r"""(?<![\w./-])["']?pgdeploy(?!-rl)(?:\[[\w,-]*\])?["']?(?=\s|$|["'`)])"""
)


def install_lines(text: str) -> list[str]:
    """Each ``pip install ...`` up to a comment, a backtick or the line's end; the README's
    warning (never `pip install pgdeploy`) is the one place the bad form may stand."""
    found = []
    for match in re.finditer(r"pip install[^\n`#]*", text):
        before = text[max(0, match.start() - 20) : match.start()]
        if not before.endswith(("never `", "Do not run `")):
            found.append(match.group(0))
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_install_line_fetches_another_project(path: Path) -> None:
    lines = install_lines(path.read_text(encoding="utf-8"))
    assert [line for line in lines if OTHER_PROJECT.search(line[len("pip install") :])] == []


def test_the_grep_finds_the_bad_forms() -> None:
    for line in [
        'pip install "pgdeploy[train,ray]"',
        "pip install pgdeploy",
        "pip install 'pgdeploy'",
    ]:
        assert OTHER_PROJECT.search(line[len("pip install") :]), line
    for line in ['pip install "pgdeploy-rl[ray]"', 'pip install ".[train]"', "pip install -e ."]:
        assert not OTHER_PROJECT.search(line[len("pip install") :]), line
