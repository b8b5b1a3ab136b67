"""``Backend``: what a simulator family gives the rest of mtil (issue 36). One subclass per family, one
module each, listed in ``BACKENDS`` (``backends/__init__.py``); collection, evaluation, DAgger, replay,
reports and the gymnasium wrapper ask the backend of a file's ``env_args`` and never compare names.

A backend supplies:
- its task catalogue: ``tasks`` ({name: spec with ``instruction`` and ``paraphrases``}) and ``task_sets``
  (named groups usable wherever ``--tasks`` is);
- ``env_args(tasks, image_size, cameras, render_quality)``: what a collection writes into ``data/env_args``
  so evaluation rebuilds the same env; ``make_env(env_args, task, ...)``: that env, speaking mtil's env
  conventions (``reset(seed)``, ``step(a) -> (obs, reward, success, info)``, ``render_frame``,
  ``get_state``, ``observation_spec``, ``action_dim``, ``close``; images upright);
- ``env_key(task)``: tasks with the same key may share one env (a scene), switched by ``set_task``;
- its expert: ``run_expert_episode(env, task, seed, horizon, ...)`` (labels any state: DART, DAgger);
- "where episodes end": ``stages(task)`` and ``stage_tracker(env)``.

Importing a backend module loads no simulator: each imports its simulator inside the functions that need it
(training processes never load MuJoCo or EGL; tests/test_layout.py checks).
"""

from __future__ import annotations

from typing import Any, ClassVar


class Backend:
    name: ClassVar[str] = ""
    """the key in BACKENDS, written as env_args["backend"]"""
    env_name: ClassVar[str] = ""
    """env_args["env_name"] of the envs this backend collects (the catalogue's envs)"""
    tasks: ClassVar[dict[str, Any]] = {}
    task_sets: ClassVar[dict[str, tuple[str, ...]]] = {}
    cameras: ClassVar[tuple[str, ...]] = ()
    """the cameras a collection records by default"""
    valid_cameras: ClassVar[tuple[str, ...]] = ()
    """the cameras a collection may record (``--cameras``)"""
    replays_demos: ClassVar[bool] = False
    """`mtil replay` can rebuild a demo's scene and states (robosuite's MJCF and state layout)"""

    def env_args(self, tasks: list[str], image_size: int, cameras=None, render_quality: str = "fast") -> dict:
        raise NotImplementedError

    def make_env(self, env_args: dict, task: str | None = None, image_size: int | None = None,
                 use_camera_obs: bool = True, render_quality: str | None = None):
        raise NotImplementedError

    def env_key(self, task: str) -> str:
        return task

    def set_task(self, env, task: str) -> None:
        """Switch an env built for another task of the same ``env_key`` to ``task``."""
        if env.task != task:
            raise ValueError(f"{self.name}: an env of {env.task} cannot become {task}")

    def run_expert_episode(self, env, task: str, seed: int, horizon: int = 400, hold: int = 5, on_step=None,
                           action_noise: float = 0.0, dart_noise: float = 0.0, driver=None):
        raise NotImplementedError

    def stages(self, task: str | None) -> tuple[str, ...]:
        raise NotImplementedError

    def stage_tracker(self, env):
        raise NotImplementedError

    def model_file(self, env) -> str | None:
        """The model XML a demo records (replay rebuilds from it), or None."""
        return None

    def task_for_instruction(self, text: str) -> str | None:
        """The catalogue task whose instruction or paraphrase ``text`` is (case and spaces ignored)."""
        key = " ".join(str(text).lower().split())
        for name, spec in self.tasks.items():
            if key == spec.instruction or key in spec.paraphrases:
                return name
        return None

    def resolve(self, spec: str) -> list[str] | None:
        """The task names a ``--tasks`` value means in this catalogue (a set name, or comma-separated task
        names and set names), or None when none of it belongs here."""
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        if not parts or not all(p in self.tasks or p in self.task_sets for p in parts):
            return None
        names: list[str] = []
        for p in parts:
            names += [n for n in (self.task_sets.get(p) or (p,)) if n not in names]
        return names
