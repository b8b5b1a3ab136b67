"""Reading a LeRobot v3.0 dataset directory (``mtil ingest DIR``, ``mtil info DIR``).

``inspect_lerobot`` checks everything but the video pixels (metadata, every parquet table, lengths, task
indices, NaN/inf, that each video exists and covers its episodes' timestamps) and lists every problem
found. ``convert_lerobot`` then writes the episodes as one robomimic-layout HDF5 file (decoding each mp4
once, front to back); an mp4 that FFmpeg cannot decode is a problem too. Training memory-maps that file:
decoding video per batch would cost more than the training step on a CPU (docs/design-notes.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from mtil.datasets import lerobot_format as fmt
from mtil.datasets.errors import DataError, Problem


@dataclass
class EpisodeMeta:
    index: int
    length: int
    task: str
    data_file: str  # relative to the root
    start: int  # dataset_from_index: the episode's first row (global "index") in its data file
    videos: dict[str, tuple[str, float, float]] = field(default_factory=dict)  # feature -> (mp4, from, to)


@dataclass
class LeRobotInfo:
    root: str
    fps: float = 0.0
    robot_type: str | None = None
    cameras: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # video feature -> (H, W, 3)
    lowdim: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)  # feature -> [(key, a, b)]
    action_dim: int = 0
    episodes: list[EpisodeMeta] = field(default_factory=list)
    mtil: dict | None = None  # our block in info.json (env_args, source), when we exported it
    codecs: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problem(self, where: str, what: str) -> None:
        self.problems.append(Problem(self.root, where, what))

    @property
    def num_frames(self) -> int:
        return sum(e.length for e in self.episodes)

    def episodes_by_data_file(self) -> dict[str, list[EpisodeMeta]]:
        """The episodes grouped by the data parquet file that holds their frames."""
        out: dict[str, list[EpisodeMeta]] = {}
        for ep in self.episodes:
            out.setdefault(ep.data_file, []).append(ep)
        return out

    def obs_keys(self) -> dict[str, tuple[int, ...]]:
        keys: dict[str, tuple[int, ...]] = {fmt.camera_key(f): s for f, s in self.cameras.items()}
        for parts in self.lowdim.values():
            keys.update({k: (b - a,) for k, a, b in parts})
        return keys


def is_lerobot_dir(path: str) -> bool:
    """A directory with LeRobot's ``meta/`` folder (any version) rather than an mtil ingest directory."""
    return os.path.isdir(os.path.join(path, "meta")) and not os.path.isfile(os.path.join(path, "manifest.json"))


def _read_info(info: LeRobotInfo) -> dict | None:
    path = os.path.join(info.root, fmt.INFO)
    if not os.path.isfile(path):
        info.problem(fmt.INFO, "missing: not a LeRobot dataset directory (or an incomplete download)")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        info.problem(fmt.INFO, f"cannot be read as JSON ({e})")
        return None
    if not isinstance(meta, dict):
        info.problem(fmt.INFO, "must hold a JSON object")
        return None
    version = meta.get("codebase_version")
    if version != fmt.CODEBASE_VERSION:
        if isinstance(version, str) and version.startswith("v2"):
            info.problem(fmt.INFO, f"codebase_version {version}: mtil reads LeRobot's v3.0 format; convert the "
                                   f"dataset first with {fmt.CONVERT_V21}")
        else:
            info.problem(fmt.INFO, f"unknown codebase_version {version!r}: mtil reads LeRobot's "
                                   f"{fmt.CODEBASE_VERSION} format")
        return None
    fps = meta.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not np.isfinite(fps) or fps <= 0:
        info.problem(f"{fmt.INFO}: fps", f"must be a positive number, found {fps!r}")
        return None
    info.fps = float(fps)
    info.robot_type = meta.get("robot_type")
    info.mtil = meta.get(fmt.MTIL_INFO_KEY) if isinstance(meta.get(fmt.MTIL_INFO_KEY), dict) else None
    return meta


def _read_features(info: LeRobotInfo, meta: dict) -> None:
    features = meta.get("features")
    if not isinstance(features, dict):
        info.problem(f"{fmt.INFO}: features", "missing or not an object")
        return
    for name, spec in features.items():
        where = f"{fmt.INFO}: features[{name!r}]"
        if name in fmt.FRAME_COLUMNS:
            continue
        if not isinstance(spec, dict) or not isinstance(spec.get("shape"), list):
            info.problem(where, "must be an object with a shape list")
            continue
        shape = tuple(spec["shape"])
        dtype = spec.get("dtype")
        if dtype == "video":
            if len(shape) != 3 or 3 not in (shape[0], shape[-1]):
                info.problem(where, f"video shape must be (H, W, 3), found {list(shape)}")
                continue
            hwc = shape if shape[-1] == 3 else (shape[1], shape[2], shape[0])
            info.cameras[name] = tuple(int(s) for s in hwc)
            info.codecs[name] = str((spec.get("info") or {}).get("video.codec", "?"))
        elif dtype == "image":
            info.problem(where, "images stored in parquet (dtype image) are not read yet: re-encode the dataset "
                                "with videos (LeRobotDataset.create(..., use_videos=True))")
        elif name == "action":
            if len(shape) != 1 or dtype not in ("float32", "float64"):
                info.problem(where, f"action must be a float vector, found dtype {dtype} shape {list(shape)}")
                continue
            info.action_dim = int(shape[0])
        elif dtype in ("float32", "float64", "int64", "int32") and len(shape) == 1 and name.startswith("observation."):
            parts = fmt.split_names(spec.get("names"))
            if parts is None or parts[-1][2] != shape[0]:
                parts = [(fmt.lowdim_feature_key(name), 0, int(shape[0]))]
            info.lowdim[name] = parts
        else:
            info.notes.append(f"{info.root}: feature {name!r} ({dtype}, shape {list(shape)}) is not an "
                              "observation mtil reads: skipped")
    if "action" not in features:
        info.problem(f"{fmt.INFO}: features", "has no 'action' feature: nothing to imitate")
    if not info.cameras:
        info.problem(f"{fmt.INFO}: features", "has no video feature (observation.images.*): a vision policy "
                                              "needs at least one camera")


def _parquet(info: LeRobotInfo, rel: str, columns=None):
    import pyarrow.parquet as pq

    path = os.path.join(info.root, rel)
    if not os.path.isfile(path):
        info.problem(rel, "missing")
        return None
    try:
        return pq.read_table(path, columns=columns)
    except Exception as e:  # pyarrow raises its own ArrowInvalid/OSError kinds for a corrupt file
        info.problem(rel, f"cannot be read as parquet ({type(e).__name__}: {e})")
        return None


def _read_tasks(info: LeRobotInfo) -> dict[int, str]:
    table = _parquet(info, fmt.TASKS)
    if table is None:
        return {}
    cols = table.column_names
    text_col = "task" if "task" in cols else next((c for c in cols if c.startswith("__index_level")), None)
    if "task_index" not in cols or text_col is None:
        info.problem(fmt.TASKS, f"needs a task_index column and the task strings (as the index), found {cols}")
        return {}
    index = table.column("task_index").to_pylist()
    bad = [i for i in index if not _count(i)]
    if bad:
        info.problem(fmt.TASKS, f"task_index must hold non-negative integers, found {', '.join(map(repr, bad[:3]))}"
                                + (f" and {len(bad) - 3} more" if len(bad) > 3 else ""))
        return {}
    tasks = {}
    for i, text in zip(index, table.column(text_col).to_pylist()):
        if not isinstance(text, str) or not text.strip() or "\x00" in text:
            info.problem(fmt.TASKS, f"task_index {i}: task must be a non-empty text, found {text!r}")
            continue
        tasks[int(i)] = text.strip()
    return tasks


def _count(v) -> bool:
    """A non-negative integer as parquet gives one (not None, not a float, not a bool)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0


def _time(v) -> bool:
    """A finite, non-negative number of seconds."""
    return isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and bool(np.isfinite(v)) and v >= 0


def _episode_tables(info: LeRobotInfo):
    folder = os.path.join(info.root, fmt.EPISODES_DIR)
    files = sorted(os.path.relpath(os.path.join(d, n), info.root) for d, _, ns in os.walk(folder)
                   for n in ns if n.endswith(".parquet"))
    if not files:
        info.problem(fmt.EPISODES_DIR, "missing or holds no parquet file: the episodes' metadata is gone")
    return [(rel, t) for rel, t in ((rel, _parquet(info, rel)) for rel in files) if t is not None]


EPISODE_COUNTS = ("episode_index", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                  "dataset_to_index")
"""Fields of an episodes parquet row that must be non-negative integers."""


def _read_episodes(info: LeRobotInfo, tasks: dict[int, str]) -> None:
    names = {*EPISODE_COUNTS, "tasks"}
    for rel, table in _episode_tables(info):
        missing = sorted(names - set(table.column_names))
        if missing:
            info.problem(rel, f"episode table lacks columns {missing}")
            continue
        for n, row in enumerate(table.to_pylist()):
            meta = _episode(info, rel, n, row, tasks)
            if meta is not None:
                info.episodes.append(meta)
    info.episodes.sort(key=lambda e: e.index)
    seen = [e.index for e in info.episodes]
    if len(set(seen)) != len(seen):
        info.problem(fmt.EPISODES_DIR, "lists an episode_index twice")


def _episode(info: LeRobotInfo, rel: str, n: int, row: dict, tasks: dict[int, str]) -> EpisodeMeta | None:
    """Row ``n`` of the episodes table ``rel`` checked field by field (each problem names the file, the
    episode and the field), as an ``EpisodeMeta``; None when it has a problem."""
    ep = row["episode_index"]
    where = f"{rel}: episode {ep if _count(ep) else f'in row {n}'}"
    bad = [f for f in EPISODE_COUNTS if not _count(row[f])]
    if bad:
        info.problem(where, f"{bad[0]} must be a non-negative integer, found {row[bad[0]]!r}")
        return None
    length = row["length"]
    if length <= 0 or row["dataset_to_index"] - row["dataset_from_index"] != length:
        info.problem(where, f"length {length} does not match dataset_from_index..dataset_to_index "
                            f"({row['dataset_from_index']}..{row['dataset_to_index']})")
        return None
    ep_tasks = row["tasks"] or []
    if not ep_tasks or not isinstance(ep_tasks[0], str):
        info.problem(where, f"has no task string (tasks = {ep_tasks!r})")
        return None
    if ep_tasks[0].strip() not in tasks.values():
        info.problem(where, f"task {ep_tasks[0]!r} is not in {fmt.TASKS}")
        return None
    if len(ep_tasks) > 1:
        info.notes.append(f"{info.root}: episode {ep} has {len(ep_tasks)} tasks; mtil takes the first, "
                          f"{ep_tasks[0]!r}, as its instruction")
    data_file = fmt.DATA_PATH.format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
    meta = EpisodeMeta(int(ep), int(length), ep_tasks[0].strip(), data_file, int(row["dataset_from_index"]))
    for cam in info.cameras:
        cols = [f"videos/{cam}/{c}" for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
        if any(c not in row for c in cols):
            info.problem(where, f"has no video location for {cam} (columns {cols[0]}, ...)")
            return None
        checks = [(c, _count) for c in cols[:2]] + [(c, _time) for c in cols[2:]]
        wrong = next((c for c, ok in checks if not ok(row[c])), None)
        if wrong is not None:
            what = "a non-negative integer" if wrong in cols[:2] else "a finite time in seconds >= 0"
            info.problem(where, f"{wrong} must be {what}, found {row[wrong]!r}")
            return None
        mp4 = fmt.VIDEO_PATH.format(video_key=cam, chunk_index=row[cols[0]], file_index=row[cols[1]])
        meta.videos[cam] = (mp4, float(row[cols[2]]), float(row[cols[3]]))
    return meta


def fixed_lists(column, n: int, where: str, info: LeRobotInfo) -> np.ndarray | None:
    """A parquet column of fixed-size lists (or plain numbers) as an (n, D) float array."""
    import pyarrow as pa

    if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
        if flat.size % max(n, 1):
            info.problem(where, f"rows are lists of unequal length ({flat.size} values over {n} rows)")
            return None
        return flat.reshape(n, -1)
    return column.to_numpy().reshape(n, 1)


def _check_data(info: LeRobotInfo, tasks: dict[int, str]) -> None:
    """Every data file: the rows of each of its episodes where the episode table says, with finite values."""
    for rel, eps in info.episodes_by_data_file().items():
        table = _parquet(info, rel, columns=["index", "episode_index", "task_index", "action", *info.lowdim])
        if table is None:
            continue
        index = table.column("index").to_numpy()
        episode = table.column("episode_index").to_numpy()
        for ep in eps:
            rows = np.flatnonzero(episode == ep.index)
            where = f"{rel}: episode {ep.index}"
            if rows.size != ep.length:
                info.problem(where, f"has {rows.size} frames, the episode table says {ep.length}")
                continue
            if index[rows[0]] != ep.start:
                info.problem(where, f"starts at index {index[rows[0]]}, the episode table says {ep.start}")
        for name in ["action", *info.lowdim]:
            values = fixed_lists(table.column(name), table.num_rows, f"{rel}: {name}", info)
            if values is None:
                continue
            declared = info.action_dim if name == "action" else info.lowdim[name][-1][2]
            if values.shape[1] != declared:
                info.problem(f"{rel}: {name}", f"rows hold {values.shape[1]} values, {fmt.INFO} says "
                                               f"{declared} (features[{name!r}].shape)")
                continue
            bad = np.flatnonzero(~np.isfinite(values.astype(np.float64)).all(axis=1))
            if bad.size:
                info.problem(f"{rel}: {name}", f"contains NaN/inf at episode {int(episode[bad[0]])}, "
                                               f"index {int(index[bad[0]])}")
        unknown = sorted(set(table.column("task_index").to_pylist()) - set(tasks))
        if unknown:
            info.problem(f"{rel}: task_index", f"values {unknown[:5]} are not in {fmt.TASKS}")


def _check_videos(info: LeRobotInfo) -> None:
    """Each episode's frames lie inside its mp4 (by the header's duration; the pixels are decoded at
    conversion)."""
    from mtil.datasets.video_io import video_frames

    durations: dict[str, float | None] = {}
    for ep in info.episodes:
        for mp4, t0, t1 in ep.videos.values():
            where = f"{mp4} (episode {ep.index})"
            if mp4 not in durations:
                path = os.path.join(info.root, mp4)
                durations[mp4] = None
                if not os.path.isfile(path):
                    info.problem(mp4, "missing")
                    continue
                try:
                    meta, frames = video_frames(path)
                    frames.close()
                    durations[mp4] = float(meta.get("duration") or 0.0)
                except (RuntimeError, OSError, StopIteration) as e:
                    info.problem(mp4, f"cannot be opened as a video ({str(e).strip().splitlines()[-1][:200]})")
                    continue
            if durations[mp4] is None:
                continue
            if abs((t1 - t0) * info.fps - ep.length) > 0.5:
                info.problem(where, f"spans {t1 - t0:.3f} s = {(t1 - t0) * info.fps:.1f} frames at {info.fps:g} "
                                    f"fps, the episode has {ep.length}")
            elif t1 > durations[mp4] + 1.0 / info.fps:
                info.problem(where, f"ends at {t1:.3f} s, after the end of the video ({durations[mp4]:.3f} s)")


def inspect_lerobot(root: str) -> LeRobotInfo:
    """Read and check a v3.0 dataset's metadata and tables (never writing); problems listed, not raised."""
    info = LeRobotInfo(root=os.path.abspath(root))
    meta = _read_info(info)
    if meta is None:
        return info
    _read_features(info, meta)
    tasks = _read_tasks(info)
    if info.problems:
        return info
    _read_episodes(info, tasks)
    if not info.episodes and not info.problems:
        info.problem(fmt.EPISODES_DIR, "lists no episodes")
    if info.problems:
        return info
    _check_data(info, tasks)
    if not info.problems:
        _check_videos(info)
    return info


def check_lerobot(root: str) -> LeRobotInfo:
    info = inspect_lerobot(root)
    if info.problems:
        raise DataError(info.problems)
    return info


__all__ = ["EpisodeMeta", "LeRobotInfo", "is_lerobot_dir", "inspect_lerobot", "check_lerobot"]
