"""Meta-World (MT10 / MT50) as a simulator backend: the benchmark's own Sawyer envs, its scripted policies
as the experts, its ``info['success']`` as success.

Conventions (docs/design-notes.md, "Meta-World"):
- a task *variation* (where the objects and the goal are) is drawn from the episode seed: the env's
  ``np_random`` is seeded and its random reset vector is drawn from it, exactly as the benchmark draws the
  50 variations of each task (``metaworld._make_tasks``); the goal is visible in the observation, as in
  MT10/MT50;
- one camera, ``corner2``, at LeRobot's placement (0.75, 0.075, 0.7), which shows the table, the arm and the
  objects; MuJoCo renders it rotated by 180 degrees, so frames are turned upright here (observations are
  upright, like every mtil image);
- proprioception: ``eef_pos`` (hand xyz) and ``gripper_opening`` (1 number), LeRobot's 4-d ``agent_pos``;
  ``goal_pos`` (the benchmark's goal) is recorded too, for policies told to read it;
- fast rendering: no offscreen multisampling, no shadows, no reflections (9-16 ms per 84 px frame here,
  85-310 ms with the defaults);
- actions are 4-d in [-1, 1] (hand translation, gripper; +1 closes).
"""

from __future__ import annotations

import os

import numpy as np

from mtil.datasets.errors import UserError
from mtil.pipeline.sim.backends.base import Backend
from mtil.pipeline.sim.backends.metaworld_tasks import SETS, TASKS

if os.environ.get("DISPLAY") is None:
    os.environ.setdefault("MUJOCO_GL", "egl")

ENV_NAME = "MetaWorld"
CAMERAS = ("corner2",)
CORNER2_POS = (0.75, 0.075, 0.7)
CONTROL_FREQ = 80
"""steps per second: MuJoCo's timestep 0.0025 s x frame_skip 5 (the fps of exported videos)"""
STAGES = ("start", "reached", "grasped", "success")
"""reached: the benchmark's ``near_object``; grasped: its ``grasp_success``; success: ``success``."""
_POLICY_NAMES = {"peg-insert-side-v3": "SawyerPegInsertionSideV3Policy"}


def policy_class_name(task: str) -> str:
    """The class in ``metaworld.policies`` that solves ``task`` (``push-back-v3`` -> SawyerPushBackV3Policy)."""
    if task in _POLICY_NAMES:
        return _POLICY_NAMES[task]
    return "Sawyer" + "".join(p.capitalize() for p in task[:-3].split("-")) + "V3Policy"


def scripted_policy(task: str):
    import warnings

    import metaworld.policies as policies

    # its P-controllers warn on every gain they clip ("Constant(s) may be too high"): by design, not news
    warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high", category=UserWarning)
    return getattr(policies, policy_class_name(task))()


class MetaWorldEnv:
    """One Meta-World task speaking mtil's env conventions (``reset(seed)``, ``step`` -> (obs, reward,
    success, info), upright images). Build it with ``MetaWorldBackend.make_env``."""

    video_camera = "corner2"

    def __init__(self, task: str, image_size: int, use_camera_obs: bool = True):
        import mujoco
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        if task not in TASKS:
            raise UserError(f"unknown Meta-World task {task!r}; known: {', '.join(TASKS)}")
        self.task, self.instruction = task, TASKS[task].instruction
        self.cameras = list(CAMERAS) if use_camera_obs else []
        self.image_size = int(image_size)
        env = ALL_V3_ENVIRONMENTS[task]()
        env._partially_observable = False  # MT10/MT50: the goal is part of the observation
        if "sawyer_observation_space" in env.__dict__:
            del env.sawyer_observation_space  # a cached property: recomputed with the goal's bounds
        env._set_task_called = True
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True  # the variation comes from env.np_random, seeded per episode
        env.max_path_length = 10**9  # the caller's horizon ends an episode (the benchmark's is 500)
        m = env.model
        m.vis.quality.offsamples = 0  # before the first render: no multisampled offscreen buffer
        m.light_castshadow[:] = 0
        m.mat_reflectance[:] = 0
        m.cam_pos[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, "corner2")] = CORNER2_POS
        self.env, self._mujoco = env, mujoco
        self._renderers: dict[int, object] = {}
        self._raw = None
        self._info: dict = {}

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None, variation: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """A new episode: the task variation drawn from ``seed``, or ``variation`` itself (a benchmark
        task's random reset vector, ``pickle.loads(task.data)["rand_vec"]``)."""
        self.env.seed(int(seed or 0))  # reset(seed=) is ignored by Meta-World: seed the env itself
        self.env._freeze_rand_vec = variation is not None
        if variation is not None:
            self.env._last_rand_vec = np.asarray(variation, dtype=np.float64)
        self._raw, _ = self.env.reset()
        self._info = {}
        return self._obs()

    def step(self, action) -> tuple[dict[str, np.ndarray], float, bool, dict]:
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        if a.shape != (4,):
            raise ValueError(f"Meta-World takes actions of 4 values, got {a.shape[0]}")
        self._raw, reward, _, _, info = self.env.step(a.astype(np.float32))
        if not np.isfinite(self._raw).all():
            raise RuntimeError("Meta-World produced a non-finite observation")
        self._info = info
        return self._obs(), float(reward), self.is_success(), info

    def is_success(self) -> bool:
        return bool(self._info.get("success", 0.0))

    @property
    def raw_obs(self) -> np.ndarray:
        """The benchmark's 39-d observation after the last reset or step (what its scripted policies read)."""
        return self._raw

    @property
    def info(self) -> dict:
        return self._info

    @property
    def action_dim(self) -> int:
        return 4

    # ------------------------------------------------------------------ observations and images
    def _render(self, camera: str, size: int) -> np.ndarray:
        r = self._renderers.get(size)
        if r is None:
            r = self._renderers[size] = self._mujoco.Renderer(self.env.model, size, size)
        r.update_scene(self.env.data, camera=camera)
        return np.ascontiguousarray(r.render()[::-1, ::-1])  # MuJoCo gives corner2 upside down: rotate 180

    def render_frame(self, camera: str | None = None, size: int = 256) -> np.ndarray:
        return self._render(camera or self.video_camera, size)

    def _obs(self) -> dict[str, np.ndarray]:
        obs = {f"{c}_image": self._render(c, self.image_size) for c in self.cameras}
        obs["eef_pos"] = np.asarray(self._raw[0:3], dtype=np.float64)
        obs["gripper_opening"] = np.asarray(self._raw[3:4], dtype=np.float64)
        obs["goal_pos"] = np.asarray(self._raw[36:39], dtype=np.float64)  # recorded; a policy reads it only
        return obs  # when told (--lowdim-keys): the image-based benchmarks give proprioception alone

    def observation_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        if self._raw is None:
            self.reset(0)
        return {k: (v.shape, v.dtype) for k, v in self._obs().items()}

    # ------------------------------------------------------------------ state
    def get_state(self) -> np.ndarray:
        """qpos, qvel, mocap position and orientation, and the variation (goal and object placement)."""
        d = self.env.data
        return np.concatenate([d.qpos, d.qvel, d.mocap_pos.ravel(), d.mocap_quat.ravel(),
                               np.asarray(self.env._last_rand_vec, dtype=np.float64)])

    def reset_to_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        raise UserError("--seeds-from: Meta-World episodes start from their seed's task variation; initial "
                        "states from a file are not supported for this backend")

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()
        self.env.close()


class MetaWorldBackend(Backend):
    """MT50's tasks, envs, scripted policies and success."""

    name = "metaworld"
    env_name = ENV_NAME
    tasks = TASKS
    task_sets = SETS
    cameras = CAMERAS
    valid_cameras = CAMERAS

    def env_args(self, tasks: list[str], image_size: int, cameras=CAMERAS, render_quality: str = "fast") -> dict:
        if list(cameras) != list(CAMERAS):
            raise UserError(f"--cameras: Meta-World tasks are recorded from {', '.join(CAMERAS)}")
        from importlib.metadata import version

        return {"env_name": ENV_NAME, "type": 2, "backend": self.name, "env_version": version("metaworld"),
                "env_kwargs": {"camera_names": list(CAMERAS), "camera_heights": int(image_size),
                               "camera_widths": int(image_size), "corner2_pos": list(CORNER2_POS),
                               "control_freq": CONTROL_FREQ,
                               "goal_observable": True},
                "image_convention": "opencv", "mtil_tasks": {t: TASKS[t].instruction for t in tasks},
                "seed_policy": "episode seed = SeedSequence([--seed, crc32(task), episode index]); the task "
                               "variation is drawn from env.np_random seeded with it"}

    def make_env(self, env_args: dict, task: str | None = None, image_size: int | None = None,
                 use_camera_obs: bool = True, render_quality: str | None = None) -> MetaWorldEnv:
        task = task or next(iter(env_args.get("mtil_tasks") or {}), None)
        if task is None:
            raise UserError("a Meta-World env needs a task name (env_args mtil_tasks lists none)")
        size = image_size or int((env_args.get("env_kwargs") or {}).get("camera_heights", 84))
        return MetaWorldEnv(task, size, use_camera_obs=use_camera_obs)

    def env_key(self, task: str) -> str:
        return task  # every task is its own MuJoCo model

    def stages(self, task: str | None) -> tuple[str, ...]:
        return STAGES

    def stage_tracker(self, env: MetaWorldEnv):
        return _Tracker(env)

    def run_expert_episode(self, env: MetaWorldEnv, task: str, seed: int, horizon: int = 500, hold: int = 1,
                           on_step=None, action_noise: float = 0.0, dart_noise: float = 0.0,
                           driver=None) -> tuple[bool, int, dict]:
        """The package's scripted policy for ``task`` acts on the benchmark observation (noise and
        ``driver`` as in our suite's experts: DART noise on the executed translation, the clean action the
        label; ``action_noise`` executed and recorded). Ends once success held ``hold`` steps."""
        policy = scripted_policy(task)
        obs = env.reset(seed=seed)
        noise_rng = np.random.default_rng([seed, 104729])
        held = 0
        for step in range(horizon):
            clean = np.clip(np.asarray(policy.get_action(env.raw_obs), dtype=np.float64), -1.0, 1.0)
            label = executed = clean
            if action_noise > 0:
                label = executed = np.clip(clean + np.r_[noise_rng.normal(0, action_noise, 3), 0.0], -1, 1)
            if dart_noise > 0:
                executed = np.clip(clean + np.r_[noise_rng.normal(0, dart_noise, 3), 0.0], -1, 1)
            if driver is not None:
                label, executed = clean, driver(obs, clean)
            state = env.get_state() if on_step is not None else None
            obs_next, reward, success, _ = env.step(executed)
            held = held + 1 if success else 0
            done = held >= hold
            if on_step is not None:
                on_step(obs, state, label, reward, done, executed)
            obs = obs_next
            if done:
                return True, step + 1, obs
        return False, horizon, obs


class _Tracker:
    """Furthest stage from the benchmark's own info (near_object, grasp_success, success) and stalls."""

    def __init__(self, env: MetaWorldEnv):
        from mtil.pipeline.sim.stages import STALL_STEPS

        self.furthest, self.eef, self.keep = 0, [], STALL_STEPS

    def step(self, env: MetaWorldEnv, success: bool | None = None) -> None:
        info = env.info
        stage = 3 if (success if success is not None else env.is_success()) else (
            2 if info.get("grasp_success", 0) > 0 else 1 if info.get("near_object", 0) > 0 else 0)
        self.furthest = max(self.furthest, stage)
        self.eef.append(np.array(env.raw_obs[:3]))
        del self.eef[:-self.keep]

    def summary(self, success: bool) -> dict:
        from mtil.pipeline.sim.stages import STALL_MOVE

        stage = STAGES[-1] if success else STAGES[min(self.furthest, len(STAGES) - 2)]
        tail = np.asarray(self.eef)
        stalled = (not success and len(tail) >= self.keep
                   and float(np.max(np.linalg.norm(tail - tail[-1], axis=1))) < STALL_MOVE)
        return {"stage": stage, "stalled": bool(stalled)}
