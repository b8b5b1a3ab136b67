"""LeRobot's dataset format, v3.0 (LeRobot >= 0.4): the names both directions share.

A dataset directory::

    meta/info.json                      codebase_version "v3.0", fps, features, path templates, totals
    meta/stats.json                     per feature: min, max, mean, std, count, q01..q99
    meta/tasks.parquet                  task string (the pandas index) -> task_index
    meta/episodes/chunk-XXX/file-XXX.parquet   one row per episode: length, tasks, where its frames are
    data/chunk-XXX/file-XXX.parquet     one row per frame, many episodes per file
    videos/<video key>/chunk-XXX/file-XXX.mp4  many episodes per file, located by from/to timestamps

How mtil's keys map (docs/data.md): camera ``agentview_image`` <-> video feature
``observation.images.agentview``; proprioception (robot0_eef_pos, ...) <-> ``observation.state`` with one
name per element, ``<key>.<i>``; other low-dim keys (object poses) <-> ``observation.environment_state``
the same way; any other ``observation.<name>`` vector -> key ``<name>``; ``action`` <-> actions, unchanged
(robosuite's gripper convention: -1 opens, +1 closes). Images are upright in both.
"""

from __future__ import annotations

import re

CODEBASE_VERSION = "v3.0"
INFO = "meta/info.json"
STATS = "meta/stats.json"
TASKS = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
IMAGE_PREFIX = "observation.images."
STATE = "observation.state"
ENV_STATE = "observation.environment_state"
FRAME_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
"""Columns every v3.0 data file has beside the features."""
MTIL_INFO_KEY = "mtil"
"""Our block in info.json (LeRobot's reader ignores keys it does not know): the simulator description
(env_args) that evaluation needs and the source file, so an exported dataset ingests back evaluable."""
CONVERT_V21 = ("python -m lerobot.datasets.v30.convert_dataset_v21_to_v30 --repo-id=REPO_ID --root=DIR "
               "(LeRobot >= 0.4)")


def camera_feature(key: str) -> str:
    """``agentview_image`` -> ``observation.images.agentview``."""
    return IMAGE_PREFIX + (key[: -len("_image")] if key.endswith("_image") else key)


def camera_key(feature: str) -> str:
    """``observation.images.agentview`` -> ``agentview_image`` (LeRobot's ``observation.image`` ->
    ``image``... ``_image`` added when the name lacks it)."""
    name = feature[len(IMAGE_PREFIX):] if feature.startswith(IMAGE_PREFIX) else feature.split(".")[-1]
    name = name.replace(".", "_")
    return name if name.endswith("_image") else name + "_image"


def element_names(keys: list[str], dims: list[int]) -> list[str]:
    """Per-element names of a concatenated state vector: ``robot0_eef_pos.0``, ``robot0_eef_pos.1``, ..."""
    return [f"{k}.{i}" for k, d in zip(keys, dims) for i in range(d)]


def split_names(names) -> list[tuple[str, int, int]] | None:
    """The (key, start, stop) slices of a state vector whose element names are ``<key>.<i>`` with i = 0, 1,
    ... in order (what ``element_names`` writes); None when they are not (another tool's names)."""
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return None
    out: list[tuple[str, int, int]] = []
    for j, name in enumerate(names):
        m = re.fullmatch(r"(.+)\.(\d+)", name)
        if not m:
            return None
        key, i = m.group(1), int(m.group(2))
        if out and out[-1][0] == key and i == out[-1][2] - out[-1][1]:
            out[-1] = (key, out[-1][1], j + 1)
        elif i == 0 and all(k != key for k, _, _ in out):
            out.append((key, j, j + 1))
        else:
            return None
    return out


def lowdim_feature_key(feature: str) -> str:
    """A non-camera feature's mtil key when it is not split by element names: ``observation.state`` ->
    ``state``, ``observation.environment_state`` -> ``environment_state``."""
    name = feature[len("observation."):] if feature.startswith("observation.") else feature
    return name.replace(".", "_")
