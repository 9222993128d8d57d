"""``pgdeploy bench`` and the measuring helpers (shapes of results, not timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.errors import InvalidArgumentError
from pgdeploy.runtime import Agent
from pgdeploy.runtime.bench import run_bench
from tests.test_agent import exported_folder


@pytest.fixture
def onnx_path(request: pytest.FixtureRequest) -> Path:
    return exported_folder(request) / "model.onnx"


def test_run_bench_reports_every_batch_size(onnx_path: Path) -> None:
    report = run_bench(Agent.load(onnx_path, batch_threads=2), batch_sizes=(1, 5000), calls=50)
    result = report.to_dict()
    assert result["act"]["calls"] == 50 and result["act"]["p50_us"] > 0
    assert [row["batch_size"] for row in result["act_batch"]] == [1, 5000]
    assert result["batch_threads"] == 2 and result["fast_path"] is True


def test_bench_cli_json(onnx_path: Path) -> None:
    args = ["bench", str(onnx_path), "--calls", "20", "--batch-sizes", "1,64", "--json"]
    out = CliRunner().invoke(main, [*args, "--batch-threads", "1"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["batch_threads"] == 1
    assert [row["batch_size"] for row in result["act_batch"]] == [1, 64]


def test_bench_cli_text(onnx_path: Path) -> None:
    out = CliRunner().invoke(main, ["bench", str(onnx_path), "--calls", "20", "--batch-sizes", "8"])
    assert out.exit_code == 0, out.output
    assert "act: p50" in out.output and "act_batch n=8:" in out.output


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"calls": 0}, r"calls must be an integer >= 1, got 0"),
        ({"batch_sizes": (64, 0)}, r"batch sizes must be one or more integers >= 1, got \[64, 0\]"),
    ],
)
def test_run_bench_refuses_bad_arguments(
    onnx_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        run_bench(Agent.load(onnx_path), **kwargs)  # type: ignore[arg-type]
