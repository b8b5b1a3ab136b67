"""Rows of an evaluation beyond the plain ones, and the env checks before it starts.

Tasks from different environments (issue 14, defect 2): a checkpoint trained on, say,
robomimic's stock Lift file and an `mtil collect` suite file records each task's own ``env_args``
(``Checkpoint.task_env_args``); every such task is evaluated in its own env, and every env is checked
before any worker starts (it can be built, and it gives the keys the policy reads). Every conditioning kind
works there: instructions, goal images (the scripted expert's, suite tasks only, or from ``--demos``) and
video clips (``--demos``), each row in its task's env.

Suite task names: a checkpoint records its tasks by instruction. A suite task is found by its instruction
or paraphrase, else (an instruction edited in the data) by the training files' demo attr ``mtil_task`` or,
those gone, by elimination among the tasks the data's ``env_args`` list (``mtil_tasks``) (see
``suite_task_names``); it is then evaluated in its own task's scene with its own (edited) instruction.

``--seeds-from``: ``attach_initial_states`` starts each row's episodes from the initial states of demos
in a file; a file of another env, a demo without ``states`` or states of another size than the env's
(checked by ``check_envs`` before any worker, in one worker process) is a ``UserError`` naming the file."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

import numpy as np

from mtil.datasets.errors import UserError
from mtil.pipeline.evaluation.config import TRAIN_INSTRUCTION, Row
from mtil.pipeline.sim.backends import backend_for, is_catalogue_env

if TYPE_CHECKING:
    from mtil.pipeline.checkpoint import Checkpoint
    from mtil.pipeline.evaluation.config import EvalConfig


def has_own_envs(ckpt: Checkpoint) -> bool:
    """Whether the checkpoint's tasks come from different environments, not all of them the suite (whose
    env follows from the task name)."""
    per_task = ckpt.task_env_args
    return bool(per_task) and any(not is_catalogue_env(a) for a in per_task.values())


def _task_env_args(ckpt: Checkpoint, text: str) -> dict | None:
    """The env_args of the checkpoint's task ``text``: its own (tasks from different envs), else the checkpoint's."""
    return (ckpt.task_env_args or {}).get(text) or ckpt.env_args


def suite_task_names(ckpt: Checkpoint) -> dict[str, str]:
    """{instruction: suite task name} for the checkpoint's tasks recorded in the suite env. A task is found by
    its instruction or a paraphrase of it; an instruction edited in the data (no suite task's) by the
    ``mtil_task`` attr of the training files' demos with that instruction (where those files can still be
    read), else by elimination: the one task of its ``env_args``' ``mtil_tasks`` ({name: instruction}, what
    was collected) that no other instruction claims, when it is the only unnamed instruction of those
    env_args. Instructions found by none are left out."""
    names: dict[str, str] = {}
    unnamed: dict[str, tuple[dict, list[str]]] = {}  # env_args (as JSON) -> (env_args, unnamed instructions)
    for text in ckpt.tasks:
        args = _task_env_args(ckpt, text)
        if not is_catalogue_env(args):
            continue
        task = backend_for(args).task_for_instruction(text)
        if task is not None:
            names[text] = task
        else:
            unnamed.setdefault(json.dumps(args, sort_keys=True, default=str), (args, []))[1].append(text)
    if not unnamed:
        return names
    in_data = _data_task_names(ckpt.train_config.get("data") or [])
    for args, texts in unnamed.values():
        for text in texts:
            if in_data.get(text) in backend_for(args).tasks:
                names[text] = in_data[text]
    claimed = set(names.values())
    for args, texts in unnamed.values():
        texts = [t for t in texts if t not in names]
        catalogue = backend_for(args).tasks
        free = [n for n in (args.get("mtil_tasks") or {}) if n in catalogue and n not in claimed]
        if len(texts) == 1 and len(free) == 1:
            names[texts[0]] = free[0]
            claimed.add(free[0])
    return names


def _data_task_names(paths: list[str]) -> dict[str, str]:
    """{instruction: task name} from the training data where it can still be read: an ingest directory's
    manifest.json (its tasks' ``name``) or an HDF5 file's demo attrs (``language_instruction``,
    ``mtil_task``); anything unreadable is skipped (the checkpoint alone must suffice otherwise)."""
    import h5py

    from mtil.datasets.manifest import read_manifest

    def text(v) -> str:
        v = v.reshape(-1)[0] if isinstance(v, np.ndarray) and v.size == 1 else v
        return (v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)).strip()

    found: dict[str, str] = {}
    for path in paths:
        try:
            if os.path.isdir(path):
                for t in read_manifest(path).tasks:
                    if t.name:
                        found.setdefault(t.instruction, t.name)
                continue
            with h5py.File(path, "r") as f:
                for g in f["data"].values():
                    if "mtil_task" in g.attrs and "language_instruction" in g.attrs:
                        found.setdefault(text(g.attrs["language_instruction"]), text(g.attrs["mtil_task"]))
        except (UserError, OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return found


def _paraphrases(task: str, trained: str, env_args: dict) -> list[str]:
    """Held-out wordings of catalogue ``task`` for a policy trained on the instruction ``trained``: its
    canonical instruction and paraphrases, less the trained one."""
    spec = backend_for(env_args).tasks[task]
    key = " ".join(trained.lower().split())
    return [p for p in (spec.instruction, *spec.paraphrases) if p != key]


def _note_unnamed(texts: list[str], name: str) -> None:
    for text in texts:
        print(f"note: {name}: task {text!r} is not evaluated: it is no suite task's instruction or paraphrase, and "
              "neither the data's env_args (mtil_tasks) nor its demos' mtil_task attrs tell which task it is",
              file=sys.stderr)


def _nothing_to_evaluate(cfg: EvalConfig, ckpt: Checkpoint, unnamed: list[str]) -> UserError:
    """The error when no row is left: says why (unnamed suite tasks, --tasks, --instructions)."""
    if unnamed and len(unnamed) == len(ckpt.tasks):
        return UserError(f"{cfg.checkpoint}: none of its tasks can be evaluated: {', '.join(map(repr, unnamed))} "
                         "is no suite task's instruction or paraphrase, and neither the data's env_args (mtil_tasks) "
                         "nor its demos' mtil_task attrs tell which task it is")
    if cfg.tasks:
        return UserError(f"nothing to evaluate: no task of {cfg.checkpoint} matches --tasks {' '.join(cfg.tasks)} "
                         f"with --instructions {cfg.instructions}")
    cond = ckpt.policy_config.conditioning_config
    why = "" if cond.spec.heldout_instructions else f" (a {cond.kind} policy takes only its training instructions)"
    return UserError(f"nothing to evaluate: {cfg.checkpoint} has no row for --instructions {cfg.instructions}{why}")


def per_task_rows(cfg: EvalConfig, ckpt: Checkpoint, condition: str) -> list[Row]:
    """Tasks from different environments: one row per trained task (those named in ``--tasks``, default all)
    in the task's own env (``Row.env_args``), the task given as ``condition``: its instruction (language,
    onehot; suite tasks also get their held-out paraphrases with ``--instructions heldout|all``), a goal
    image (the scripted expert's on the episode's seed, suite tasks only; or the last frame of a demo in
    ``--demos`` with ``--goal-source demos``) or a demo clip from ``--demos`` (video)."""
    heldout = ckpt.policy_config.conditioning_config.spec.heldout_instructions
    suite_names = suite_task_names(ckpt)
    entries: list[tuple[str, str, dict, bool]] = []  # (row's task name, instruction, env_args, suite task)
    names: set[str] = set()
    known: list[str] = []
    unnamed: list[str] = []
    for text in ckpt.tasks:
        env_args = _task_env_args(ckpt, text)
        if not env_args or "env_name" not in env_args:
            raise UserError(f"{cfg.checkpoint}: task {text!r} has no env_args: cannot rebuild its environment")
        suite = is_catalogue_env(env_args)
        task = suite_names.get(text) if suite else (env_args.get("mtil_task") or env_args["env_name"])
        if task is None:
            unnamed.append(text)
            continue
        known.append(task)
        if cfg.tasks and task not in cfg.tasks:
            continue
        base, n = task, 2
        while task in names:  # two tasks of one stock env: rows (and worker envs) need distinct names
            task, n = f"{base} ({n})", n + 1
        names.add(task)
        entries.append((task, text, env_args, suite))
    missing = [t for t in cfg.tasks if t not in known]
    if missing:
        raise UserError(f"--tasks: {cfg.checkpoint} has no task {missing[0]!r} (its tasks: {', '.join(known)})")
    if not cfg.tasks:
        _note_unnamed(unnamed, cfg.checkpoint)
    rows: list[Row] = []
    if condition == "language":
        for task, text, env_args, suite in entries:
            if cfg.instructions in ("train", "all"):
                rows.append(Row(task, TRAIN_INSTRUCTION, text, text, env_args=env_args))
            if suite and cfg.instructions in ("heldout", "all") and heldout:
                rows += [Row(task, "paraphrase", p, p, env_args=env_args) for p in _paraphrases(task, text, env_args)]
    elif condition == "goal_image" and cfg.goal_source == "expert":
        stock = [(task, env_args["env_name"]) for task, _, env_args, suite in entries if not suite]
        if stock:
            raise UserError(f"--goal-source expert: task {stock[0][0]!r} runs in robosuite's {stock[0][1]} env, which "
                            "has no scripted expert; give goal frames with --goal-source demos --demos FILE.hdf5 "
                            "(or evaluate only suite tasks with --tasks)")
        rows = [Row(task, "goal image", text, {"expert_goal": True}, env_args=env_args)
                for task, text, env_args, _ in entries]
    else:  # video clips, or goal frames from --demos
        rows = _demo_rows([], cfg, ckpt, condition, {task: text for task, text, _, _ in entries})
        env_of = {task: env_args for task, _, env_args, _ in entries}
        for r in rows:
            r.env_args = env_of[r.task]
    if not rows:
        raise _nothing_to_evaluate(cfg, ckpt, unnamed)
    return rows


def plan_rows(cfg: EvalConfig, ckpt: Checkpoint) -> tuple[list[Row], dict]:
    """Rows to evaluate and the env_args to build environments from."""
    env_args = ckpt.env_args
    if not env_args or "env_name" not in env_args:
        raise UserError(f"{cfg.checkpoint}: the training data recorded no env_args: cannot rebuild the environment")
    kind, spec = ckpt.policy_config.conditioning_config.kind, ckpt.policy_config.conditioning_config.spec
    condition = spec.default_condition if cfg.condition == "auto" else cfg.condition
    if condition not in spec.conditions:
        raise UserError(f"this checkpoint is {kind}-conditioned: it cannot take --condition {condition}; use "
                        f"--condition {' or '.join(spec.conditions)}")
    why = spec.untrained(condition, ckpt.policy_config, ckpt.train_config)
    if why:
        raise UserError(f"{cfg.checkpoint}: --condition {condition}: {why}")
    trained = list(ckpt.tasks)
    rows: list[Row] = []
    if has_own_envs(ckpt):  # tasks from different environments: each in its own
        rows = per_task_rows(cfg, ckpt, condition)
    elif not is_catalogue_env(env_args):  # a stock robosuite env: one task, as named in the data
        name = env_args.get("mtil_task") or env_args["env_name"]
        if cfg.tasks and cfg.tasks not in ([env_args["env_name"]], [name]):
            raise UserError(f"--tasks: this checkpoint's env is {env_args['env_name']}; no other task exists")
        if condition == "language":
            rows.append(Row(name, TRAIN_INSTRUCTION, trained[0], trained[0]))
        rows = _demo_rows(rows, cfg, ckpt, condition, {name: trained[0]})
    else:
        rows = _suite_rows(cfg, ckpt, condition, env_args)
    if cfg.seeds_from:
        from mtil.pipeline.evaluation.checks import attach_initial_states

        attach_initial_states(rows, cfg.seeds_from, cfg.episodes_per_task, env_args)
    return rows, env_args


def _suite_rows(cfg: EvalConfig, ckpt: Checkpoint, condition: str, env_args: dict) -> list[Row]:
    """Rows of a checkpoint trained on suite tasks: each trained task (``--tasks``: those named) with the
    instruction it was trained on (edited ones too: ``suite_task_names``), its held-out paraphrases and the
    held-out compositions (``--instructions``), or its goal image / demo clip."""
    backend = backend_for(env_args)
    TASKS, held_out = backend.tasks, backend.task_sets.get("held_out", ())
    heldout = ckpt.policy_config.conditioning_config.spec.heldout_instructions
    suite_names = suite_task_names(ckpt)
    by_name: dict[str, str] = {}  # task name -> the instruction the checkpoint was trained on
    for text in ckpt.tasks:
        if text in suite_names:
            by_name.setdefault(suite_names[text], text)
    unnamed = [t for t in ckpt.tasks if t not in suite_names]
    names = cfg.tasks or list(by_name)
    for n in names:
        if n not in TASKS:
            raise UserError(f"--tasks: unknown task {n!r}; known: {', '.join(TASKS)}")
    if not cfg.tasks:
        _note_unnamed(unnamed, cfg.checkpoint)
    text_of = {n: by_name.get(n, TASKS[n].instruction) for n in names}
    rows: list[Row] = []
    if condition == "language":
        for n in names:
            if n not in by_name:
                continue
            if cfg.instructions in ("train", "all"):
                rows.append(Row(n, TRAIN_INSTRUCTION, by_name[n], by_name[n]))
            if cfg.instructions in ("heldout", "all") and heldout:
                rows += [Row(n, "paraphrase", p, p) for p in _paraphrases(n, by_name[n], env_args)]
        if cfg.instructions in ("heldout", "all") and heldout:
            for n in held_out:
                if (not cfg.tasks or n in cfg.tasks) and n not in by_name:
                    rows.append(Row(n, "held-out task", TASKS[n].instruction, TASKS[n].instruction))
    if condition == "goal_image" and cfg.goal_source == "expert":
        rows += [Row(n, "goal image", text_of[n], {"expert_goal": True}) for n in names]
    else:
        rows = _demo_rows(rows, cfg, ckpt, condition, text_of)
    if not rows:
        raise _nothing_to_evaluate(cfg, ckpt, unnamed)
    return rows


def _demo_rows(rows: list[Row], cfg: EvalConfig, ckpt: Checkpoint, condition: str,
               tasks: dict[str, str]) -> list[Row]:
    """Rows where the task is shown by a demo from --demos (of its instruction, else of its ``mtil_task``
    name): a clip of the conditioning's video camera (default: the policy's first camera) or the first camera's
    last frame (goal_image), as in training."""
    if condition not in ("video", "goal_image"):
        return rows
    if not cfg.demos:
        how = " (or --goal-source expert, for suite tasks)" if condition == "goal_image" else ""
        raise UserError(f"--condition {condition} needs --demos FILE.hdf5 with demos of the evaluated tasks{how}")
    import h5py

    from mtil.datasets.schema import inspect_file
    from mtil.encoders.video import sample_clip

    info = inspect_file(cfg.demos)
    if info.problems:
        raise UserError(f"--demos: {info.problems[0]}")
    cc = ckpt.policy_config.conditioning_config
    key = (condition == "video" and cc.video_camera) or ckpt.policy_config.image_keys[0]
    if key not in info.obs:
        raise UserError(f"--demos {cfg.demos}: its demos have no {key} (the camera the policy's task is shown "
                        f"by); they have {', '.join(info.obs)}")
    with h5py.File(cfg.demos, "r") as f:
        for name, text in tasks.items():
            demos = _demos_of(info, name, text, cfg.clips if condition == "video" else 1)
            if not demos:
                raise UserError(f"--demos {cfg.demos}: no demo of task {name!r} ({text!r})")
            obs = [f["data"][d.name]["obs"][info.stored_key(key)] for d in demos]
            if condition == "video":  # clips (T, H, W, 3); episode i is shown clips[i mod N]
                clips = [sample_clip(o, cc.video_frames).permute(0, 2, 3, 1).numpy() for o in obs]
                shown = {"video": clips[0]} if len(clips) == 1 else {"clips": clips, "names": [d.name for d in demos]}
                rows.append(Row(name, "video", text, shown))
            else:
                rows.append(Row(name, "goal image", text, np.asarray(obs[0][-1])))
    return rows


def _demos_of(info, name: str, text: str, n: int) -> list:
    """Up to ``n`` demos of a task (by its instruction, else its ``mtil_task`` name), latest first, those in the
    file's mask/valid before the others (the last demos are often the held-out ones); ``n`` = 0: all of its
    mask/valid demos (its latest demo if none is)."""
    mine = [d for d in reversed(info.demos) if d.instruction == text]
    mine = mine or [d for d in reversed(info.demos) if d.task_name == name]
    valid = set(info.masks.get("valid", []))
    ordered = sorted(mine, key=lambda d: d.name not in valid)
    return ordered[:n] if n else ordered[:max(1, sum(d.name in valid for d in mine))]
