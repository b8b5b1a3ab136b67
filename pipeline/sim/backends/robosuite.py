"""Our language suite and stock robosuite envs as a simulator backend (the code lives beside it in
pipeline/sim: tasks.py, scene.py, envs.py, experts.py, stages.py; this module is what the rest of mtil sees
of it). Catalogue: the 9 training tasks and the held-out compositions of ``tasks.TASKS``; a stock robosuite
env named by a dataset (robomimic's Lift, ...) has no catalogue task and no expert."""

from __future__ import annotations

from mtil.pipeline.sim.backends.base import Backend
from mtil.pipeline.sim.tasks import CAMERAS, SCENE_CAMERAS, SUITE_ENV_NAME, TASKS, held_out_tasks, training_tasks


class RobosuiteBackend(Backend):
    name = "robosuite"
    env_name = SUITE_ENV_NAME
    tasks = TASKS
    task_sets = {"all": tuple(training_tasks()), "held_out": tuple(held_out_tasks()), "everything": tuple(TASKS)}
    cameras = CAMERAS
    valid_cameras = SCENE_CAMERAS
    replays_demos = True

    def env_args(self, tasks: list[str], image_size: int, cameras=CAMERAS, render_quality: str = "fast") -> dict:
        from mtil.pipeline.sim.envs import suite_env_args

        return suite_env_args(image_size, render_quality, cameras=cameras, tasks=tasks)

    def make_env(self, env_args: dict, task: str | None = None, image_size: int | None = None,
                 use_camera_obs: bool = True, render_quality: str | None = None):
        from mtil.pipeline.sim.envs import make_env

        return make_env(env_args, task=task, image_size=image_size, use_camera_obs=use_camera_obs,
                        render_quality=render_quality)

    def env_key(self, task: str) -> str:
        return TASKS[task].scene  # the tasks of one scene share an env

    def set_task(self, env, task: str) -> None:
        env.raw.set_task(task)
        env.task, env.instruction = task, TASKS[task].instruction

    def run_expert_episode(self, env, task: str, seed: int, horizon: int = 400, hold: int = 5, on_step=None,
                           action_noise: float = 0.0, dart_noise: float = 0.0, driver=None):
        from mtil.pipeline.sim.experts import run_expert_episode

        return run_expert_episode(env, task, seed, horizon=horizon, hold=hold, on_step=on_step,
                                  action_noise=action_noise, dart_noise=dart_noise, driver=driver)

    def stages(self, task: str | None) -> tuple[str, ...]:
        from mtil.pipeline.sim.stages import stages_of_kind

        return stages_of_kind(TASKS[task].kind if task in TASKS else None)

    def stage_tracker(self, env):
        from mtil.pipeline.sim.stages import StageTracker

        return _RawTracker(StageTracker(env.raw))

    def model_file(self, env) -> str | None:
        return env.raw.raw_xml


class _RawTracker:
    """``StageTracker`` reads the robosuite env itself (``SimEnv.raw``)."""

    def __init__(self, tracker):
        self.tracker = tracker

    def step(self, env, success: bool | None = None) -> None:
        self.tracker.step(env.raw, success=success)

    def summary(self, success: bool) -> dict:
        return self.tracker.summary(success)
