"""meta/stats.json of a LeRobot v3.0 dataset: per feature min, max, mean, std, count and the quantiles
q01, q10, q50, q90, q99 LeRobot >= 0.4 normalizes with. Vectors: exact, over every frame. Cameras: per
channel on a [0, 1] scale, shaped (3, 1, 1) as LeRobot writes them, over every ``image_stride``-th frame
(LeRobot also samples frames for image statistics)."""

from __future__ import annotations

import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


def _summary(values: np.ndarray, count: int) -> dict:
    """``values``: (N, D) float64 -> stats with D entries each."""
    out = {"min": values.min(0), "max": values.max(0), "mean": values.mean(0), "std": values.std(0)}
    out.update({name: np.quantile(values, q, axis=0) for name, q in QUANTILES.items()})
    result = {k: v.tolist() for k, v in out.items()}
    result["count"] = [int(count)]
    return result


class StatsAccumulator:
    def __init__(self, image_stride: int = 5, max_pixels_per_frame: int = 4096):
        self.vectors: dict[str, list[np.ndarray]] = {}
        self.images: dict[str, list[np.ndarray]] = {}
        self.frame_counts: dict[str, int] = {}
        self.stride = image_stride
        self.max_pixels = max_pixels_per_frame
        self._seen: dict[str, int] = {}

    def add(self, columns: dict[str, np.ndarray]) -> None:
        for name, v in columns.items():
            self.vectors.setdefault(name, []).append(np.asarray(v, dtype=np.float64).reshape(len(v), -1))

    def add_frames(self, feature: str, frames: np.ndarray) -> None:
        seen = self._seen.get(feature, 0)
        self.frame_counts[feature] = self.frame_counts.get(feature, 0) + len(frames)
        picked = frames[(-seen) % self.stride::self.stride]
        self._seen[feature] = seen + len(frames)
        if len(picked):
            pixels = picked.reshape(-1, picked.shape[-1])
            step = max(1, len(pixels) // (self.max_pixels * len(picked)))
            self.images.setdefault(feature, []).append(pixels[::step].astype(np.float64) / 255.0)

    def result(self) -> dict:
        out = {name: _summary(np.concatenate(vs), sum(len(v) for v in vs)) for name, vs in self.vectors.items()}
        for feature, chunks in self.images.items():
            s = _summary(np.concatenate(chunks), self.frame_counts[feature])
            out[feature] = {k: (v if k == "count" else [[[x]] for x in v]) for k, v in s.items()}
        return out
