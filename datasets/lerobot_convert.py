"""A checked LeRobot v3.0 dataset -> one robomimic-layout HDF5 file (what ``mtil ingest DIR`` puts in its
output directory and training memory-maps).

Each episode becomes ``data/demo_<episode_index>`` with ``actions``, ``obs/<key>`` (cameras decoded from
the mp4s, low-dim vectors split back into mtil's keys where their element names allow) and its task string
as ``language_instruction``. ``data`` attrs: ``env_args`` (from the dataset's ``mtil`` block, from
``--env-from``, or none: then the data trains but cannot be evaluated in simulation) with
``image_convention: opencv`` (LeRobot frames are upright), and ``lerobot`` (fps, robot_type, source).
"""

from __future__ import annotations

import errno
import json
import os
import re
import traceback

import h5py
import numpy as np

from mtil.datasets import lerobot_format as fmt
from mtil.datasets.errors import DataError, Problem
from mtil.datasets.lerobot_read import LeRobotInfo, fixed_lists


def _write_tables(info: LeRobotInfo, data: h5py.Group, keep: list) -> None:
    """actions and low-dim observations of every episode, from the data parquet files; every group and
    dataset made is appended to ``keep`` (see ``_write_file``)."""
    import pyarrow.parquet as pq

    for rel, eps in info.episodes_by_data_file().items():
        table = pq.read_table(os.path.join(info.root, rel), columns=["episode_index", "action", *info.lowdim])
        episode = table.column("episode_index").to_numpy()
        columns = {name: fixed_lists(table.column(name), table.num_rows, rel, info)
                   for name in ["action", *info.lowdim]}
        for ep in eps:
            rows = np.flatnonzero(episode == ep.index)
            g = data.create_group(f"demo_{ep.index}")
            keep.append(g)
            g.attrs.update(num_samples=ep.length, language_instruction=ep.task, lerobot_episode_index=ep.index)
            keep.append(g.create_dataset("actions", data=columns["action"][rows].astype(np.float32)))
            obs = g.create_group("obs")
            keep.append(obs)
            for name, parts in info.lowdim.items():
                for key, a, b in parts:
                    keep.append(obs.create_dataset(key, data=columns[name][rows, a:b].astype(np.float32)))
            for cam, (h, w, c) in info.cameras.items():
                keep.append(obs.create_dataset(fmt.camera_key(cam), shape=(ep.length, h, w, c), dtype=np.uint8))


def _decode_videos(info: LeRobotInfo, data: h5py.Group, progress=None) -> None:
    """Stream each mp4 once, front to back, writing each episode's frames where its timestamps say. A frame
    FFmpeg cannot give is a ``DataError`` naming the mp4; a failed write (a full disk) is the ``OSError``
    itself, never reported as a decoding problem."""
    from mtil.datasets.video_io import video_frames

    by_file: dict[tuple[str, str], list] = {}
    for ep in info.episodes:
        for cam, (mp4, t0, _) in ep.videos.items():
            by_file.setdefault((cam, mp4), []).append((int(round(t0 * info.fps)), ep))
    for (cam, mp4), eps in by_file.items():
        eps.sort(key=lambda x: x[0])
        key = fmt.camera_key(cam)
        h, w, _ = info.cameras[cam]
        frames = _open_video(info, mp4, video_frames)
        if tuple(frames.meta["size"]) != (w, h):
            raise DataError([Problem(info.root, mp4, f"frames are {frames.meta['size'][0]}x{frames.meta['size'][1]}, "
                                                     f"info.json says {w}x{h} (W x H)")])
        datasets = {ep.index: data[f"demo_{ep.index}/obs/{key}"] for _, ep in eps}  # opened once, kept
        for start, ep in eps:
            ds = datasets[ep.index]
            while frames.pos < start:
                frames.next(f"episode {ep.index} of {cam}")
            for t in range(ep.length):
                ds[t] = frames.next(f"episode {ep.index} of {cam}")
            if progress is not None:
                progress.update(1)
        frames.close()


class _Frames:
    """An mp4's frames in order, each decoding failure a ``DataError`` naming the file."""

    def __init__(self, info: LeRobotInfo, mp4: str, meta: dict, it):
        self.info, self.mp4, self.meta, self.it, self.pos = info, mp4, meta, it, 0

    def next(self, needed_by: str):
        try:
            frame = next(self.it)
        except StopIteration:
            raise DataError([Problem(self.info.root, self.mp4, f"has {self.pos} decodable frames, fewer than its "
                                                               f"episodes need ({needed_by})")]) from None
        except (RuntimeError, OSError) as e:
            raise _undecodable(self.info, self.mp4, e) from None
        self.pos += 1
        return frame

    def close(self) -> None:
        self.it.close()


def _undecodable(info: LeRobotInfo, mp4: str, e: Exception) -> DataError:
    return DataError([Problem(info.root, mp4, f"cannot be decoded ({str(e).strip().splitlines()[-1][:200]})")])


def _open_video(info: LeRobotInfo, mp4: str, video_frames) -> _Frames:
    try:
        meta, it = video_frames(os.path.join(info.root, mp4))
    except (RuntimeError, OSError) as e:
        raise _undecodable(info, mp4, e) from None
    return _Frames(info, mp4, meta, it)


def _write_failed(path: str, e: Exception) -> OSError:
    """The ``OSError`` of a failed HDF5 write, with the errno HDF5 reports in its message (28: no space)."""
    found = re.search(r"errno = (\d+)", str(e))
    code = getattr(e, "errno", None) or (int(found.group(1)) if found else errno.EIO)
    return OSError(code, os.strerror(code), path)


def _close_quietly(f: h5py.File) -> None:
    try:
        f.close()
    except (OSError, RuntimeError):
        pass


def _write_file(f: h5py.File, info: LeRobotInfo, env: dict, progress) -> None:
    """Every object made stays referenced until the end, and the file is flushed after each stage: HDF5
    writes an object's header when its last reference goes, and a write failing there (a full disk) is only
    printed ("Exception ignored"), never raised, after which the library's state is broken (segfaults,
    measured). Kept alive, the first failure is a write or a flush, which raise."""
    keep: list = []
    data = f.create_group("data")
    _write_tables(info, data, keep)
    f.flush()
    _decode_videos(info, data, progress)
    f.flush()
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
    f.flush()


def convert_lerobot(info: LeRobotInfo, out: str, env_args: dict | None = None, progress=None) -> str:
    """Write the checked dataset ``info`` as the HDF5 file ``out`` (the caller makes it atomic); returns
    ``out``. ``env_args``: the simulator description when the dataset carries none of ours."""
    mine = (info.mtil or {}).get("env_args")
    env = dict(mine if isinstance(mine, dict) else env_args or {})
    env["image_convention"] = "opencv"  # LeRobot frames are upright
    f = h5py.File(out, "w")
    try:
        _write_file(f, info, env, progress)
    except (OSError, RuntimeError) as e:
        if not isinstance(e, OSError) and "write failed" not in str(e):
            _close_quietly(f)
            raise
        # A failed write leaves HDF5 unable to flush its metadata, and a file it cannot close crashes the
        # interpreter at exit (segfault, measured on a full tmpfs). Truncating the file first frees the space
        # the close needs; the file is a temp file of ours, removed by the caller.
        os.truncate(out, 0)
        traceback.clear_frames(e.__traceback__)  # the objects it holds close now, while there is room
        _close_quietly(f)
        raise _write_failed(out, e) from None
    except BaseException:
        _close_quietly(f)
        raise
    f.close()
    return out
