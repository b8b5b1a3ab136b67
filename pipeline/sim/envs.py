"""Environment factory: build a simulator from a dataset's ``env_args``; gymnasium wrapper.

API used by collection, replay and evaluation::

    from mtil.pipeline.sim.envs import make_env, suite_env_args
    from mtil.pipeline.sim.gym import SimGymEnv    # the same env as a gymnasium.Env

    env = make_env(env_args, task="lift_red")      # env_args: dict (or JSON str) as stored in data.attrs
    obs = env.reset(seed=3)                        # same seed -> same object layout and robot start
    obs, reward, done, info = env.step(action)     # action (7,) in [-1, 1]; done = task succeeded
    env.is_success()                               # bool, the task's success predicate
    frame = env.render_frame("agentview", 256)     # (256, 256, 3) uint8, upright
    state = env.get_state(); env.reset_to_state(state)   # flattened MuJoCo state [time, qpos, qvel]
    env.instruction, env.task, env.env_args        # canonical instruction, task name, rebuild recipe
    env.close()

``obs`` is a dict with the keys and conventions of our HDF5 files: ``agentview_image`` and
``robot0_eye_in_hand_image`` (H, W, 3) uint8 upright (row 0 = top), ``robot0_eef_pos`` (3,),
``robot0_eef_quat`` (4,) xyzw, ``robot0_gripper_qpos`` (2,), ``object`` (D,) float64 (our scenes: D=28,
see sim.tasks.OBJECT_DIM; stock envs: robosuite's ``object-state``).

``env_args`` is robomimic's recipe (``env_name``, ``type`` = 1 for robosuite, ``env_kwargs``) plus our
keys: ``render`` (RenderSettings dict), ``image_convention`` ("opencv" = upright), ``mtil_tasks``
({name: instruction}), optional ``mtil_task`` (single-task files). ``env_name`` "MtilTabletop" means our
suite (the scene follows from the task); any other name is a stock robosuite env (Lift, PickPlaceCan,
NutAssemblySquare, ...), with robosuite <= 1.4 controller configs converted to 1.5's composite form.
A file written by another tool (no ``render`` key) is rebuilt with robosuite's default rendering.

``mtil.pipeline.sim.gym.SimGymEnv`` is the same env as a ``gymnasium.Env`` (Dict observation space,
seeded ``reset``).
"""

from __future__ import annotations

import copy
import inspect
import json

import numpy as np

from mtil.datasets.schema import PROPRIO_KEYS
from mtil.pipeline.sim.render import FastRenderMixin, RenderSettings, import_robosuite
from mtil.pipeline.sim.scene import MtilTabletop
from mtil.pipeline.sim.tasks import CAMERAS, SUITE_ENV_NAME, TASKS

robosuite = import_robosuite()
import mujoco  # noqa: E402
from robosuite import macros  # noqa: E402
from robosuite.controllers import load_composite_controller_config  # noqa: E402
from robosuite.controllers.composite.composite_controller_factory import (  # noqa: E402
    refactor_composite_controller_config,
)
from robosuite.environments.base import REGISTERED_ENVS  # noqa: E402

CONTROL_FREQ = 20


class UnstableSimulation(RuntimeError):
    """MuJoCo produced non-finite state or flagged a bad acceleration: the episode is unusable."""


def suite_env_args(image_size: int = 84, render_quality: str = "fast", cameras=CAMERAS,
                   tasks: list[str] | None = None) -> dict:
    """The ``env_args`` our collection writes (and ``make_env`` reads back)."""
    return {
        "env_name": SUITE_ENV_NAME,
        "type": 1,
        "env_version": robosuite.__version__,
        "env_kwargs": {
            "robots": ["Panda"],
            "controller_configs": load_composite_controller_config(controller="BASIC", robot="Panda"),
            "camera_names": list(cameras),
            "camera_heights": int(image_size),
            "camera_widths": int(image_size),
            "control_freq": CONTROL_FREQ,
            "use_camera_obs": True,
            "use_object_obs": True,
            "reward_shaping": False,
            "initialization_noise": {"magnitude": 0.02, "type": "gaussian"},
            "lite_physics": True,
            "hard_reset": False,
            "ignore_done": True,
        },
        "render": RenderSettings(quality=render_quality).to_dict(),
        "image_convention": "opencv",
        "mtil_tasks": {t: TASKS[t].instruction for t in (tasks if tasks is not None else TASKS)},
        "seed_policy": "episode seed = SeedSequence([--seed, crc32(task), episode index]); "
                       "reset(seed) reseeds env.rng before placement",
    }


_FAST_CLASSES: dict[type, type] = {}


def _env_class(env_name: str) -> type:
    if env_name == SUITE_ENV_NAME:
        return MtilTabletop
    if env_name not in REGISTERED_ENVS:
        raise ValueError(f"unknown robosuite environment {env_name!r}")
    base = REGISTERED_ENVS[env_name]
    if base not in _FAST_CLASSES:  # stock env + our XML rewriting; made once per class
        _FAST_CLASSES[base] = type(f"MtilRendered{base.__name__}", (FastRenderMixin, base), {})
    return _FAST_CLASSES[base]


def _accepted_kwargs(cls: type) -> set[str] | None:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names |= {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return names  # this class takes no **kwargs: nothing further up is reachable
    return None


class SimEnv:
    """A robosuite env speaking our observation conventions. Build it with ``make_env``."""

    def __init__(self, env_args: dict, task: str | None = None, image_size: int | None = None,
                 render_quality: str | None = None, use_camera_obs: bool = True):
        self.env_args = copy.deepcopy(env_args)
        kw = dict(self.env_args.get("env_kwargs", {}))
        env_name = self.env_args["env_name"]
        self.task = task or self.env_args.get("mtil_task")
        if env_name == SUITE_ENV_NAME:
            if self.task not in TASKS:
                raise ValueError(f"env_args describe the task suite: give a task, one of {', '.join(TASKS)}")
            kw["scene"], kw["task"] = TASKS[self.task].scene, self.task
            self.instruction = TASKS[self.task].instruction
        else:
            self.instruction = (self.env_args.get("mtil_tasks") or {}).get(self.task, self.task)
        if image_size is not None:
            kw["camera_heights"] = kw["camera_widths"] = int(image_size)
            self.env_args["env_kwargs"].update(camera_heights=int(image_size), camera_widths=int(image_size))
        render = RenderSettings.from_dict(self.env_args.get("render"))
        if render_quality is not None and render_quality != render.quality:
            render = RenderSettings(quality=render_quality)
            self.env_args["render"] = render.to_dict()
        cams = kw.get("camera_names") or list(CAMERAS)
        kw["camera_names"] = [cams] if isinstance(cams, str) else list(cams)
        robots = kw.get("robots", "Panda")
        robot = robots if isinstance(robots, str) else robots[0]
        ctrl = kw.get("controller_configs") or load_composite_controller_config(controller="BASIC", robot=robot)
        kw["controller_configs"] = refactor_composite_controller_config(ctrl, robot, ["right"])
        kw.update(has_renderer=False, has_offscreen_renderer=True, use_camera_obs=use_camera_obs,
                  hard_reset=False, ignore_done=True, render_camera=None)
        cls = _env_class(env_name)
        accepted = _accepted_kwargs(cls)
        if accepted is not None:
            kw = {k: v for k, v in kw.items() if k in accepted}  # e.g. keys of older robosuite versions
        size = max(kw.get("camera_heights", 84), kw.get("camera_widths", 84))
        self.raw = cls(mtil_render=render.to_dict(), mtil_image_size=size, **kw)
        self.cameras = kw["camera_names"] if use_camera_obs else []
        self._flip = macros.IMAGE_CONVENTION == "opengl"
        self._bad_qacc = 0

    # ------------------------------------------------------------ core API

    def _gl_current(self) -> None:
        """Make this env's OpenGL context current before anything renders.

        robosuite's offscreen renderer makes its context current only when it is created, not when it
        renders. With two envs in one process (an eval worker has one per task, a collect worker one per
        scene), the env made second stayed current, and the first one rendered its observations with the
        other's context: wrong pixels, and after a resize of its buffer (a 192 px video frame) wrong
        actions from step 0 (measured: one policy, one seed: success in 52 steps alone, failure after
        another env had rendered a video frame in the same process).
        """
        ctx = getattr(self.raw.sim, "_render_context_offscreen", None)
        if ctx is not None:
            ctx.gl_ctx.make_current()

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        self._gl_current()
        if seed is not None:
            # robosuite's samplers hold a reference to env.rng: reseed it in place
            self.raw.rng.bit_generator.state = np.random.default_rng(int(seed)).bit_generator.state
        raw = self.raw.reset()
        self._bad_qacc = int(self.raw.sim.data._data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number)
        return self._obs(raw)

    def step(self, action) -> tuple[dict[str, np.ndarray], float, bool, dict]:
        self._gl_current()
        raw, reward, _, info = self.raw.step(np.asarray(action, dtype=np.float64))
        data = self.raw.sim.data._data
        bad = int(data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number)
        if bad > self._bad_qacc or not (np.isfinite(data.qpos).all() and np.isfinite(data.qvel).all()):
            raise UnstableSimulation(f"simulation became unstable (task {self.task})")
        success = self.is_success()
        info = dict(info, success=success)
        return self._obs(raw), float(reward), success, info

    def is_success(self) -> bool:
        return bool(self.raw._check_success())

    video_camera = "agentview"
    """the camera evaluation videos show"""

    def render_frame(self, camera: str | None = None, size: int = 256) -> np.ndarray:
        camera = camera or self.video_camera
        """(size, size, 3) uint8 upright frame from ``camera`` (for videos; not an observation)."""
        self._gl_current()
        img = self.raw.sim.render(width=size, height=size, camera_name=camera)
        return np.ascontiguousarray(img[::-1])

    def get_state(self) -> np.ndarray:
        return np.array(self.raw.sim.get_state().flatten())

    def reset_to_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        self._gl_current()
        state = np.asarray(state, dtype=np.float64)
        if np.array_equal(state, self.get_state()):  # e.g. states[0] right after reset(seed): keep it exact
            return self._obs(self.raw._get_observations(force_update=True))
        self.raw.sim.set_state_from_flattened(state)
        self.raw.sim.forward()
        for robot in self.raw.robots:  # controller goals must start from the restored pose, not the old one
            for part in robot.composite_controller.part_controllers.values():
                part.update(force=True)
                part.reset_goal()
        return self._obs(self.raw._get_observations(force_update=True))

    def observation_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        self._gl_current()
        obs = self._obs(self.raw._get_observations(force_update=True))
        return {k: (v.shape, v.dtype) for k, v in obs.items()}

    @property
    def action_dim(self) -> int:
        """Size of the action ``step`` takes (the robots' controllers and grippers together)."""
        return int(self.raw.action_dim)

    def close(self) -> None:
        self.raw.close()

    # ------------------------------------------------------------ conversion

    def _obs(self, raw: dict) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = {}
        for cam in self.cameras:
            img = raw[f"{cam}_image"]
            obs[f"{cam}_image"] = np.ascontiguousarray(img[::-1] if self._flip else img, dtype=np.uint8)
        for k in PROPRIO_KEYS:
            obs[k] = np.asarray(raw[k], dtype=np.float64)
        if isinstance(self.raw, MtilTabletop):
            obs["object"] = self.raw.object_state()
        elif "object-state" in raw:
            obs["object"] = np.asarray(raw["object-state"], dtype=np.float64)
        return obs


def make_env(env_args: dict | str, task: str | None = None, image_size: int | None = None,
             render_quality: str | None = None, use_camera_obs: bool = True) -> SimEnv:
    """Build the env a dataset's ``env_args`` describe (see the module docstring).

    ``task``: a suite task name (required for suite files holding several tasks). ``image_size`` and
    ``render_quality`` override the recorded camera size / render settings; ``use_camera_obs=False``
    skips rendering (experts, success checks).
    """
    if isinstance(env_args, (str, bytes)):
        env_args = json.loads(env_args)
    if int(env_args.get("type", 1)) != 1:
        raise ValueError(f"env_args type {env_args.get('type')} is not robosuite (1)")
    return SimEnv(env_args, task=task, image_size=image_size, render_quality=render_quality,
                  use_camera_obs=use_camera_obs)
