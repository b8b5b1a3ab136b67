"""A checked LeRobot v3.0 dataset -> one robomimic-layout HDF5 file (what ``mtil ingest DIR`` puts in its
output directory and training memory-maps).

Each episode becomes ``data/demo_<episode_index>`` with ``actions``, ``obs/<key>`` (cameras decoded from
the mp4s, low-dim vectors split back into mtil's keys where their element names allow) and its task string
as ``language_instruction``. ``data`` attrs: ``env_args`` (from the dataset's ``mtil`` block, from
``--env-from``, or none: then the data trains but cannot be evaluated in simulation) with
``image_convention: opencv`` (LeRobot frames are upright), and ``lerobot`` (fps, robot_type, source).
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np

from mtil.datasets import lerobot_format as fmt
from mtil.datasets.errors import DataError, Problem
from mtil.datasets.lerobot_read import LeRobotInfo, fixed_lists


def _write_tables(info: LeRobotInfo, data: h5py.Group) -> None:
    """actions and low-dim observations of every episode, from the data parquet files."""
    import pyarrow.parquet as pq

    for rel, eps in info.episodes_by_data_file().items():
        table = pq.read_table(os.path.join(info.root, rel), columns=["episode_index", "action", *info.lowdim])
        episode = table.column("episode_index").to_numpy()
        columns = {name: fixed_lists(table.column(name), table.num_rows, rel, info)
                   for name in ["action", *info.lowdim]}
        for ep in eps:
            rows = np.flatnonzero(episode == ep.index)
            g = data.create_group(f"demo_{ep.index}")
            g.attrs.update(num_samples=ep.length, language_instruction=ep.task, lerobot_episode_index=ep.index)
            g.create_dataset("actions", data=columns["action"][rows].astype(np.float32))
            obs = g.create_group("obs")
            for name, parts in info.lowdim.items():
                for key, a, b in parts:
                    obs.create_dataset(key, data=columns[name][rows, a:b].astype(np.float32))
            for cam, (h, w, c) in info.cameras.items():
                obs.create_dataset(fmt.camera_key(cam), shape=(ep.length, h, w, c), dtype=np.uint8)


def _decode_videos(info: LeRobotInfo, data: h5py.Group, progress=None) -> None:
    """Stream each mp4 once, front to back, writing each episode's frames where its timestamps say."""
    from mtil.datasets.video_io import video_frames

    by_file: dict[tuple[str, str], list] = {}
    for ep in info.episodes:
        for cam, (mp4, t0, _) in ep.videos.items():
            by_file.setdefault((cam, mp4), []).append((int(round(t0 * info.fps)), ep))
    for (cam, mp4), eps in by_file.items():
        eps.sort(key=lambda x: x[0])
        key = fmt.camera_key(cam)
        h, w, _ = info.cameras[cam]
        try:
            meta, frames = video_frames(os.path.join(info.root, mp4))
            if tuple(meta["size"]) != (w, h):
                raise DataError([Problem(info.root, mp4, f"frames are {meta['size'][0]}x{meta['size'][1]}, "
                                                         f"info.json says {w}x{h} (W x H)")])
            pos = 0
            for start, ep in eps:
                ds = data[f"demo_{ep.index}/obs/{key}"]
                while pos < start:
                    next(frames)
                    pos += 1
                for t in range(ep.length):
                    ds[t] = next(frames)
                    pos += 1
                if progress is not None:
                    progress.update(1)
            frames.close()
        except StopIteration:
            raise DataError([Problem(info.root, mp4, f"has {pos} decodable frames, fewer than its episodes need "
                                                     f"(episode {ep.index} of {cam})")]) from None
        except (RuntimeError, OSError) as e:
            raise DataError([Problem(info.root, mp4, "cannot be decoded "
                                                     f"({str(e).strip().splitlines()[-1][:200]})")]) from None


def convert_lerobot(info: LeRobotInfo, out: str, env_args: dict | None = None, progress=None) -> str:
    """Write the checked dataset ``info`` as the HDF5 file ``out`` (the caller makes it atomic); returns
    ``out``. ``env_args``: the simulator description when the dataset carries none of ours."""
    mine = (info.mtil or {}).get("env_args")
    env = dict(mine if isinstance(mine, dict) else env_args or {})
    env["image_convention"] = "opencv"  # LeRobot frames are upright
    with h5py.File(out, "w") as f:
        data = f.create_group("data")
        _write_tables(info, data)
        _decode_videos(info, data, progress)
        data.attrs["total"] = info.num_frames
        data.attrs["env_args"] = json.dumps(env)
        data.attrs["lerobot"] = json.dumps({"fps": info.fps, "robot_type": info.robot_type, "source": info.root,
                                            "codecs": info.codecs})
        valid = set((info.mtil or {}).get("valid_episodes") or [])
        if valid:  # the split of the file `mtil export` read, kept
            mask = f.create_group("mask")
            for split, keep in (("train", False), ("valid", True)):
                names = [f"demo_{e.index}" for e in info.episodes if (e.index in valid) == keep]
                mask.create_dataset(split, data=np.array(names, "S"))
    return out
