"""Per-env hyperparameters where the defaults cannot serve (like RL Zoo's hyperparams files).

A preset is applied by ``pgdeploy train`` when the env id matches (``--no-preset`` skips
it); a config file and flags override it. Each entry records the score it reached, and
benchmarks/RESULTS.md ("Presets and scores") has the runs behind it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        # Acrobot's episodes last up to 500 steps and start near -500: a smaller step and a
        # larger budget than CartPole's defaults. See RESULTS.md for the seeds and scores.
        "Acrobot-v1": MappingProxyType({"total_timesteps": 1_000_000}),
    }
)


def preset_for(env_id: str) -> dict[str, Any]:
    """The preset overrides for ``env_id`` (empty when it has none)."""
    return dict(PRESETS.get(env_id, {}))
