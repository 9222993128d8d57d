"""examples/c_cartpole: the shipped policy plays CartPole from C as well as from Python.

Three claims, each checked: the C physics is gymnasium's CartPole-v1 (every traced
transition replayed through gymnasium gives the same state and the same termination);
the C policy picks the actions the Python agent picks for the same observation and
uniform; and C and Python reach the same mean return on the shipped model.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pgdeploy.export import export_c
from pgdeploy.export.c.compile import BUILD_FLAGS, compile_c

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "CartPole-v1"
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc, gcc or clang) on PATH")
EPISODES = 50
#: Largest allowed |mean return C - mean return Python| over EPISODES episodes each; both
#: play near 500 (the cap), so a policy that works in one and not the other exceeds it.
RETURN_MARGIN = 10.0


@pytest.fixture(scope="module")
def cartpole_c(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example built against the shipped model's C export (verified at export)."""
    folder = tmp_path_factory.mktemp("c_cartpole")
    export_c(SHIPPED / "model.pt", folder, n_random=1024, n_on_policy=1024)
    assert CC is not None
    sources = [ROOT / "examples" / "c_cartpole" / "cartpole.c", folder / "policy.c"]
    return compile_c(CC, sources, folder / "cartpole", flags=(*BUILD_FLAGS, f"-I{folder}"))


def _run(exe: Path, *args: str) -> str:
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, check=True)
    return done.stdout


def test_c_and_python_reach_the_same_mean_return(cartpole_c: Path) -> None:
    from pgdeploy.envs.making import make_env
    from pgdeploy.runtime import Agent, play

    out = _run(cartpole_c, str(EPISODES), "0")
    returns = [int(r) for r in re.findall(r"^episode \d+: return (\d+)$", out, re.M)]
    match = re.search(r"^mean return over (\d+) episodes: ([\d.]+)$", out, re.M)
    assert match is not None and int(match.group(1)) == len(returns) == EPISODES
    c_mean = float(match.group(2))
    assert c_mean == pytest.approx(np.mean(returns), abs=0.005)

    env = make_env("CartPole-v1")
    try:
        agent = Agent.load(SHIPPED / "model.onnx", seed=0)
        py_mean = play(agent, env, episodes=EPISODES, seed=0).mean_return
    finally:
        env.close()
    assert c_mean >= 475 and py_mean >= 475, (c_mean, py_mean)
    assert abs(c_mean - py_mean) <= RETURN_MARGIN, (c_mean, py_mean)


@pytest.mark.parametrize("mode", ["sample", "greedy"])
def test_c_steps_and_actions_equal_gymnasium_and_the_python_agent(
    cartpole_c: Path, tmp_path: Path, mode: str
) -> None:
    import gymnasium as gym

    from pgdeploy.runtime import Agent

    trace = tmp_path / "trace.txt"
    _run(cartpole_c, "4", "7", mode, str(trace))
    steps, finals = _parse_trace(trace)
    assert len(finals) == 4 and len(steps) == sum(t for t, _, _ in finals.values())

    # Actions: the Python agent, handed the same float32 observations and uniforms.
    obs = np.array([s[2] for s in steps], dtype=np.float64).astype(np.float32)
    uniforms = np.array([s[3] for s in steps], dtype=np.float32)
    outputs = Agent.load(SHIPPED / "model.onnx").run_graph(obs, uniforms)
    name = "greedy_action" if mode == "greedy" else "sampled_action"
    np.testing.assert_array_equal(outputs[name], [s[4] for s in steps])

    # Physics: every C transition, replayed from the same double state through gymnasium.
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    for i, (episode, t, state, _, action) in enumerate(steps):
        env.state = np.array(state, dtype=np.float64)  # type: ignore[attr-defined]
        next_obs, _, terminated, _, _ = env.step(action)
        last = i + 1 == len(steps) or steps[i + 1][0] != episode
        expected = finals[episode][1] if last else steps[i + 1][2]
        assert np.array_equal(env.state, expected), (episode, t)  # type: ignore[attr-defined]
        assert np.array_equal(next_obs, np.float32(expected))
        if not last:
            assert not terminated, (episode, t)
        else:
            c_terminated = finals[episode][2]
            assert terminated == c_terminated
            assert terminated or t + 1 == 500  # otherwise only truncation ends an episode
    env.close()


Step = tuple[int, int, tuple[float, ...], float, int]


def _parse_trace(path: Path) -> tuple[list[Step], dict[int, tuple[int, tuple[float, ...], bool]]]:
    """S lines (episode, t, state, uniform, action) and F lines (steps, final state, terminated)."""
    steps: list[Step] = []
    finals: dict[int, tuple[int, tuple[float, ...], bool]] = {}
    for line in path.read_text().splitlines():
        tag, episode, t, *rest = line.split()
        state = tuple(float(v) for v in rest[:4])
        if tag == "S":
            steps.append((int(episode), int(t), state, float(rest[4]), int(rest[5])))
        else:
            finals[int(episode)] = (int(t), state, rest[4] == "1")
    return steps, finals
