"""LeRobot v3.0 export and ingest on this machine (issue 22): time and size of `mtil export --format lerobot`
and `mtil ingest` for N demos of a collected file, and the training loader's batches/s on the ingested
dataset vs on the original HDF5, measured in one run (same windows, sampler, batch 64, batches built in the
main process as `mtil train` does for memory-mapped images).

    python scripts/bench_lerobot.py --data quickstart/demos.hdf5 [--demos 50] [--dir /tmp/mtil-bench-lerobot]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from datetime import date

import h5py
import torch


def subset(src: str, dst: str, n: int) -> int:
    """The first ``n`` demos of ``src`` (file order) as ``dst``, with its attrs and masks; returns n."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        names = sorted(f["data"], key=lambda s: int(s.split("_")[1]))[:n]
        data = g.create_group("data")
        for k, v in f["data"].attrs.items():
            data.attrs[k] = v
        total = 0
        for name in names:
            grp = data.create_group(name)
            for k, v in f[f"data/{name}"].attrs.items():
                grp.attrs[k] = v
            for k in ("actions", "states", "rewards", "dones"):
                if k in f[f"data/{name}"]:
                    grp.create_dataset(k, data=f[f"data/{name}/{k}"][()])
            obs = grp.create_group("obs")
            for k, v in f[f"data/{name}/obs"].items():
                obs.create_dataset(k, data=v[()])
            total += grp["actions"].shape[0]
        data.attrs["total"] = total
        mask = g.create_group("mask")
        for split in ("train", "valid"):
            keep = [x for x in f[f"mask/{split}"][()] if x.decode() in names]
            mask.create_dataset(split, data=keep, dtype="S16")
    return len(names)


def loader_rate(manifest, batches: int) -> float:
    from mtil.datasets.sampler import StratifiedTaskBatchSampler
    from mtil.datasets.windowed import WindowedDataset, make_loader

    ds = WindowedDataset(manifest, obs_horizon=1, action_horizon=8, image_mode="mmap")
    sampler = StratifiedTaskBatchSampler(ds.task_indices(), 64, seed=0, batches_per_epoch=10**6)
    it = iter(make_loader(ds, sampler, num_workers=0))
    for _ in range(10):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches / (time.perf_counter() - t0)


def du(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(path) for n in ns)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a collected HDF5 file (mtil collect / quickstart)")
    ap.add_argument("--demos", type=int, default=50, help="demos exported (the first ones in file order)")
    ap.add_argument("--dir", default="/tmp/mtil-bench-lerobot")
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from mtil.datasets.ingest import IngestConfig, ingest
    from mtil.datasets.lerobot_write import ExportConfig, export
    from mtil.datasets.manifest import build_manifest, load_manifest

    torch.set_num_threads(1)
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    src = os.path.join(args.dir, "demos.hdf5")
    n = subset(args.data, src, args.demos)
    t0 = time.perf_counter()
    export(ExportConfig(sources=[src], out=os.path.join(args.dir, "lerobot")))
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    ingest(IngestConfig(sources=[os.path.join(args.dir, "lerobot")], out=os.path.join(args.dir, "ingested")))
    t_ingest = time.perf_counter() - t0
    frames = sum(d.length for d in load_manifest(os.path.join(args.dir, "ingested"))[0].demos)
    direct = loader_rate(build_manifest([src])[0], args.batches)
    via = loader_rate(load_manifest(os.path.join(args.dir, "ingested"))[0], args.batches)
    videos = du(os.path.join(args.dir, "lerobot", "videos"))
    result = {"date": str(date.today()), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "demos": n, "frames": frames, "export_s": t_export, "ingest_s": t_ingest,
              "hdf5_bytes": du(src), "lerobot_bytes": du(os.path.join(args.dir, "lerobot")), "video_bytes": videos,
              "ingested_bytes": du(os.path.join(args.dir, "ingested")),
              "loader_batches_per_s": {"original_hdf5": direct, "ingested_lerobot": via, "ratio": via / direct}}
    print(json.dumps(result, indent=1))
    print(f"| {n} demos ({frames} frames) | export {t_export:.1f} s ({frames / t_export:.0f} frames/s) | ingest "
          f"{t_ingest:.1f} s ({frames / t_ingest:.0f} frames/s) | HDF5 {result['hdf5_bytes'] / 2**20:.1f} MiB -> "
          f"LeRobot {result['lerobot_bytes'] / 2**20:.1f} MiB (videos {videos / 2**20:.1f}) | loader "
          f"{direct:.0f} vs {via:.0f} batches/s ({via / direct:.2f}x) |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
