"""One task-conditioning interface, four interchangeable kinds, one output size.

``TaskConditioner(cfg)`` maps what identifies a task to the vector z (B, out_dim) that the policy's
FiLM layers consume:

=============  ==========================================  ====================================
kind           input                                       module
=============  ==========================================  ====================================
language       precomputed language embeddings (B, 384)    MLP projection
video          demo clip (B, T, 3, H, W) uint8             VideoEncoder (language space) + MLP
onehot         task ids (B,) int64 (baseline)              learned embedding table
goal_image     goal frame (B, 3, H, W) uint8               small CNN (no FiLM)
mixed          either of language / goal_image             both modules above, one z space
=============  ==========================================  ====================================

``mixed`` is trained with a random share ``goal_prob`` of samples conditioned on their hindsight goal
image and the rest on their instruction (policy.task_vector), so one policy takes either at evaluation.

The language and video kinds share the projection input space (the language embedding space), so a
conditioner trained with videos also accepts a language embedding through ``project`` and vice versa:
that is how a task is given "in words or by showing a demonstration".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mtil.datasets.errors import UserError
from mtil.encoders.backbones import SmallCNN
from mtil.encoders.video import VideoEncoder


@dataclass(frozen=True)
class ConditioningKind:
    """What one conditioning kind feeds the policy: the one place that says which kinds use what."""

    name: str
    uses_language: bool
    """a language embedding is projected into z (instructions are embedded by the language encoder)"""
    uses_goal_image: bool
    """goal images go through a small CNN (training draws hindsight goals)"""
    uses_video: bool
    """demo clips go through the video encoder (training draws a clip per task)"""

    @property
    def takes_instruction(self) -> bool:
        """An instruction (text) can name the task at evaluation: language kinds, and onehot by lookup."""
        return self.uses_language or self.name == "onehot"

    @property
    def needs_instructions(self) -> bool:
        """The data must say each demo's task in words; goal-image-only training does without."""
        return self.uses_language or not self.uses_goal_image

    @property
    def default_condition(self) -> str:
        """How the task is given at evaluation unless told otherwise: as trained, language for mixed."""
        return "language" if self.uses_language and self.uses_goal_image else self.name


_KIND_LIST = (
    ConditioningKind("language", uses_language=True, uses_goal_image=False, uses_video=False),
    ConditioningKind("video", uses_language=True, uses_goal_image=False, uses_video=True),
    ConditioningKind("onehot", uses_language=False, uses_goal_image=False, uses_video=False),
    ConditioningKind("goal_image", uses_language=False, uses_goal_image=True, uses_video=False),
    ConditioningKind("mixed", uses_language=True, uses_goal_image=True, uses_video=False),
)
KINDS = tuple(k.name for k in _KIND_LIST)


def conditioning_kind(name: str, what: str = "conditioning kind") -> ConditioningKind:
    """The kind called ``name``; a UserError naming ``what`` (e.g. ``--conditioning``) if there is none."""
    for k in _KIND_LIST:
        if k.name == name:
            return k
    raise UserError(f"{what} {name!r} is unknown: choose one of {', '.join(KINDS)}")


@dataclass
class ConditioningConfig:
    """How the task is given to the policy. Saved (as a dict) inside every checkpoint."""

    kind: str = "language"
    """task conditioning: language | video | onehot (baseline) | goal_image | mixed (language or goal image)"""
    out_dim: int = 128
    """size of the task vector z fed to the policy's FiLM layers (same for every kind)"""
    lang_dim: int = 384
    """language embedding size (the language encoder's dim; 384 for MiniLM); video embeds to it too"""
    num_tasks: int = 0
    """number of tasks (needed by onehot)"""
    video_frames: int = 8
    """largest demo-clip length T the video encoder accepts"""
    video_frame_dim: int = 128
    """per-frame feature size inside the video encoder (divisible by 4, the attention heads)"""
    video_layers: int = 1
    """temporal transformer layers of the video encoder (0 = mean pooling)"""
    goal_prob: float = 0.5
    """mixed: share of training samples conditioned on the goal image instead of the instruction"""

    def __post_init__(self) -> None:
        conditioning_kind(self.kind)  # raises on an unknown kind
        for name in ("out_dim", "lang_dim", "video_frames", "video_frame_dim"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UserError(f"conditioning {name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.video_layers, int) or self.video_layers < 0:
            raise UserError(f"conditioning video_layers must be an integer >= 0, got {self.video_layers!r}")
        if self.video_frame_dim % 4:
            raise UserError(f"conditioning video_frame_dim must be divisible by 4, got {self.video_frame_dim}")
        if not 0.0 <= self.goal_prob <= 1.0:
            raise UserError(f"conditioning goal_prob must be in [0, 1], got {self.goal_prob!r}")
        if self.kind == "onehot" and (not isinstance(self.num_tasks, int) or self.num_tasks < 1):
            raise UserError(f"conditioning kind onehot needs num_tasks >= 1, got {self.num_tasks!r}")

    @property
    def spec(self) -> ConditioningKind:
        """What this kind uses (language, goal images, video)."""
        return conditioning_kind(self.kind)

    @property
    def uses_language(self) -> bool:
        return self.spec.uses_language

    @property
    def uses_goal_image(self) -> bool:
        return self.spec.uses_goal_image

    @property
    def uses_video(self) -> bool:
        return self.spec.uses_video

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for checkpoints); ``ConditioningConfig(**d)`` rebuilds it."""
        return dataclasses.asdict(self)


def _mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    """(B, in_dim) -> (B, out_dim): Linear -> GELU -> Linear."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


class TaskConditioner(nn.Module):
    """Task input -> task vector z (B, out_dim); the input depends on ``cfg.kind`` (see module doc).

    Methods:
        forward(task_input) -> (B, out_dim).
        embed_video(clip (B, T, 3, H, W) uint8) -> (B, lang_dim) unit norm (video kind only): the
            embedding that ``cosine_alignment_loss`` pulls towards the task's language embedding.
        project(emb (B, lang_dim)) -> (B, out_dim) (language and video kinds): z from a language or
            video embedding.
    """

    def __init__(self, cfg: ConditioningConfig):
        super().__init__()
        self.cfg = cfg
        self.kind = cfg.kind
        self.out_dim = cfg.out_dim
        if cfg.uses_language:
            self.proj = _mlp(cfg.lang_dim, cfg.out_dim)
        if cfg.uses_goal_image:
            self.backbone = SmallCNN(cond_dim=0, out_dim=cfg.out_dim)
        if cfg.uses_video:
            self.video = VideoEncoder(
                out_dim=cfg.lang_dim,
                frame_dim=cfg.video_frame_dim,
                max_frames=cfg.video_frames,
                num_layers=cfg.video_layers,
            )
        if cfg.kind == "onehot":
            self.table = nn.Embedding(cfg.num_tasks, cfg.out_dim)

    def forward(self, task_input: Tensor) -> Tensor:
        """language (B, lang_dim) float | video (B, T, 3, H, W) uint8 | onehot (B,) int64 |
        goal_image (B, 3, H, W) uint8 | mixed: either a language embedding or a goal image
        ->  (B, out_dim) float."""
        if self.cfg.uses_video:
            return self.proj(self.video(task_input))
        if self.kind == "onehot":
            ids = task_input
            if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.dtype != torch.int64:
                got = f"{ids.dtype} {tuple(ids.shape)}" if isinstance(ids, Tensor) else type(ids).__name__
                raise UserError(f"onehot conditioning: expected task ids (B,) int64, got {got}")
            # checked on the CPU only: on a GPU the check would make every training step wait for the device
            # (an id out of range fails there as a device-side index error; instructions are checked earlier)
            on_cpu = ids.device.type == "cpu"
            if on_cpu and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.cfg.num_tasks):
                raise UserError(
                    f"onehot conditioning: task ids must be in [0, {self.cfg.num_tasks}), got "
                    f"{int(ids.min())}..{int(ids.max())}"
                )
            return self.table(ids)
        is_embedding = isinstance(task_input, Tensor) and task_input.is_floating_point()
        if self.cfg.uses_language and (not self.cfg.uses_goal_image or is_embedding):
            return self.project(task_input)  # language, or mixed given a language embedding
        return self.backbone(task_input)  # goal_image / mixed: the backbone checks (B, 3, H, W) uint8

    def embed_video(self, clip: Tensor) -> Tensor:
        """(B, T, 3, H, W) uint8 -> (B, lang_dim) unit-norm video embedding (video kind only)."""
        if not self.cfg.uses_video:
            raise UserError(f"embed_video needs a video conditioner, this one is {self.kind!r}")
        return self.video(clip)

    def project(self, emb: Tensor) -> Tensor:
        """(B, lang_dim) language or video embedding -> (B, out_dim) (language, video and mixed kinds)."""
        if not self.cfg.uses_language:
            raise UserError(f"project needs a language, video or mixed conditioner, this one is {self.kind!r}")
        if (
            not isinstance(emb, Tensor)
            or not emb.is_floating_point()
            or emb.dim() != 2
            or emb.shape[1] != self.cfg.lang_dim
        ):
            got = f"{emb.dtype} {tuple(emb.shape)}" if isinstance(emb, Tensor) else type(emb).__name__
            raise UserError(f"{self.kind} conditioning: expected embeddings (B, {self.cfg.lang_dim}) float, got {got}")
        return self.proj(emb)


def make_conditioner(cfg: ConditioningConfig | dict[str, Any]) -> TaskConditioner:
    """Explicit factory: a ConditioningConfig (or its dict, e.g. from a checkpoint) -> TaskConditioner."""
    if isinstance(cfg, dict):
        unknown = sorted(set(cfg) - {f.name for f in dataclasses.fields(ConditioningConfig)})
        if unknown:
            raise UserError(f"conditioning config has unknown field(s): {', '.join(unknown)}")
        cfg = ConditioningConfig(**cfg)
    return TaskConditioner(cfg)


__all__ = [
    "KINDS",
    "ConditioningConfig",
    "ConditioningKind",
    "TaskConditioner",
    "conditioning_kind",
    "make_conditioner",
]
