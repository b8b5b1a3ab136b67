"""The training data: which demos (``load_demos``), the windowed datasets and the stratified sampler
(``build_data``), the endless batch stream, and the demo clips of video conditioning (``add_clips``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from mtil.datasets.device_windows import DeviceWindows, device_bytes
from mtil.datasets.errors import UserError
from mtil.datasets.manifest import Manifest, manifest_from_inputs
from mtil.datasets.sampler import StratifiedTaskBatchSampler
from mtil.datasets.windowed import GoalSampling, WindowedDataset, make_loader
from mtil.encoders.video import clip_indices, pick_other_demo
from mtil.pipeline.policy.model import PolicyConfig
from mtil.pipeline.training.config import TrainConfig, parse_demo_caps

UNLABELED = "(no instruction)"  # task of demos without language under goal_image conditioning


@dataclass
class TrainData:
    """What the loop draws from: the selected demos, their statistics, the datasets and the sampler."""

    manifest: Manifest
    stats: dict
    ds: WindowedDataset
    sampler: StratifiedTaskBatchSampler
    valid_ds: WindowedDataset | None
    """built once (rank 0 only): every validation pass reuses it"""
    workers: int
    """DataLoader worker processes (0: batches built in this process)"""
    on_device: DeviceWindows | None = None
    """the windows held on the training device (``--device-data``): batches are built there"""


def select_training_data(cfg: TrainConfig, manifest: Manifest, stats: dict) -> tuple[Manifest, dict, tuple[str, ...]]:
    """Apply --tasks / --demos-per-task / --failed-demos; returns (manifest, stats, splits to train on)."""
    from mtil.datasets.manifest import compute_stats, select_demos

    default_cap, caps = parse_demo_caps(cfg.demos_per_task)
    if cfg.tasks or default_cap is not None or caps:
        manifest = select_demos(manifest, list(cfg.tasks) or None, caps, default_cap)
        stats = compute_stats(manifest)  # statistics of the demos actually trained on
    n_failed = manifest.count("failed")
    use_failed = n_failed > 0 and (cfg.failed_demos == "use" or (cfg.failed_demos == "auto"
                                                                  and cfg.kind.uses_goal_image))
    if n_failed:
        how = "used as hindsight-goal data" if use_failed else "skipped (--failed-demos)"
        print(f"data: {n_failed} unsuccessful episodes (mask/failed): {how}", file=sys.stderr)
    splits = ("train", "failed") if use_failed else ("train",)
    for d in manifest.demos:
        if d.split in splits and d.length < cfg.action_horizon:
            f = manifest.files[d.file].path
            raise UserError(f"{f}: data/{d.name} has {d.length} steps, fewer than the action horizon "
                            f"({cfg.action_horizon}): lower --action-horizon or drop the demo")
    return manifest, stats, splits


def load_demos(cfg: TrainConfig) -> tuple[Manifest, dict, tuple[str, ...]]:
    """The demos to train on: (manifest, statistics, splits)."""
    # goal_image needs no language: demos without any get one shared placeholder task
    manifest, stats = manifest_from_inputs(cfg.data, None if cfg.kind.needs_instructions else [UNLABELED])
    manifest, stats, splits = select_training_data(cfg, manifest, stats)
    K = len(manifest.tasks)
    if cfg.sampler == "stratified" and cfg.batch_size < K:
        raise UserError(f"--batch-size {cfg.batch_size} is smaller than the number of tasks ({K}): a stratified "
                        f"batch needs at least one sample per task")
    return manifest, stats, splits


def place_windows(cfg: TrainConfig, ds: WindowedDataset, device: torch.device) -> DeviceWindows | None:
    """``--device-data``: the windows copied to ``device`` (a GPU), or None for the CPU batch path. auto: on a
    GPU when they take under half of its free memory and the conditioning is language or one-hot (goal
    sampling and video clips are built on the CPU); on: the same, with an error where it cannot."""
    if cfg.device_data == "off" or (cfg.device_data == "auto" and device.type != "cuda"):
        return None
    why = None
    if cfg.kind.uses_goal_image or cfg.kind.uses_video:
        why = f"{cfg.conditioning} conditioning builds its goals/clips on the CPU"
    elif device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        need = device_bytes(ds)
        if need > free // 2:
            why = f"the windows take {need / 2**30:.1f} GiB, more than half of the free {free / 2**30:.1f} GiB"
    if why is None:
        return DeviceWindows(ds, device)
    if cfg.device_data == "on":
        raise UserError(f"--device-data on: {why}")
    print(f"data: batches built on the CPU ({why})", file=sys.stderr)
    return None


def build_data(cfg: TrainConfig, manifest: Manifest, stats: dict, splits: tuple[str, ...], pcfg: PolicyConfig,
               rank: int = 0, world: int = 1, device: torch.device | None = None) -> TrainData:
    """Windowed datasets of the policy's observation keys and the stratified sampler of ``rank`` (of
    ``world`` DDP processes); the validation set only on rank 0; the windows on ``device`` per
    ``--device-data``."""
    goal = cfg.kind.uses_goal_image
    keys = pcfg.image_keys + pcfg.lowdim_keys
    ds = WindowedDataset(manifest, splits, keys, cfg.obs_horizon, cfg.action_horizon,
                         goal=GoalSampling(cfg.goal_max_offset or None, seed=cfg.seed) if goal else None)
    indices = ds.task_indices()
    mode = sampler_mode(cfg, indices)
    if cfg.gripper_oversample > 1:
        indices = oversample_switches(ds, indices, cfg.gripper_oversample, cfg.gripper_window, quiet=rank != 0)
    sampler = StratifiedTaskBatchSampler(indices, cfg.batch_size, mode, cfg.seed, rank=rank,
                                         world_size=world, tag_draws=goal, dataset_len=len(ds))
    if cfg.kind.uses_video and rank == 0:
        note_own_clips(ds)
    if cfg.sampler == "stratified" and rank == 0:
        note_rare_tasks(ds)
    on_device = place_windows(cfg, ds, device or torch.device("cpu"))
    workers = 0 if on_device else cfg.num_workers if cfg.num_workers >= 0 else (2 if ds.image_mode == "h5py" else 0)
    valid_ds = None  # video clips are drawn from training demos: no validation loss under video conditioning
    if rank == 0 and not cfg.kind.uses_video and manifest.count("valid"):
        valid_ds = WindowedDataset(manifest, "valid", ds.obs_keys, cfg.obs_horizon, cfg.action_horizon, goal=ds.goal)
    return TrainData(manifest, stats, ds, sampler, valid_ds, workers, on_device)


def near_gripper_switch(ds: WindowedDataset, window: int) -> np.ndarray:
    """Per sample (global step index): whether its step lies within ``window`` steps of a step of the same
    demo where the gripper command (the last action dimension) changes sign."""
    closed = ds.actions[:, -1] > 0
    near = np.zeros(len(closed), bool)
    for s, n in zip(ds.starts, ds.lengths):
        switches = s + 1 + np.flatnonzero(closed[s + 1:s + n] != closed[s:s + n - 1])
        for c in switches:
            near[max(s, c - window):min(s + n, c + window + 1)] = True
    return near


def oversample_switches(ds: WindowedDataset, task_indices: list[np.ndarray], factor: int, window: int,
                        quiet: bool = False) -> list[np.ndarray]:
    """Each task's indices with the windows near a gripper switch repeated ``factor`` times: the sampler draws
    them that much more often within their task (every batch keeps its per-task counts)."""
    near = near_gripper_switch(ds, window)
    out = [np.concatenate([ix] + [ix[near[ix]]] * (factor - 1)) for ix in task_indices]
    if not quiet:
        share = near[np.concatenate(task_indices)].mean() if len(near) else 0.0
        print(f"data: {share:.0%} of the training windows lie within {window} steps of a gripper switch; drawn "
              f"{factor}x as often (--gripper-oversample)", file=sys.stderr)
    return out


def sampler_mode(cfg: TrainConfig, task_indices: list[np.ndarray]) -> str | list[float]:
    """The sampler's mode: stratified | size, or for ``--sampler power`` the weights n_task^alpha (n_task:
    the task's training samples)."""
    if cfg.sampler != "power":
        return cfg.sampler
    return [float(len(ix)) ** cfg.sampler_alpha for ix in task_indices]


def demos_per_task(ds: WindowedDataset) -> np.ndarray:
    """How many of the dataset's demos each task has (manifest task order)."""
    return np.bincount([d.task for d in ds.demos], minlength=len(ds.manifest.tasks))


def note_own_clips(ds: WindowedDataset) -> None:
    """Video conditioning shows each sample a clip of *another* demo of its task; a task with one training
    demo can only show that demo itself (the policy then sees the very episode it imitates): say so."""
    tasks, counts = ds.manifest.tasks, demos_per_task(ds)
    alone = [tasks[t].instruction for t in np.flatnonzero(counts == 1)]
    if alone:
        print(f"note: {len(alone)} task(s) have one training demo ({', '.join(map(repr, alone[:3]))}"
              f"{', ...' if len(alone) > 3 else ''}): their video clips come from that same demo, so training "
              "never shows them another episode of the task; collect more demos per task for video "
              "conditioning", file=sys.stderr)


def note_rare_tasks(ds: WindowedDataset, ratio: float = 4.0) -> None:
    """Stratified batches give every task the same share however few demos it has: a task with ``ratio``
    times fewer training demos than the median task is drawn that much more often per demo. On the
    imbalanced lifts of docs/results.md section 22 (45 / 45 / 5 demos, 5 seeds) that overfit the rare task:
    say so, with the samplers that did better there."""
    tasks, counts = ds.manifest.tasks, demos_per_task(ds)
    median = float(np.median(counts))
    rare = [f"{tasks[t].instruction!r} ({counts[t]})" for t in np.flatnonzero(counts * ratio <= median)]
    if rare:
        print(f"note: {len(rare)} task(s) have at least {ratio:g}x fewer training demos than the median task "
              f"({median:g}): {', '.join(rare[:3])}{', ...' if len(rare) > 3 else ''}; --sampler stratified gives "
              f"each of them 1/{len(tasks)} of every batch. With 5 demos against 45 that overfit the rare task "
              "(docs/results.md section 22); --sampler power (n_task^0.5) or size did better there", file=sys.stderr)


def batch_stream(data: TrainData) -> Iterator[dict]:
    """Batches forever, in the sampler's order (epoch after epoch)."""
    if data.workers:
        loader = make_loader(data.ds, data.sampler, num_workers=data.workers)
        while True:
            yield from loader

    def endless():  # the sampler's index lists, epoch after epoch
        while True:
            yield from data.sampler

    if data.on_device is not None:
        yield from data.on_device.stream(endless())
    else:
        yield from map(data.ds.__getitems__, endless())


def add_clips(batch: dict, ds: WindowedDataset, rng: np.random.Generator, frames: int, key: str) -> None:
    """BC-Z clip for video conditioning: per task in the batch, T evenly spaced (jittered) frames of a
    *different* demo of that task than the batch's samples of it: ``batch['clips']`` (U, T, 3, H, W), one per
    task present, and ``batch['clip_index']`` (B,) naming each sample's clip. The policy encodes the U clips
    once (encoding one clip per *sample* made a video-conditioned step 5x slower than a language one)."""
    idx = batch["index"].numpy()
    demo_of = np.searchsorted(ds.starts, idx, side="right") - 1
    tasks = batch["task"].numpy()
    clips = {}
    for task in np.unique(tasks):
        members = [i for i, d in enumerate(ds.demos) if d.task == task]
        used = set(demo_of[tasks == task].tolist())
        d = pick_other_demo(members, used, rng, allow_same=True)  # same demo only if all are in the batch
        ts = clip_indices(int(ds.lengths[d]), frames, rng)
        clips[int(task)] = torch.from_numpy(np.ascontiguousarray(ds.frames(d, key, ts))).permute(0, 3, 1, 2)
    order = sorted(clips)
    batch["clips"] = torch.stack([clips[t] for t in order])  # (U, T, 3, H, W)
    batch["clip_index"] = torch.tensor([order.index(int(t)) for t in batch["task"]], dtype=torch.int64)  # (B,)
