"""PolicySpec and the ONNX metadata round trip."""

from __future__ import annotations

import json
import math

import pytest

from pgdeploy.errors import ModelLoadError
from pgdeploy.spec import FORMAT_VERSION, PolicySpec, metadata_from_props, spec_to_metadata

SPEC = PolicySpec(
    env_id="CartPole-v1",
    obs_dim=4,
    n_actions=2,
    obs_low=(-4.8, -math.inf, -0.42, -math.inf),
    obs_high=(4.8, math.inf, 0.42, math.inf),
    action_names=("left", "right"),
    reward_threshold=475.0,
    max_episode_steps=500,
)


def test_metadata_round_trip_keeps_infinite_bounds() -> None:
    props = spec_to_metadata(SPEC, training={"solved": True}, pgdeploy_version="9.9")
    assert all(isinstance(v, str) for v in props.values())
    json.loads(props["pgdeploy.spec"])  # strict JSON: no Infinity literals
    metadata = metadata_from_props(props, source="m.onnx")
    assert metadata.spec == SPEC
    assert metadata.training == {"solved": True}
    assert metadata.format_version == FORMAT_VERSION


def test_missing_metadata_names_the_fix() -> None:
    with pytest.raises(ModelLoadError, match=r"m\.onnx has no pgdeploy metadata; export it"):
        metadata_from_props({}, source="m.onnx")


def test_unknown_format_version_is_refused() -> None:
    props = spec_to_metadata(SPEC, training={}, pgdeploy_version="9.9")
    props["pgdeploy.format_version"] = "99"
    with pytest.raises(ModelLoadError, match=r"format version 99, expected one of \[3\]"):
        metadata_from_props(props, source="m.onnx")


def test_malformed_metadata_is_a_load_error() -> None:
    props = spec_to_metadata(SPEC, training={}, pgdeploy_version="9.9")
    props["pgdeploy.spec"] = '{"env_id": "x"}'
    with pytest.raises(ModelLoadError, match=r"malformed pgdeploy metadata \(KeyError"):
        metadata_from_props(props, source="m.onnx")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"n_actions": 1}, r"n_actions must be >= 2, got 1"),
        ({"obs_low": (0.0,)}, r"obs_low must have 4 entries, got 1"),
        ({"action_names": ("a",)}, r"action_names must have 2 entries, got 1"),
    ],
)
def test_inconsistent_spec_is_rejected(changes: dict[str, object], message: str) -> None:
    fields = {**SPEC.to_dict(), **changes}
    fields["obs_low"] = [v if v is not None else -math.inf for v in fields["obs_low"]]
    fields["obs_high"] = [v if v is not None else math.inf for v in fields["obs_high"]]
    with pytest.raises(ValueError, match=message):
        PolicySpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
