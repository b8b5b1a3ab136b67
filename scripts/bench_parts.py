"""Speed of each action head x trunk of the policy on this machine: training steps/s and rollout latency.

The model alone (no data loading): a fixed batch shaped like the suite recipe's (two cameras at
--image-size, 7-d proprio, one-hot task, chunk of 8, batch 64) through forward + backward + AdamW for
--steps steps after --warmup; rollout = ms per `predict_chunk` of one observation (what an evaluation
worker runs every `exec_steps` env steps), median of --calls. One thread per measurement unless --threads.

    python scripts/bench_parts.py [--image-size 64] [--steps 20] [--threads 2] [--json out.jsonl]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date

import numpy as np
import torch

from mtil.encoders.conditioning import ConditioningConfig
from mtil.pipeline.policy.heads import HEADS
from mtil.pipeline.policy.model import MultiTaskPolicy, PolicyConfig
from mtil.pipeline.policy.trunks import TRUNKS

CAMS = ["agentview_image", "robot0_eye_in_hand_image"]


def make_policy(head: str, trunk: str, size: int, gripper_bce: bool) -> MultiTaskPolicy:
    stats = {"actions": {"min": [-1.0] * 7, "max": [1.0] * 7},
             "obs/robot0_eef_pos": {"mean": [0.0] * 3, "std": [1.0] * 3},
             "obs/robot0_eef_quat": {"mean": [0.0] * 4, "std": [1.0] * 4}}
    cfg = PolicyConfig(image_keys=CAMS, lowdim_keys=["robot0_eef_pos", "robot0_eef_quat"], lowdim_dims=[3, 4],
                       image_size=[size, size], action_dim=7, tasks=[f"task {i}" for i in range(9)],
                       conditioning=ConditioningConfig("onehot", out_dim=64, num_tasks=9).to_dict(), head=head,
                       trunk=trunk, gripper_bce=gripper_bce)
    torch.manual_seed(0)
    return MultiTaskPolicy(cfg, stats)


def batch_of(B: int, size: int, H: int = 8) -> dict:
    g = torch.Generator().manual_seed(0)
    obs = {k: torch.randint(0, 255, (B, 1, size, size, 3), dtype=torch.uint8, generator=g) for k in CAMS}
    obs["robot0_eef_pos"] = torch.randn(B, 1, 3, generator=g)
    obs["robot0_eef_quat"] = torch.randn(B, 1, 4, generator=g)
    return {"obs": obs, "actions": torch.rand(B, H, 7, generator=g) * 2 - 1,
            "action_pad": torch.zeros(B, H, dtype=torch.bool), "task": torch.randint(0, 9, (B,), generator=g)}


def measure(head: str, trunk: str, args) -> dict:
    policy = make_policy(head, trunk, args.image_size, args.gripper_bce)
    params = sum(p.numel() for p in policy.parameters())
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    batch = batch_of(args.batch_size, args.image_size)
    policy.train()
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            t0 = time.perf_counter()
        loss, _ = policy.compute_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = (time.perf_counter() - t0) / args.steps
    policy.eval()
    one = {k: v[:1] for k, v in batch["obs"].items()}
    z = policy.cond(batch["task"][:1])
    times = []
    for _ in range(args.calls + 3):
        t = time.perf_counter()
        policy.predict_chunk(one, z)
        times.append(time.perf_counter() - t)
    return {"head": head, "trunk": trunk, "params_M": round(params / 1e6, 2),
            "train_steps_per_s": round(1 / train_s, 2),
            "rollout_ms_per_chunk": round(1000 * float(np.median(times[3:])), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gripper-bce", action="store_true")
    ap.add_argument("--heads", nargs="+", default=list(HEADS))
    ap.add_argument("--trunks", nargs="+", default=list(TRUNKS))
    ap.add_argument("--json", help="append one JSON line per combination to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# bench_parts {date.today()} {platform.node()} {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {args.threads} threads, {args.image_size} px, batch {args.batch_size}")
    print("| head | trunk | params (M) | train steps/s | rollout ms/chunk |")
    print("| --- | --- | --- | --- | --- |")
    for trunk in args.trunks:
        for head in args.heads:
            r = measure(head, trunk, args)
            print(f"| {head} | {trunk} | {r['params_M']} | {r['train_steps_per_s']} | {r['rollout_ms_per_chunk']} |",
                  flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps({**r, "date": str(date.today()), "image_size": args.image_size,
                                        "threads": args.threads}) + "\n")


if __name__ == "__main__":
    main()
