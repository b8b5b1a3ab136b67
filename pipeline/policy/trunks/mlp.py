"""``mlp``: the concatenated tokens through two GELU layers of ``hidden_dim`` (the default; cheap on a CPU)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MLPTrunk(nn.Sequential):
    """A ``Sequential`` itself, so checkpoints written before trunks were parts (``trunk.0.weight``) load."""

    def __init__(self, token_dims: list[int], opts) -> None:
        in_dim = sum(token_dims)
        super().__init__(nn.Linear(in_dim, opts.hidden_dim), nn.GELU(), nn.Linear(opts.hidden_dim, opts.hidden_dim),
                         nn.GELU())
        self.out_dim = opts.hidden_dim

    def forward(self, tokens: list[Tensor]) -> Tensor:  # type: ignore[override]
        return super().forward(torch.cat(tokens, dim=1))
