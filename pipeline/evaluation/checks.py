"""Checks before an evaluation starts its workers: every env the rows use can be built and gives the policy's
keys (``check_envs``), and ``--seeds-from`` initial states exist, are sane and fit their env
(``attach_initial_states``, ``check_state_sizes``). Each problem is a ``UserError`` naming what and where."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from mtil.datasets.errors import UserError
from mtil.pipeline.sim.backends import is_catalogue_env

if TYPE_CHECKING:
    from mtil.pipeline.checkpoint import Checkpoint
    from mtil.pipeline.evaluation.config import Row


def check_envs(rows: list[Row], env_args: dict, ckpt: Checkpoint, name: str) -> None:
    """Before any worker: every env the rows use can be built and gives the policy's keys, and the
    ``--seeds-from`` states fit the env they start (``UserError``)."""
    from mtil.pipeline.sim.probe import check_env_for_policy

    seen: set[str] = set()
    for row in rows:
        args = row.env_args or env_args
        key = json.dumps(args, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        task = row.task if is_catalogue_env(args) else None
        check_env_for_policy(args, task, ckpt.policy_config, f"{name}: env_args of task {row.task}")
    check_state_sizes(rows, env_args)


def check_state_sizes(rows: list[Row], env_args: dict) -> None:
    """The rows' initial states (``--seeds-from``) have as many values as the MuJoCo state of the env each
    row runs in (suite tasks: of the task's scene; from the env probe ``check_envs`` already ran); else
    ``UserError`` naming the file, the task and both sizes."""
    from mtil.pipeline.sim.probe import env_state_size

    for row in rows:
        if not row.init_states:
            continue
        args = row.env_args or env_args
        task = row.task if is_catalogue_env(args) else None
        size, have = env_state_size(args, task, where=f"env_args of task {row.task}"), len(row.init_states[0])
        if have != size:
            raise UserError(f"--seeds-from {row.init_states_from}: the demos' states of task {row.task!r} have {have} "
                            f"values, but its environment ({args['env_name']}) has {size}: they were recorded in "
                            "another environment or scene")


def attach_initial_states(rows: list[Row], path: str, n: int, env_args: dict) -> None:
    """Give each row the initial states (``states[0]``) of the first ``n`` demos of its task in ``path``
    (training split first; demos of a suite task by their ``mtil_task`` attr or instruction, of a stock env
    every demo of a file recorded in it). ``UserError`` naming the file for: a file that is no demo file, demos
    recorded in another env than the row's (``env_args``: the checkpoint's, where a row has none of its own),
    a task with fewer than ``n`` demos, demos without a ``states`` dataset, states that are not one finite
    (T, S) array or differ in size. The size against the env's: ``check_envs``."""
    import h5py

    from mtil.datasets.schema import inspect_file

    where = f"--seeds-from {path}"
    info = inspect_file(path, check_values=False)
    # the episodes' task comes from the rows: a file without language (a stock robosuite file) is fine here
    problems = [p for p in info.problems if "has no language instruction" not in p.what]
    if problems:
        raise UserError(f"--seeds-from: {problems[0]}")
    file_env = (info.env_args or {}).get("env_name")
    with h5py.File(path, "r") as f:
        train = set()
        if "mask" in f and "train" in f["mask"]:
            train = {x.decode() if isinstance(x, bytes) else str(x) for x in f["mask"]["train"][()]}
        for row in rows:
            row_env = (row.env_args or env_args)["env_name"]
            if file_env is not None and file_env != row_env:
                raise UserError(f"{where}: its demos were recorded in the {file_env} env, but task {row.task!r} of "
                                f"this checkpoint runs in the {row_env} env: their simulator states do not fit it"
                                + (" (choose tasks with --tasks)" if len({r.task for r in rows}) > 1 else ""))
            if is_catalogue_env(row.env_args or env_args):
                demos = [d for d in info.demos if d.task_name == row.task or d.instruction == row.instruction]
            else:  # one task per stock env: every demo of a file of that env
                demos = list(info.demos) if file_env == row_env else \
                    [d for d in info.demos if d.instruction == row.instruction]
            demos.sort(key=lambda d: d.name not in train)  # training demos first (stable: file order)
            with_states = [d for d in demos if "states" in f["data"][d.name]]
            if len(with_states) < n:
                if len(demos) < n:
                    of = sorted({d.task_name or d.instruction or "?" for d in info.demos})
                    raise UserError(f"{where}: task {row.task!r} has {len(demos)} demo(s) in the file, "
                                    f"--episodes-per-task {n} needs {n} (one initial state per episode; the file "
                                    f"has demos of: {', '.join(of)})")
                lacking = next(d.name for d in demos if d not in with_states)
                raise UserError(f"{where}: demo {lacking} (task {row.task!r}) has no 'states' dataset (the simulator "
                                f"states to start an episode from); {len(with_states)} of the task's {len(demos)} "
                                f"demo(s) have one, --episodes-per-task {n} needs {n}")
            states = []
            for d in with_states[:n]:
                ds = f["data"][d.name]["states"]
                s0 = np.asarray(ds[0], dtype=np.float64) if ds.ndim == 2 and ds.dtype.kind in "fiu" else None
                if s0 is None or not np.isfinite(s0).all():
                    what = "contains NaN/inf at step 0" if s0 is not None else \
                        f"must be a (T, S) number array, found shape {ds.shape} dtype {ds.dtype}"
                    raise UserError(f"{where}: data/{d.name}/states {what}")
                if states and s0.size != states[0].size:
                    raise UserError(f"{where}: data/{d.name}/states has {s0.size} values per step, "
                                    f"data/{with_states[0].name}/states has {states[0].size}")
                states.append(s0)
            row.init_states, row.init_states_from = states, path
