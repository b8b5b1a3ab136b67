"""Rows of an evaluation beyond the plain ones, and the env checks before it starts.

Tasks from different environments (issue 14, defect 2): a checkpoint trained on, say,
robomimic's stock Lift file and an `mtil collect` suite file records each task's own ``env_args``
(``Checkpoint.task_env_args``); every such task is evaluated in its own env, and every env is checked
before any worker starts (it can be built, and it gives the keys the policy reads). ``--seeds-from``:
``attach_initial_states`` starts each row's episodes from the initial states of demos in a file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mtil.datasets.errors import UserError

if TYPE_CHECKING:
    from mtil.pipeline.checkpoint import Checkpoint

SUITE_ENV_NAME = "MtilTabletop"  # pipeline/sim/envs.py (not imported here: it imports robosuite)


@dataclass
class Row:
    task: str  # suite task name, or the stock env's name
    condition: str  # "train instruction" | "paraphrase" | "held-out task" | "video" | "goal image"
    instruction: str  # what the policy is told (the task's instruction for video/goal rows)
    task_input: object = None  # str instruction, {"video": clip} or goal image (H, W, 3)
    init_states: list | None = None  # flattened MuJoCo states to start episode i from (--seeds-from)
    env_args: dict | None = None  # the task's own env (tasks from different envs); None: the checkpoint's


def has_own_envs(ckpt: Checkpoint) -> bool:
    """Whether the checkpoint's tasks come from different environments, not all of them the suite (whose
    env follows from the task name)."""
    per_task = ckpt.task_env_args
    return bool(per_task) and any((a or {}).get("env_name") != SUITE_ENV_NAME for a in per_task.values())


def per_task_rows(ckpt: Checkpoint, condition: str, tasks: list[str], instructions: str, name: str) -> list[Row]:
    """One row per trained task (those named in ``tasks``, default all) in the task's own env
    (``Row.env_args``); suite tasks also get their held-out paraphrases with ``instructions`` heldout|all.
    Only instruction-given tasks (language, one-hot). ``name``: the checkpoint, for messages."""
    from mtil.pipeline.sim.tasks import TASKS, task_for_instruction

    if condition not in ("language", "onehot"):
        raise UserError(f"--condition {condition}: this checkpoint's tasks come from different environments; "
                        "evaluate them with --condition language (or onehot)")
    kind = ckpt.policy_config.conditioning_config.spec.name
    rows: list[Row] = []
    names: set[str] = set()
    for text in ckpt.tasks:
        env_args = ckpt.task_env_args.get(text) or ckpt.env_args
        if not env_args or "env_name" not in env_args:
            raise UserError(f"{name}: task {text!r} has no env_args: cannot rebuild its environment")
        suite = env_args["env_name"] == SUITE_ENV_NAME
        task = task_for_instruction(text) if suite else (env_args.get("mtil_task") or env_args["env_name"])
        if task is None or (tasks and task not in tasks):
            continue
        base, n = task, 2
        while task in names:  # two tasks of one stock env: rows (and worker envs) need distinct names
            task, n = f"{base} ({n})", n + 1
        names.add(task)
        if instructions in ("train", "all"):
            rows.append(Row(task, "train instruction", text, text, env_args=env_args))
        if suite and instructions in ("heldout", "all") and kind != "onehot":
            rows += [Row(task, "paraphrase", p, p, env_args=env_args) for p in TASKS[task].paraphrases]
    if not rows:
        raise UserError("nothing to evaluate: no task of this checkpoint matches --tasks/--instructions")
    return rows


def check_envs(rows: list[Row], env_args: dict, ckpt: Checkpoint, name: str) -> None:
    """Before any worker: every env the rows use can be built and gives the policy's keys (``UserError``)."""
    from mtil.pipeline.sim.probe import check_env_for_policy

    seen: set[str] = set()
    for row in rows:
        args = row.env_args or env_args
        key = json.dumps(args, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        task = row.task if args["env_name"] == SUITE_ENV_NAME else None
        check_env_for_policy(args, task, ckpt.policy_config, f"{name}: env_args of task {row.task}")


def attach_initial_states(rows: list[Row], path: str, n: int) -> None:
    """Give each row the initial states (``states[0]``) of the first ``n`` demos of its task in ``path``
    (training split first); a task with fewer demos is an error naming it."""
    import h5py

    from mtil.datasets.schema import inspect_file

    info = inspect_file(path, check_values=False)
    if info.problems:
        raise UserError(f"--seeds-from: {info.problems[0]}")
    with h5py.File(path, "r") as f:
        train = set()
        if "mask" in f and "train" in f["mask"]:
            train = {x.decode() if isinstance(x, bytes) else str(x) for x in f["mask"]["train"][()]}
        for row in rows:
            demos = [d for d in info.demos if d.task_name == row.task or d.instruction == row.instruction]
            demos.sort(key=lambda d: d.name not in train)  # training demos first (stable: file order)
            if len(demos) < n or any("states" not in f["data"][d.name] for d in demos[:n]):
                raise UserError(f"--seeds-from {path}: task {row.task!r} has {len(demos)} demos with states, "
                                f"--episodes-per-task needs {n}")
            row.init_states = [np.asarray(f["data"][d.name]["states"][0]) for d in demos[:n]]
