"""Simulator backends (issue 36): one module per family, one line each in ``BACKENDS``. Adding a family is
a module with a ``Backend`` subclass (``base.py`` says what it supplies) and a line here; nothing else in
mtil compares backend names. A file's ``env_args["backend"]`` names its backend (files without one are
robosuite's: robomimic's ``type`` 1, our suite, and every file written before backends existed)."""

from __future__ import annotations

from mtil.datasets.errors import UserError
from mtil.pipeline.sim.backends.base import Backend
from mtil.pipeline.sim.backends.metaworld import MetaWorldBackend
from mtil.pipeline.sim.backends.robosuite import RobosuiteBackend

BACKENDS: dict[str, Backend] = {
    "robosuite": RobosuiteBackend(),
    "metaworld": MetaWorldBackend(),
}
DEFAULT = "robosuite"


def backend_named(name: str) -> Backend:
    if name not in BACKENDS:
        raise UserError(f"unknown simulator backend {name!r}; known: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def backend_for(env_args: dict | None) -> Backend:
    """The backend of the env ``env_args`` describe."""
    return backend_named((env_args or {}).get("backend") or DEFAULT)


def is_catalogue_env(env_args: dict | None) -> bool:
    """Whether ``env_args`` describe a backend's own catalogue env (tasks known by name, an expert, the
    env built per task), rather than a stock env a dataset named."""
    return bool(env_args) and env_args.get("env_name") == backend_for(env_args).env_name


def resolve_tasks(spec: str) -> tuple[Backend, list[str]]:
    """The backend whose catalogue a ``--tasks`` value belongs to, and the task names it means; a value
    mixing backends or naming no known task is a ``UserError`` listing what exists."""
    for backend in BACKENDS.values():
        names = backend.resolve(spec)
        if names:
            return backend, names
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise UserError("--tasks: no task given")
    unknown = [p for p in parts if not any(b.resolve(p) for b in BACKENDS.values())]
    if unknown:
        known = "; ".join(f"{b.name}: {', '.join([*b.task_sets, *b.tasks])}" for b in BACKENDS.values())
        raise UserError(f"--tasks: unknown task {unknown[0]!r} (`mtil tasks --suite NAME` lists them); known: {known}")
    raise UserError(f"--tasks {spec!r}: not the tasks of one simulator; collect each simulator's into its own "
                    "file (files of several train together)")


def make_env(env_args: dict | str, task: str | None = None, image_size: int | None = None,
             use_camera_obs: bool = True, render_quality: str | None = None):
    """The env a file's ``env_args`` describe, built by its backend (``task``: a catalogue task name)."""
    import json

    if isinstance(env_args, (str, bytes)):
        env_args = json.loads(env_args)
    return backend_for(env_args).make_env(env_args, task=task, image_size=image_size,
                                          use_camera_obs=use_camera_obs, render_quality=render_quality)


def backend_of_task(task: str) -> Backend | None:
    return next((b for b in BACKENDS.values() if task in b.tasks), None)


def stages_of_task(task: str) -> tuple[str, ...]:
    """The "where episodes end" stages of a task of any catalogue (a stock env's: start, success)."""
    backend = backend_of_task(task) or BACKENDS[DEFAULT]
    return backend.stages(task)
