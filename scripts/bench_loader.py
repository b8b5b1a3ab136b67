"""Loader benchmark: our windowed dataset + stratified sampler vs per-sample h5py reads.

Builds a synthetic dataset shaped like the real one (8 tasks x 50 demos x 150 steps, two 84x84 cameras,
low-dim proprio, 7-d actions) in an uncompressed and a gzip variant, then measures in one run, with
batch 64 and 2 DataLoader workers:

- ours: ``WindowedDataset`` (obs horizon 2, action chunk 8) with ``StratifiedTaskBatchSampler``, images
  memory-mapped (uncompressed file) or decoded into RAM once (gzip file) or read through h5py (gzip);
- baseline: robomimic's ``low_dim`` cache mode style: low-dim data in memory, every image window read
  per sample from the h5py dataset (one handle per worker), same windows, random batches.

Also ours with no workers (batches built in the main process). Reports batches/s, the speedup, and
the peak memory of main process + workers (PSS, so pages shared by the workers count once) against the
uint8 image bytes.

    python scripts/bench_loader.py [--dir /tmp/mtil-bench] [--batches 150] [--small]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from datetime import date

import h5py
import numpy as np
import psutil
import torch

from mtil.datasets.manifest import build_manifest
from mtil.datasets.sampler import StratifiedTaskBatchSampler
from mtil.datasets.synthetic import DEFAULT_INSTRUCTIONS, write_synthetic
from mtil.datasets.windowed import WindowedDataset, make_loader


class PerSampleH5(torch.utils.data.Dataset):
    """robomimic low_dim-cache style: low-dim in RAM, images read from h5py for every sample."""

    def __init__(self, ds: WindowedDataset):
        self.ds, self.f = ds, None

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, idx):
        if self.f is None:
            self.f = h5py.File(self.ds.manifest.files[0].path, "r")
        ds = self.ds
        i = int(np.searchsorted(ds.starts, idx, side="right") - 1)
        t, T, s = idx - int(ds.starts[i]), int(ds.lengths[i]), int(ds.starts[i])
        g = self.f["data"][ds.demos[i].name]
        lo = max(0, t - ds.obs_horizon + 1)
        obs = {}
        for k in ds.image_keys:
            w = g["obs"][k][lo:t + 1]
            if len(w) < ds.obs_horizon:
                w = np.concatenate([np.repeat(w[:1], ds.obs_horizon - len(w), 0), w])
            obs[k] = torch.from_numpy(w)
        for k in ds.lowdim_keys:
            obs[k] = torch.from_numpy(ds.lowdim[k][s + np.clip(np.arange(t - ds.obs_horizon + 1, t + 1), 0, None)])
        a = ds.actions[s + np.clip(np.arange(t, t + ds.action_horizon), None, T - 1)]
        return {"obs": obs, "actions": torch.from_numpy(a)}


class PeakPSS:
    """Samples the summed PSS of this process and its children every 50 ms."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_full_info().pss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def measure(dataset, batch_sampler, n_batches: int, workers: int = 2) -> tuple[float, int]:
    loader = make_loader(dataset, batch_sampler, num_workers=workers, **({"persistent_workers": False}
                                                                         if workers else {}))
    with PeakPSS() as mem:
        it = iter(loader)
        for _ in range(10):  # warm-up: workers started, first pages touched
            next(it)
        t0 = time.perf_counter()
        for _ in range(n_batches):
            next(it)
        dt = time.perf_counter() - t0
        del it
    return n_batches / dt, mem.peak


class RandomBatches:
    def __init__(self, n, bs, seed=0):
        self.n, self.bs, self.rng = n, bs, np.random.default_rng(seed)

    def __iter__(self):
        while True:
            yield self.rng.integers(0, self.n, self.bs).tolist()

    def __len__(self):
        return 10**9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/mtil-bench-loader", help="where the synthetic files are written")
    ap.add_argument("--batches", type=int, default=150, help="timed batches per configuration")
    ap.add_argument("--small", action="store_true", help="2 tasks x 4 demos, for a quick check")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.dir, exist_ok=True)
    tasks, demos = (DEFAULT_INSTRUCTIONS[:2], 4) if args.small else (DEFAULT_INSTRUCTIONS[:8], 50)
    files = {}
    for comp in (None, "gzip"):
        path = os.path.join(args.dir, f"synthetic_{comp or 'plain'}_{len(tasks)}x{demos}.hdf5")
        if not os.path.exists(path):
            t0 = time.time()
            write_synthetic(path + ".tmp", tasks=tasks, demos_per_task=demos, steps=150, image_size=84,
                            compression=comp, seed=0)
            os.replace(path + ".tmp", path)
            print(f"wrote {path} ({os.path.getsize(path) / 2**30:.2f} GiB) in {time.time() - t0:.0f} s")
        files[comp or "plain"] = path

    rows = []
    for variant, path in files.items():
        manifest, _ = build_manifest([path], valid_fraction=0.0)
        modes = ["mmap"] if variant == "plain" else ["ram", "h5py"]
        for mode in modes:
            t0 = time.time()
            ds = WindowedDataset(manifest, obs_horizon=2, action_horizon=8, image_mode=mode)
            setup = time.time() - t0
            sampler = StratifiedTaskBatchSampler(ds.task_indices(), 64, seed=0, batches_per_epoch=10**6)
            bps, peak = measure(ds, sampler, args.batches)
            rows.append({"file": variant, "loader": f"ours ({mode})", "batches_per_s": bps, "peak_pss": peak,
                         "image_bytes": ds.image_bytes, "setup_s": setup})
            if mode != "h5py":  # in-memory sources: is the worker IPC worth it at all?
                sampler = StratifiedTaskBatchSampler(ds.task_indices(), 64, seed=0, batches_per_epoch=10**6)
                bps, peak = measure(ds, sampler, args.batches, workers=0)
                rows.append({"file": variant, "loader": f"ours ({mode}, in the main process)",
                             "batches_per_s": bps, "peak_pss": peak, "image_bytes": ds.image_bytes,
                             "setup_s": setup})
        # the baseline gets a fresh dataset object: no memory maps or caches touched by the runs above
        plain = WindowedDataset(manifest, obs_horizon=2, action_horizon=8, image_mode="h5py")
        bps, peak = measure(PerSampleH5(plain), RandomBatches(len(plain), 64), args.batches)
        rows.append({"file": variant, "loader": "per-sample h5py (robomimic low_dim style)", "batches_per_s": bps,
                     "peak_pss": peak, "image_bytes": plain.image_bytes, "setup_s": 0.0})
        del plain, ds

    print(f"\n{date.today()}  {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, batch 64, 2 workers, obs horizon 2, action chunk 8")
    print(f"uint8 image bytes: {rows[0]['image_bytes'] / 2**30:.2f} GiB. 'extra memory' = peak PSS minus the "
          "per-sample baseline's peak PSS on the same file (same 2 workers, torch loaded, no image cache).")
    print("| file | loader | batches/s | vs per-sample h5py | peak PSS (GiB) | extra memory / image bytes "
          "| setup (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        base = next(b for b in rows if b["file"] == r["file"] and b["loader"].startswith("per-sample"))
        r["speedup"] = r["batches_per_s"] / base["batches_per_s"]
        r["extra_over_image_bytes"] = (r["peak_pss"] - base["peak_pss"]) / r["image_bytes"]
        print(f"| {r['file']} | {r['loader']} | {r['batches_per_s']:.1f} | {r['speedup']:.1f}x | "
              f"{r['peak_pss'] / 2**30:.2f} | {r['extra_over_image_bytes']:.2f} | {r['setup_s']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": str(date.today()), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
