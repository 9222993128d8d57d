"""SB3 VecNormalize statistics from its ``.pkl`` file, read as inert data.

``VecNormalize.save`` pickles the whole wrapper. Only the opcodes are read
(:mod:`pgdeploy.importers.pickle_reader`) with :mod:`pgdeploy.importers.inert`'s
allow-list; the fields used are ``obs_rms.mean``/``obs_rms.var``, ``epsilon``,
``clip_obs`` and ``norm_obs``, which VecNormalize applies as
``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)``.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pgdeploy.errors import ModelLoadError
from pgdeploy.importers.inert import Record, inert
from pgdeploy.importers.pickle_reader import MAX_PICKLE_BYTES, read_pickle

VEC_NORMALIZE = "stable_baselines3.common.vec_env.vec_normalize.VecNormalize"
RUNNING_MEAN_STD = "stable_baselines3.common.running_mean_std.RunningMeanStd"


@dataclass(frozen=True)
class VecNormStats:
    mean: npt.NDArray[np.float64]
    var: npt.NDArray[np.float64]
    epsilon: float
    clip_obs: float
    norm_obs: bool
    sha256: str

    def std32(self) -> npt.NDArray[np.float32]:
        """``sqrt(var + epsilon)`` as VecNormalize computes it (float64), then float32."""
        return np.sqrt(self.var + self.epsilon).astype(np.float32)


def read_vecnormalize(path: str | os.PathLike[str]) -> VecNormStats:
    path = Path(path)
    source = ascii(str(path))
    if not path.is_file():
        raise ModelLoadError(f"VecNormalize file {source} does not exist")
    if path.stat().st_size > MAX_PICKLE_BYTES:
        raise ModelLoadError(f"VecNormalize file {source} is larger than {MAX_PICKLE_BYTES} bytes")
    raw = path.read_bytes()
    value = inert(read_pickle(raw, source=source), source=source)
    if (
        not isinstance(value, Record)
        or value.cls != VEC_NORMALIZE
        or not isinstance(value.state, dict)
    ):
        raise ModelLoadError(f"{source} is not a pickled SB3 VecNormalize")
    state = value.state
    rms = state.get("obs_rms")
    if (
        not isinstance(rms, Record)
        or rms.cls != RUNNING_MEAN_STD
        or not isinstance(rms.state, dict)
    ):
        raise ModelLoadError(
            f"{source}: obs_rms is not one RunningMeanStd (Dict observations with per-key "
            "statistics are not supported)"
        )
    mean, var = (np.asarray(rms.state.get(k), dtype=np.float64) for k in ("mean", "var"))
    epsilon, clip_obs = _number(state, "epsilon", source), _number(state, "clip_obs", source)
    norm_obs = state.get("norm_obs", True)
    if mean.shape != var.shape or mean.size == 0:
        raise ModelLoadError(f"{source}: obs_rms mean {mean.shape} and var {var.shape} differ")
    if not (np.isfinite(mean).all() and np.isfinite(var).all() and (var >= 0).all()):
        raise ModelLoadError(f"{source}: obs_rms holds NaN, infinity or a negative variance")
    if not isinstance(norm_obs, bool) or epsilon <= 0 or clip_obs <= 0:
        raise ModelLoadError(f"{source}: norm_obs, epsilon or clip_obs has an unusable value")
    return VecNormStats(
        mean=mean,
        var=var,
        epsilon=epsilon,
        clip_obs=clip_obs,
        norm_obs=norm_obs,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _number(state: dict[str, object], key: str, source: str) -> float:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ModelLoadError(f"{source}: VecNormalize {key} is not a number")
    if not math.isfinite(float(value)):
        raise ModelLoadError(f"{source}: VecNormalize {key} is not finite")
    return float(value)
