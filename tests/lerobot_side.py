"""Run by LeRobot 0.4.4's Python (scripts/lerobot_env.sh), never by mtil's: LeRobot's own writer and
reader, for tests/test_lerobot_library.py. Arrays travel as .npz files.

    python lerobot_side.py write SPEC.npz ROOT   # LeRobotDataset.create / add_frame / save_episode / finalize
    python lerobot_side.py load ROOT OUT.npz     # LeRobotDataset(root=ROOT), every frame, in index order

SPEC.npz: ``fps``, ``tasks`` (one string per episode), ``lengths``, and per feature name F the frames of
all episodes concatenated as ``F`` with its per-element names as ``names:F`` (cameras (N, H, W, 3) uint8).
"""

from __future__ import annotations

import json
import sys

import numpy as np


def write(spec_path: str, root: str) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    spec = np.load(spec_path, allow_pickle=False)
    names = [k for k in spec.files if k not in ("fps", "tasks", "lengths") and not k.startswith("names:")]
    features = {}
    for name in names:
        arr = spec[name]
        if arr.dtype == np.uint8:
            features[name] = {"dtype": "video", "shape": tuple(arr.shape[1:]), "names": ["height", "width", "channels"]}
        else:
            features[name] = {"dtype": "float32", "shape": (arr.shape[1],), "names": list(spec[f"names:{name}"])}
    ds = LeRobotDataset.create("local/mtil-test", fps=int(spec["fps"]), features=features, root=root,
                               robot_type="panda", use_videos=True, vcodec="h264")
    start = 0
    for task, length in zip(spec["tasks"], spec["lengths"]):
        for t in range(start, start + int(length)):
            frame = {name: spec[name][t] for name in names}
            frame["task"] = str(task)
            ds.add_frame(frame)
        ds.save_episode()
        start += int(length)
    ds.finalize()


def load(root: str, out: str) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/mtil-test", root=root, video_backend="torchcodec")
    items = [ds[i] for i in range(len(ds))]
    arrays = {}
    for key in items[0]:
        if key == "task":
            continue
        arrays[key] = np.stack([np.asarray(it[key]) for it in items])
    arrays["task"] = np.array([it["task"] for it in items])
    np.savez(out, **arrays)
    print(json.dumps({"frames": len(ds), "episodes": ds.num_episodes, "fps": ds.fps}))


if __name__ == "__main__":
    {"write": write, "load": load}[sys.argv[1]](*sys.argv[2:])
