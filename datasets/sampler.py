"""Stratified per-task batch sampler.

Every batch holds a fixed number of samples from each task: with ``mode="stratified"`` and batch size B
over K tasks, exactly B/K each. The multi-task BC objective is a sum over tasks, so sampling every task
in every batch lowers gradient variance and keeps rare tasks from being drowned by frequent ones.

Per-batch counts come from largest-remainder apportionment of B by the task weights (equal, proportional
to task size for the usual concatenation baseline, or given), with the rounding residue carried to the
next batch, so counts are exact in every batch and proportional over time. Within a task, samples are
drawn without replacement from a shuffled cycle (a permutation of the task's samples); when a cycle is
used up a new one starts. Everything is a pure function of (seed, epoch, batch number), which makes the
stream reproducible, lets DDP ranks take disjoint slices of one global draw, and makes resuming exact:
``load_state_dict`` fast-forwards to the saved position.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from mtil.datasets.errors import UserError


def apportion(total: int, weights: np.ndarray, carry: np.ndarray, tiebreak_offset: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Split ``total`` into integer counts by largest remainder of ``total * weights + carry``.

    Returns ``(counts, new_carry)``; ``new_carry`` is what rounding gave or took, fed to the next call so
    that cumulative counts track ``calls * total * weights``. Ties are broken by a rotating task order.
    """
    quota = total * weights + carry
    counts = np.floor(np.maximum(quota, 0.0)).astype(np.int64)
    left = total - int(counts.sum())
    if left > 0:
        K = len(weights)
        order = (np.arange(K) + tiebreak_offset) % K
        frac = quota - counts
        # largest fractional part first; among equal ones, the rotating order decides
        ranked = sorted(range(K), key=lambda k: (-round(frac[k], 12), order[k]))
        counts[ranked[:left]] += 1
    elif left < 0:  # carry can make quotas overshoot; take back from the smallest fractions
        for k in np.argsort(quota - counts, kind="stable"):
            if left == 0:
                break
            if counts[k] > 0:
                counts[k] -= 1
                left += 1
    return counts, quota - counts


class StratifiedTaskBatchSampler:
    """Yield batches (lists of dataset indices) with fixed per-task counts.

    task_indices: one array of dataset indices per task (``WindowedDataset.task_indices()``); tasks with
        no samples are skipped.
    batch_size: samples per batch *per rank*.
    mode: ``"stratified"`` (equal share per task), ``"size"`` (proportional to task size) or a sequence
        of non-negative weights, one per task.
    batches_per_epoch: defaults to (total samples) // (batch_size * world_size), at least 1.
    rank, world_size: DDP slice; each global batch is drawn once and rank r takes its part of every task.
    tag_draws: yield ``index + N * draw`` (N = dataset length) so the dataset can vary per-visit
        randomness (hindsight goals) deterministically; ``N`` must then be given as ``dataset_len``.
    """

    def __init__(self, task_indices: Sequence[np.ndarray], batch_size: int, mode="stratified", seed: int = 0,
                 batches_per_epoch: int | None = None, rank: int = 0, world_size: int = 1,
                 tag_draws: bool = False, dataset_len: int | None = None):
        self.task_indices = [np.asarray(t, dtype=np.int64) for t in task_indices]
        self.tasks = [k for k, t in enumerate(self.task_indices) if len(t) > 0]
        if not self.tasks:
            raise UserError("the sampler got no samples in any task")
        K = len(self.tasks)
        if batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise UserError(f"rank {rank} is not in [0, {world_size})")
        sizes = np.array([len(self.task_indices[k]) for k in self.tasks], dtype=np.float64)
        if isinstance(mode, str):
            if mode == "stratified":
                if batch_size < K:
                    raise UserError(f"batch size {batch_size} is smaller than the number of tasks ({K}): "
                                    f"a stratified batch needs at least one sample per task")
                w = np.ones(K)
            elif mode == "size":
                w = sizes
            else:
                raise UserError(f"sampler mode must be 'stratified', 'size' or a list of weights, got {mode!r}")
        else:
            w_all = np.asarray(list(mode), dtype=np.float64)
            if len(w_all) != len(self.task_indices) or (w_all < 0).any() or not np.isfinite(w_all).all():
                raise UserError(f"task weights must be {len(self.task_indices)} finite non-negative numbers, "
                                f"got {list(mode)}")
            w = w_all[self.tasks]
            if w.sum() <= 0:
                raise UserError("task weights sum to zero")
        self.weights = w / w.sum()
        self.mode = mode if isinstance(mode, str) else "weights"
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        total = int(sizes.sum())
        self.batches_per_epoch = batches_per_epoch or max(1, total // (batch_size * world_size))
        self.tag_draws = tag_draws
        if tag_draws and dataset_len is None:
            raise UserError("tag_draws needs dataset_len")
        self.dataset_len = dataset_len
        self.epoch = 0
        self._start = 0  # batch within the epoch where the next __iter__ begins
        self._yielded = 0

    # ------------------------------------------------------------------ stream
    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._start = int(epoch), 0

    def __len__(self) -> int:
        return self.batches_per_epoch - self._start

    def _epoch_stream(self, epoch: int) -> Iterator[list[int]]:
        """All batches of one epoch for this rank, from batch 0."""
        K = len(self.tasks)
        carry = np.zeros(K)
        pos = [0] * K  # position within the current cycle of each task
        cycle = [0] * K
        perms: list[np.ndarray | None] = [None] * K
        for b in range(self.batches_per_epoch):
            counts, carry = apportion(self.batch_size, self.weights, carry, tiebreak_offset=b)
            batch: list[int] = []
            for j, k in enumerate(self.tasks):
                need = int(counts[j]) * self.world_size
                if need == 0:
                    continue
                idx = self.task_indices[k]
                taken: list[np.ndarray] = []
                visits: list[np.ndarray] = []  # cycle number of each drawn sample
                while need > 0:
                    if perms[j] is None or pos[j] >= len(idx):
                        if perms[j] is not None:
                            cycle[j] += 1
                        rng = np.random.default_rng([self.seed, epoch, k, cycle[j]])
                        perm = rng.permutation(len(idx))
                        if taken:  # a draw spanning two cycles: repeats go last so ranks stay disjoint
                            late = np.isin(perm, np.concatenate(taken))
                            perm = np.concatenate([perm[~late], perm[late]])
                        perms[j], pos[j] = perm, 0
                    n = min(need, len(idx) - pos[j])
                    taken.append(perms[j][pos[j]:pos[j] + n])
                    visits.append(np.full(n, cycle[j], dtype=np.int64))
                    pos[j] += n
                    need -= n
                mine = slice(self.rank * int(counts[j]), (self.rank + 1) * int(counts[j]))
                samples = idx[np.concatenate(taken)[mine]]
                if self.tag_draws:
                    # a sample is visited once per cycle, so (epoch, cycle) numbers its visits uniquely
                    samples = samples + self.dataset_len * (epoch * 1_000_003 + np.concatenate(visits)[mine])
                batch.extend(int(s) for s in samples)
            yield batch

    def __iter__(self) -> Iterator[list[int]]:
        start, self._yielded = self._start, self._start
        for b, batch in enumerate(self._epoch_stream(self.epoch)):
            if b < start:
                continue
            self._yielded = b + 1
            yield batch
        # a finished epoch moves on: the next iteration is the next epoch
        self.epoch, self._start, self._yielded = self.epoch + 1, 0, 0

    # ------------------------------------------------------------------ resume
    def state_dict(self, consumed: int | None = None) -> dict:
        """Position to resume from. With a DataLoader prefetching ahead, pass ``consumed`` = batches
        of the current epoch that training actually used; otherwise the batches yielded so far count."""
        batch = self._yielded if consumed is None else int(consumed)
        epoch = self.epoch
        if batch >= self.batches_per_epoch:
            epoch, batch = epoch + 1, 0
        return {"seed": self.seed, "epoch": epoch, "batch": batch, "batch_size": self.batch_size,
                "mode": self.mode, "weights": self.weights.tolist(), "world_size": self.world_size,
                "task_sizes": [len(t) for t in self.task_indices], "batches_per_epoch": self.batches_per_epoch}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        for key in ("seed", "batch_size", "mode", "world_size", "task_sizes", "batches_per_epoch"):
            if state.get(key) != mine.get(key):
                raise UserError(f"sampler state does not match this run: {key} was {state.get(key)!r}, "
                                f"now {mine.get(key)!r}")
        self.epoch, self._start, self._yielded = int(state["epoch"]), int(state["batch"]), int(state["batch"])
