"""Camera frames to and from mp4 files, through the FFmpeg binary that ships in the imageio-ffmpeg wheel
(it encodes H.264 and AV1 and decodes H.264, HEVC, VP9 and AV1: what LeRobot datasets use).

Frames are ``(H, W, 3)`` uint8 RGB, upright. Decoding streams: a file holding many episodes is read once,
front to back, and never whole in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

CODECS = {"h264": "libx264", "av1": "libsvtav1"}
"""--codec name -> FFmpeg encoder. h264 is the default: every FFmpeg build decodes it, it encodes ~10x
faster than AV1 on a CPU, and LeRobot's reader (torchcodec) takes either."""


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


PIX_FMTS = ("yuv420p", "yuv444p")


def encoder_params(codec: str, height: int, width: int, crf: int, gop: int,
                   pix_fmt: str = "yuv420p") -> tuple[str, list[str]]:
    """(pix_fmt, extra FFmpeg output parameters) for ``codec``. yuv420p (what players and LeRobot's own
    writer use; colour at half resolution) needs even sizes: odd ones are stored as yuv444p."""
    if height % 2 or width % 2:
        pix_fmt = "yuv444p"
    params = ["-crf", str(crf), "-g", str(gop)]
    if codec == "h264":
        params += ["-preset", "medium", "-tune", "stillimage" if gop == 1 else "film"]
    else:
        params += ["-preset", "8"]
    return pix_fmt, params


def write_video(path: str, frames: Iterable[np.ndarray], fps: float, codec: str = "h264", crf: int = 18,
                gop: int = 2, pix_fmt: str = "yuv420p") -> tuple[int, str]:
    """Encode ``frames`` (each (H, W, 3) uint8) into ``path``; returns (frames written, pix_fmt). ``gop``:
    keyframe interval (LeRobot writes 2, so a reader seeking to an episode decodes at most one extra frame)."""
    import imageio_ffmpeg

    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    writer = None
    n = 0
    try:
        for frame in frames:
            if writer is None:
                h, w = frame.shape[:2]
                pix_fmt, params = encoder_params(codec, h, w, crf, gop, pix_fmt)
                writer = imageio_ffmpeg.write_frames(path, (w, h), fps=fps, codec=CODECS[codec], pix_fmt_in="rgb24",
                                                     pix_fmt_out=pix_fmt, macro_block_size=1, quality=None,
                                                     output_params=params, ffmpeg_log_level="error")
                writer.send(None)
            writer.send(np.ascontiguousarray(frame, dtype=np.uint8))
            n += 1
    finally:
        if writer is not None:
            writer.close()
    return n, pix_fmt


def video_frames(path: str) -> tuple[dict, Iterator[np.ndarray]]:
    """(metadata: size (W, H), fps, codec, ...; an iterator over the frames as (H, W, 3) uint8). Raises
    ``RuntimeError``/``OSError`` when FFmpeg cannot open or decode the file. Every frame of the file comes
    out once, in order (no frame dropped or repeated to fit a frame rate)."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24", output_params=["-fps_mode", "passthrough"])
    meta = next(gen)
    w, h = meta["size"]

    def frames() -> Iterator[np.ndarray]:
        try:
            for raw in gen:
                yield np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)
        finally:
            gen.close()

    return meta, frames()


def read_video(path: str) -> np.ndarray:
    """Every frame of ``path`` as one (N, H, W, 3) uint8 array (small files only: tests, probes)."""
    _, frames = video_frames(path)
    return np.stack(list(frames))
