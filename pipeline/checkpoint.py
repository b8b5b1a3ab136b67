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
import re
import shutil
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from mtil.datasets.atomic import atomic_write
from mtil.datasets.errors import UserError

if TYPE_CHECKING:
    from mtil.pipeline.policy.model import MultiTaskPolicy, PolicyConfig

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
    from mtil.pipeline.policy.model import PolicyConfig

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
    """torch.save to a temp file in the same directory, fsync, then rename over ``path``. A failed write (a
    full disk: torch's writer raises RuntimeError) removes the temp file, leaves ``path`` as it was, and
    raises ``UserError`` saying so."""
    ckpt = {"format": FORMAT, "version": VERSION, **ckpt}
    try:
        atomic_write(path, lambda f: torch.save(ckpt, f), binary=True)
    except (RuntimeError, OSError) as e:
        reason = getattr(e, "strerror", None) or str(e).splitlines()[0][:200]
        raise UserError(f"{path}: could not write the checkpoint ({reason}); is the disk full? The checkpoint "
                        "files already there are intact") from None


def load_checkpoint(path: str, map_location="cpu") -> Checkpoint:
    """Load and check a checkpoint; a missing, corrupt, unsafe or foreign file raises UserError."""
    return read_checkpoint(load_checkpoint_dict(path, map_location), path)


def load_checkpoint_dict(path: str, map_location="cpu") -> dict:
    """The checkpoint file's plain dict as saved (for a command that writes a changed copy of it); a missing,
    corrupt or unsafe file raises UserError."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: checkpoint file does not exist")
    try:
        d = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(f"{path}: refused: not a plain-data checkpoint (it would need to run code to load: "
                        f"{str(e).splitlines()[0][:200]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        raise UserError(f"{path}: not a readable checkpoint, corrupt or truncated? ({str(e)[:200]})") from None
    return d


def load_policy(source: str | dict | Checkpoint, device: str = "cpu",
                ema: bool = True) -> tuple[MultiTaskPolicy, Checkpoint]:
    """Rebuild the policy from a checkpoint alone: a file, a checkpoint dict (e.g. ``for_inference()``,
    shipped to an evaluation worker) or a ``Checkpoint``. Returns (policy in eval mode, checkpoint)."""
    from mtil.pipeline.policy.model import MultiTaskPolicy

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


def _rollout_policy(source: str | dict, ema: bool) -> MultiTaskPolicy:
    return load_policy(source, ema=ema)[0]


def rollout_policy_loader(source: str | dict, ema: bool = True):
    """A picklable callable that rebuilds the policy of ``source`` (file or checkpoint dict) when called: what
    the simulator layer's workers get instead of importing checkpoints and policies themselves."""
    import functools

    return functools.partial(_rollout_policy, source, ema)


# ------------------------------------------------------------------------ a run directory's checkpoint files
def step_files(out: str) -> list[tuple[int, str]]:
    """The ``step_<n>.pt`` files in the run directory ``out``, newest step first."""
    found = [(int(m.group(1)), os.path.join(out, n)) for n in (os.listdir(out) if os.path.isdir(out) else [])
             if (m := re.fullmatch(r"step_(\d+)\.pt", n))]
    return sorted(found, reverse=True)


def newest_checkpoint(out: str) -> Checkpoint:
    """``out``/last.pt, unless a step_<n>.pt of a later step exists (a kill between writing the two) or last.pt
    is missing or unreadable: then the newest step file that loads (and last.pt is restored from it). Raises
    last.pt's error if none loads."""
    from mtil.datasets.atomic import atomic_path

    last = os.path.join(out, "last.pt")
    try:
        ckpt, error = load_checkpoint(last), None
    except UserError as e:
        ckpt, error = None, e
    for step, path in step_files(out):
        if ckpt is not None and step <= ckpt.step:
            break
        try:
            newer = load_checkpoint(path)
        except UserError as e:
            print(f"note: skipping {path}: {e}", file=sys.stderr)
            continue
        print(f"resuming from {os.path.basename(path)} (step {newer.step}): "
              + (f"last.pt is of step {ckpt.step}" if ckpt is not None else "last.pt is missing or unreadable")
              + "; last.pt restored from it", file=sys.stderr)
        with atomic_path(last) as tmp:  # last.pt points at the newest again, even if no step runs
            shutil.copyfile(path, tmp)
        return newer
    if ckpt is None:
        raise error
    return ckpt


def resume_from(out: str, resume: bool, now: dict, defaults: dict, free: set[str]) -> Checkpoint | None:
    """The checkpoint a run in ``out`` continues from: with ``resume`` the newest valid one, after checking
    that the run's config ``now`` equals the saved one (fields in ``free`` may differ; ``defaults`` stand in
    for fields newer than the run); None for a new run, which refuses an ``out`` that holds checkpoints."""
    last = os.path.join(out, "last.pt")
    if not resume:
        held = [p for p in [last] if os.path.exists(p)] + [p for _, p in step_files(out)]
        if held:
            raise UserError(f"--out {out} already holds a run ({os.path.basename(held[0])}); use --resume or "
                            "another --out")
        return None
    ckpt = newest_checkpoint(out)
    saved = ckpt.train_config
    changed = sorted(k for k in set(saved) | set(now) if k not in free and saved.get(k, defaults.get(k)) != now.get(k))
    if changed:
        k = changed[0]
        raise UserError(f"--resume: the config changed since {last} was written ({k}: {saved.get(k)!r} -> "
                        f"{now.get(k)!r}); resume with the same options or start a new --out")
    return ckpt


def save_run_checkpoint(out: str, ckpt: dict, step: int) -> None:
    """``step_<step>.pt`` then ``last.pt`` in the run directory ``out`` (in that order: after a kill between
    the two, ``newest_checkpoint`` finds the step file)."""
    for path in (os.path.join(out, f"step_{step}.pt"), os.path.join(out, "last.pt")):
        save_checkpoint(path, ckpt)
