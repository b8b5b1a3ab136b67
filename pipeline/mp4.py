"""The one mp4 writer: replay videos (`mtil replay`) and evaluation videos (`mtil eval`) both use it."""

from __future__ import annotations

import numpy as np

from mtil.datasets.atomic import atomic_path


def write_mp4(path: str, frames: list[np.ndarray], fps: int = 20, quality: float = 5) -> None:
    """Frames (H, W, 3) uint8 -> H.264 mp4 at ``path``, written atomically (temp file beside it, then a
    rename). ``quality``: imageio's 0-10 scale. Odd frame sizes are padded to even ones (H.264 needs it)."""
    import imageio.v2 as imageio

    with atomic_path(path) as tmp, imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264",
                                                      quality=quality, macro_block_size=2,
                                                      ffmpeg_log_level="error") as w:
        for frame in frames:
            w.append_data(np.asarray(frame))
