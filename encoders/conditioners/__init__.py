"""Conditioning kinds, by name (``--conditioning``). Adding one: a module with a ``TaskConditioner`` subclass
(encoders/conditioners/base.py: its module producing z, how it reads a training batch and a task at rollout,
what data it needs, which evaluation conditions it takes) and one line in ``CONDITIONERS``."""

from __future__ import annotations

from mtil.encoders.conditioners.base import PolicyTasks, TaskConditioner
from mtil.encoders.conditioners.goal_image import GoalImageConditioner
from mtil.encoders.conditioners.language import LanguageConditioner
from mtil.encoders.conditioners.language_tokens import LanguageTokensConditioner
from mtil.encoders.conditioners.mixed import MixedConditioner
from mtil.encoders.conditioners.onehot import OneHotConditioner
from mtil.encoders.conditioners.video import VideoConditioner

CONDITIONERS: dict[str, type[TaskConditioner]] = {
    "language": LanguageConditioner,
    "language_tokens": LanguageTokensConditioner,
    "video": VideoConditioner,
    "onehot": OneHotConditioner,
    "goal_image": GoalImageConditioner,
    "mixed": MixedConditioner,
}

__all__ = ["CONDITIONERS", "PolicyTasks", "TaskConditioner"]
