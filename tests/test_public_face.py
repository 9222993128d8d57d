"""The public face: ``from pgdeploy import Agent, train, export`` (lazily: the runtime stays
torch-free), and help that says what and why in a line, with no measured figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgdeploy.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_agent_train_export_import_lazily_and_agent_needs_no_torch() -> None:
    code = (
        "import sys\n"
        "from pgdeploy import Agent\n"
        "heavy = [m for m in ('torch', 'gymnasium', 'onnx', 'click') if m in sys.modules]\n"
        "assert heavy == [], heavy\n"
        "from pgdeploy import export, train\n"
        "from pgdeploy.runtime.agent import Agent as RuntimeAgent\n"
        "from pgdeploy.training.launch import run_training\n"
        "assert Agent is RuntimeAgent and train is run_training\n"
        "assert 'torch' not in sys.modules  # train loads torch when it runs\n"
        "assert callable(export.export_checkpoint) and callable(export.export_c)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_an_unknown_name_is_an_attribute_error() -> None:
    import pgdeploy

    with pytest.raises(AttributeError, match="has no attribute 'Trainer'"):
        pgdeploy.Trainer  # noqa: B018


#: A measured figure: a duration, a speed-up or a rate.
FIGURE = re.compile(r"\d(?:[\d.,]*)\s?(?:s|ms|us|µs)\b|\d+(?:\.\d+)?x\b|steps/s", re.I)


@pytest.mark.parametrize("name", list(main.commands))
def test_help_is_a_line_per_option_with_no_measured_figures(name: str) -> None:
    command = main.commands[name]
    assert command.help is not None and len(command.help.split("\n\n")[0]) <= 100
    for param in command.params:
        text = getattr(param, "help", None) or ""
        assert len(text) <= 100, (name, param.name, text)
        assert not FIGURE.search(text), (name, param.name, text)
    out = CliRunner().invoke(main, [name, "--help"]).output
    assert not FIGURE.search(out.replace("[default: 1e-09]", "")), out
