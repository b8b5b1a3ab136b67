"""The one mp4 writer: replay videos (`mtil replay`) and evaluation videos (`mtil eval`) both use it."""

from __future__ import annotations

import errno
import subprocess

import numpy as np

from mtil.datasets.atomic import atomic_path


def write_mp4(path: str, frames: list[np.ndarray], fps: int = 20, crf: int = 25) -> None:
    """Frames (H, W, 3) uint8 -> H.264 mp4 at ``path``, written atomically (temp file beside it, then a
    rename). ``crf``: x264's quality (lower is better; 25 is what imageio's quality 5 gave). Odd frame sizes
    are padded to even ones by repeating the edge (H.264 at 4:2:0 needs them even).

    FFmpeg runs with its messages captured, never printed: a failure is an ``OSError`` naming ``path``
    (``ENOSPC`` for a full disk) or a ``RuntimeError`` with FFmpeg's last line."""
    from mtil.datasets.video_io import ffmpeg_exe

    video = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])
    _, h, w, _ = video.shape
    video = np.pad(video, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with atomic_path(path) as tmp:
        cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w + w % 2}x{h + h % 2}", "-r", str(fps), "-i", "-", "-an", "-c:v", "libx264",
               "-pix_fmt", "yuv420p", "-crf", str(crf), "-preset", "medium", "-movflags", "+faststart",
               "-f", "mp4", tmp]
        done = subprocess.run(cmd, input=video.tobytes(), capture_output=True)
        if done.returncode:
            err = done.stderr.decode(errors="replace").strip()
            if "No space left on device" in err:
                raise OSError(errno.ENOSPC, "No space left on device", path)
            last = err.splitlines()[-1] if err else f"exit code {done.returncode}"
            raise RuntimeError(f"ffmpeg could not write {path}: {last[:200]}")
