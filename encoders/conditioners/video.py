"""``video`` (BC-Z): the task shown by a demo clip, encoded into the language space; words work too."""

from __future__ import annotations

from torch import Tensor

from mtil.encoders.conditioners.base import LanguageSpace, PolicyTasks
from mtil.encoders.video import VideoEncoder


class VideoConditioner(LanguageSpace):
    """(B, T, 3, H, W) uint8 clip -> ``video`` encoder (B, lang_dim) -> ``proj`` -> z (B, out_dim). Trained with
    a cosine loss pulling the clip's embedding to its task's language embedding, so a language embedding
    through ``project`` gives a task in words instead."""

    uses_video = True
    conditions = ("video", "language")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.video = VideoEncoder(out_dim=cfg.lang_dim, frame_dim=cfg.video_frame_dim, max_frames=cfg.video_frames,
                                  num_layers=cfg.video_layers)

    def forward(self, task_input: Tensor) -> Tensor:
        return self.proj(self.video(task_input))

    def embed_video(self, clip: Tensor) -> Tensor:
        return self.video(clip)

    def task_vector(self, batch: dict, tasks: PolicyTasks) -> tuple[Tensor, Tensor | None]:
        if "clips" in batch:  # one clip per task present, shared by that task's samples: encode each once
            emb = self.embed_video(batch["clips"])[batch["clip_index"]]
        else:  # one clip per sample
            emb = self.embed_video(batch["clip"])  # (B, lang_dim), unit norm
        return self.project(emb), emb

    def from_video(self, clip: Tensor) -> Tensor:
        return self(clip)

    @classmethod
    def untrained(cls, condition: str, options, train_config: dict) -> str:
        # words reach z through ``proj`` only because the alignment loss put the clips' embeddings where their
        # instructions' are; without it (and without fit-video, which fits clips onto a language policy)
        # ``proj`` has only ever seen clips
        if condition == "language" and options.align_weight == 0 and "fit_video" not in train_config:
            return ("its language input was never trained: it was trained with --align-weight 0, so only clips "
                    "reach its task space; evaluate it with --condition video")
        return ""
