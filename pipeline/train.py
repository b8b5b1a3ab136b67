"""Multi-task behavior cloning: one flat, step-counted training loop (read it top to bottom).

    mtil train --data FILE.hdf5 [...] --out RUN --steps 3000
    torchrun --nproc_per_node 2 -m mtil.pipeline.cli.train --data ... --out RUN   # DDP (gloo on CPU)

Every minibatch is stratified over tasks (StratifiedTaskBatchSampler). Writes RUN/config.json,
RUN/last.pt (always the newest), RUN/step_<n>.pt, TensorBoard scalars in RUN/tb. ``--resume`` continues
from last.pt with model, EMA, optimizer, sampler position and RNG state: on CPU the result is
bit-identical to a run that was never interrupted.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from mtil.datasets.atomic import write_json_atomic
from mtil.datasets.errors import UserError
from mtil.datasets.manifest import manifest_from_inputs
from mtil.datasets.sampler import StratifiedTaskBatchSampler
from mtil.datasets.windowed import GoalSampling, WindowedDataset, make_loader
from mtil.encoders.conditioning import ConditioningConfig
from mtil.encoders.video import clip_indices
from mtil.pipeline.checkpoint import load_checkpoint, save_checkpoint
from mtil.pipeline.policy import MultiTaskPolicy, PolicyConfig


@dataclass
class TrainConfig:
    """Train one multi-task policy by behavior cloning on HDF5 demonstrations."""

    data: list[str]
    """HDF5 files, or one directory made by `mtil ingest`"""
    out: str
    """run directory (config.json, last.pt, step_<n>.pt, tb/)"""
    steps: int = 3000
    """gradient steps"""
    seed: int = 0
    """seed of model init, sampler stream, augmentation and clip sampling"""
    batch_size: int = 64
    """samples per step (per process under DDP)"""
    conditioning: str = "language"
    """task conditioning: language | video | onehot | goal_image | mixed (language or hindsight goal image,
    one dropped at random per sample; the policy then takes either at evaluation)"""
    goal_prob: float = 0.5
    """mixed: share of samples conditioned on their hindsight goal image instead of their instruction"""
    tasks: list[str] = field(default_factory=list)
    """train on these tasks only: suite task names (lift_red) or instructions (default: every task in the data)"""
    demos_per_task: list[str] = field(default_factory=list)
    """cap the training demos per task (the first ones in file order): N for every task and/or TASK=N"""
    failed_demos: str = "auto"
    """unsuccessful episodes (mask/failed, `mtil collect --keep-failures`): auto (used with goal_image and
    mixed conditioning, as hindsight-goal data only; skipped otherwise) | use | skip"""
    sampler: str = "stratified"
    """stratified (equal share of every batch per task) | size (proportional to task size)"""
    resume: bool = False
    """continue from RUN/last.pt (the config must be unchanged)"""
    save_every: int = 500
    """write step_<n>.pt and last.pt every N steps (and at the end)"""
    eval_every: int = 0
    """validation loss every N steps on the valid split (0: only at the end)"""
    rollout_every: int = 0
    """evaluate by simulated rollouts every N steps (at a checkpoint save) and keep the best as best.pt; 0: off"""
    rollout_episodes: int = 10
    """episodes per task of each periodic rollout evaluation"""
    lr: float = 1e-3
    """peak learning rate of AdamW (1e-3 reached 38% vs 3% for 3e-4 on the quickstart tasks at 3000 steps)"""
    weight_decay: float = 1e-4
    """AdamW weight decay (matrices only)"""
    warmup_steps: int = 200
    """linear warmup steps, then cosine decay to 10% of the peak"""
    grad_clip: float = 1.0
    """gradient norm clip"""
    ema_decay: float = 0.995
    """decay of the EMA weights used for evaluation"""
    obs_horizon: int = 1
    """observation frames the policy sees (t-To+1 .. t); each extra frame costs a full CNN pass per camera"""
    action_horizon: int = 8
    """actions predicted per chunk (t .. t+H-1)"""
    exec_steps: int = 4
    """actions executed per chunk at rollout before re-planning"""
    head: str = "l1"
    """l1 | gmm"""
    backbone: str = "small_cnn"
    """small_cnn (CPU) | resnet18 (GPU)"""
    cond_dim: int = 64
    """size of the task vector z"""
    image_keys: list[str] = field(default_factory=list)
    """cameras to use (default: every *_image key in the data)"""
    lowdim_keys: list[str] = field(default_factory=list)
    """low-dim keys (default: robot proprioception: keys with eef, gripper or joint in the name)"""
    goal_max_offset: int = 0
    """goal_image: goals at most this many steps ahead (0: anywhere in the demo's future)"""
    num_workers: int = -1
    """DataLoader workers (-1: 0 for memory-mapped/in-RAM images, 2 for h5py reads)"""
    device: str = "auto"
    """auto (cuda if available) | cpu | cuda"""
    init_from: str = ""
    """start from this checkpoint's (EMA) weights and normalization instead of a fresh network (fine-tuning,
    e.g. DAgger rounds); the data must have the same tasks and observation keys"""

    def __post_init__(self) -> None:
        if not self.data:
            raise UserError("--data: give at least one HDF5 file or ingest directory")
        if self.steps < 1:
            raise UserError(f"--steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.sampler not in ("stratified", "size"):
            raise UserError(f"--sampler must be stratified or size, got {self.sampler!r}")
        if self.save_every < 1 or self.eval_every < 0 or self.rollout_every < 0 or self.rollout_episodes < 1:
            raise UserError("--save-every and --rollout-episodes must be >= 1, --eval-every and --rollout-every >= 0")
        if self.conditioning not in ("language", "video", "onehot", "goal_image", "mixed"):
            raise UserError(f"--conditioning must be language, video, onehot, goal_image or mixed, "
                            f"got {self.conditioning!r}")
        if not 0.0 <= self.goal_prob <= 1.0:
            raise UserError(f"--goal-prob must be in [0, 1], got {self.goal_prob}")
        if self.failed_demos not in ("auto", "use", "skip"):
            raise UserError(f"--failed-demos must be auto, use or skip, got {self.failed_demos!r}")
        if self.failed_demos == "use" and self.conditioning not in ("goal_image", "mixed"):
            raise UserError(f"--failed-demos use: unsuccessful episodes do not demonstrate their instruction; only "
                            f"goal_image or mixed conditioning can learn from them (not {self.conditioning})")
        parse_demo_caps(self.demos_per_task)  # raises on a malformed entry


UNLABELED = "(no instruction)"  # task of demos without language under goal_image conditioning

# Fields that do not change what is computed: they may differ when resuming.
RESUME_FREE = {"resume", "save_every", "eval_every", "num_workers", "device", "out", "rollout_every",
               "rollout_episodes"}


def parse_demo_caps(entries: list[str]) -> tuple[int | None, dict[str, int]]:
    """``--demos-per-task`` entries (``N`` and/or ``TASK=N``) -> (cap for every task, {task: cap})."""
    default, per = None, {}
    for e in entries:
        name, _, num = e.rpartition("=")
        try:
            n = int(num)
        except ValueError:
            n = -1
        if n < 1:
            raise UserError(f"--demos-per-task {e!r}: expected N or TASK=N with N >= 1")
        if name:
            per[name] = n
        else:
            default = n
    return default, per


def select_training_data(cfg: TrainConfig, manifest: dict, stats: dict) -> tuple[dict, dict, tuple[str, ...]]:
    """Apply --tasks / --demos-per-task / --failed-demos; returns (manifest, stats, splits to train on)."""
    from mtil.datasets.manifest import compute_stats, select_demos

    default_cap, caps = parse_demo_caps(cfg.demos_per_task)
    if cfg.tasks or default_cap is not None or caps:
        manifest = select_demos(manifest, list(cfg.tasks) or None, caps, default_cap)
        stats = compute_stats(manifest)  # statistics of the demos actually trained on
    n_failed = sum(d["split"] == "failed" for d in manifest["demos"])
    goal_kinds = ("goal_image", "mixed")
    use_failed = n_failed > 0 and (cfg.failed_demos == "use" or (cfg.failed_demos == "auto"
                                                                  and cfg.conditioning in goal_kinds))
    if n_failed:
        how = "used as hindsight-goal data" if use_failed else "skipped (--failed-demos)"
        print(f"data: {n_failed} unsuccessful episodes (mask/failed): {how}", file=sys.stderr)
    splits = ("train", "failed") if use_failed else ("train",)
    for d in manifest["demos"]:
        if d["split"] in splits and d["length"] < cfg.action_horizon:
            f = manifest["files"][d["file"]]["path"]
            raise UserError(f"{f}: data/{d['name']} has {d['length']} steps, fewer than the action horizon "
                            f"({cfg.action_horizon}): lower --action-horizon or drop the demo")
    return manifest, stats, splits


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def default_lowdim(manifest: dict) -> list[str]:
    return [k for k, v in manifest["obs"].items()
            if not v["image"] and any(s in k for s in ("eef", "gripper", "joint"))]


def to_device(batch, device):
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch.to(device, non_blocking=True) if isinstance(batch, torch.Tensor) else batch


def add_clips(batch: dict, ds: WindowedDataset, rng: np.random.Generator, frames: int, key: str) -> None:
    """BC-Z clip for video conditioning: per task in the batch, T evenly spaced (jittered) frames of a
    *different* demo of that task than the batch's samples of it: ``batch['clips']`` (U, T, 3, H, W), one per
    task present, and ``batch['clip_index']`` (B,) naming each sample's clip. The policy encodes the U clips
    once (encoding one clip per *sample* made a video-conditioned step 5x slower than a language one)."""
    idx = batch["index"].numpy()
    demo_of = np.searchsorted(ds.starts, idx, side="right") - 1
    clips = {}
    for task in np.unique(batch["task"].numpy()):
        members = np.flatnonzero([d["task"] == task for d in ds.demos])
        used = set(demo_of[batch["task"].numpy() == task].tolist())
        others = [int(m) for m in members if m not in used] or [int(m) for m in members]
        d = others[int(rng.integers(len(others)))]
        ts = clip_indices(int(ds.lengths[d]), frames, rng)
        clips[int(task)] = torch.from_numpy(np.ascontiguousarray(ds._frames(d, key, ts))).permute(0, 3, 1, 2)
    order = sorted(clips)
    batch["clips"] = torch.stack([clips[t] for t in order])
    batch["clip_index"] = torch.tensor([order.index(int(t)) for t in batch["task"]], dtype=torch.int64)


def train(cfg: TrainConfig) -> str:
    """Run training; returns the path of the final checkpoint (last.pt)."""
    # ---------------------------------------------------------------- distributed setup
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main_proc = rank == 0
    out = os.path.abspath(cfg.out)
    last = os.path.join(out, "last.pt")

    # ---------------------------------------------------------------- data
    resume_ckpt = None
    if cfg.resume:
        resume_ckpt = load_checkpoint(last)
        saved = resume_ckpt["train_config"]
        now = dataclasses.asdict(cfg)
        changed = sorted(k for k in set(saved) | set(now) if k not in RESUME_FREE and saved.get(k) != now.get(k))
        if changed:
            k = changed[0]
            raise UserError(f"--resume: the config changed since {last} was written ({k}: {saved.get(k)!r} -> "
                            f"{now.get(k)!r}); resume with the same options or start a new --out")
    elif os.path.exists(last):
        raise UserError(f"--out {cfg.out} already holds a run (last.pt); use --resume or another --out")
    # goal_image needs no language: demos without any get one shared placeholder task
    manifest, stats = manifest_from_inputs(cfg.data, [UNLABELED] if cfg.conditioning == "goal_image" else None)
    manifest, stats, splits = select_training_data(cfg, manifest, stats)
    instructions = [t["instruction"] for t in manifest["tasks"]]
    K = len(instructions)
    if cfg.sampler == "stratified" and cfg.batch_size < K:
        raise UserError(f"--batch-size {cfg.batch_size} is smaller than the number of tasks ({K}): a stratified "
                        f"batch needs at least one sample per task")
    image_keys = cfg.image_keys or [k for k, v in manifest["obs"].items() if v["image"]]
    lowdim_keys = cfg.lowdim_keys or default_lowdim(manifest)
    for k in image_keys + lowdim_keys:
        if k not in manifest["obs"]:
            raise UserError(f"observation key {k!r} is not in the data (have: {', '.join(manifest['obs'])})")
    goal = cfg.conditioning in ("goal_image", "mixed")
    ds = WindowedDataset(manifest, splits, image_keys + lowdim_keys, cfg.obs_horizon, cfg.action_horizon,
                         goal=GoalSampling(cfg.goal_max_offset or None, seed=cfg.seed) if goal else None)
    sampler = StratifiedTaskBatchSampler(ds.task_indices(), cfg.batch_size, cfg.sampler, cfg.seed, rank=rank,
                                         world_size=world, tag_draws=goal, dataset_len=len(ds))
    workers = cfg.num_workers if cfg.num_workers >= 0 else (2 if ds.image_mode == "h5py" else 0)
    # built once: every validation pass reuses it (rebuilding re-reads the low-dim data and images)
    valid_ds = None
    if rank == 0 and cfg.conditioning != "video" and any(d["split"] == "valid" for d in manifest["demos"]):
        valid_ds = WindowedDataset(manifest, "valid", ds.obs_keys, cfg.obs_horizon, cfg.action_horizon,
                                   goal=ds.goal)

    # ---------------------------------------------------------------- model
    lang_emb = None
    if cfg.conditioning in ("language", "video", "mixed"):
        from mtil.encoders.language import LanguageEncoder

        lang_emb = LanguageEncoder().encode(instructions)
    cond = ConditioningConfig(kind=cfg.conditioning, out_dim=cfg.cond_dim, num_tasks=K,
                              lang_dim=lang_emb.shape[1] if lang_emb is not None else 384, goal_prob=cfg.goal_prob)
    image_size = manifest["obs"][image_keys[0]]["shape"][:2]
    pcfg = PolicyConfig(image_keys=image_keys, lowdim_keys=lowdim_keys,
                        lowdim_dims=[int(np.prod(manifest["obs"][k]["shape"])) for k in lowdim_keys],
                        image_size=list(image_size), action_dim=manifest["action_dim"],
                        conditioning=cond.to_dict(), obs_horizon=cfg.obs_horizon, action_horizon=cfg.action_horizon,
                        exec_steps=cfg.exec_steps, backbone=cfg.backbone, head=cfg.head, tasks=instructions)
    torch.manual_seed(cfg.seed)
    model = MultiTaskPolicy(pcfg, stats, lang_emb).to(device)
    if cfg.init_from and resume_ckpt is None:
        init = load_checkpoint(cfg.init_from, map_location=device)
        if list(init["policy_config"].get("tasks", [])) != list(instructions):
            raise UserError(f"--init-from {cfg.init_from}: trained on tasks {init['policy_config'].get('tasks')}, "
                            f"this data has {list(instructions)} (same tasks in the same order needed)")
        try:
            model.load_state_dict(init["ema" if "ema" in init else "model"])
        except (KeyError, RuntimeError) as e:
            raise UserError(f"--init-from {cfg.init_from}: its policy does not fit this data/config "
                            f"({str(e)[:200]})") from None
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.dim() < 2 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    step, epoch, batch_in_epoch = 0, 0, 0
    best = -1.0  # best rollout success so far (periodic rollout evaluation)
    if resume_ckpt is not None:
        best = float(resume_ckpt.get("best_success", -1.0))
        model.load_state_dict(resume_ckpt["model"])
        ema.load_state_dict(resume_ckpt["ema"])
        opt.load_state_dict(resume_ckpt["optimizer"])
        sampler.load_state_dict(resume_ckpt["sampler"])
        step = resume_ckpt["step"]
        epoch, batch_in_epoch = resume_ckpt["sampler"]["epoch"], resume_ckpt["sampler"]["batch"]
        torch.set_rng_state(resume_ckpt["rng"]["torch"])
    else:
        torch.manual_seed(cfg.seed + 1000 * rank)  # augmentation noise differs per rank
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)

    writer = None
    if main_proc:
        os.makedirs(out, exist_ok=True)
        write_json_atomic(os.path.join(out, "config.json"), {"train": dataclasses.asdict(cfg),
                                                             "policy": dataclasses.asdict(pcfg)})
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(os.path.join(out, "tb"), purge_step=step if step else None)
        how = f"DataLoader with {workers} workers" if workers else "batches built in the main process"
        print(f"data: {ds.describe()}; {how}", file=sys.stderr)

    def checkpoint(path_list: list[str]) -> None:
        ckpt = {"step": step, "train_config": dataclasses.asdict(cfg), "policy_config": dataclasses.asdict(pcfg),
                "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": {"kind": "warmup_cosine", "lr": lr_at(min(step, cfg.steps - 1), cfg)},
                "sampler": {**sampler.state_dict(), "epoch": epoch, "batch": batch_in_epoch},
                "rng": {"torch": torch.get_rng_state()}, "stats": stats, "tasks": instructions,
                "env_args": manifest["files"][0]["env_args"], "world_size": world, "best_success": best}
        for p in path_list:
            save_checkpoint(p, ckpt)

    # ---------------------------------------------------------------- loop
    def batches():
        if workers:
            loader = make_loader(ds, sampler, num_workers=workers)
            while True:
                yield from loader
        while True:
            for idx in sampler:
                yield ds.__getitems__(idx)

    from tqdm import tqdm

    stream = batches()
    start_step = step
    clip_rng_seed = cfg.seed + 7919 * rank
    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", disable=not main_proc or None,
               dynamic_ncols=True)
    wait_total, t_total = 0.0, 0.0
    while step < cfg.steps:
        t0 = time.perf_counter()
        batch = next(stream)
        if cfg.conditioning == "video":
            add_clips(batch, ds, np.random.default_rng([clip_rng_seed, step]), cond.video_frames, image_keys[0])
        batch = to_device(batch, device)
        t_wait = time.perf_counter() - t0
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        loss, metrics = net(batch)
        loss_value = float(loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        opt.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1.0 - cfg.ema_decay)
            for be, bm in zip(ema.buffers(), model.buffers()):
                be.copy_(bm)
        step += 1
        batch_in_epoch += 1
        if batch_in_epoch >= sampler.batches_per_epoch:
            epoch, batch_in_epoch = epoch + 1, 0
        dt = time.perf_counter() - t0
        wait_total, t_total = wait_total + t_wait, t_total + dt
        if main_proc:
            bar.update(1)
            if bar.disable and (step % max(1, cfg.steps // 20) == 0 or step == cfg.steps):  # logs, not a terminal
                print(f"step {step}/{cfg.steps} loss {loss_value:.4f} {(step - start_step) / t_total:.2f} steps/s "
                      f"data wait {wait_total / t_total:.1%}", file=sys.stderr, flush=True)
            bar.set_postfix(loss=f"{loss_value:.4f}", wait=f"{wait_total / t_total:.0%}")
            if step % 10 == 0 or step == cfg.steps:
                writer.add_scalar("train/loss", loss_value, step)
                writer.add_scalar("train/bc_loss", metrics["bc_loss"], step)
                if "align_loss" in metrics:
                    writer.add_scalar("train/align_loss", metrics["align_loss"], step)
                writer.add_scalar("train/lr", lr, step)
                writer.add_scalar("train/grad_norm", grad_norm, step)
                writer.add_scalar("train/data_wait_fraction", wait_total / t_total, step)
                per = metrics["per_sample"].cpu()
                tasks = batch["task"].cpu()
                for t in tasks.unique().tolist():
                    writer.add_scalar(f"train_task/{t}", float(per[tasks == t].mean()), step)
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
                for t, v in validation_loss(ema, valid_ds, device).items():
                    writer.add_scalar(f"valid_task/{t}", v, step)
            if step % cfg.save_every == 0 or step == cfg.steps:
                checkpoint([os.path.join(out, f"step_{step}.pt"), last])
            if cfg.rollout_every and (step % cfg.rollout_every == 0 or step == cfg.steps):
                rate = rollout_success(out, step, cfg, writer, checkpoint)
                if rate > best:
                    best = rate
                    checkpoint([os.path.join(out, "best.pt")])  # records the new best_success inside
                    print(f"step {step}: rollout success {rate:.0%}, new best -> best.pt", file=sys.stderr)
    bar.close()
    if main_proc:
        writer.close()
        write_json_atomic(os.path.join(out, "train_summary.json"), {
            "steps": step, "steps_this_run": step - start_step, "seconds": round(t_total, 1),
            "steps_per_s": round((step - start_step) / max(t_total, 1e-9), 3),
            "data_wait_fraction": round(wait_total / max(t_total, 1e-9), 4), "device": str(device),
            "torch_threads": torch.get_num_threads(), "world_size": world,
            "tasks": instructions, "train_demos": [t["num_train"] for t in manifest["tasks"]],
            "failed_demos_used": int(sum(d["split"] == "failed" for d in ds.demos))})
        print(f"trained {step - start_step} steps in {t_total:.0f} s ({(step - start_step) / max(t_total, 1e-9):.2f} "
              f"steps/s, data wait "
              f"{wait_total / max(t_total, 1e-9):.1%}); checkpoint: {last}", file=sys.stderr)
    if world > 1:
        torch.distributed.destroy_process_group()
    return last


def rollout_success(out: str, step: int, cfg: TrainConfig, writer, checkpoint) -> float:
    """Mean success of the current EMA weights over the training tasks, by rollouts in worker processes
    (the training process's RNG is untouched). The report stays in RUN/rollouts/step_<n>/."""
    import shutil

    from mtil.pipeline.evaluate import EvalConfig, evaluate

    path = os.path.join(out, "rollout_candidate.pt")
    checkpoint([path])
    res = evaluate(EvalConfig(checkpoint=path, out=os.path.join(out, "rollouts", f"step_{step}"),
                              episodes_per_task=cfg.rollout_episodes, video_episodes=0))
    os.unlink(path)
    shutil.rmtree(os.path.join(out, "rollouts", f"step_{step}", "videos"), ignore_errors=True)
    rate = res["overall"].get("train instruction", {}).get("success_rate") or 0.0
    writer.add_scalar("rollout/success", rate, step)
    return rate


@torch.no_grad()
def validation_loss(policy: MultiTaskPolicy, vds: WindowedDataset | None, device,
                    per_task: int = 128) -> dict[int, float]:
    """Mean BC loss per task on (a fixed subsample of) the valid split; {} when there is no valid split
    (or under video conditioning, whose clips are drawn from training demos)."""
    if vds is None:
        return {}
    policy.eval()
    result = {}
    for t, idx in enumerate(vds.task_indices()):
        if len(idx) == 0:
            continue
        pick = idx[np.linspace(0, len(idx) - 1, min(per_task, len(idx))).astype(int)]
        losses = []
        for s in range(0, len(pick), 64):
            _, m = policy.compute_loss(to_device(vds.__getitems__(pick[s:s + 64]), device))
            losses.append(m["per_sample"])
        result[t] = float(torch.cat(losses).mean())
    return result


if __name__ == "__main__":
    sys.exit("the DDP entry point moved: torchrun --nproc_per_node N -m mtil.pipeline.cli.train --data ... --out RUN")
