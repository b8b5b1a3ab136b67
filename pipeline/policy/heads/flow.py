"""``flow``: flow matching (rectified flow) over the normalized action chunk, conditioned on the trunk's
output. Training regresses the velocity ``x1 - x0`` at a random point ``x_t = (1 - t) x0 + t x1`` between
Gaussian noise ``x0`` and the demonstrated chunk ``x1``; a rollout integrates the learned velocity from noise
in ``flow_steps`` Euler steps (few steps keep CPU rollouts fast). Multimodal like the GMM, without choosing
a number of modes; noise comes from the head's own generator, reseeded at every episode."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mtil.pipeline.policy.heads.base import ActionHead, masked_mean


def time_features(t: Tensor, dim: int = 32) -> Tensor:
    """(B,) in [0, 1] -> (B, dim) sinusoidal features."""
    freqs = torch.exp(torch.linspace(0, math.log(1000.0), dim // 2, device=t.device))
    ang = t[:, None] * freqs[None] * math.pi
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


class FlowHead(ActionHead):
    def __init__(self, in_dim: int, horizon: int, action_dim: int, opts) -> None:
        super().__init__(in_dim, horizon, action_dim, opts)
        self.steps = opts.flow_steps
        D, W = horizon * action_dim, max(256, in_dim)
        self.velocity = nn.Sequential(nn.Linear(D + 32 + in_dim, W), nn.GELU(), nn.Linear(W, W), nn.GELU(),
                                      nn.Linear(W, D))

    def _v(self, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
        return self.velocity(torch.cat([x, time_features(t), h], dim=-1))

    def loss(self, h: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        B = len(h)
        x1 = target.reshape(B, -1)
        x0 = torch.randn_like(x1)  # training noise: the global RNG (seeded and checkpointed by training)
        t = torch.rand(B, device=h.device)
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        err = (self._v(xt, t, h) - (x1 - x0)) ** 2
        return masked_mean(err.view(B, self.horizon, self.action_dim), valid)

    def sample(self, h: Tensor) -> Tensor:
        B, D = len(h), self.horizon * self.action_dim
        x = torch.randn(B, D, device=h.device, generator=self._generator(h.device))
        dt = 1.0 / self.steps
        for i in range(self.steps):
            t = torch.full((B,), i * dt, device=h.device)
            x = x + dt * self._v(x, t, h)
        return x.view(B, self.horizon, self.action_dim)
