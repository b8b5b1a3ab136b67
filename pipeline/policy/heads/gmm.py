"""``gmm``: a mixture of ``gmm_modes`` diagonal Gaussians over the whole chunk, trained by negative
log-likelihood; at rollout the mean of the most likely component (deterministic)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtil.pipeline.policy.heads.base import ActionHead


class GMMHead(ActionHead):
    def __init__(self, in_dim: int, horizon: int, action_dim: int, opts) -> None:
        super().__init__(in_dim, horizon, action_dim, opts)
        self.modes = opts.gmm_modes
        self.out = nn.Linear(in_dim, self.modes * (2 * horizon * action_dim + 1))

    def _params(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """logits (B, M), means (B, M, H*A), log stds (B, M, H*A)."""
        M, D = self.modes, self.horizon * self.action_dim
        out = self.out(h)
        logits, rest = out[:, :M], out[:, M:].reshape(-1, M, 2, D)
        return logits, rest[:, :, 0], rest[:, :, 1].clamp(-5.0, 2.0)

    def loss(self, h: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        # padded steps repeat the last action (the loader's edge padding), so they are kept as targets here
        logits, mu, log_std = self._params(h)
        x = target.reshape(len(target), 1, -1)
        log_prob = (-0.5 * ((x - mu) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return -torch.logsumexp(F.log_softmax(logits, -1) + log_prob, dim=-1) / x.shape[-1]

    def sample(self, h: Tensor) -> Tensor:
        logits, mu, _ = self._params(h)
        best = logits.argmax(-1)
        return mu[torch.arange(len(best)), best].view(-1, self.horizon, self.action_dim)
