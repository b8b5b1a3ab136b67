"""Evaluation throughput: episodes/minute of `mtil eval` with 1 and 2 workers, and whether policy
inference or the simulator dominates a step.

    python scripts/bench_eval.py CHECKPOINT [--episodes 8] [--max-steps 100]

A successful episode ends early, so episodes/minute depends on the policy; env steps/s does not and is
the number to compare across workers. Wall time includes starting the worker processes (loading torch,
robosuite and the policy), as a user sees it. The per-step split is measured in this process: the env
step (physics + two camera renders) vs `predict_action` (a chunk prediction every exec_steps steps, a
queue pop otherwise).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import date

import torch

from mtil.pipeline.checkpoint import load_checkpoint, load_policy
from mtil.pipeline.evaluation import run as ev


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--episodes", type=int, default=8, help="episodes per configuration")
    ap.add_argument("--max-steps", type=int, default=100)
    args = ap.parse_args()
    ckpt = load_checkpoint(args.checkpoint)
    rows, env_args = ev.plan_rows(ev.EvalConfig(args.checkpoint, "x"), ckpt)
    row = rows[0]

    print(f"{date.today()}, {platform.machine()}, {os.cpu_count()} cores; checkpoint {args.checkpoint} "
          f"(step {ckpt.step}), task {row.task}, {args.max_steps} steps per episode")
    torch.set_num_threads(1)
    from mtil.pipeline.sim.envs import make_env

    env = make_env(env_args, task=row.task)
    policy, _ = load_policy(args.checkpoint)
    if isinstance(row.task_input, str) and ckpt.policy_config.conditioning_config.uses_language:
        row.task_input = policy.embed_texts([row.task_input])[0].numpy()
    obs = env.reset(seed=0)
    t_env = t_pol = 0.0
    for _ in range(args.max_steps):
        t0 = time.perf_counter()
        a = policy.predict_action(obs, row.task_input)
        t1 = time.perf_counter()
        obs, *_ = env.step(a)
        t_env += time.perf_counter() - t1
        t_pol += t1 - t0
    env.close()
    print(f"per step: env {1000 * t_env / args.max_steps:.1f} ms, policy {1000 * t_pol / args.max_steps:.1f} ms "
          f"(policy share {t_pol / (t_env + t_pol):.0%})")

    print("| workers | episodes | wall time (s) | episodes/min | env steps/s |")
    print("| --- | --- | --- | --- | --- |")
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as out:
            cfg = ev.EvalConfig(args.checkpoint, out, episodes_per_task=args.episodes, workers=workers,
                                max_steps=args.max_steps, video_episodes=0, tasks=[row.task])
            t0 = time.perf_counter()
            res = ev.evaluate(cfg)  # one row: the task's training instruction
            dt = time.perf_counter() - t0
            steps = sum(e["length"] for r in res["rows"] for e in r["episodes"] if e)
            print(f"| {workers} | {args.episodes} | {dt:.0f} | {60 * args.episodes / dt:.1f} | {steps / dt:.1f} |")


if __name__ == "__main__":
    main()
