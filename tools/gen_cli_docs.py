"""Regenerate the per-command sections of docs/cli.md from the CLI's own --help.

The prose above the first command section is kept as written; run this after changing
an option (tests/test_cli.py checks that every command and flag is documented).
"""

from pathlib import Path

from click.testing import CliRunner

from pgdeploy.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
COMMANDS = ["train", "export", "run", "inspect", "bench"]


def main_() -> None:
    text = DOC.read_text(encoding="utf-8")
    intro = text.split("### `pgdeploy train`")[0].rstrip() + "\n"
    sections = []
    for name in COMMANDS:
        result = CliRunner().invoke(
            main, [name, "--help"], prog_name="pgdeploy", terminal_width=100
        )
        sections.append(f"### `pgdeploy {name}`\n\n```text\n{result.output.rstrip()}\n```\n")
    DOC.write_text(intro + "\n" + "\n".join(sections), encoding="utf-8")


if __name__ == "__main__":
    main_()
