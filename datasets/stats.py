"""Per-feature statistics computed in one streaming pass (never the whole dataset in memory).

Chan et al.'s parallel update merges the (count, mean, M2, min, max) of each demo into the running total,
so memory is one demo's worth of one feature at a time.
"""

from __future__ import annotations

import numpy as np


class RunningStats:
    """Streaming mean/std/min/max over the leading axis of (N, D) chunks."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if len(x) == 0:
            return
        n_b, mean_b = len(x), x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        if self.n == 0:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            self.min, self.max = x.min(axis=0), x.max(axis=0)
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
        self.n = n
        self.min = np.minimum(self.min, x.min(axis=0))
        self.max = np.maximum(self.max, x.max(axis=0))

    def to_dict(self) -> dict:
        if self.n == 0:
            raise ValueError("no samples")
        std = np.sqrt(self.m2 / self.n)
        return {"count": int(self.n), "mean": self.mean.tolist(), "std": std.tolist(),
                "min": self.min.tolist(), "max": self.max.tolist()}
