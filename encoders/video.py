"""Demo-video task encoder (BC-Z): a clip of a demonstration -> an embedding in the language space.

A task can be specified by showing a demonstration instead of words. The encoder embeds every frame with
a small CNN, mixes the frames with a tiny temporal transformer, mean-pools over time and projects to the
language-embedding size, L2-normalized. Training (done by the training loop) uses two signals:
``cosine_alignment_loss`` to the task's (frozen) language embedding, plus the BC loss back-propagated
through the conditioning. The clip always comes from a *different* demo of the same task than the one
being imitated (``pick_other_demo``), so the policy cannot copy actions out of its own conditioning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtil.datasets.errors import UserError
from mtil.encoders.backbones import SmallCNN

DemoT = TypeVar("DemoT")


def check_clip(clip: Any, max_frames: int | None = None) -> None:
    """Raise UserError unless ``clip`` is a uint8 tensor (B, T, 3, H, W) with 1 <= T <= max_frames."""
    if not isinstance(clip, Tensor):
        raise UserError(f"video clip: expected a torch.Tensor (B, T, 3, H, W) uint8, got {type(clip).__name__}")
    if clip.dtype != torch.uint8:
        raise UserError(f"video clip: expected dtype uint8 (B, T, 3, H, W), got {clip.dtype} {tuple(clip.shape)}")
    if clip.dim() != 5 or clip.shape[2] != 3 or min(clip.shape) == 0:
        hint = " (channels last? use clip.permute(0, 1, 4, 2, 3))" if clip.dim() == 5 and clip.shape[-1] == 3 else ""
        raise UserError(f"video clip: expected shape (B, T, 3, H, W), got {tuple(clip.shape)}{hint}")
    if max_frames is not None and clip.shape[1] > max_frames:
        raise UserError(f"video clip: {clip.shape[1]} frames, but the encoder was built for at most {max_frames}")


class VideoEncoder(nn.Module):
    """Clip encoder: per-frame CNN -> temporal transformer -> mean over time -> linear -> L2 norm.

    Args:
        out_dim: embedding size D; set it to the language encoder's ``dim`` (384 for MiniLM).
        frame_dim: per-frame feature size F (also the transformer width).
        max_frames: the largest clip length T accepted (size of the learned time embedding).
        num_layers: temporal transformer layers; 0 means plain mean pooling of frame features.
        num_heads: attention heads (must divide ``frame_dim``).

    Input: (B, T, 3, H, W) uint8. Output: (B, D) float, unit L2 norm.
    """

    def __init__(
        self,
        out_dim: int = 384,
        frame_dim: int = 128,
        max_frames: int = 16,
        num_layers: int = 1,
        num_heads: int = 4,
    ):
        super().__init__()
        if out_dim <= 0 or frame_dim <= 0 or max_frames <= 0 or num_layers < 0:
            raise UserError(
                f"VideoEncoder: need positive out_dim/frame_dim/max_frames and num_layers >= 0, got "
                f"{out_dim}/{frame_dim}/{max_frames}/{num_layers}"
            )
        if frame_dim % num_heads:
            raise UserError(f"VideoEncoder: num_heads={num_heads} must divide frame_dim={frame_dim}")
        self.out_dim = out_dim
        self.max_frames = max_frames
        self.frame_encoder = SmallCNN(cond_dim=0, out_dim=frame_dim)
        self.time_embed = nn.Parameter(torch.zeros(max_frames, frame_dim))
        nn.init.normal_(self.time_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(
            frame_dim, num_heads, dim_feedforward=2 * frame_dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.temporal = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False) if num_layers else None
        self.norm = nn.LayerNorm(frame_dim)
        self.proj = nn.Linear(frame_dim, out_dim)

    def forward(self, clip: Tensor) -> Tensor:
        """(B, T, 3, H, W) uint8 -> (B, D) unit-norm float."""
        check_clip(clip, self.max_frames)
        b, t = clip.shape[:2]
        frames = self.frame_encoder(clip.flatten(0, 1))  # (B*T, F)
        h = frames.view(b, t, -1) + self.time_embed[:t]  # (B, T, F)
        if self.temporal is not None:
            h = self.temporal(h)
        h = self.norm(h.mean(dim=1))  # (B, F)
        return F.normalize(self.proj(h), dim=-1)


def cosine_alignment_loss(video_emb: Tensor, lang_emb: Tensor) -> Tensor:
    """BC-Z alignment loss: mean over the batch of 1 - cos(video_emb, lang_emb).

    Input: (B, D), (B, D) float (need not be normalized). Output: scalar in [0, 2].
    The language embedding is a fixed target: pass it detached (it is precomputed anyway).
    """
    if video_emb.dim() != 2 or video_emb.shape != lang_emb.shape:
        raise ValueError(
            f"cosine_alignment_loss: expected two (B, D) tensors of the same shape, got "
            f"{tuple(video_emb.shape)} and {tuple(lang_emb.shape)}"
        )
    return (1.0 - F.cosine_similarity(video_emb, lang_emb, dim=-1)).mean()


def clip_indices(length: int, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of ``num_frames`` frames evenly spaced over a demo of ``length`` frames.

    Without ``rng``: ``round(linspace(0, length - 1, num_frames))`` (first and last frame included).
    With ``rng``: one uniformly random frame inside each of ``num_frames`` equal segments (TSN-style
    jitter, a cheap augmentation). Short demos repeat frames. Output: (num_frames,) int64, non-decreasing.
    """
    if length < 1 or num_frames < 1:
        raise UserError(f"clip sampling needs a non-empty demo and num_frames >= 1, got {length}, {num_frames}")
    if rng is None:
        return np.rint(np.linspace(0, length - 1, num_frames)).astype(np.int64)
    edges = np.linspace(0, length, num_frames + 1)
    lo = np.floor(edges[:-1]).astype(np.int64)
    hi = np.maximum(lo + 1, np.ceil(edges[1:]).astype(np.int64))  # exclusive, at least one frame wide
    return np.minimum(rng.integers(lo, hi), length - 1).astype(np.int64)


def sample_clip(frames: Any, num_frames: int, rng: np.random.Generator | None = None) -> Tensor:
    """Take ``num_frames`` evenly spaced frames of one demo, as a clip for ``VideoEncoder``.

    ``frames``: (L, H, W, 3) uint8, array-like: a numpy array, a CPU torch tensor or an h5py dataset
    (only the needed frames are read). ``rng``: see ``clip_indices``.
    Output: (num_frames, 3, H, W) uint8 torch tensor (stack clips to get (B, T, 3, H, W)).
    """
    shape = tuple(getattr(frames, "shape", ()))
    dtype = getattr(frames, "dtype", None)
    is_uint8 = dtype == torch.uint8 if isinstance(dtype, torch.dtype) else dtype == np.uint8
    if len(shape) != 4 or shape[-1] != 3 or shape[0] == 0:
        raise UserError(f"sample_clip: expected frames (L, H, W, 3) with L >= 1, got shape {shape}")
    if not is_uint8:
        raise UserError(f"sample_clip: expected uint8 frames (L, H, W, 3), got dtype {dtype}")
    idx = clip_indices(shape[0], num_frames, rng)
    unique, inverse = np.unique(idx, return_inverse=True)  # h5py wants increasing, distinct indices
    data = frames[torch.from_numpy(unique)] if isinstance(frames, Tensor) else frames[unique.tolist()]
    data = torch.as_tensor(np.asarray(data))  # (U, H, W, 3)
    return data[torch.from_numpy(inverse)].permute(0, 3, 1, 2).contiguous()


def pick_other_demo(
    task_demos: Sequence[DemoT],
    exclude: DemoT | set[DemoT] | frozenset[DemoT] | None,
    rng: np.random.Generator,
    allow_same: bool = False,
) -> DemoT:
    """Pick uniformly a demo of the same task other than ``exclude`` (the demo, or set of demos, being
    imitated).

    ``task_demos``: the demos (names, indices, ...) of one task. If every demo of the task is excluded, a
    UserError explains that video conditioning needs two demos per task, unless ``allow_same``: then the
    pick is uniform over all of the task's demos.
    """
    if len(task_demos) == 0:
        raise UserError("pick_other_demo: the task has no demos")
    excluded = exclude if isinstance(exclude, (set, frozenset)) else {exclude}
    others = [d for d in task_demos if d not in excluded]
    if not others:
        if not allow_same:
            raise UserError(
                f"video conditioning needs at least 2 demos per task (the clip comes from a different demo "
                f"than the one imitated); this task has only {exclude!r}"
            )
        others = list(task_demos)
    return others[int(rng.integers(len(others)))]


__all__ = [
    "VideoEncoder",
    "check_clip",
    "clip_indices",
    "cosine_alignment_loss",
    "pick_other_demo",
    "sample_clip",
]
