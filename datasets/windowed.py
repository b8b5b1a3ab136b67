"""Windowed dataset over validated demonstration files.

One sample = one time step t of one demo::

    obs[key]     (obs_horizon, H, W, 3) uint8 for images, (obs_horizon, D) float32 for low-dim
    obs_pad      (obs_horizon,) bool   frames before the demo's start (edge-padded with frame 0)
    actions      (action_horizon, A) float32, a_t .. a_{t+H-1}
    action_pad   (action_horizon,) bool  steps past the demo's end (edge-padded with the last action)
    task         () int64, index into manifest.tasks
    index        () int64, the global step index
    goal[key]    (H, W, 3) uint8 / (D,) float32, only with goal sampling: a frame from the demo's future
    goal_step    () int64, the goal's time step within the demo
    failed       () bool, only with goal sampling: the demo is an unsuccessful episode (split "failed"),
                 so its samples may only be conditioned on relabeled goals, never on its instruction

Images stay uint8 until the policy's device. Storage of images, by ``image_mode``:

- ``mmap``: uncompressed contiguous HDF5 datasets are memory-mapped at the byte offset h5py reports: zero
  copy, pages shared by every DataLoader worker, no h5py handle crosses a fork.
- ``ram``: every image decoded once into one uint8 array per key (workers share it copy-on-write).
- ``h5py``: one lazily opened read-only handle per file per worker process.
- ``auto`` (default): mmap when every image dataset allows it, else ram when it fits ``ram_budget``,
  else h5py. ``describe()`` says which was chosen and how many bytes it holds.

Keys passed to ``__getitem__`` may carry a draw number (``key = index + N * draw``, see
``StratifiedTaskBatchSampler(tag_draws=True)``) so that goal sampling is fresh at every visit yet fully
determined by (seed, index, draw).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np
import psutil
import torch

from mtil.datasets.errors import UserError
from mtil.datasets.manifest_types import DemoEntry, Manifest


@dataclass
class GoalSampling:
    """Hindsight goals: a frame uniform over the demo's future (t, T-1], or the final frame."""

    max_offset: int | None = None  # goal at most this many steps after t
    final: bool = False  # always the demo's last frame
    seed: int = 0


class WindowedDataset(torch.utils.data.Dataset):
    def __init__(self, manifest: Manifest, split: str | tuple[str, ...] | None = "train",
                 obs_keys: list[str] | None = None, obs_horizon: int = 1, action_horizon: int = 1,
                 image_mode: str = "auto", ram_budget: int | None = None, goal: GoalSampling | None = None):
        """Samples of every step of the demos in ``split``.

        Args:
            manifest: from ``mtil.datasets.manifest`` (``build_manifest``/``manifest_from_inputs``).
            split: a split name (``train``, ``valid``, ``failed``), a tuple of them, or None for every demo.
            obs_keys: observation keys to load (default: all); images are the keys the manifest marks so.
            obs_horizon: frames per sample, t-To+1 .. t (edge-padded at the demo's start).
            action_horizon: actions per sample, t .. t+H-1 (edge-padded at the demo's end).
            image_mode: auto | mmap | ram | h5py (see the module doc).
            ram_budget: bytes ``auto`` may give the ``ram`` mode (default: half of the available memory).
            goal: hindsight goal sampling (adds ``goal``, ``goal_step``, ``failed`` to every sample).
        """
        if obs_horizon < 1 or action_horizon < 1:
            raise UserError(f"obs_horizon and action_horizon must be >= 1, got {obs_horizon}, {action_horizon}")
        if image_mode not in ("auto", "mmap", "ram", "h5py"):
            raise UserError(f"image_mode must be auto|mmap|ram|h5py, got {image_mode!r}")
        self.manifest = manifest
        self.obs_horizon, self.action_horizon = obs_horizon, action_horizon
        self.goal = goal
        all_keys = list(manifest.obs)
        self.obs_keys = list(obs_keys) if obs_keys is not None else all_keys
        unknown = [k for k in self.obs_keys if k not in manifest.obs]
        if unknown:
            raise UserError(f"obs key {unknown[0]!r} is not in the data (have: {', '.join(all_keys)})")
        self.image_keys = [k for k in self.obs_keys if manifest.obs[k].image]
        self.lowdim_keys = [k for k in self.obs_keys if not manifest.obs[k].image]
        splits = (split,) if isinstance(split, str) else split
        self.demos = [d for d in manifest.demos if splits is None or d.split in splits]
        if not self.demos:
            raise UserError(f"no demos in split {split!r}")
        self.demo_failed = np.array([d.split == "failed" for d in self.demos], dtype=bool)
        lengths = np.array([d.length for d in self.demos], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.lengths = lengths
        self.num_samples = int(lengths.sum())
        self.step_task = np.repeat(np.array([d.task for d in self.demos], dtype=np.int64), lengths)
        if goal is not None:
            if goal.max_offset is not None and goal.max_offset < 1:
                raise UserError(f"goal max offset must be >= 1, got {goal.max_offset}")
            if goal.max_offset is not None and goal.max_offset >= int(lengths.max()):
                raise UserError(f"goal max offset {goal.max_offset} is not shorter than any demo "
                                f"(longest has {int(lengths.max())} steps): it would never limit anything")

        self._load_lowdim()
        self.image_mode, self.image_bytes = self._plan_images(image_mode, ram_budget)
        self._pid = None
        self._handles: dict[str, h5py.File] = {}
        self._maps: dict[tuple[int, str], np.ndarray] = {}

    # ---------------------------------------------------------------- loading
    def _stored(self, demo: DemoEntry, key: str) -> str:
        return self.manifest.files[demo.file].stored_key(key)

    def _by_file(self):
        groups: dict[int, list[int]] = {}
        for i, d in enumerate(self.demos):
            groups.setdefault(d.file, []).append(i)
        return groups.items()

    def _load_lowdim(self) -> None:
        """Actions and low-dim obs are small: one float32 array each, all demos concatenated."""
        A = self.manifest.action_dim
        self.actions = np.empty((self.num_samples, A), np.float32)
        self.lowdim = {k: np.empty((self.num_samples, *self.manifest.obs[k].shape), np.float32)
                       for k in self.lowdim_keys}
        for fi, members in self._by_file():
            with h5py.File(self.manifest.files[fi].path, "r") as f:
                for i in members:
                    d, s = self.demos[i], slice(self.starts[i], self.starts[i] + self.lengths[i])
                    g = f["data"][d.name]
                    self.actions[s] = g["actions"][()]
                    for k in self.lowdim_keys:
                        self.lowdim[k][s] = g["obs"][self._stored(d, k)][()]

    def _plan_images(self, mode: str, ram_budget: int | None) -> tuple[str, int]:
        nbytes = sum(self.num_samples * int(np.prod(self.manifest.obs[k].shape)) for k in self.image_keys)
        if not self.image_keys:
            return "none", 0
        self.offsets: dict[tuple[int, str], int] = {}
        mappable = True
        for fi, members in self._by_file():
            with h5py.File(self.manifest.files[fi].path, "r") as f:
                for i in members:
                    for k in self.image_keys:
                        ds = f["data"][self.demos[i].name]["obs"][self._stored(self.demos[i], k)]
                        off = ds.id.get_offset() if ds.chunks is None and ds.compression is None else None
                        if off is None:
                            mappable = False
                        else:
                            self.offsets[(i, k)] = int(off)
        if mode == "auto":
            budget = ram_budget if ram_budget is not None else psutil.virtual_memory().available // 2
            mode = "mmap" if mappable else ("ram" if nbytes <= budget else "h5py")
        if mode == "mmap" and not mappable:
            raise UserError("image_mode 'mmap' needs uncompressed, unchunked image datasets; "
                            "these files are compressed or chunked (use 'ram' or 'h5py')")
        if mode == "ram":
            self.ram = {k: np.empty((self.num_samples, *self.manifest.obs[k].shape), np.uint8)
                        for k in self.image_keys}
            for fi, members in self._by_file():
                with h5py.File(self.manifest.files[fi].path, "r") as f:
                    for i in members:
                        d, s = self.demos[i], slice(self.starts[i], self.starts[i] + self.lengths[i])
                        for k in self.image_keys:
                            f["data"][d.name]["obs"][self._stored(d, k)].read_direct(self.ram[k], dest_sel=s)
                            if self.manifest.files[fi].flip_images:  # stored upside down: fix once
                                self.ram[k][s] = self.ram[k][s][:, ::-1].copy()
        return mode, nbytes

    def describe(self) -> str:
        gb = self.image_bytes / 2**30
        how = {"mmap": "memory-mapped from the HDF5 files (zero copy, shared by workers)",
               "ram": "decoded into RAM once (shared copy-on-write by workers)",
               "h5py": "read through one lazily opened h5py handle per worker",
               "none": "no image keys"}[self.image_mode]
        return (f"{len(self.demos)} demos, {self.num_samples} steps, {len(self.manifest.tasks)} tasks; "
                f"images ({gb:.2f} GiB uint8) {how}")

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return self.num_samples

    def task_indices(self) -> list[np.ndarray]:
        """Global sample indices of each task (index = task id); empty for tasks absent from this split."""
        return [np.flatnonzero(self.step_task == t) for t in range(len(self.manifest.tasks))]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"], state["_maps"], state["_pid"] = {}, {}, None
        return state

    def _check_process(self) -> None:
        if self._pid != os.getpid():  # first use in this (worker) process: never reuse a forked handle
            self._pid, self._handles, self._maps = os.getpid(), {}, {}

    def frames(self, i: int, key: str, ts: np.ndarray) -> np.ndarray:
        """Frames ``ts`` (demo-relative, ascending) of demo ``i`` for image ``key``: (len(ts), H, W, 3)."""
        d = self.demos[i]
        if self.image_mode == "ram":  # flipped upright when cached
            return self.ram[key][self.starts[i] + ts]
        if self.image_mode == "mmap":
            m = self._maps.get((i, key))
            if m is None:
                shape = (int(self.lengths[i]), *self.manifest.obs[key].shape)
                m = np.memmap(self.manifest.files[d.file].path, np.uint8, "r",
                              offset=self.offsets[(i, key)], shape=shape)
                self._maps[(i, key)] = m
            out = m[ts]
        else:
            path = self.manifest.files[d.file].path
            f = self._handles.get(path)
            if f is None:
                f = self._handles[path] = h5py.File(path, "r")
            lo, hi = int(ts.min()), int(ts.max()) + 1
            out = f["data"][d.name]["obs"][self._stored(d, key)][lo:hi][ts - lo]
        return out[:, ::-1] if self.manifest.files[d.file].flip_images else out

    def _images(self, demo: np.ndarray, steps: np.ndarray, key: str) -> np.ndarray:
        """(B, W) demo-relative steps of demos (B,) -> (B, W, H, W', 3) uint8, gathered in one go."""
        B, W = steps.shape
        out = np.empty((B, W, *self.manifest.obs[key].shape), np.uint8)
        if self.image_mode == "ram":
            out[...] = self.ram[key][self.starts[demo][:, None] + steps]
            return out
        for b in range(B):
            out[b] = self.frames(int(demo[b]), key, steps[b])
        return out

    def __getitem__(self, key) -> dict:
        """One sample (see the module docstring for its fields and shapes)."""
        batch = self.__getitems__([key])
        return {k: ({kk: vv[0] for kk, vv in v.items()} if isinstance(v, dict) else v[0]) for k, v in batch.items()}

    def __getitems__(self, keys) -> dict:
        """A whole batch at once (the DataLoader calls this with a batch sampler): every field gets a
        leading batch dimension B. Vectorized gathers instead of B separate reads and a collate."""
        self._check_process()
        keys = np.asarray(keys, dtype=np.int64)
        idx, draw = keys % self.num_samples, keys // self.num_samples
        demo = np.searchsorted(self.starts, idx, side="right") - 1
        start, T = self.starts[demo], self.lengths[demo]
        t = idx - start
        raw_o = t[:, None] - self.obs_horizon + 1 + np.arange(self.obs_horizon)
        ts = np.maximum(raw_o, 0)
        raw_a = t[:, None] + np.arange(self.action_horizon)
        ta = np.minimum(raw_a, T[:, None] - 1)
        obs = {k: torch.from_numpy(self._images(demo, ts, k)) for k in self.image_keys}
        obs.update({k: torch.from_numpy(self.lowdim[k][start[:, None] + ts]) for k in self.lowdim_keys})
        batch = {
            "obs": obs,
            "obs_pad": torch.from_numpy(raw_o < 0),
            "actions": torch.from_numpy(self.actions[start[:, None] + ta]),
            "action_pad": torch.from_numpy(raw_a > T[:, None] - 1),
            "task": torch.from_numpy(self.step_task[idx]),
            "index": torch.from_numpy(idx),
        }
        if self.goal is not None:
            g = np.array([self.goal_step(int(i), int(d)) for i, d in zip(idx, draw)], dtype=np.int64)
            goal = {k: torch.from_numpy(self._images(demo, g[:, None], k)[:, 0]) for k in self.image_keys}
            goal.update({k: torch.from_numpy(self.lowdim[k][start + g]) for k in self.lowdim_keys})
            batch["goal"] = goal
            batch["goal_step"] = torch.from_numpy(g)
            batch["failed"] = torch.from_numpy(self.demo_failed[demo])
        return batch

    def goal_step(self, idx: int, draw: int = 0) -> int:
        """Demo-relative step of the goal for global step ``idx`` at visit ``draw``: uniform over
        (t, min(T-1, t+max_offset)]; the last step's goal is itself, as it has no future."""
        assert self.goal is not None
        i = int(np.searchsorted(self.starts, idx, side="right") - 1)
        t, T = idx - int(self.starts[i]), int(self.lengths[i])
        if self.goal.final or t >= T - 1:
            return T - 1
        hi = T - 1 if self.goal.max_offset is None else min(T - 1, t + self.goal.max_offset)
        rng = np.random.default_rng([self.goal.seed, idx, draw])
        return int(rng.integers(t + 1, hi + 1))


def collate_batch(batch):
    """collate_fn for a DataLoader whose dataset returns whole batches from ``__getitems__``."""
    return batch if isinstance(batch, dict) else torch.utils.data.default_collate(batch)


def make_loader(dataset: WindowedDataset, batch_sampler, num_workers: int = 2, **kwargs):
    """A DataLoader fetching whole batches (``__getitems__``) in ``num_workers`` worker processes."""
    extra = {"persistent_workers": True, "prefetch_factor": 4} if num_workers > 0 else {}
    extra.update(kwargs)
    return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                                       collate_fn=collate_batch, **extra)
