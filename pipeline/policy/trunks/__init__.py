"""Trunks of the policy, by name (``--trunk``): what combines the observation tokens (each camera's features
per frame, proprioception per frame, the task vector) into one vector for the action head. Adding one: a
module with an ``nn.Module`` taking ``(token_dims, opts)``, with ``out_dim`` and ``forward(tokens) -> (B,
out_dim)``, and one line in ``TRUNKS``."""

from __future__ import annotations

from mtil.pipeline.policy.trunks.mlp import MLPTrunk
from mtil.pipeline.policy.trunks.transformer import TransformerTrunk

TRUNKS = {
    "mlp": MLPTrunk,
    "transformer": TransformerTrunk,
}

__all__ = ["TRUNKS"]
