"""Checkpoints: plain dicts of tensors and JSON-able values, written atomically, loaded with
``torch.load(weights_only=True)`` so a checkpoint can never run code.

A checkpoint alone is enough to evaluate: it holds the policy config (with the task vocabulary), the
weights (raw and EMA) including the normalization buffers and the tasks' language embeddings, the
statistics the normalizer was built from, and the data's ``env_args`` to rebuild the environment.
"""

from __future__ import annotations

import os
import pickle

import torch

from mtil.datasets.atomic import atomic_write
from mtil.datasets.errors import UserError

FORMAT = "mtil-checkpoint"
VERSION = 1


def save_checkpoint(path: str, ckpt: dict) -> None:
    """torch.save to a temp file in the same directory, fsync, then rename over ``path``."""
    ckpt = {"format": FORMAT, "version": VERSION, **ckpt}
    atomic_write(path, lambda f: torch.save(ckpt, f), binary=True)


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Load and check a checkpoint; a missing, corrupt, unsafe or foreign file raises UserError."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: checkpoint file does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(f"{path}: refused: not a plain-data checkpoint (it would need to run code to load: "
                        f"{str(e).splitlines()[0][:200]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        raise UserError(f"{path}: not a readable checkpoint, corrupt or truncated? ({str(e)[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not an mtil checkpoint (no '{FORMAT}' marker)")
    if ckpt.get("version") != VERSION:
        raise UserError(f"{path}: checkpoint version {ckpt.get('version')!r}, this mtil reads {VERSION}")
    return ckpt


def load_policy(path: str, device: str = "cpu", ema: bool = True):
    """Rebuild the policy from a checkpoint alone. Returns (policy in eval mode, checkpoint dict)."""
    from mtil.pipeline.policy import MultiTaskPolicy, policy_config_from_dict

    ckpt = load_checkpoint(path, map_location=device)
    try:
        cfg = policy_config_from_dict(ckpt["policy_config"])
        policy = MultiTaskPolicy(cfg, ckpt["stats"], ckpt["model"]["task_lang_emb"])
        policy.load_state_dict(ckpt["ema" if ema and "ema" in ckpt else "model"])
    except (KeyError, RuntimeError, TypeError) as e:
        raise UserError(f"{path}: checkpoint does not match this mtil's policy ({str(e)[:300]})") from None
    return policy.to(device).eval(), ckpt
