"""``goal_image``: the task shown by a goal frame (training: a hindsight goal of the sample's own demo)."""

from __future__ import annotations

from torch import Tensor

from mtil.encoders.backbones import SmallCNN
from mtil.encoders.conditioners.base import PolicyTasks, TaskConditioner, goal_frames


class GoalImageConditioner(TaskConditioner):
    """(B, 3, H, W) uint8 goal image -> small CNN ``backbone`` (no FiLM) -> z (B, out_dim). Needs no
    instructions: unlabeled demos train it, and unsuccessful episodes are hindsight-goal data."""

    uses_goal_image = True
    needs_instructions = False
    conditions = ("goal_image",)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.backbone = SmallCNN(cond_dim=0, out_dim=cfg.out_dim)

    def forward(self, task_input: Tensor) -> Tensor:
        return self.backbone(task_input)  # checks (B, 3, H, W) uint8

    def task_vector(self, batch: dict, tasks: PolicyTasks) -> tuple[Tensor, Tensor | None]:
        return self(goal_frames(batch, tasks)), None

    def from_goal_image(self, images: Tensor) -> Tensor:
        return self(images)
