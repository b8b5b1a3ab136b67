"""The action-head interface: what every head of the policy (pipeline/policy/heads/__init__.py lists them) provides.

A head turns the trunk's output ``h`` (B, in_dim) into a chunk of H normalized actions of size A:
- ``loss(h, target, valid) -> (B,)``: the per-sample training loss against ``target`` (B, H, A) normalized
  actions, where ``valid`` (B, H) marks real (not padded) steps;
- ``sample(h) -> (B, H, A)``: the chunk to execute at rollout (normalized). Stochastic heads draw from
  ``self.generator`` (reseeded by ``reset()``), so a seeded episode is reproducible.
Its own options are read from the policy options object given to ``__init__`` (``opts.gmm_modes``, ...).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ActionHead(nn.Module):
    """Base class of action heads. Subclasses set up their layers in ``__init__`` and implement ``loss`` and
    ``sample``."""

    def __init__(self, in_dim: int, horizon: int, action_dim: int, opts) -> None:
        super().__init__()
        self.in_dim, self.horizon, self.action_dim = in_dim, horizon, action_dim
        self.generator: torch.Generator | None = None

    def loss(self, h: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, h: Tensor) -> Tensor:
        raise NotImplementedError

    def reset(self, seed: int = 0) -> None:
        """A new episode: stochastic heads restart their noise stream from ``seed``."""
        if self.generator is not None:
            self.generator.manual_seed(seed)

    def _generator(self, device: torch.device) -> torch.Generator:
        """The head's own RNG on ``device`` (created on first use, seeded 0 until ``reset``)."""
        if self.generator is None or self.generator.device != device:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(0)
        return self.generator


def masked_mean(err: Tensor, valid: Tensor) -> Tensor:
    """Per-sample mean of ``err`` (B, H, A) over valid steps (``valid`` (B, H)) -> (B,)."""
    w = valid.float().unsqueeze(-1)
    return (err * w).sum(dim=(1, 2)) / (w.sum(dim=(1, 2)) * err.shape[-1]).clamp(min=1)
