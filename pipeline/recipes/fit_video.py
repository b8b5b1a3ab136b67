"""`mtil fit-video`: give a language-conditioned policy a demo-video encoder (issue 21).

    mtil fit-video RUN/last.pt --data demos.hdf5 --out RUN_video/ [--camera frontview_image] [--heldout FILE]
    mtil eval RUN_video/last.pt --condition video --demos unseen_demos.hdf5

The policy stays exactly as it was trained, on language embeddings. A video encoder (encoders/video.py) is
fitted so that a clip of a demo lands on its task's language embedding: a softmax over the policy's tasks of
the clip's cosine to each task's embedding, both taken from the tasks' mean embedding (cross-entropy to its
own task, InfoNCE with the other tasks as the negatives), plus BC-Z's cosine loss to the embedding itself.
At rollout a clip goes through the encoder into the language space and then through the policy's own
projection, the one it was trained on: video conditioning is as good as the clip is recognisable
(docs/design-notes.md, "Video: fit the encoder onto the language space").

Writes ``OUT/last.pt`` (the policy, conditioning kind ``video``, its clips from ``--camera``; words still work
with ``--condition language``) and ``OUT/fit_video.json``: clip-to-task identification (how often the task
embedding nearest a clip is its own task) on demos never fitted on, per task.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from mtil.datasets.errors import UserError, check_range


@dataclass
class FitVideoConfig:
    """Fit a demo-video encoder onto the language space of a language-conditioned policy."""

    checkpoint: str
    """a language-conditioned `mtil train` checkpoint (its policy is not changed)"""
    out: str
    """output directory: last.pt (the policy with the video encoder) and fit_video.json"""
    data: list[str] = field(default_factory=list)
    """HDF5 demo files of the policy's tasks: their clips train the encoder (mask/train demos; all if no mask)"""
    heldout: list[str] = field(default_factory=list)
    """HDF5 demo files never fitted on, for clip-to-task identification (default: the --data mask/valid demos)"""
    camera: str = ""
    """image key the clips come from (default: the policy's first camera); may be one the policy never sees"""
    steps: int = 1500
    """optimizer steps (enough for the policy's own camera; for one it never sees give 3000: on thirdview,
    1500 left two of three encoder seeds at 63-67% held-out identification, 3000 reached 95% over three)"""
    clips_per_task: int = 4
    """clips of each task in every batch (each from a random demo, frames jittered)"""
    lr: float = 1e-3
    """AdamW learning rate (cosine decay to 0)"""
    temperature: float = 0.1
    """softmax temperature of the cosine similarities over tasks"""
    shift_pad: int = 4
    """random-shift augmentation of the clip frames in pixels (0 disables)"""
    z_weight: float = 1.0
    """weight of the loss in the policy's own task space: the squared distance from the clip's z (its embedding
    through the policy's projection) to its task's z, over the squared distance from that task's z to the
    nearest other task's; it starts once the batches' clips are told apart (batch accuracy averaged over ~10
    steps >= 0.95). 0: only the language-space losses"""
    seed: int = 0
    """seed of the encoder's init, clip draws and augmentation"""

    def __post_init__(self) -> None:
        if not self.data:
            raise UserError("--data: give the HDF5 demo files whose clips train the video encoder")
        check_range("--steps", self.steps, 1, integer=True)
        check_range("--clips-per-task", self.clips_per_task, 1, integer=True)
        check_range("--lr", self.lr, 0, lo_open=True)
        check_range("--temperature", self.temperature, 0, lo_open=True)
        check_range("--shift-pad", self.shift_pad, 0, integer=True)
        check_range("--z-weight", self.z_weight, 0)
        check_range("--seed", self.seed, 0, 2**31 - 1, integer=True)


@dataclass
class Clips:
    """Demo frames of one camera grouped by task id: ``frames[k]`` lists (L, H, W, 3) uint8 arrays."""

    frames: dict[int, list[np.ndarray]]
    names: dict[int, list[str]]


def read_clips(paths: list[str], split: str | None, tasks: list[str], camera: str, what: str) -> Clips:
    """Every demo of ``split`` (mask/<split>; all demos when ``split`` is None, or when the file has no such
    mask and split is train) whose instruction is one of ``tasks``: its ``camera`` frames, read whole."""
    import h5py

    from mtil.datasets.schema import inspect_file

    frames: dict[int, list[np.ndarray]] = {}
    names: dict[int, list[str]] = {}
    for path in paths:
        info = inspect_file(path)
        if info.problems:
            raise UserError(f"{what} {path}: {info.problems[0]}")
        if camera not in info.obs:
            raise UserError(f"{what} {path}: no {camera} in its demos (they have {', '.join(info.obs)})")
        chosen = info.masks.get(split) if split else None
        if chosen is None and split in ("train", None):
            chosen = [d.name for d in info.demos]
        keep = set(chosen or [])
        with h5py.File(path, "r") as f:
            for d in info.demos:
                if d.name in keep and d.instruction in tasks:
                    k = tasks.index(d.instruction)
                    frames.setdefault(k, []).append(np.asarray(f["data"][d.name]["obs"][info.stored_key(camera)]))
                    names.setdefault(k, []).append(f"{os.path.basename(path)}:{d.name}")
    return Clips(frames, names)


def draw_batch(clips: Clips, per_task: int, num_frames: int, rng: np.random.Generator):
    """(B, T, 3, H, W) uint8 clips, per_task of every task (random demo, jittered frames), and (B,) task ids."""
    import torch

    from mtil.encoders.video import sample_clip

    out, labels = [], []
    for k in sorted(clips.frames):
        demos = clips.frames[k]
        for i in rng.integers(len(demos), size=per_task):
            out.append(sample_clip(demos[int(i)], num_frames, rng))
            labels.append(k)
    return torch.stack(out), torch.tensor(labels, dtype=torch.int64)


def identify(encoder, clips: Clips, targets, num_frames: int, project=None) -> dict:
    """Clip-to-task identification: each demo's clip (evenly spaced frames, as `mtil eval --condition video`
    takes it) -> the task whose language embedding is nearest. Per task and overall share correct. With the
    policy's ``project``: where each clip lands in the policy's task space, its distance to its own task's z
    over that task's distance to the nearest other task (``z_rel``: 0 on its task; rollouts fail more often
    past ~0.5, docs/results.md section 21)."""
    import torch

    from mtil.encoders.video import sample_clip

    per_task, wrong, rel = {}, [], {}
    zt = task_space(project, targets) if project is not None else None
    with torch.no_grad():
        for k in sorted(clips.frames):
            batch = torch.stack([sample_clip(fr, num_frames) for fr in clips.frames[k]])
            emb = encoder(batch)
            guess = (emb @ targets.T).argmax(dim=1).tolist()
            per_task[k] = [sum(g == k for g in guess), len(guess)]
            wrong += [(clips.names[k][i], k, g) for i, g in enumerate(guess) if g != k]
            if zt is not None:
                d = (project(emb) - zt[0][k]).norm(dim=-1) / zt[1][k].sqrt()
                rel[k] = [round(float(v), 3) for v in d]
    right, n = sum(v[0] for v in per_task.values()), sum(v[1] for v in per_task.values())
    out = {"correct": right, "n": n, "rate": right / n if n else 0.0, "per_task": per_task, "wrong": wrong}
    if rel:
        every = [v for vs in rel.values() for v in vs]
        out.update(z_rel_mean=round(float(np.mean(every)), 3), z_rel_max=max(every), z_rel=rel)
    return out


def task_space(project, targets):
    """The tasks' z in the policy's space, (K, out_dim), and each task's squared distance to its nearest other
    task's z, (K,) (1 when the policy has one task)."""
    import torch

    with torch.no_grad():
        z = project(targets)
        d2 = torch.cdist(z, z).pow(2) + torch.eye(len(z)) * torch.finfo(z.dtype).max
        sep2 = d2.min(dim=1).values if len(z) > 1 else torch.ones(1)
    return z, sep2.clamp_min(1e-8)


def fit_encoder(cfg: FitVideoConfig, train: Clips, targets, cond_cfg, progress: bool = True, project=None):
    """Train a ``VideoEncoder`` so each clip's embedding is nearest its task's (unit-norm) ``targets`` (K, D);
    with the policy's frozen ``project`` and ``cfg.z_weight``, also near its task's z in the policy's space."""
    import torch
    import torch.nn.functional as F

    from mtil.encoders.backbones import random_shift
    from mtil.encoders.video import VideoEncoder, cosine_alignment_loss

    torch.manual_seed(cfg.seed)
    rng, gen = np.random.default_rng([cfg.seed, 31]), torch.Generator().manual_seed(cfg.seed)
    enc = VideoEncoder(out_dim=targets.shape[1], frame_dim=cond_cfg.video_frame_dim,
                       max_frames=cond_cfg.video_frames, num_layers=cond_cfg.video_layers)
    opt = torch.optim.AdamW(enc.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    # Instructions that differ by one word embed close together (cosine 0.82-0.84 for the lifts): the softmax
    # compares directions from the tasks' mean, the cosine loss then pulls onto the embedding itself.
    centre = targets.mean(dim=0)
    spread = F.normalize(targets - centre, dim=-1)  # (K, D)
    # The policy reads z = project(embedding), which stretches some directions: place-block clips at cosine 0.97
    # to their task can sit half way to the other block task in z, where rollouts fail (section 21).
    ztask, sep2 = task_space(project, targets) if project is not None and cfg.z_weight else (None, None)
    t0, history, acc_avg, z_from = time.perf_counter(), [], 0.0, None
    for step in range(1, cfg.steps + 1):
        clips, labels = draw_batch(train, cfg.clips_per_task, cond_cfg.video_frames, rng)
        if cfg.shift_pad:
            clips = random_shift(clips.flatten(0, 1), cfg.shift_pad, gen).view_as(clips)
        emb = enc(clips)
        logits = F.normalize(emb - centre, dim=-1) @ spread.T / cfg.temperature
        loss = F.cross_entropy(logits, labels) + cosine_alignment_loss(emb, targets[labels])
        # The task-space loss waits until the clips are told apart (batch accuracy averaged over ~10 steps >=
        # 0.95): from step 1 it held the three lifts' clips between red and green (8/12 held-out clips named).
        acc = (logits.detach().argmax(1) == labels).float().mean().item()
        acc_avg = 0.9 * acc_avg + 0.1 * acc
        if ztask is not None and z_from is None and acc_avg >= 0.95:
            z_from = step
            if progress:
                print(f"step {step}: clips told apart, the task-space loss (--z-weight) starts", file=sys.stderr)
        if z_from is not None:
            loss = loss + cfg.z_weight * ((project(emb) - ztask[labels]).pow(2).sum(-1) / sep2[labels]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step == 1 or step % 100 == 0 or step == cfg.steps:
            value = loss.item()
            history.append({"step": step, "loss": round(value, 4), "batch_accuracy": round(acc, 3)})
            if progress:
                print(f"step {step}/{cfg.steps} loss {value:.4f} batch accuracy {acc:.2f} "
                      f"({step / (time.perf_counter() - t0):.1f} steps/s)", file=sys.stderr)
    if ztask is not None and z_from is None and progress:
        print(f"note: the batches' clips were never told apart (averaged batch accuracy {acc_avg:.2f} < 0.95), so "
              "the task-space loss (--z-weight) never started; more --steps may help", file=sys.stderr)
    return enc.eval(), {"seconds": round(time.perf_counter() - t0, 1), "z_loss_from_step": z_from,
                        "history": history}


def fit_video(cfg: FitVideoConfig, progress: bool = True) -> dict:
    """The command: read clips, fit the encoder, measure identification, write OUT/last.pt and the report."""
    import torch.nn.functional as F

    from mtil.datasets.atomic import check_writable_dir, write_json_atomic
    from mtil.pipeline.checkpoint import load_checkpoint_dict, load_policy, read_checkpoint, save_checkpoint

    out = check_writable_dir(cfg.out)
    if os.path.exists(os.path.join(out, "last.pt")):
        raise UserError(f"--out {cfg.out}: already holds last.pt; choose another directory")
    d = load_checkpoint_dict(cfg.checkpoint)  # read once: parsed here, written back changed below
    ckpt = read_checkpoint(d, cfg.checkpoint)
    pcfg, cc = ckpt.policy_config, ckpt.policy_config.conditioning_config
    weights = ckpt.weights(True)
    if (not cc.spec.takes_instruction or cc.spec.uses_video or cc.spec.language_tokens
            or weights["task_lang_emb"].shape[1] == 0):
        raise UserError(f"{cfg.checkpoint}: a {cc.kind}-conditioned policy; fit-video adds a video encoder to a "
                        "language-conditioned one with one sentence vector per task "
                        "(`mtil train --conditioning language`)")
    camera = cfg.camera or pcfg.image_keys[0]
    train = read_clips(cfg.data, "train", pcfg.tasks, camera, "--data")
    missing = [t for k, t in enumerate(pcfg.tasks) if len(train.frames.get(k, [])) == 0]
    if missing:
        raise UserError(f"--data: no training demo of task(s) {', '.join(map(repr, missing))} of the policy")
    held = (read_clips(cfg.heldout, None, pcfg.tasks, camera, "--heldout") if cfg.heldout
            else read_clips(cfg.data, "valid", pcfg.tasks, camera, "--data"))
    targets = F.normalize(weights["task_lang_emb"].float(), dim=-1)  # (K, D)
    policy, _ = load_policy(ckpt)
    project = policy.cond.requires_grad_(False).project  # frozen: only the video encoder is fitted
    enc, fit = fit_encoder(cfg, train, targets, cc, progress, project)
    report = {"checkpoint": os.path.abspath(cfg.checkpoint), "camera": camera, "config": dataclasses.asdict(cfg),
              "train_demos": sum(map(len, train.frames.values())), **fit,
              "identification_train": identify(enc, train, targets, cc.video_frames, project),
              "identification_heldout": identify(enc, held, targets, cc.video_frames, project) if held.frames
              else None,
              "tasks": list(pcfg.tasks)}
    video = {f"cond.video.{k}": v.detach().clone() for k, v in enc.state_dict().items()}
    d["policy_config"]["conditioning"] = {**cc.to_dict(), "kind": "video",
                                          "video_camera": "" if camera == pcfg.image_keys[0] else camera}
    for key in ("model", "ema"):
        if d.get(key) is not None:
            d[key] = {**d[key], **video}
    d["train_config"] = {**(d.get("train_config") or {}), "fit_video": {k: v for k, v in report.items()
                                                                         if k.startswith(("config", "camera"))}}
    d.update(optimizer=None, scheduler=None, sampler=None)  # a fitted policy is not resumed
    load_policy(d)  # the new checkpoint rebuilds (strict weights) before anything is written, or this raises
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "last.pt")
    save_checkpoint(path, d)
    write_json_atomic(os.path.join(out, "fit_video.json"), report)
    return report
