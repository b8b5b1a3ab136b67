"""``onehot`` (baseline): a learned vector per task id; a task is named by its id or training instruction."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtil.datasets.errors import UserError
from mtil.encoders.conditioners.base import PolicyTasks, TaskConditioner, check_ids


class OneHotConditioner(TaskConditioner):
    """(B,) int64 task ids -> embedding ``table`` -> z (B, out_dim). Takes only the training instructions (no
    paraphrases or held-out tasks: it has no language)."""

    conditions = ("language",)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.table = nn.Embedding(cfg.num_tasks, cfg.out_dim)

    @classmethod
    def check_config(cls, cfg) -> None:
        if not isinstance(cfg.num_tasks, int) or cfg.num_tasks < 1:
            raise UserError(f"conditioning kind onehot needs num_tasks >= 1, got {cfg.num_tasks!r}")

    def forward(self, task_input: Tensor) -> Tensor:
        check_ids(task_input, self.cfg.num_tasks, self.kind)
        return self.table(task_input)

    def task_vector(self, batch: dict, tasks: PolicyTasks) -> tuple[Tensor, Tensor | None]:
        return self(batch["task"]), None

    def from_instruction(self, texts: list[str], tasks: PolicyTasks) -> Tensor:
        unknown = [t for t in texts if t not in tasks.names]
        if unknown:
            raise UserError(f"one-hot policy: {unknown[0]!r} is not a trained task instruction")
        return self(torch.tensor([tasks.names.index(t) for t in texts], device=tasks.lang_emb.device))
