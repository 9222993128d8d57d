"""Regenerate the per-command sections of docs/cli.md from the CLI's own --help.

The prose above the first command section is kept as written; the sections below it are
the help of every command of ``pgdeploy``, in the order cli.py defines them.
Run ``python tools/gen_cli_docs.py`` after changing an option; ``--check`` exits 1 when
the page has drifted from the CLI (tests/test_docs.py runs the same comparison).
"""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

from pgdeploy.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
FIRST_SECTION = "### `pgdeploy "


def command_sections() -> str:
    """One ``### `pgdeploy NAME` `` section per command, holding its --help text."""
    sections = []
    for name in main.commands:  # definition order: train, export, run, ...
        result = CliRunner().invoke(
            main, [name, "--help"], prog_name="pgdeploy", terminal_width=100
        )
        if result.exit_code != 0:
            raise RuntimeError(f"pgdeploy {name} --help failed: {result.output}")
        sections.append(f"{FIRST_SECTION}{name}`\n\n```text\n{result.output.rstrip()}\n```\n")
    return "\n".join(sections)


def render(current: str) -> str:
    """``current`` with everything from the first command section regenerated."""
    intro = current.split(FIRST_SECTION)[0].rstrip() + "\n"
    return intro + "\n" + command_sections()


def main_(argv: list[str]) -> int:
    current = DOC.read_text(encoding="utf-8")
    expected = render(current)
    if "--check" in argv:
        if current != expected:
            print(f"{DOC} is out of date: run python tools/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(expected, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main_(sys.argv[1:]))
