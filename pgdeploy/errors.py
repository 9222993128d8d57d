"""The typed errors pgdeploy raises for bad input.

Every message follows one template: what was wrong, what was expected, what was got,
and where it helps, how to fix it. Catch :class:`PgdeployError` to handle them all.
"""

from __future__ import annotations


class PgdeployError(Exception):
    """Base class of every error pgdeploy raises on purpose."""


class ObservationError(PgdeployError, ValueError):
    """An observation has the wrong shape or dtype, is not finite, or is out of bounds."""


class ModelLoadError(PgdeployError):
    """A model file is missing, unreadable, not a pgdeploy model, or of an unknown version."""


class ModelSpecError(ModelLoadError):
    """A model file's graph does not match what its own metadata (or the caller) says."""


class CheckpointError(PgdeployError):
    """A ``model.pt`` checkpoint is missing, corrupt, unsafe, or of an unknown version."""


class UnsupportedEnvError(PgdeployError, ValueError):
    """An environment has spaces pgdeploy cannot train on (it needs Box obs, Discrete actions)."""


class EnvModuleRefusedError(UnsupportedEnvError):
    """A file names an env as ``module:EnvId``; importing that module would run its code."""


class PolicyOutputError(PgdeployError, ArithmeticError):
    """A loaded policy gave an invalid output at run time (NaN probabilities, bad action)."""


class InvalidArgumentError(PgdeployError, ValueError):
    """An argument of a pgdeploy API call has the wrong type or value (a count below 1, a
    wrong length)."""


class ConfigError(PgdeployError, ValueError):
    """A training configuration value is out of range or of the wrong type."""


class ExportVerificationError(PgdeployError):
    """An exported file disagrees with the PyTorch policy beyond tolerance; nothing was written."""


class RolloutWorkerError(PgdeployError):
    """Rollout workers could not be had: the Ray cluster is unreachable, or a lost worker was
    not restarted or replaced within ``worker_timeout`` seconds."""


class UnsupportedExportError(PgdeployError, ValueError):
    """An export target cannot represent this policy (e.g. the C target and an obs encoding)."""


class CompilerError(PgdeployError):
    """No C compiler was found to verify generated C, or the generated C did not compile."""


class WriteError(PgdeployError, OSError):
    """A file could not be written (disk full, permissions, a folder in the way); the message
    names the file and what was left intact."""


class RunFolderError(PgdeployError):
    """An output folder holds another run, or a run cannot continue into it."""


class MissingDependencyError(PgdeployError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra."""


class TrainingDivergedError(PgdeployError, ArithmeticError):
    """A training step gave a non-finite loss, gradient or weight; the run stopped and its
    last finite state was kept."""
