"""``transformer``: a transformer encoder over the observation tokens (BAKU / ResNet-T style). Every token
(each camera's features per frame, the proprioception per frame, the task vector) is projected to
``hidden_dim`` and gets a learned position embedding; a learned readout (action) token attends over them,
and its output is what the action head reads. Attention lets the policy weigh, per task, which camera and
which frame matter, which one flat MLP over a concatenation has to learn for all tasks at once."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TransformerTrunk(nn.Module):
    def __init__(self, token_dims: list[int], opts) -> None:
        super().__init__()
        d = opts.hidden_dim
        self.out_dim = d
        self.proj = nn.ModuleList(nn.Linear(n, d) for n in token_dims)
        self.pos = nn.Parameter(torch.zeros(len(token_dims) + 1, d))
        self.readout = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.readout, std=0.02)
        layer = nn.TransformerEncoderLayer(d, opts.trunk_heads, dim_feedforward=4 * d, dropout=opts.trunk_dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, opts.trunk_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def forward(self, tokens: list[Tensor]) -> Tensor:
        """tokens: list of (B, d_i) -> (B, hidden_dim), the readout token's output."""
        x = torch.stack([p(t) for p, t in zip(self.proj, tokens)], dim=1)  # (B, N, d)
        x = torch.cat([self.readout.expand(len(x), -1, -1), x], dim=1) + self.pos
        return self.norm(self.encoder(x)[:, 0])
