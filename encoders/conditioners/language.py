"""``language``: the task in words. A precomputed language embedding (B, lang_dim) is projected into z."""

from __future__ import annotations

from torch import Tensor

from mtil.encoders.conditioners.base import LanguageSpace, PolicyTasks


class LanguageConditioner(LanguageSpace):
    """(B, lang_dim) float language embedding -> MLP ``proj`` -> z (B, out_dim)."""

    conditions = ("language",)

    def forward(self, task_input: Tensor) -> Tensor:
        return self.project(task_input)

    def task_vector(self, batch: dict, tasks: PolicyTasks) -> tuple[Tensor, Tensor | None]:
        return self.project(tasks.lang_emb[batch["task"]]), None
