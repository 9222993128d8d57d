"""The error contract: one base class, ValueError where callers expect it, fix in the message."""

from __future__ import annotations

import pytest

from pgdeploy import errors


@pytest.mark.parametrize(
    "cls",
    [
        errors.ObservationError,
        errors.ModelLoadError,
        errors.ModelSpecError,
        errors.CheckpointError,
        errors.ConfigError,
        errors.ExportVerificationError,
        errors.MissingDependencyError,
        errors.UnsupportedEnvError,
    ],
)
def test_every_error_is_a_pgdeploy_error(cls: type[Exception]) -> None:
    assert issubclass(cls, errors.PgdeployError)


def test_observation_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="bad obs"):
        raise errors.ObservationError("bad obs")


def test_missing_dependency_names_the_install() -> None:
    exc = errors.missing_dependency("onnx", "train", "export")
    assert isinstance(exc, ImportError)
    with pytest.raises(errors.MissingDependencyError, match=r'pip install "pgdeploy\[train\]"'):
        raise exc
