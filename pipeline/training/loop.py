"""Multi-task behavior cloning: build the data, build the policy, then one step-counted loop of
``train_step`` (read ``train`` top to bottom).

    mtil train --data FILE.hdf5 [...] --out RUN --steps 3000
    torchrun --nproc_per_node 2 -m mtil.pipeline.cli.train --data ... --out RUN   # DDP (gloo on CPU)

Every minibatch is stratified over tasks (StratifiedTaskBatchSampler). Writes RUN/config.json,
RUN/last.pt (always the newest), RUN/step_<n>.pt, TensorBoard scalars in RUN/tb. ``--resume`` continues
from last.pt with model, EMA, optimizer, sampler position and RNG state: on CPU the result is
bit-identical to a run that was never interrupted. ``--rollout-every`` evaluates the in-memory EMA
weights by simulated rollouts and keeps the best as RUN/best.pt.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from mtil.datasets.atomic import check_writable_dir, remove_stale_temps, write_json_atomic
from mtil.datasets.errors import UserError
from mtil.datasets.manifest import Manifest
from mtil.datasets.windowed import WindowedDataset
from mtil.encoders.conditioning import ConditioningConfig
from mtil.pipeline.checkpoint import (
    Checkpoint,
    build_checkpoint,
    load_checkpoint,
    read_checkpoint,
    resume_from,
    save_checkpoint,
    save_run_checkpoint,
)
from mtil.pipeline.policy.model import MultiTaskPolicy, PolicyConfig
from mtil.pipeline.sim.probe import check_rollout_envs
from mtil.pipeline.training.config import RESUME_FREE, TrainConfig
from mtil.pipeline.training.data import (
    TrainData,
    add_clips,
    batch_stream,
    build_data,
    load_demos,
)
from mtil.pipeline.training.distributed import Dist, setup_distributed

__all__ = ["TrainConfig", "add_clips", "train", "train_step", "validation_loss"]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def to_device(batch, device):
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch.to(device, non_blocking=True) if isinstance(batch, torch.Tensor) else batch


# --------------------------------------------------------------------------------------------- the parts
@dataclass
class TrainState:
    """Everything a training step changes, and what a checkpoint saves of it."""

    model: MultiTaskPolicy
    ema: MultiTaskPolicy
    opt: torch.optim.Optimizer
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    """position of the sampler: batches of ``epoch`` already drawn"""
    best: float = -1.0
    """best periodic-rollout success so far"""


def resume_checkpoint(cfg: TrainConfig, last: str) -> Checkpoint | None:
    """The checkpoint to resume from (``--resume``: the newest valid one in last.pt's folder, with the config
    unchanged); None for a new run (an error if ``--out`` already holds checkpoints)."""
    defaults = dataclasses.asdict(TrainConfig(data=cfg.data, out=cfg.out))  # for fields newer than the run
    return resume_from(os.path.dirname(last), cfg.resume, dataclasses.asdict(cfg), defaults, RESUME_FREE)


def build_policy_config(cfg: TrainConfig, manifest: Manifest) -> tuple[PolicyConfig, torch.Tensor | None]:
    """The policy's config for this data, and the tasks' language embeddings (K, D) if it uses language."""
    instructions = [t.instruction for t in manifest.tasks]
    lang_emb = None
    if cfg.kind.uses_language:
        lang_emb = cfg.kind.language_encoder().encode(instructions)
    cond = cfg.conditioning_config(len(instructions),
                                   lang_emb.shape[1] if lang_emb is not None else ConditioningConfig.lang_dim)
    pcfg = PolicyConfig.from_manifest(manifest, cfg, cond, cfg.image_keys or None, cfg.lowdim_keys or None)
    return pcfg, lang_emb


def init_weights(model: MultiTaskPolicy, path: str, tasks: list[str], device) -> None:
    """--init-from: start from a trained policy's (EMA) weights and normalization (fine-tuning)."""
    init = load_checkpoint(path, map_location=device)
    if list(init.tasks) != list(tasks):
        raise UserError(f"--init-from {path}: trained on tasks {list(init.tasks)}, this data has {list(tasks)} "
                        "(the same tasks in the same order are needed)")
    try:
        model.load_state_dict(init.weights(ema=True))
    except (KeyError, RuntimeError) as e:
        raise UserError(f"--init-from {path}: its policy does not fit this data/config ({str(e)[:200]})") from None


def build_state(cfg: TrainConfig, pcfg: PolicyConfig, data: TrainData, lang_emb: torch.Tensor | None, dist: Dist,
                resume: Checkpoint | None) -> TrainState:
    """Model (seeded init), its EMA copy and AdamW (no weight decay on vectors); restored from ``resume``
    with the sampler position and the RNG state."""
    torch.manual_seed(cfg.seed)
    model = MultiTaskPolicy(pcfg, data.stats, lang_emb).to(dist.device)
    if cfg.init_from and resume is None:
        init_weights(model, cfg.init_from, pcfg.tasks, dist.device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.dim() < 2 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr,
                            fused=dist.device.type == "cuda" or None)  # one kernel for all parameters
    state = TrainState(model, ema, opt)
    if resume is None:
        torch.manual_seed(cfg.seed + 1000 * dist.rank)  # augmentation noise differs per rank
        return state
    model.load_state_dict(resume.model)
    ema.load_state_dict(resume.ema)
    opt.load_state_dict(resume.optimizer)
    data.sampler.load_state_dict(resume.sampler)
    state.step, state.best = resume.step, resume.best_success
    state.epoch, state.batch_in_epoch = resume.sampler["epoch"], resume.sampler["batch"]
    torch.set_rng_state(resume.rng["torch"])
    return state


def make_checkpoint(cfg: TrainConfig, pcfg: PolicyConfig, state: TrainState, data: TrainData, dist: Dist) -> dict:
    """The checkpoint dict of the current state (``mtil.pipeline.checkpoint`` owns the layout)."""
    return build_checkpoint(
        step=state.step, train_config=dataclasses.asdict(cfg), policy_config=pcfg, model=state.model.state_dict(),
        ema=state.ema.state_dict(), optimizer=state.opt.state_dict(),
        scheduler={"kind": "warmup_cosine", "lr": lr_at(min(state.step, cfg.steps - 1), cfg)},
        sampler={**data.sampler.state_dict(), "epoch": state.epoch, "batch": state.batch_in_epoch},
        rng={"torch": torch.get_rng_state()}, stats=data.stats, tasks=pcfg.tasks,
        env_args=data.manifest.files[0].env_args, world_size=dist.world, best_success=state.best,
        task_env_args=data.manifest.task_env_args())


def autocast(cfg: TrainConfig, device: torch.device):
    """The forward pass's precision context: bf16 autocast with ``--amp bf16``."""
    import contextlib

    return torch.autocast(device.type, dtype=torch.bfloat16) if cfg.amp == "bf16" else contextlib.nullcontext()


def train_step(state: TrainState, net: torch.nn.Module, batch: dict, cfg: TrainConfig,
               batches_per_epoch: int) -> dict:
    """One optimizer step on ``batch`` (on the device): forward, loss, backward, gradient clip, AdamW step
    at the scheduled learning rate, EMA update; advances the step and the sampler position. ``net`` is the
    model, its DDP wrapper or its compiled form. Returns the policy's metrics plus ``loss``, ``lr`` and
    ``grad_norm``; losses and the norm stay tensors on the device (reading one waits for the device, so
    the loop reads them only when it logs)."""
    lr = lr_at(state.step, cfg)
    for g in state.opt.param_groups:
        g["lr"] = lr
    state.model.train()
    with autocast(cfg, batch["actions"].device):
        loss, metrics = net(batch)
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
    state.opt.step()
    with torch.no_grad():  # EMA: one fused call per tensor list instead of one per parameter
        torch._foreach_lerp_(list(state.ema.parameters()), list(state.model.parameters()), 1.0 - cfg.ema_decay)
        torch._foreach_copy_(list(state.ema.buffers()), list(state.model.buffers()))
    state.step += 1
    state.batch_in_epoch += 1
    if state.batch_in_epoch >= batches_per_epoch:
        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    return {**metrics, "loss": loss.detach(), "lr": lr, "grad_norm": grad_norm.detach()}


def log_step(writer, step: int, m: dict, tasks: torch.Tensor, wait_fraction: float) -> None:
    """TensorBoard scalars of one step: losses, lr, gradient norm, data wait and the BC loss per task."""
    writer.add_scalar("train/loss", float(m["loss"]), step)
    writer.add_scalar("train/bc_loss", float(m["bc_loss"]), step)
    if "align_loss" in m:
        writer.add_scalar("train/align_loss", float(m["align_loss"]), step)
    writer.add_scalar("train/lr", m["lr"], step)
    writer.add_scalar("train/grad_norm", float(m["grad_norm"]), step)
    writer.add_scalar("train/data_wait_fraction", wait_fraction, step)
    per = m["per_sample"].cpu()
    tasks = tasks.cpu()
    for t in tasks.unique().tolist():
        writer.add_scalar(f"train_task/{t}", float(per[tasks == t].mean()), step)


# --------------------------------------------------------------------------------------------- the run
class Diverged(UserError):
    """The loss or the gradient became NaN or infinite: training stops before saving such weights."""


def train(cfg: TrainConfig) -> str:
    """Run training; returns the path of the final checkpoint (last.pt)."""
    dist = setup_distributed(cfg)
    out = check_writable_dir(cfg.out)
    last = os.path.join(out, "last.pt")
    if dist.main:
        remove_stale_temps(out)  # .last.pt.tmp-* of saves a crash interrupted
    resume = resume_checkpoint(cfg, last)
    manifest, stats, splits = load_demos(cfg)
    pcfg, lang_emb = build_policy_config(cfg, manifest)
    if not cfg.skip_env_check and resume is None:
        check_rollout_envs(manifest.files, pcfg)
    data = build_data(cfg, manifest, stats, splits, pcfg, dist.rank, dist.world, dist.device)
    state = build_state(cfg, pcfg, data, lang_emb, dist, resume)
    net = torch.nn.parallel.DistributedDataParallel(state.model) if dist.world > 1 else state.model
    if cfg.compile != "off":
        net = torch.compile(net, mode=cfg.compile)
    writer = open_run(cfg, pcfg, out, state, data, dist) if dist.main else None

    from tqdm import tqdm

    stream = batch_stream(data)
    start_step = state.step
    clip_rng_seed = cfg.seed + 7919 * dist.rank
    bar = tqdm(total=cfg.steps, initial=state.step, desc="train", unit="step", disable=not dist.main or None,
               dynamic_ncols=True)
    first_bad = torch.full((), -1, dtype=torch.int64, device=dist.device)  # step of the first non-finite loss
    wait_total, t_total = 0.0, 0.0
    while state.step < cfg.steps:
        t0 = time.perf_counter()
        batch = next(stream)
        if cfg.kind.uses_video:
            add_clips(batch, data.ds, np.random.default_rng([clip_rng_seed, state.step]),
                      pcfg.conditioning_config.video_frames, pcfg.image_keys[0])
        batch = to_device(batch, dist.device)
        t_wait = time.perf_counter() - t0
        m = train_step(state, net, batch, cfg, data.sampler.batches_per_epoch)
        step = state.step
        # flagged on the device, no wait: read only when the loop reads the loss anyway or before a save
        bad = ~(torch.isfinite(m["loss"]) & torch.isfinite(m["grad_norm"]))
        first_bad = torch.where(bad & (first_bad < 0), step, first_bad)
        dt = time.perf_counter() - t0
        wait_total, t_total = wait_total + t_wait, t_total + dt
        if not dist.main:
            continue
        bar.update(1)
        if bar.disable and (step % max(1, cfg.steps // 20) == 0 or step == cfg.steps):  # logs, not a terminal
            print(f"step {step}/{cfg.steps} loss {float(m['loss']):.4f} {(step - start_step) / t_total:.2f} "
                  f"steps/s data wait {wait_total / t_total:.1%}", file=sys.stderr, flush=True)
        if step % 10 == 0 or step == cfg.steps:  # reading the loss waits for the device: not every step
            check_finite(first_bad, cfg, last)
            bar.set_postfix(loss=f"{float(m['loss']):.4f}", wait=f"{wait_total / t_total:.0%}")
            log_step(writer, step, m, batch["task"], wait_total / t_total)
        periodic(cfg, pcfg, state, data, dist, writer, out, first_bad)
    bar.close()
    if dist.main:
        writer.close()
        write_summary(out, state.step - start_step, t_total, wait_total, state, pcfg, manifest, data, dist)
    if dist.world > 1:
        torch.distributed.destroy_process_group()
    return last


def check_finite(first_bad: torch.Tensor, cfg: TrainConfig, last: str, model: torch.nn.Module | None = None,
                 step: int = 0) -> None:
    """Stop (``Diverged``) when a step's loss or gradient norm was NaN or infinite, or (``model`` given, before
    a save) when the weights after ``step`` are: an update can overflow the weights from a finite gradient."""
    bad = int(first_bad)
    what = f"the loss or its gradient is not finite at step {bad}"
    if bad < 0 and model is not None and not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        bad, what = step, f"the weights are not finite after step {step}"
    if bad >= 0:
        raise Diverged(f"training diverged: {what} (lr {cfg.lr:g}, weight decay {cfg.weight_decay:g}, grad clip "
                       f"{cfg.grad_clip:g}); nothing of that step or later was saved ({last} is the last good "
                       "checkpoint, if any). Lower --lr or check the data")


def open_run(cfg: TrainConfig, pcfg: PolicyConfig, out: str, state: TrainState, data: TrainData, dist: Dist):
    """Rank 0: config.json, the TensorBoard writer (returned) and a line on where batches come from."""
    os.makedirs(out, exist_ok=True)
    write_json_atomic(os.path.join(out, "config.json"), {"train": dataclasses.asdict(cfg),
                                                         "policy": dataclasses.asdict(pcfg)})
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(os.path.join(out, "tb"), purge_step=state.step if state.step else None)
    how = (f"batches built on {dist.device}" if data.on_device else f"DataLoader with {data.workers} workers"
           if data.workers else "batches built in the main process")
    print(f"data: {data.ds.describe()}; {how}", file=sys.stderr)
    return writer


def periodic(cfg: TrainConfig, pcfg: PolicyConfig, state: TrainState, data: TrainData, dist: Dist, writer,
             out: str, first_bad: torch.Tensor) -> None:
    """Rank 0, after a step: validation loss, checkpoints and rollouts when their interval comes round.
    Nothing is saved after a non-finite step (``first_bad``): a diverged run never replaces a good one."""
    step, final = state.step, state.step == cfg.steps
    if (cfg.eval_every and step % cfg.eval_every == 0) or final:
        for t, v in validation_loss(state.ema, data.valid_ds, dist.device).items():
            writer.add_scalar(f"valid_task/{t}", v, step)
    save = step % cfg.save_every == 0 or final
    roll = cfg.rollout_every and (step % cfg.rollout_every == 0 or final)
    if not (save or roll):
        return
    check_finite(first_bad, cfg, os.path.join(out, "last.pt"), state.model, step)
    ckpt = make_checkpoint(cfg, pcfg, state, data, dist)
    if save:
        save_run_checkpoint(out, ckpt, step)
    if roll:
        rate = rollout_success(cfg, out, read_checkpoint(ckpt))
        writer.add_scalar("rollout/success", rate, step)
        if rate > state.best:
            state.best = rate
            save_checkpoint(os.path.join(out, "best.pt"), make_checkpoint(cfg, pcfg, state, data, dist))
            print(f"step {step}: rollout success {rate:.0%}, new best -> best.pt", file=sys.stderr)


def write_summary(out: str, steps_run: int, t_total: float, wait_total: float, state: TrainState,
                  pcfg: PolicyConfig, manifest: Manifest, data: TrainData, dist: Dist) -> None:
    """train_summary.json and the closing line: steps, time, speed, data wait."""
    seconds = max(t_total, 1e-9)
    write_json_atomic(os.path.join(out, "train_summary.json"), {
        "steps": state.step, "steps_this_run": steps_run, "seconds": round(t_total, 1),
        "steps_per_s": round(steps_run / seconds, 3), "data_wait_fraction": round(wait_total / seconds, 4),
        "device": str(dist.device), "torch_threads": torch.get_num_threads(), "world_size": dist.world,
        "tasks": pcfg.tasks, "train_demos": [t.num_train for t in manifest.tasks],
        "failed_demos_used": int(sum(d.split == "failed" for d in data.ds.demos))})
    print(f"trained {steps_run} steps in {t_total:.0f} s ({steps_run / seconds:.2f} steps/s, data wait "
          f"{wait_total / seconds:.1%}); checkpoint: {os.path.join(out, 'last.pt')}", file=sys.stderr)


def rollout_success(cfg: TrainConfig, out: str, ckpt: Checkpoint) -> float:
    """Mean success of the checkpoint's EMA weights (held in memory, shipped to the evaluation workers)
    over the training tasks, by rollouts in worker processes (this process's RNG is untouched). The report
    stays in RUN/rollouts/step_<n>/."""
    from mtil.pipeline.evaluation.report import headline
    from mtil.pipeline.evaluation.run import EvalConfig, evaluate

    rollouts = os.path.join(out, "rollouts", f"step_{ckpt.step}")
    res = evaluate(EvalConfig(checkpoint=f"{out} (step {ckpt.step}, in memory)", out=rollouts,
                              episodes_per_task=cfg.rollout_episodes, video_episodes=0), checkpoint=ckpt)
    shutil.rmtree(os.path.join(rollouts, "videos"), ignore_errors=True)
    return headline(res).get("success_rate") or 0.0


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
