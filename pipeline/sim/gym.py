"""``SimGymEnv``: a suite task (or stock robosuite env) as a ``gymnasium.Env``.

    from mtil.pipeline.sim.gym import SimGymEnv
    env = SimGymEnv(task="stack_red_on_green", image_size=84)      # our suite, fast rendering
    env = SimGymEnv(env_args=json.loads(f["data"].attrs["env_args"]), task=...)   # as a dataset recorded
    obs, info = env.reset(seed=0)        # info["instruction"] is the task's canonical instruction
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Observation space: ``Dict`` of ``Box`` with the keys of sim.envs (images uint8 (H, W, 3) upright, low-dim
float64). Action space: ``Box(-1, 1, (7,))`` (OSC_POSE deltas + gripper). ``terminated`` = task success;
``truncated`` after ``max_episode_steps``. ``reset(seed=None)`` draws the episode seed from the
env's ``np_random`` (itself seeded by the first ``reset(seed=...)``), so runs are reproducible.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from mtil.pipeline.sim.envs import make_env, suite_env_args


class SimGymEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, task: str | None = None, env_args: dict | None = None, image_size: int | None = 84,
                 render_quality: str | None = None, max_episode_steps: int = 400,
                 render_mode: str | None = None, render_size: int = 256):
        if env_args is None:
            env_args = suite_env_args(image_size or 84, render_quality or "fast")
        self.env = make_env(env_args, task=task, image_size=image_size, render_quality=render_quality)
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = render_mode
        self.render_size = render_size
        self._t = 0
        spec = self.env.observation_spec()
        self.observation_space = spaces.Dict({
            k: (spaces.Box(0, 255, shape, np.uint8) if dtype == np.uint8
                else spaces.Box(-np.inf, np.inf, shape, np.float64))
            for k, (shape, dtype) in spec.items()})
        self.action_space = spaces.Box(-1.0, 1.0, (7,), np.float32)

    @property
    def instruction(self) -> str:
        return self.env.instruction

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        self._t = 0
        obs = self.env.reset(seed=episode_seed)
        return obs, {"instruction": self.env.instruction, "task": self.env.task, "seed": episode_seed}

    def step(self, action):
        obs, reward, success, info = self.env.step(np.clip(np.asarray(action, np.float64), -1.0, 1.0))
        self._t += 1
        truncated = self._t >= self.max_episode_steps and not success
        return obs, float(reward), bool(success), bool(truncated), {"success": bool(success)}

    def render(self):
        if self.render_mode == "rgb_array":
            return self.env.render_frame("agentview", self.render_size)
        return None

    def close(self):
        self.env.close()
