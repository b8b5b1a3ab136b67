"""Action heads of the policy, by name (``--head``). Adding one: a module with an ``ActionHead`` subclass
(pipeline/policy/heads/base.py: ``loss`` on a batch, ``sample`` at rollout, its options read from the policy
options) and one line in ``HEADS``."""

from __future__ import annotations

from mtil.pipeline.policy.heads.base import ActionHead
from mtil.pipeline.policy.heads.flow import FlowHead
from mtil.pipeline.policy.heads.gmm import GMMHead
from mtil.pipeline.policy.heads.l1 import L1Head

HEADS: dict[str, type[ActionHead]] = {
    "l1": L1Head,
    "gmm": GMMHead,
    "flow": FlowHead,
}

__all__ = ["HEADS", "ActionHead"]
