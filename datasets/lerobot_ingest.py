"""LeRobot v3.0 directories given to ``mtil ingest`` and ``mtil info``: checked before anything is written,
then decoded into the ingest directory's temp folder as ``lerobot-NAME.hdf5`` (``lerobot_convert``)."""

from __future__ import annotations

import dataclasses
import os

from mtil.datasets.errors import DataError, UserError
from mtil.datasets.lerobot_read import LeRobotInfo, inspect_lerobot, is_lerobot_dir
from mtil.datasets.text_table import text_table


def _env_from(path: str, found: dict[str, LeRobotInfo]) -> dict:
    """The simulator description of the collected file ``path``, whose actions must have the size of every
    dataset's in ``found`` (the env it describes takes actions of that size)."""
    from mtil.datasets.schema import inspect_file

    fi = inspect_file(path, check_values=False)
    if fi.problems:
        raise UserError(f"--env-from {path}: {fi.problems[0].what}")
    if not fi.env_args:
        raise UserError(f"--env-from {path}: the file has no env_args (data.attrs['env_args'])")
    for source, info in found.items():
        if fi.action_dim is not None and info.action_dim != fi.action_dim:
            raise UserError(f"--env-from {path}: its environment takes actions of {fi.action_dim} values, the "
                            f"dataset {source} has actions of {info.action_dim}: a policy trained on it could not "
                            "act there (give --env-from a file collected with the same robot and controller)")
    return {k: v for k, v in fi.env_args.items() if k != "image_convention"}


def free_bytes_needed(found: dict[str, LeRobotInfo]) -> int:
    """What the decoded HDF5 files of ``found`` take on disk: every frame of every camera as uint8, the
    actions and low-dim vectors as float32, plus HDF5's per-dataset overhead."""
    total = 0
    for info in found.values():
        per_frame = sum(h * w * c for h, w, c in info.cameras.values())
        per_frame += 4 * (info.action_dim + sum(b - a for parts in info.lowdim.values() for _, a, b in parts))
        total += per_frame * info.num_frames + 64 * 1024 * (1 + len(info.episodes))
    return total


def check_room(found: dict[str, LeRobotInfo], out: str, shown: str) -> None:
    """``UserError`` unless the file system of ``out`` has room for the decoded datasets (checked before
    decoding: HDF5 cannot close a file cleanly once a write has failed)."""
    import shutil

    need = free_bytes_needed(found)
    probe = out
    while not os.path.isdir(probe):
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe).free
    if need > free:
        raise UserError(f"--out {shown}: no space left on device for the decoded videos: they need about "
                        f"{_mib(need)}, {_mib(free)} free there")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n // 1024} KiB"


def check_lerobot_sources(cfg) -> tuple[dict[str, LeRobotInfo], dict | None]:
    """({source: checked dataset} for the LeRobot directories among ``cfg.sources``, env_args from
    --env-from); raises ``DataError`` listing every problem of every one."""
    found = {s: inspect_lerobot(s) for s in cfg.sources if is_lerobot_dir(s)}
    problems = [p for info in found.values() for p in info.problems]
    if problems:
        raise DataError(problems)
    for info in found.values():
        for note in info.notes:
            print(f"note: {note}")
    if cfg.env_from and not found:
        raise UserError("--env-from applies to LeRobot dataset directories; none was given")
    env_args = _env_from(cfg.env_from, found) if cfg.env_from else None
    if found and env_args is None:
        bare = [s for s, info in found.items() if not (info.mtil or {}).get("env_args")]
        if bare:
            print(f"note: {bare[0]}: no simulator description (env_args): it trains, but `mtil eval` needs one; "
                  "give --env-from FILE.hdf5 (a file `mtil collect` wrote for the same tasks and cameras)")
    return found, env_args


def convert_lerobot_sources(found: dict[str, LeRobotInfo], folder: str, env_args: dict | None) -> dict[str, str]:
    """Decode each dataset into ``folder/lerobot-NAME.hdf5``; returns {source: that path}."""
    from tqdm import tqdm

    from mtil.datasets.lerobot_convert import convert_lerobot

    out: dict[str, str] = {}
    for source, info in found.items():
        name = os.path.basename(os.path.abspath(source)) or "dataset"
        path = os.path.join(folder, f"lerobot-{name}.hdf5")
        i = 1
        while path in out.values():
            i += 1
            path = os.path.join(folder, f"lerobot-{name}-{i}.hdf5")
        total = sum(len(e.videos) for e in info.episodes)
        with tqdm(total=total, desc=f"decoding {name}", unit="episode video", leave=False, disable=None) as bar:
            out[source] = convert_lerobot(info, path, env_args, progress=bar)
    return out


def moved_files(manifest, tmp: str, out: str):
    """The manifest with the converted files' paths as they will be once ``tmp`` is renamed to ``out``."""
    prefix = os.path.abspath(tmp) + os.sep
    files = [dataclasses.replace(f, path=os.path.join(out, f.path[len(prefix):])) if f.path.startswith(prefix) else f
             for f in manifest.files]
    return dataclasses.replace(manifest, files=files)


def lerobot_summary(info: LeRobotInfo) -> list[str]:
    out = [f"== {info.root}  (LeRobot v3.0 dataset, {len(info.episodes)} episodes, {info.num_frames} frames, "
           f"{info.fps:g} fps, robot {info.robot_type or '-'})"]
    if info.episodes:
        tasks: dict[str, list[int]] = {}
        for e in info.episodes:
            tasks.setdefault(e.task, []).append(e.length)
        out.append(text_table([[t, str(len(ls)), str(sum(ls)), f"{min(ls)}..{max(ls)}"] for t, ls in tasks.items()],
                          ["task", "episodes", "frames", "length"]))
    rows = [[f, fmt_key, "x".join(map(str, s)), "video " + info.codecs.get(f, "?")] for f, s in info.cameras.items()
            for fmt_key in [_camera(f)]]
    rows += [[f, k, str(b - a), "low-dim"] for f, parts in info.lowdim.items() for k, a, b in parts]
    if rows:
        out.append(text_table(rows, ["feature", "mtil key", "shape", "kind"]))
    env = "yes (written by mtil export)" if (info.mtil or {}).get("env_args") else "none (give --env-from at ingest)"
    out.append(f"action dim: {info.action_dim or '-'}   env_args: {env}")
    if info.problems:
        out.append(f"problems ({len(info.problems)}):")
        out.extend(f"  - {p}" for p in info.problems)
    else:
        out.append("problems: none (video pixels are decoded at ingest)")
    out.append("")
    return out


def _camera(feature: str) -> str:
    from mtil.datasets.lerobot_format import camera_key

    return camera_key(feature)
