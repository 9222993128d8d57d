"""Embed a pgdeploy policy in your own control loop, with no gymnasium at all.

The application owns its simulator (here a small numpy cart-pole with CartPole-v1's
physics), its loop and its stopping rule; pgdeploy only turns an observation into an
action. The runtime needs numpy and onnxruntime, nothing else:

    pgdeploy train --env CartPole-v1 --out runs/cartpole
    pgdeploy export runs/cartpole/model.pt
    python examples/embed_controller.py runs/cartpole/model.onnx --episodes 5
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from pgdeploy.runtime import Agent


class CartPoleSimulator:
    """Cart-pole dynamics (Barto, Sutton & Anderson 1983), Euler steps of 20 ms."""

    gravity, cart_mass, pole_mass, half_length, force, dt = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.state = np.zeros(4)

    def reset(self) -> np.ndarray:
        self.state = self.rng.uniform(-0.05, 0.05, size=4)
        return self.state.astype(np.float32)

    def step(self, push_right: int) -> tuple[np.ndarray, bool]:
        """Apply a push (0 = left, 1 = right); return the new state and whether it fell."""
        x, x_dot, theta, theta_dot = self.state
        force = self.force if push_right else -self.force
        total_mass = self.cart_mass + self.pole_mass
        pole_moment = self.pole_mass * self.half_length
        cos, sin = math.cos(theta), math.sin(theta)
        temp = (force + pole_moment * theta_dot**2 * sin) / total_mass
        theta_acc = (self.gravity * sin - cos * temp) / (
            self.half_length * (4.0 / 3.0 - self.pole_mass * cos**2 / total_mass)
        )
        x_acc = temp - pole_moment * theta_acc * cos / total_mass
        self.state = np.array(
            [
                x + self.dt * x_dot,
                x_dot + self.dt * x_acc,
                theta + self.dt * theta_dot,
                theta_dot + self.dt * theta_acc,
            ]
        )
        fell = abs(self.state[0]) > 2.4 or abs(self.state[2]) > 12 * 2 * math.pi / 360
        return self.state.astype(np.float32), fell


def control(agent: Agent, sim: CartPoleSimulator, max_steps: int = 500) -> tuple[int, float]:
    """One episode of the application's loop; returns steps balanced and mean act time (us)."""
    obs = sim.reset()
    act_seconds = 0.0
    for step in range(1, max_steps + 1):
        start = time.perf_counter()
        action = agent.act(obs)
        act_seconds += time.perf_counter() - start
        obs, fell = sim.step(action)
        if fell:
            return step, act_seconds / step * 1e6
    return max_steps, act_seconds / max_steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a CartPole-v1 model.onnx from 'pgdeploy export'")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # Greedy actions: a controller usually wants the policy's best guess, not a sample.
    agent = Agent.load(args.model, deterministic=True, out_of_bounds="clip")
    if agent.spec.obs_dim != 4 or agent.spec.n_actions != 2:
        parser.error(f"{args.model} is not a cart-pole policy: {agent.spec}")
    sim = CartPoleSimulator(args.seed)
    for episode in range(args.episodes):
        steps, act_us = control(agent, sim)
        print(f"episode {episode}: balanced {steps} steps, act {act_us:.1f} us/step")


if __name__ == "__main__":
    main()
