"""Checkpoints: the one place that knows their layout. ``build_checkpoint`` makes the dict that training
saves, ``read_checkpoint`` turns a loaded dict into a ``Checkpoint`` with named fields, and nothing else
reads a checkpoint by string keys.

On disk a checkpoint is a plain dict of tensors and JSON-able values, written atomically and loaded with
``torch.load(weights_only=True)`` so it can never run code. A checkpoint alone is enough to evaluate: it
holds the policy config (with the task vocabulary), the weights (raw and EMA) including the normalization
buffers and the tasks' language embeddings, the statistics the normalizer was built from, and the data's
``env_args`` to rebuild the environment.

Layout (format ``mtil-checkpoint``, version 1; every checkpoint written so far has these keys)::

    step, train_config (dict), policy_config (dict), model, ema (state dicts), optimizer, scheduler,
    sampler (with epoch, batch), rng {torch}, stats, tasks, env_args, world_size, best_success
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from mtil.datasets.atomic import atomic_write
from mtil.datasets.errors import UserError

if TYPE_CHECKING:
    from mtil.pipeline.policy import MultiTaskPolicy, PolicyConfig

FORMAT = "mtil-checkpoint"
VERSION = 1
REQUIRED = ("step", "policy_config", "model", "stats", "tasks")  # what evaluation needs


@dataclass
class Checkpoint:
    """A checkpoint, read: what training resumes from and evaluation rebuilds the policy from."""

    step: int
    """gradient steps taken"""
    policy_config: PolicyConfig
    """architecture, conditioning and task vocabulary"""
    stats: dict
    """data statistics the normalizer was built from"""
    tasks: list[str]
    """instruction of each task id"""
    model: dict
    """raw weights (state dict)"""
    ema: dict | None = None
    """EMA weights (state dict), the ones evaluated by default"""
    env_args: dict | None = None
    """the data's environment description (to rebuild the simulator): the first file's"""
    task_env_args: dict | None = None
    """{instruction: env_args} when the tasks come from files of different environments (each task is
    evaluated in its own env); None when every task shares ``env_args``"""
    train_config: dict = field(default_factory=dict)
    """TrainConfig as a dict"""
    optimizer: dict | None = None
    scheduler: dict | None = None
    sampler: dict | None = None
    """sampler state, with the position in the epoch (``epoch``, ``batch``)"""
    rng: dict | None = None
    """``torch``: the CPU RNG state"""
    world_size: int = 1
    best_success: float = -1.0
    """best periodic-rollout success so far (-1: none yet)"""

    def weights(self, ema: bool = True) -> dict:
        """The EMA weights when asked for and present, else the raw ones."""
        return self.ema if ema and self.ema is not None else self.model

    def for_inference(self, ema: bool = True) -> dict:
        """A slim checkpoint dict with only what a policy needs (one set of weights; no optimizer): what
        evaluation ships to its worker processes."""
        import dataclasses

        return {"format": FORMAT, "version": VERSION, "step": self.step,
                "policy_config": dataclasses.asdict(self.policy_config),
                "model": {k: v.detach().clone() for k, v in self.weights(ema).items()},  # not the live tensors
                "stats": self.stats, "tasks": list(self.tasks), "env_args": self.env_args,
                "task_env_args": self.task_env_args}


def build_checkpoint(*, step: int, train_config: dict, policy_config: PolicyConfig, model: dict, ema: dict,
                     optimizer: dict, scheduler: dict, sampler: dict, rng: dict, stats: dict, tasks: list[str],
                     env_args: dict | None, world_size: int, best_success: float,
                     task_env_args: dict | None = None) -> dict:
    """The dict training saves (see the module doc for the layout)."""
    import dataclasses

    return {"format": FORMAT, "version": VERSION, "step": step, "train_config": train_config,
            "policy_config": dataclasses.asdict(policy_config), "model": model, "ema": ema,
            "optimizer": optimizer, "scheduler": scheduler, "sampler": sampler, "rng": rng, "stats": stats,
            "tasks": tasks, "env_args": env_args, "world_size": world_size, "best_success": best_success,
            "task_env_args": task_env_args}


def read_checkpoint(d: dict, source: str = "checkpoint") -> Checkpoint:
    """A loaded checkpoint dict -> ``Checkpoint``; a foreign or incomplete dict raises UserError."""
    from mtil.pipeline.policy import PolicyConfig

    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise UserError(f"{source}: not an mtil checkpoint (no '{FORMAT}' marker)")
    if d.get("version") != VERSION:
        raise UserError(f"{source}: checkpoint version {d.get('version')!r}, this mtil reads {VERSION}")
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise UserError(f"{source}: checkpoint of an older or unknown layout: no {', '.join(missing)}")
    try:
        pcfg = PolicyConfig.from_dict(d["policy_config"])
    except TypeError as e:
        raise UserError(f"{source}: checkpoint of an older or unknown layout: policy config ({e})") from None
    return Checkpoint(step=int(d["step"]), policy_config=pcfg, stats=d["stats"], tasks=list(d["tasks"]),
                      model=d["model"], ema=d.get("ema"), env_args=d.get("env_args"),
                      task_env_args=d.get("task_env_args"),
                      train_config=d.get("train_config") or {}, optimizer=d.get("optimizer"),
                      scheduler=d.get("scheduler"), sampler=d.get("sampler"), rng=d.get("rng"),
                      world_size=int(d.get("world_size", 1)), best_success=float(d.get("best_success", -1.0)))


def save_checkpoint(path: str, ckpt: dict) -> None:
    """torch.save to a temp file in the same directory, fsync, then rename over ``path``."""
    ckpt = {"format": FORMAT, "version": VERSION, **ckpt}
    atomic_write(path, lambda f: torch.save(ckpt, f), binary=True)


def load_checkpoint(path: str, map_location="cpu") -> Checkpoint:
    """Load and check a checkpoint; a missing, corrupt, unsafe or foreign file raises UserError."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: checkpoint file does not exist")
    try:
        d = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(f"{path}: refused: not a plain-data checkpoint (it would need to run code to load: "
                        f"{str(e).splitlines()[0][:200]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        raise UserError(f"{path}: not a readable checkpoint, corrupt or truncated? ({str(e)[:200]})") from None
    return read_checkpoint(d, path)


def load_policy(source: str | dict | Checkpoint, device: str = "cpu",
                ema: bool = True) -> tuple[MultiTaskPolicy, Checkpoint]:
    """Rebuild the policy from a checkpoint alone: a file, a checkpoint dict (e.g. ``for_inference()``,
    shipped to an evaluation worker) or a ``Checkpoint``. Returns (policy in eval mode, checkpoint)."""
    from mtil.pipeline.policy import MultiTaskPolicy

    if isinstance(source, str):
        ckpt, name = load_checkpoint(source, map_location=device), source
    else:
        ckpt = source if isinstance(source, Checkpoint) else read_checkpoint(source, "checkpoint (in memory)")
        name = f"checkpoint of step {ckpt.step}"
    weights = ckpt.weights(ema)
    try:
        policy = MultiTaskPolicy(ckpt.policy_config, ckpt.stats, weights["task_lang_emb"])
        policy.load_state_dict(weights)
    except (KeyError, RuntimeError, TypeError) as e:
        raise UserError(f"{name}: checkpoint does not match this mtil's policy ({str(e)[:300]})") from None
    return policy.to(device).eval(), ckpt
