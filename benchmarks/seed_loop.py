"""The reference loop pgdeploy is measured against: the tutorial it grew out of, on gymnasium.

A tutorial-style REINFORCE for CartPole, kept faithful on purpose: one env, one episode
per update, ``Categorical`` sampling with autograd on, ``torch.optim.Adam`` (lr 1e-2),
returns normalised per episode, no baseline, no entropy bonus. Only the gym API is
ported (``reset`` -> ``(obs, info)``, ``step`` -> five values, an episode ends on
either flag) and torch runs on one thread (2 threads made it about 3x slower).

Prints one JSON line: when the mean of the last 100 episodes first reached the env's
threshold (episode, env steps, seconds), and whether it was still there at the end.

    python benchmarks/seed_loop.py --seed 0 [--episodes 1000] [--stop-on-solve]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical

GAMMA = 0.99
LEARNING_RATE = 1e-2
WINDOW = 100


class Policy(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, 128), nn.ReLU(), nn.Linear(128, n_actions), nn.Softmax(dim=-1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


def select_action(policy: Policy, obs: np.ndarray) -> tuple[int, torch.Tensor]:
    state = torch.from_numpy(obs).float().unsqueeze(0)
    probs = policy(state)
    m = Categorical(probs)
    action = m.sample()
    return int(action.item()), m.log_prob(action)


def finish_episode(
    optimizer: torch.optim.Optimizer, rewards: list[float], log_probs: list[torch.Tensor]
) -> None:
    returns: deque[float] = deque()
    running = 0.0
    for r in reversed(rewards):
        running = r + GAMMA * running
        returns.appendleft(running)
    g = torch.tensor(list(returns))
    g = (g - g.mean()) / (g.std() + 1e-9)
    loss = torch.cat([-lp * ret for lp, ret in zip(log_probs, g, strict=True)]).sum()
    optimizer.zero_grad()
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()


def run(seed: int, episodes: int, stop_on_solve: bool) -> dict[str, object]:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    env = gym.make("CartPole-v1")
    threshold = float(env.spec.reward_threshold)  # type: ignore[union-attr]
    policy = Policy(env.observation_space.shape[0], int(env.action_space.n))  # type: ignore[index, attr-defined]
    optimizer = torch.optim.Adam(policy.parameters(), lr=LEARNING_RATE)
    window: deque[float] = deque(maxlen=WINDOW)
    start = time.perf_counter()
    env_steps = 0
    solved_at: dict[str, float] | None = None
    obs, _ = env.reset(seed=seed)
    for episode in range(1, episodes + 1):
        rewards: list[float] = []
        log_probs: list[torch.Tensor] = []
        done = False
        while not done:
            action, log_prob = select_action(policy, obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(float(reward))
            log_probs.append(log_prob)
            done = terminated or truncated
        env_steps += len(rewards)
        finish_episode(optimizer, rewards, log_probs)
        window.append(sum(rewards))
        obs, _ = env.reset()
        solved = len(window) == WINDOW and float(np.mean(window)) >= threshold
        if solved and solved_at is None:
            solved_at = {
                "episode": episode,
                "env_steps": env_steps,
                "seconds": round(time.perf_counter() - start, 3),
            }
            if stop_on_solve:
                break
    env.close()
    return {
        "seed": seed,
        "solved": solved_at is not None,
        "solved_at": solved_at,
        "episodes": episode,
        "env_steps": env_steps,
        "seconds": round(time.perf_counter() - start, 3),
        "final_window_mean": round(float(np.mean(window)), 2),
        "solved_at_end": len(window) == WINDOW and float(np.mean(window)) >= threshold,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=1000, help="Episode budget.")
    parser.add_argument(
        "--stop-on-solve", action="store_true", help="Stop at the first solve (default: run on)."
    )
    args = parser.parse_args()
    print(json.dumps(run(args.seed, args.episodes, args.stop_on_solve)))


if __name__ == "__main__":
    main()
