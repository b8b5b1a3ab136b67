"""Normalization as an nn.Module: its statistics are buffers, so they live in every checkpoint and a
checkpoint alone is enough to run the policy (no dataset, no stats.json at evaluation)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Normalizer(nn.Module):
    """Actions: min/max -> [-1, 1] per dimension. Low-dim observations: mean/std per dimension.

    Built from ``stats.json``-style dicts; dimensions that never vary get scale 1 instead of dividing by 0.
    """

    def __init__(self, stats: dict, lowdim_keys: list[str], action_dim: int):
        super().__init__()
        self.lowdim_keys = list(lowdim_keys)
        a = stats["actions"]
        lo, hi = torch.tensor(a["min"], dtype=torch.float32), torch.tensor(a["max"], dtype=torch.float32)
        if lo.numel() != action_dim:
            raise ValueError(f"action stats have {lo.numel()} dims, the data has {action_dim}")
        half = (hi - lo) / 2
        self.register_buffer("act_center", (hi + lo) / 2)
        self.register_buffer("act_scale", torch.where(half > 1e-6, half, torch.ones_like(half)))
        for i, k in enumerate(self.lowdim_keys):
            s = stats[f"obs/{k}"]
            std = torch.tensor(s["std"], dtype=torch.float32)
            self.register_buffer(f"obs{i}_mean", torch.tensor(s["mean"], dtype=torch.float32))
            self.register_buffer(f"obs{i}_std", torch.where(std > 1e-6, std, torch.ones_like(std)))

    def normalize_actions(self, a: Tensor) -> Tensor:
        """(..., A) raw -> (..., A) in about [-1, 1]."""
        return (a - self.act_center) / self.act_scale

    def unnormalize_actions(self, a: Tensor) -> Tensor:
        return a * self.act_scale + self.act_center

    def normalize_lowdim(self, obs: dict[str, Tensor]) -> Tensor:
        """{key: (B, To, D_k)} -> (B, To, sum D_k) normalized and concatenated (empty if no keys)."""
        parts = []
        for i, k in enumerate(self.lowdim_keys):
            x = obs[k].float()
            x = x.reshape(*x.shape[:2], -1)
            parts.append((x - getattr(self, f"obs{i}_mean")) / getattr(self, f"obs{i}_std"))
        if not parts:
            ref = next(iter(obs.values()))
            return ref.new_zeros((*ref.shape[:2], 0), dtype=torch.float32)
        return torch.cat(parts, dim=-1)
