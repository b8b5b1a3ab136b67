"""``TaskConditioner``: the one interface every conditioning kind implements (one subclass per kind).

A kind is an ``nn.Module`` that maps what identifies a task to the task vector z (B, out_dim) the policy's
FiLM layers consume, and says, as class attributes, what it needs from the data and what evaluation can
give it. The policy, training and evaluation ask it; none of them compares kind names.

What a kind supplies (see each attribute's and method's doc):

- the module: ``__init__(cfg)`` builds its layers (their attribute names are the state-dict keys under
  ``cond.``: ``proj``, ``backbone``, ``video``, ``table`` for the stock kinds), ``forward(task_input)``;
- training: ``task_vector(batch, tasks)`` reads its input from a training batch;
- rollout: ``from_instruction``, ``from_embedding``, ``from_goal_image``, ``from_video`` (the policy parses
  what it was given, the kind accepts it or raises a ``UserError`` naming itself);
- data: ``uses_language``, ``uses_goal_image``, ``uses_video``, ``needs_instructions``;
- evaluation: ``conditions`` (how a task may be given, the first by default), ``heldout_instructions``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtil.datasets.errors import UserError


@dataclass
class PolicyTasks:
    """What a kind may read of the policy to turn a task into z."""

    names: list[str]
    """task vocabulary: the training instruction of each task id"""
    lang_emb: Tensor
    """(K, D) language embedding of each task's instruction (D = 0 when the policy uses no language)"""
    image_key: str
    """the camera that goal images and demo clips come from (the policy's first)"""
    embed_texts: Callable[[list[str]], Tensor]
    """instructions -> (B, D) language embeddings (trained ones from ``lang_emb``, others by the encoder)"""


def mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    """(B, in_dim) -> (B, out_dim): Linear -> GELU -> Linear."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


def goal_frames(batch: dict, tasks: PolicyTasks) -> Tensor:
    """A training batch's hindsight goal frames of the first camera: (B, H, W, 3) -> (B, 3, H, W) uint8."""
    return batch["goal"][tasks.image_key].permute(0, 3, 1, 2)


class TaskConditioner(nn.Module):
    """One conditioning kind: task input -> task vector z (B, out_dim). Subclasses set the class attributes
    and override ``forward``, ``task_vector`` and the ``from_*`` inputs they accept.

    ``cfg`` is the ``mtil.encoders.conditioning.ConditioningConfig`` (out_dim, lang_dim, num_tasks,
    video_*, goal_prob); this module does not import it, since that config validates kind names against
    the table of these classes.
    """

    uses_language: ClassVar[bool] = False
    """a language embedding is projected into z: training embeds the instructions with the language encoder"""
    uses_goal_image: ClassVar[bool] = False
    """goal images give z: training draws hindsight goals (and can learn from unsuccessful episodes)"""
    uses_video: ClassVar[bool] = False
    """demo clips give z: training draws a clip per task (and has no validation loss)"""
    needs_instructions: ClassVar[bool] = True
    """the data must say each demo's task in words (goal-image-only training does without)"""
    conditions: ClassVar[tuple[str, ...]] = ()
    """how evaluation may give a task (``--condition``: language | video | goal_image); the first is the default"""
    language_tokens: ClassVar[int] = 0
    """what the kind's language embedding is: 0 = one pooled sentence vector, N = the first N token states,
    flattened (``LanguageEncoder(tokens=N)``)"""
    heldout_instructions: ClassVar[bool] = False
    """evaluation also gives instructions never trained on (paraphrases, held-out tasks): the kind embeds words"""
    takes_instruction: ClassVar[bool] = False
    """an instruction (text) can name the task at evaluation (derived: "language" in ``conditions``)"""
    default_condition: ClassVar[str] = ""
    """how evaluation gives the task unless told otherwise (derived: the first of ``conditions``)"""

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        self.kind = cfg.kind  # its name: the key in CONDITIONERS
        self.out_dim = cfg.out_dim

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Kind-specific checks of a ConditioningConfig (``UserError`` naming the field)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.takes_instruction = "language" in cls.conditions
        cls.default_condition = cls.conditions[0] if cls.conditions else ""

    @classmethod
    def untrained(cls, condition: str, options: Any, train_config: dict) -> str:
        """Why a policy of this kind, trained with the policy ``options`` and ``train_config`` (the
        checkpoint's), never learned to take its task as ``condition``, although the kind accepts it; ""
        when it did. Evaluation refuses such a condition rather than report what an untrained path does."""
        return ""

    @classmethod
    def language_encoder(cls):
        """The ``LanguageEncoder`` whose embeddings this kind reads (pooled or token states)."""
        from mtil.encoders.language import LanguageEncoder

        return LanguageEncoder(tokens=cls.language_tokens)

    # ------------------------------------------------------------------ training
    def task_vector(self, batch: dict, tasks: PolicyTasks) -> tuple[Tensor, Tensor | None]:
        """z (B, out_dim) for a training batch, and a video embedding (B, D) for the alignment loss or None."""
        raise NotImplementedError

    # ------------------------------------------------------------------ rollout
    def _cannot(self, what: str) -> UserError:
        return UserError(f"this policy is {self.kind}-conditioned; it cannot take {what}")

    def from_instruction(self, texts: list[str], tasks: PolicyTasks) -> Tensor:
        """B instructions -> z (B, out_dim)."""
        raise self._cannot("an instruction")

    def from_embedding(self, emb: Tensor) -> Tensor:
        """(B, lang_dim) language (or video) embeddings -> z (B, out_dim)."""
        return self.project(emb)

    def from_goal_image(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) uint8 goal images -> z (B, out_dim)."""
        raise self._cannot("a goal image")

    def from_video(self, clip: Tensor) -> Tensor:
        """(B, T, 3, H, W) uint8 demo clips -> z (B, out_dim)."""
        raise self._cannot("a demo video")

    # ------------------------------------------------------------------ language space
    def embed_video(self, clip: Tensor) -> Tensor:
        """(B, T, 3, H, W) uint8 -> (B, lang_dim) unit-norm video embedding (video kind only)."""
        raise UserError(f"embed_video needs a video conditioner, this one is {self.kind!r}")

    def project(self, emb: Tensor) -> Tensor:
        """(B, lang_dim) language or video embedding -> (B, out_dim) (kinds that use language)."""
        raise UserError(f"project needs a language, video or mixed conditioner, this one is {self.kind!r}")


class LanguageSpace(TaskConditioner):
    """Shared by the kinds that project a language embedding (B, lang_dim) into z with ``proj``: language,
    video and mixed. A task in words is embedded and projected."""

    uses_language = True
    heldout_instructions = True

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.proj = mlp(cfg.lang_dim, cfg.out_dim)

    def check_embedding(self, emb: Any, what: str = "embeddings") -> None:
        """``emb`` must be (B, lang_dim) float, else a UserError naming the kind and ``what`` it expected."""
        if (
            not isinstance(emb, Tensor)
            or not emb.is_floating_point()
            or emb.dim() != 2
            or emb.shape[1] != self.cfg.lang_dim
        ):
            got = f"{emb.dtype} {tuple(emb.shape)}" if isinstance(emb, Tensor) else type(emb).__name__
            raise UserError(f"{self.kind} conditioning: expected {what} (B, {self.cfg.lang_dim}) float, got {got}")

    def project(self, emb: Tensor) -> Tensor:
        self.check_embedding(emb)
        return self.proj(emb)

    def from_instruction(self, texts: list[str], tasks: PolicyTasks) -> Tensor:
        return self.project(tasks.embed_texts(texts).to(tasks.lang_emb.device))


def check_ids(ids: Any, num_tasks: int, kind: str) -> None:
    """Task ids must be (B,) int64 in [0, num_tasks); the range is checked on the CPU only: on a GPU the check
    would make every training step wait for the device (an id out of range fails there as a device-side index
    error; instructions are checked earlier)."""
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.dtype != torch.int64:
        got = f"{ids.dtype} {tuple(ids.shape)}" if isinstance(ids, Tensor) else type(ids).__name__
        raise UserError(f"{kind} conditioning: expected task ids (B,) int64, got {got}")
    if ids.device.type == "cpu" and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_tasks):
        raise UserError(f"{kind} conditioning: task ids must be in [0, {num_tasks}), got "
                        f"{int(ids.min())}..{int(ids.max())}")
