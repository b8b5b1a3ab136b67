"""``mixed``: the task in words or by a goal image, one z space; trained with a random share ``goal_prob`` of
samples on their hindsight goal and the rest on their instruction."""

from __future__ import annotations

import torch
from torch import Tensor

from mtil.encoders.backbones import SmallCNN
from mtil.encoders.conditioners.base import LanguageSpace, PolicyTasks, goal_frames


class MixedConditioner(LanguageSpace):
    """A language embedding (B, lang_dim) float through ``proj``, or a goal image (B, 3, H, W) uint8 through the
    small CNN ``backbone`` -> z (B, out_dim)."""

    uses_goal_image = True
    conditions = ("language", "goal_image")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.backbone = SmallCNN(cond_dim=0, out_dim=cfg.out_dim)

    def forward(self, task_input: Tensor) -> Tensor:
        if isinstance(task_input, Tensor) and task_input.is_floating_point():
            return self.project(task_input)
        return self.backbone(task_input)  # checks (B, 3, H, W) uint8

    def task_vector(self, batch: dict, tasks: PolicyTasks) -> tuple[Tensor, Tensor | None]:
        # per sample: its hindsight goal (share goal_prob, and always for unsuccessful episodes, which do not
        # demonstrate their instruction) or its instruction; eval mode uses the instruction
        z_lang = self.project(tasks.lang_emb[batch["task"]])
        z_goal = self.backbone(goal_frames(batch, tasks))
        failed = batch.get("failed", torch.zeros_like(batch["task"], dtype=torch.bool))
        use_goal = failed.clone()
        if self.training:
            use_goal |= torch.rand(len(use_goal), device=use_goal.device) < self.cfg.goal_prob
        return torch.where(use_goal[:, None], z_goal, z_lang), None

    def from_goal_image(self, images: Tensor) -> Tensor:
        return self.backbone(images)
