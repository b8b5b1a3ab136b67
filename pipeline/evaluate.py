"""Rollout evaluation: seeded episodes per task in parallel worker processes.

    mtil eval RUN/last.pt --episodes-per-task 20 --workers 2 --out RUN/eval

The environment is rebuilt from the checkpoint's recorded ``env_args`` (same render settings as the
data). Episode i of every task uses seed ``--seed + i``, for every checkpoint, so comparisons between
checkpoints and between rows of one task (training instruction vs paraphrase) are paired. An episode
that raises (unstable physics, renderer failure) or whose worker dies is an *error* row entry, counted
apart from failures; the run goes on, eval.json says ``"complete": false`` with the error counts (exit 3).
Ctrl-C writes what finished (``"interrupted": true``). Bad envs stop it before any worker (eval_rows.py).

Rows: for each task, the training instruction; with ``--instructions heldout|all`` also each held-out
paraphrase and each held-out task composition (never demonstrated); with ``--condition video`` the task
is given by a clip of a demo from ``--demos FILE``; with ``--condition goal_image`` by a goal frame: by
default (suite tasks) the last frame of the scripted expert's own episode on the evaluation seed (a
held-out demonstration in the same scene, recorded just before the policy's episode), or with
``--goal-source demos`` the last frame of a demo from ``--demos FILE``.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import queue
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mtil.datasets.errors import UserError
from mtil.pipeline.eval_rows import Row

if TYPE_CHECKING:
    from mtil.pipeline.checkpoint import Checkpoint


@dataclass
class EvalConfig:
    """Evaluate a checkpoint by rollouts in simulation: per-task success with 95% intervals, report,
    plot and videos."""

    checkpoint: str
    """checkpoint file written by `mtil train` (e.g. RUN/last.pt)"""
    out: str
    """output directory for eval.json, report.md, success.png and videos/"""
    episodes_per_task: int = 20
    """episodes per row (task x way of giving it)"""
    workers: int = 2
    """parallel worker processes, each with its own simulator and a copy of the policy"""
    tasks: list[str] = field(default_factory=list)
    """suite task names to evaluate (default: every task the checkpoint was trained on)"""
    instructions: str = "train"
    """train (training instructions) | heldout (paraphrases + held-out compositions) | all"""
    condition: str = "auto"
    """auto (as trained; language for mixed policies) | language | video | goal_image: how the task is given"""
    demos: str = ""
    """HDF5 file with demos of the tasks: clips (video) or last frames (goal_image --goal-source demos)"""
    goal_source: str = "expert"
    """goal_image rows: expert (last frame of the scripted expert's episode on the same seed: a held-out demo in
    the same scene; suite tasks only) | demos (last frame of a demo of the task in --demos)"""
    video_episodes: int = 2
    """episodes per row recorded as mp4 (the first ones)"""
    seed: int = 1000
    """seed of episode 0; episode i uses seed + i"""
    max_steps: int = 300
    """steps before an episode counts as a failure"""
    raw_weights: bool = False
    """use the raw weights instead of the EMA weights"""
    video_size: int = 192
    """video frame size in pixels"""
    seeds_from: str = ""
    """HDF5 demo file: start episode i of each task from the initial state of that task's i-th demo in the file
    (the training demos: fitting vs generalization) instead of a fresh seeded layout"""

    def __post_init__(self) -> None:
        if self.episodes_per_task < 1:
            raise UserError(f"--episodes-per-task must be >= 1, got {self.episodes_per_task}")
        if self.workers < 1 or self.workers > 64:
            raise UserError(f"--workers must be in [1, 64], got {self.workers}")
        if self.instructions not in ("train", "heldout", "all"):
            raise UserError(f"--instructions must be train, heldout or all, got {self.instructions!r}")
        if self.condition not in ("auto", "language", "video", "goal_image"):
            raise UserError(f"--condition must be auto, language, video or goal_image, got {self.condition!r}")
        if self.goal_source not in ("expert", "demos"):
            raise UserError(f"--goal-source must be expert or demos, got {self.goal_source!r}")
        if self.seeds_from and not os.path.isfile(self.seeds_from):
            raise UserError(f"--seeds-from {self.seeds_from}: no such file")
        if self.seed < 0:
            raise UserError(f"--seed must be >= 0, got {self.seed}")
        if self.max_steps < 1 or self.video_episodes < 0:
            raise UserError("--max-steps must be >= 1 and --video-episodes >= 0")


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- rows
def plan_rows(cfg: EvalConfig, ckpt: Checkpoint) -> tuple[list[Row], dict]:
    """Rows to evaluate and the env_args to build environments from."""
    env_args = ckpt.env_args
    if not env_args or "env_name" not in env_args:
        raise UserError(f"{cfg.checkpoint}: the training data recorded no env_args: cannot rebuild the environment")
    spec = ckpt.policy_config.conditioning_config.spec
    kind = spec.name
    condition = spec.default_condition if cfg.condition == "auto" else cfg.condition
    if condition == "language" and not spec.takes_instruction:
        raise UserError(f"this checkpoint is {kind}-conditioned: use --condition {kind}")
    if condition == "goal_image" and not spec.uses_goal_image:
        raise UserError(f"this checkpoint is {kind}-conditioned: it cannot take a goal image")
    trained = list(ckpt.tasks)
    from mtil.pipeline.sim.envs import SUITE_ENV_NAME

    rows: list[Row] = []
    from mtil.pipeline.eval_rows import attach_initial_states, has_own_envs, per_task_rows

    if has_own_envs(ckpt):  # tasks from different environments: each in its own (pipeline/eval_rows.py)
        rows = per_task_rows(ckpt, condition, cfg.tasks, cfg.instructions, cfg.checkpoint)
        if cfg.seeds_from:
            attach_initial_states(rows, cfg.seeds_from, cfg.episodes_per_task)
        return rows, env_args
    if env_args["env_name"] != SUITE_ENV_NAME:  # a stock robosuite env: one task, as named in the data
        if cfg.tasks and cfg.tasks != [env_args["env_name"]]:
            raise UserError(f"--tasks: this checkpoint's env is {env_args['env_name']}; no other task exists")
        name = env_args.get("mtil_task") or env_args["env_name"]
        if condition in ("language", "onehot"):
            rows.append(Row(name, "train instruction", trained[0], trained[0]))
        return _demo_rows(rows, cfg, condition, {name: trained[0]}), env_args
    from mtil.pipeline.sim.tasks import TASKS, held_out_tasks, task_for_instruction

    by_name = {task_for_instruction(t): t for t in trained}
    by_name.pop(None, None)
    names = cfg.tasks or list(by_name)
    for n in names:
        if n not in TASKS:
            raise UserError(f"--tasks: unknown task {n!r}; known: {', '.join(TASKS)}")
    if condition in ("language", "onehot"):
        for n in names:
            spec = TASKS[n]
            if cfg.instructions in ("train", "all") and n in by_name:
                rows.append(Row(n, "train instruction", spec.instruction, spec.instruction))
            if cfg.instructions in ("heldout", "all") and kind != "onehot" and n in by_name:
                rows += [Row(n, "paraphrase", p, p) for p in spec.paraphrases]
        if cfg.instructions in ("heldout", "all") and kind != "onehot":
            for n in held_out_tasks():
                if not cfg.tasks or n in cfg.tasks:
                    rows.append(Row(n, "held-out task", TASKS[n].instruction, TASKS[n].instruction))
    if condition == "goal_image" and cfg.goal_source == "expert":
        rows += [Row(n, "goal image", TASKS[n].instruction, {"expert_goal": True}) for n in names]
    else:
        rows = _demo_rows(rows, cfg, condition, {n: TASKS[n].instruction for n in names})
    if not rows:
        raise UserError("nothing to evaluate: no task of this checkpoint matches --tasks/--instructions")
    if cfg.seeds_from:
        attach_initial_states(rows, cfg.seeds_from, cfg.episodes_per_task)
    return rows, env_args


def _demo_rows(rows: list[Row], cfg: EvalConfig, condition: str, tasks: dict[str, str]) -> list[Row]:
    """Rows where the task is shown by a demo (video clip or goal frame) from --demos."""
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
    key = "agentview_image"
    with h5py.File(cfg.demos, "r") as f:
        for name, text in tasks.items():
            demo = next((d for d in reversed(info.demos) if d.instruction == text), None)  # last: often held out
            if demo is None:
                raise UserError(f"--demos {cfg.demos}: no demo of task {name!r} ({text!r})")
            frames = f["data"][demo.name]["obs"][info.stored_key(key)]
            if condition == "video":
                clip = sample_clip(frames, 8).permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
                rows.append(Row(name, "video", text, {"video": clip}))
            else:
                rows.append(Row(name, "goal image", text, np.asarray(frames[-1])))
    return rows


# ------------------------------------------------------------------------------------------ workers
def _worker(ckpt_path: str, ema: bool, env_args: dict, rows: list[Row], max_steps: int, video_size: int,
            jobs, results) -> None:
    """Worker process: one policy copy, one simulator per task, episodes from ``jobs`` until None."""
    from mtil.pipeline.sim.probe import worker_setup

    worker_setup()  # Ctrl-C is the parent's; die with the parent
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    torch.set_num_threads(1)  # workers share the cores; one thread each avoids oversubscription
    from mtil.pipeline.checkpoint import load_policy
    from mtil.pipeline.sim.envs import SUITE_ENV_NAME, make_env
    from mtil.pipeline.sim.experts import run_expert_episode
    from mtil.pipeline.sim.stages import StageTracker

    policy, _ = load_policy(ckpt_path, ema=ema)
    envs = {}
    while True:
        job = jobs.get()
        if job is None:
            return
        jid, r, seed, record, i = job
        results.put(("start", jid, os.getpid()))
        row = rows[r]
        frames = []
        t0 = time.perf_counter()
        try:
            if row.task not in envs:
                args = row.env_args or env_args  # the task's own env, where tasks come from several
                envs[row.task] = make_env(args, task=row.task if args["env_name"] == SUITE_ENV_NAME else None)
            env = envs[row.task]
            task_input, extra, goal = row.task_input, {}, None
            if isinstance(task_input, dict) and task_input.get("expert_goal"):
                # the expert's episode on this very seed: its last frame is the goal (same scene)
                ok, _, last = run_expert_episode(env, row.task, seed, horizon=max(max_steps, 400))
                goal = task_input = np.asarray(last[policy.cfg.image_keys[0]])
                extra = {"goal_demo_success": bool(ok)}
            policy.reset()
            obs = env.reset(seed=seed)
            if row.init_states is not None:
                obs = env.reset_to_state(row.init_states[i])
            tracker = StageTracker(env.raw)
            success, steps = False, 0
            while steps < max_steps:
                steps += 1
                action = policy.predict_action(obs, task_input)
                obs, _, done, _ = env.step(action)
                tracker.step(env.raw, success=done)  # env.step's done is the success predicate
                if record:
                    frames.append(env.render_frame("agentview", video_size))
                if done:
                    success = True
                    break
            results.put(("done", jid, {"success": success, "length": steps, "error": None,
                                       "seconds": time.perf_counter() - t0, **tracker.summary(success), **extra},
                         frames, goal))
        except Exception as e:  # a simulator fault is an error entry, not a crash of the evaluation
            envs.pop(row.task, None)
            results.put(("done", jid, {"success": False, "length": 0, "error": f"{type(e).__name__}: {e}"[:300],
                                       "seconds": time.perf_counter() - t0}, frames, None))


def evaluate(cfg: EvalConfig, on_episode_start=None, checkpoint: Checkpoint | None = None) -> dict:
    """Run the evaluation and write eval.json, report.md, success.png and videos; returns the results.

    ``on_episode_start(job_id, worker_pid)``: optional hook, called in this process when a worker starts
    an episode (progress displays, or tests that kill a worker mid-episode).
    ``checkpoint``: evaluate this in-memory checkpoint (periodic rollouts during training) instead of the
    file ``cfg.checkpoint``, which then only labels the report. Workers get its weights as a state dict.
    """
    from tqdm import tqdm

    from mtil.pipeline.checkpoint import load_checkpoint
    from mtil.pipeline.eval_report import write_outputs, write_video

    ckpt = checkpoint if checkpoint is not None else load_checkpoint(cfg.checkpoint)
    # what a worker rebuilds the policy from: the file, or the weights themselves (spawned processes)
    policy_source = cfg.checkpoint if checkpoint is None else checkpoint.for_inference(not cfg.raw_weights)
    rows, env_args = plan_rows(cfg, ckpt)
    if ckpt.policy_config.conditioning_config.uses_language:
        # Embed every instruction here, once: workers then never load the language model.
        texts = [r.task_input for r in rows if isinstance(r.task_input, str)]
        if texts:
            from mtil.encoders.language import LanguageEncoder

            emb = dict(zip(texts, LanguageEncoder().encode(texts).numpy()))
            for r in rows:
                if isinstance(r.task_input, str):
                    r.task_input = emb[r.task_input]
    from mtil.pipeline.eval_report import error_summary, prepare_out
    from mtil.pipeline.eval_rows import check_envs
    from mtil.pipeline.sim.probe import ResultPipe, next_message, start_worker_process

    check_envs(rows, env_args, ckpt, cfg.checkpoint)  # before any worker: each env builds, gives the policy's keys
    out = prepare_out(cfg.out)
    n = cfg.episodes_per_task
    episodes = {(r, i): None for r in range(len(rows)) for i in range(n)}
    # job order: episode index major, so early results cover every row
    todo = [(r * n + i, r, cfg.seed + i, i < cfg.video_episodes, i) for i in range(n) for r in range(len(rows))]
    ctx = mp.get_context("spawn")
    jobs = ctx.Queue()
    for job in todo:
        jobs.put(job)
    workers: dict[int, mp.Process] = {}
    readers: dict = {}  # each worker's own results pipe (ResultPipe): a killed worker cannot block the others

    def start_worker():
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker, args=(policy_source, not cfg.raw_weights, env_args, rows, cfg.max_steps,
                                              cfg.video_size, jobs, ResultPipe(w)), daemon=True)
        start_worker_process(p)
        w.close()
        workers[p.pid], readers[r] = p, p

    n_workers = min(cfg.workers, len(todo))
    for _ in range(n_workers):
        start_worker()
    running: dict[int, tuple] = {}  # pid -> job it started
    job_by_id = {j[0]: j for j in todo}
    done = deaths = 0
    finished = False
    t0 = time.time()
    bar = tqdm(total=len(todo), desc="eval", unit="ep", dynamic_ncols=True, disable=None)
    try:
        while done < len(todo):
            try:
                msg = next_message(readers, timeout=1.0)
            except queue.Empty:
                for pid, p in list(workers.items()):
                    if not p.is_alive():  # a worker died: its episode is an error, a new worker takes over
                        del workers[pid]
                        deaths += 1
                        if pid in running:
                            deaths = 0  # it died inside an episode: that episode is the error
                            jid = running.pop(pid)[0]
                            _, r, seed, _, _ = job_by_id[jid]
                            episodes[(r, jid % n)] = {"seed": seed, "success": False, "length": 0, "seconds": 0.0,
                                                      "error": f"worker died (exit code {p.exitcode})"}
                            done += 1
                            bar.update(1)
                        if deaths >= 3:  # workers die before taking any episode: give up, say why
                            msg = f"evaluation workers keep dying at start (exit code {p.exitcode})"
                            raise RuntimeError(msg) from None
                        if done < len(todo):
                            start_worker()
                continue
            if msg[0] == "start":
                running[msg[2]] = job_by_id[msg[1]]
                if on_episode_start is not None:
                    on_episode_start(msg[1], msg[2])
                continue
            _, jid, res, frames, goal = msg
            for pid, job in list(running.items()):
                if job[0] == jid:
                    del running[pid]
            _, r, seed, record, _ = job_by_id[jid]
            episodes[(r, jid % n)] = {"seed": seed, **res}
            if record and frames:
                try:
                    write_video(os.path.join(out, "videos", f"{rows[r].task}__{_slug(rows[r].condition)}__{jid % n}"
                                             ".mp4"), frames, rows[r].instruction, res, goal=goal)
                except OSError as e:  # a full disk loses the video, not the episodes that finished
                    print(f"warning: video not written ({e.strerror or e})", file=sys.stderr)
            done += 1
            bar.update(1)
            ok = [e for e in episodes.values() if e and not e["error"]]
            rate = f"{np.mean([e['success'] for e in ok]):.0%}" if ok else "-"
            bar.set_postfix(success=rate)
            if bar.disable and (done % max(1, len(todo) // 10) == 0 or done == len(todo)):  # logs, not a terminal
                print(f"eval: {done}/{len(todo)} episodes, success so far {rate}, {time.time() - t0:.0f} s",
                      file=sys.stderr, flush=True)
        finished = True
    except KeyboardInterrupt:
        print("\ninterrupted: writing the episodes that finished (marked incomplete)", file=sys.stderr)
    finally:
        bar.close()
        for _ in workers:
            jobs.put(None)
        for p in workers.values():
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        for r in readers:
            r.close()
    meta = {"checkpoint": os.path.abspath(cfg.checkpoint) if checkpoint is None else cfg.checkpoint,
            "checkpoint_sha256": file_sha256(cfg.checkpoint) if checkpoint is None else "(in memory)",
            "step": ckpt.step, "seconds": time.time() - t0, **error_summary(episodes, finished),
            "config": {k: v for k, v in vars(cfg).items()},
            "env_name": ", ".join(dict.fromkeys((r.env_args or env_args)["env_name"] for r in rows))}
    return write_outputs(out, rows, episodes, n, meta)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")
