"""``l1``: one linear layer regresses the whole action chunk, trained with the L1 loss (the default)."""

from __future__ import annotations

from torch import Tensor, nn

from mtil.pipeline.policy.heads.base import ActionHead, masked_mean


class L1Head(ActionHead):
    def __init__(self, in_dim: int, horizon: int, action_dim: int, opts) -> None:
        super().__init__(in_dim, horizon, action_dim, opts)
        self.out = nn.Linear(in_dim, horizon * action_dim)

    def sample(self, h: Tensor) -> Tensor:
        return self.out(h).view(-1, self.horizon, self.action_dim)

    def loss(self, h: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        return masked_mean((self.sample(h) - target).abs(), valid)
