"""The deployable runtime: numpy and onnxruntime only (never torch or gymnasium).

>>> from pgdeploy.runtime import Agent
>>> agent = Agent.load("models/CartPole-v1/model.onnx", seed=0)
>>> action = agent.act(obs)
"""

from typing import TYPE_CHECKING, Any

from pgdeploy.runtime.loop import EpisodeResult, PlayReport, play
from pgdeploy.runtime.sampling import UniformStream, inverse_cdf

if TYPE_CHECKING:
    from pgdeploy.runtime.agent import Agent

__all__ = ["Agent", "EpisodeResult", "PlayReport", "UniformStream", "inverse_cdf", "play"]


def __getattr__(name: str) -> Any:
    # Agent (and onnxruntime, slow to import) loads on first use, so the trainer, which
    # only needs the sampling contract from here, does not pay for it.
    if name == "Agent":
        from pgdeploy.runtime.agent import Agent

        return Agent
    raise AttributeError(f"module 'pgdeploy.runtime' has no attribute {name!r}")
