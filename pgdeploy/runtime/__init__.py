"""The deployable runtime: numpy and onnxruntime only (never torch or gymnasium).

>>> from pgdeploy.runtime import Agent
>>> agent = Agent.load("models/CartPole-v1/model.onnx", seed=0)
>>> action = agent.act(obs)
"""

from pgdeploy.runtime.agent import Agent
from pgdeploy.runtime.loop import EpisodeResult, PlayReport, play
from pgdeploy.runtime.sampling import UniformStream, inverse_cdf

__all__ = ["Agent", "EpisodeResult", "PlayReport", "UniformStream", "inverse_cdf", "play"]
