"""Rollout evaluation: seeded episodes per task in parallel worker processes.

    mtil eval RUN/last.pt --episodes-per-task 20 --workers 2 --out RUN/eval

The environment is rebuilt from the checkpoint's recorded ``env_args`` (same render settings as the
data). Episode i of every task uses seed ``--seed + i``, for every checkpoint, so comparisons between
checkpoints and between rows of one task (training instruction vs paraphrase) are paired. An episode
that raises (unstable physics, renderer failure) or whose worker dies is an *error* row entry, counted
apart from failures; the run goes on, eval.json says ``"complete": false`` with the error counts (exit 3).
Ctrl-C writes what finished (``"interrupted": true``). Bad envs stop it before any worker (rows.py, checks.py).

Rows: for each task, the training instruction; with ``--instructions heldout|all`` also each held-out
paraphrase and each held-out task composition (never demonstrated); with ``--condition video`` the task
is given by a clip of a demo from ``--demos FILE``; with ``--condition goal_image`` by a goal frame: by
default (suite tasks) the last frame of the scripted expert's own episode on the evaluation seed (a
held-out demonstration in the same scene, recorded just before the policy's episode), or with
``--goal-source demos`` the last frame of a demo from ``--demos FILE``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time
from typing import TYPE_CHECKING

import numpy as np

from mtil.pipeline.evaluation.config import EvalConfig, Row
from mtil.pipeline.evaluation.rows import plan_rows

if TYPE_CHECKING:
    from mtil.pipeline.checkpoint import Checkpoint


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ workers
def _worker(policy_source, ema: bool, env_args: dict, rows: list[Row], max_steps: int, video_size: int,
            overrides: dict | None = None):
    """Worker side (pipeline/sim/pool.py): one policy copy, one simulator per task; the handler runs one
    episode ``(row, seed, record, i)`` and returns ``(result, frames, goal)``."""
    import torch

    torch.set_num_threads(1)  # workers share the cores; one thread each avoids oversubscription
    from mtil.pipeline.checkpoint import load_policy
    from mtil.pipeline.sim.backends import backend_for, is_catalogue_env

    policy, _ = load_policy(policy_source, ema=ema)
    if overrides:  # rollout options changed at evaluation (--exec-steps, --temporal-ensemble)
        policy.cfg = dataclasses.replace(policy.cfg, **overrides)
    envs = {}

    def handle(job):
        r, seed, record, i = job
        row = rows[r]
        frames = []
        t0 = time.perf_counter()
        try:
            args = row.env_args or env_args  # the task's own env, where tasks come from several
            backend = backend_for(args)
            if row.task not in envs:
                envs[row.task] = backend.make_env(args, task=row.task if is_catalogue_env(args) else None)
            env = envs[row.task]
            task_input, extra, goal = row.task_input, {}, None
            if isinstance(task_input, dict) and "clips" in task_input:  # --clips N: episode i by clip i mod N
                k = i % len(task_input["clips"])
                task_input, extra = {"video": task_input["clips"][k]}, {"clip": task_input["names"][k]}
            if isinstance(task_input, dict) and task_input.get("expert_goal"):
                # the expert's episode on this very seed: its last frame is the goal (same scene)
                ok, _, last = backend.run_expert_episode(env, row.task, seed, horizon=max(max_steps, 400))
                goal = task_input = np.asarray(last[policy.cfg.image_keys[0]])
                extra = {"goal_demo_success": bool(ok)}
            policy.reset()
            obs = env.reset(seed=seed)
            if row.init_states is not None:
                obs = env.reset_to_state(row.init_states[i])
            tracker = backend.stage_tracker(env)
            success, steps = False, 0
            while steps < max_steps:
                steps += 1
                obs, _, done, _ = env.step(policy.predict_action(obs, task_input))
                tracker.step(env, success=done)  # env.step's done is the success predicate
                if record:
                    frames.append(env.render_frame(None, video_size))  # the backend's video camera
                if done:
                    success = True
                    break
            return ({"success": success, "length": steps, "error": None, "seconds": time.perf_counter() - t0,
                     **tracker.summary(success), **extra}, frames, goal)
        except Exception as e:  # a simulator fault is an error entry, not a crash of the evaluation
            envs.pop(row.task, None)
            return ({"success": False, "length": 0, "error": f"{type(e).__name__}: {e}"[:300],
                     "seconds": time.perf_counter() - t0}, frames, None)

    return handle


def evaluate(cfg: EvalConfig, on_episode_start=None, checkpoint: Checkpoint | None = None) -> dict:
    """Run the evaluation and write eval.json, report.md, success.png and videos; returns the results.

    ``on_episode_start(job_id, worker_pid)``: optional hook, called in this process when a worker is handed
    an episode (progress displays, or tests that kill a worker mid-episode).
    ``checkpoint``: evaluate this in-memory checkpoint (periodic rollouts during training) instead of the
    file ``cfg.checkpoint``, which then only labels the report. Workers get its weights as a state dict.
    """
    from mtil.pipeline.checkpoint import load_checkpoint
    from mtil.pipeline.evaluation.checks import check_envs
    from mtil.pipeline.evaluation.report import error_summary, prepare_out, remove_if_empty, write_outputs

    ckpt = checkpoint if checkpoint is not None else load_checkpoint(cfg.checkpoint)
    # what a worker rebuilds the policy from: the file, or the weights themselves (spawned processes)
    policy_source = cfg.checkpoint if checkpoint is None else checkpoint.for_inference(not cfg.raw_weights)
    overrides = cfg.rollout_overrides(ckpt.policy_config.action_horizon)
    rows, env_args = plan_rows(cfg, ckpt)
    _embed_instructions(rows, ckpt)  # here, once: workers never load the language model
    check_envs(rows, env_args, ckpt, cfg.checkpoint)  # before any worker: each env builds, gives the policy's keys
    out, made = prepare_out(cfg.out)
    n = cfg.episodes_per_task
    episodes = {(r, i): None for r in range(len(rows)) for i in range(n)}
    t0 = time.time()
    finished = _run_episodes(cfg, rows, episodes, out, (policy_source, not cfg.raw_weights, env_args, rows,
                                                        cfg.max_steps, cfg.video_size, overrides), on_episode_start)
    meta = {"checkpoint": os.path.abspath(cfg.checkpoint) if checkpoint is None else cfg.checkpoint,
            "checkpoint_sha256": file_sha256(cfg.checkpoint) if checkpoint is None else "(in memory)",
            "step": ckpt.step, "seconds": time.time() - t0, **error_summary(episodes, finished),
            "config": {k: v for k, v in vars(cfg).items()},
            "env_name": ", ".join(dict.fromkeys((r.env_args or env_args)["env_name"] for r in rows))}
    try:
        return write_outputs(out, rows, episodes, n, meta)
    finally:  # a full disk: no empty folder of ours is left
        remove_if_empty(os.path.join(out, "videos"), *([out] if made else []))


def _embed_instructions(rows: list[Row], ckpt: Checkpoint) -> None:
    """Replace each row's instruction text by its language embedding (policies that use language)."""
    texts = [r.task_input for r in rows if isinstance(r.task_input, str)]
    if not texts or not ckpt.policy_config.conditioning_config.uses_language:
        return
    emb = dict(zip(texts, ckpt.policy_config.conditioning_config.spec.language_encoder().encode(texts).numpy()))
    for r in rows:
        if isinstance(r.task_input, str):
            r.task_input = emb[r.task_input]


def _run_episodes(cfg: EvalConfig, rows: list[Row], episodes: dict, out: str, worker_args: tuple,
                  on_episode_start) -> bool:
    """Every episode in the worker pool, results into ``episodes``, videos into ``out``; returns False when
    interrupted by Ctrl-C (what finished is kept)."""
    from mtil.pipeline.sim.pool import Died, Failed, Progress, WorkerPool

    n = cfg.episodes_per_task
    # job order: episode index major, so early results cover every row
    todo = [(r, i) for i in range(n) for r in range(len(rows))]
    bar = Progress(len(todo), "eval", "ep")
    pool = WorkerPool(_worker, worker_args, workers=min(cfg.workers, len(todo)), name="evaluation",
                      on_dispatch=on_episode_start)
    try:
        with pool:
            for r, i in todo:
                pool.submit(r * n + i, (r, cfg.seed + i, i < cfg.video_episodes, i))
            for jid, res in pool.results():
                r, i = divmod(jid, n)
                if isinstance(res, (Died, Failed)):
                    res = ({"success": False, "length": 0, "seconds": 0.0, "error": str(res)}, [], None)
                result, frames, goal = res
                episodes[(r, i)] = {"seed": cfg.seed + i, **result}
                if frames:
                    _save_video(out, rows[r], i, frames, result, goal)
                bar.update(1)
                ok = [e for e in episodes.values() if e and not e["error"]]
                bar.set_postfix(success=f"{np.mean([e['success'] for e in ok]):.0%}" if ok else "-")
        return True
    except KeyboardInterrupt:
        print("\ninterrupted: writing the episodes that finished (marked incomplete)", file=sys.stderr)
        return False
    finally:
        bar.close()
        pool.close()


def _save_video(out: str, row: Row, i: int, frames: list, result: dict, goal) -> None:
    from mtil.pipeline.evaluation.report import write_video

    path = os.path.join(out, "videos", f"{row.task}__{_slug(row.condition)}__{i}.mp4")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_video(path, frames, row.instruction, result, goal=goal)
    except (OSError, RuntimeError) as e:  # a full disk loses the video, not the episodes that finished
        why = f"{path}: {e.strerror}" if isinstance(e, OSError) and e.strerror else str(e)  # ffmpeg's names it
        print(f"warning: video not written: {why}", file=sys.stderr)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")
