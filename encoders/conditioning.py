"""Task conditioning: the options (``ConditioningConfig``, their one owner) and the kind of each name.

Each kind is one ``TaskConditioner`` subclass in ``mtil.encoders.conditioners`` (one module per kind, one
line in ``CONDITIONERS``): an ``nn.Module`` mapping what identifies a task to the vector z (B, out_dim)
that the policy's FiLM layers consume, which also says what data it needs and how evaluation may give a task:

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
image and the rest on their instruction, so one policy takes either at evaluation.

The language and video kinds share the projection input space (the language embedding space), so a
conditioner trained with videos also accepts a language embedding through ``project`` and vice versa:
that is how a task is given "in words or by showing a demonstration".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mtil.datasets.errors import UserError, check_range
from mtil.encoders.conditioners import CONDITIONERS, TaskConditioner


def conditioning_kind(name: str, what: str = "conditioning kind") -> type[TaskConditioner]:
    """The kind (its ``TaskConditioner`` class) called ``name``; a UserError naming ``what`` (e.g.
    ``--conditioning``) if there is none."""
    if name not in CONDITIONERS:
        raise UserError(f"{what} {name!r} is unknown: choose one of {', '.join(CONDITIONERS)}")
    return CONDITIONERS[name]


# Ranges of the numeric options (low, high; inclusive, None: unbounded): `mtil train` checks its --cond-dim and
# --goal-prob against these too (pipeline/training/config.py), so a bound is written once.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "out_dim": (1, None), "lang_dim": (1, None), "video_frames": (1, None), "video_frame_dim": (1, None),
    "video_layers": (0, None), "goal_prob": (0.0, 1.0),
}


@dataclass
class ConditioningConfig:
    """How the task is given to the policy. Saved (as a dict) inside every checkpoint.

    The one owner of the conditioning options (their meaning, defaults and ranges): `mtil train` exposes two
    of them under its own names, ``--cond-dim`` (``out_dim``) and ``--goal-prob``, and builds this config
    with ``TrainConfig.conditioning_config``."""

    kind: str = "language"
    """task conditioning, a name in ``CONDITIONERS``: language | language_tokens | video | onehot (baseline) |
    goal_image | mixed (language or goal image)"""
    out_dim: int = 64
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
    video_camera: str = ""
    """image key demo clips come from ("": the policy's first camera); `mtil fit-video --camera` sets it"""
    goal_prob: float = 0.5
    """mixed: share of training samples conditioned on the goal image instead of the instruction"""

    def __post_init__(self) -> None:
        kind = conditioning_kind(self.kind)  # raises on an unknown kind
        for name, (lo, hi) in RANGES.items():
            check_range(f"conditioning {name}", getattr(self, name), lo, hi, integer=isinstance(lo, int))
        if self.video_frame_dim % 4:
            raise UserError(f"conditioning video_frame_dim must be divisible by 4, got {self.video_frame_dim}")
        kind.check_config(self)

    @property
    def spec(self) -> type[TaskConditioner]:
        """The kind: what it uses (language, goal images, video) and which evaluation conditions it takes."""
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


def make_conditioner(cfg: ConditioningConfig | dict[str, Any]) -> TaskConditioner:
    """Explicit factory: a ConditioningConfig (or its dict, e.g. from a checkpoint) -> TaskConditioner."""
    if isinstance(cfg, dict):
        unknown = sorted(set(cfg) - {f.name for f in dataclasses.fields(ConditioningConfig)})
        if unknown:
            raise UserError(f"conditioning config has unknown field(s): {', '.join(unknown)}")
        cfg = ConditioningConfig(**cfg)
    return cfg.spec(cfg)


__all__ = [
    "CONDITIONERS",
    "RANGES",
    "ConditioningConfig",
    "TaskConditioner",
    "conditioning_kind",
    "make_conditioner",
]
