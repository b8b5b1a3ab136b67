"""The manifest: what a set of demonstration files holds, a ``Manifest`` (``manifest_types.py`` owns its
layout and its JSON form).

``build_manifest`` validates the files (raising ``DataError``), assigns every demo a task (by its
instruction text) and a split, and computes streaming statistics of actions and low-dim observations
over the training split. ``mtil ingest`` writes the result to ``DIR/manifest.json`` (``Manifest.to_dict``)
+ ``DIR/stats.json``; training can also build it in memory straight from HDF5 paths.
"""

from __future__ import annotations

import dataclasses
import json
import os

import h5py
import numpy as np

from mtil.datasets.errors import UserError
from mtil.datasets.manifest_types import (
    MANIFEST_VERSION,
    DemoEntry,
    FileEntry,
    KeyEntry,
    Manifest,
    ObsEntry,
    SplitInfo,
    TaskEntry,
)
from mtil.datasets.schema import FileInfo, common_obs, is_image_key, validate_files
from mtil.datasets.stats import RunningStats


def _split_demos(info: FileInfo, task_of: dict[str, int], valid_fraction: float, seed: int) -> dict[str, str]:
    """Use the file's train/valid masks when present; otherwise hold out a seeded fraction per task."""
    names = [d.name for d in info.demos]
    failed = set(info.masks.get("failed", []))  # `mtil collect --keep-failures`: unsuccessful episodes
    if "train" in info.masks or "valid" in info.masks:
        valid = set(info.masks.get("valid", []))
        if "train" in info.masks:
            train = set(info.masks["train"])
            return {n: "train" if n in train else ("valid" if n in valid else ("failed" if n in failed else "unused"))
                    for n in names}
        return {n: "valid" if n in valid else ("failed" if n in failed else "train") for n in names}
    split = {n: "failed" if n in failed else "train" for n in names}
    by_task: dict[int, list[str]] = {}
    for n in names:
        if n not in failed:
            by_task.setdefault(task_of[n], []).append(n)
    for task, members in by_task.items():
        n_valid = int(np.floor(len(members) * valid_fraction + 0.5))
        n_valid = min(n_valid, len(members) - 1)
        if n_valid <= 0:
            continue
        rng = np.random.default_rng([seed, task, len(members)])
        for i in rng.permutation(len(members))[:n_valid]:
            split[members[i]] = "valid"
    return split


def build_manifest(paths: list[str], instructions: list[str] | None = None, valid_fraction: float = 0.1,
                   seed: int = 0, progress=None, notes: list[str] | None = None) -> tuple[Manifest, dict]:
    """Validate ``paths`` and return ``(manifest, stats)``; raises ``DataError`` naming every problem.

    ``notes``, if given, receives one line per file that was given an instruction and used none of it
    (every demo carries its own language, which wins)."""
    if not paths:
        raise UserError("no input files given")
    if not 0.0 <= valid_fraction < 1.0:
        raise UserError(f"--valid-fraction must be in [0, 1), got {valid_fraction}")
    infos = validate_files(list(paths), instructions)
    if notes is not None and instructions:
        for i, info in enumerate(infos):
            if not info.given_instruction_used:
                given = instructions[0] if len(instructions) == 1 else instructions[i]
                notes.append(f"{paths[i]}: its demos carry their own language instruction, which wins over "
                             f"--instruction {given!r} (that fills in only demos without one)")
    tasks: list[TaskEntry] = []
    task_index: dict[str, int] = {}
    demos: list[DemoEntry] = []
    files: list[FileEntry] = []
    for fi, info in enumerate(infos):
        task_of = {}
        for d in info.demos:
            if d.instruction not in task_index:
                task_index[d.instruction] = len(tasks)
                tasks.append(TaskEntry(id=len(tasks), instruction=d.instruction, name=d.task_name,
                                       num_demos=0, num_steps=0, num_train=0, num_valid=0))
            task_of[d.name] = task_index[d.instruction]
            if d.task_name and not tasks[task_of[d.name]].name:
                tasks[task_of[d.name]].name = d.task_name
        split = _split_demos(info, task_of, valid_fraction, seed)
        for d in info.demos:
            t = tasks[task_of[d.name]]
            t.num_demos += 1
            t.num_steps += d.length
            t.num_train += split[d.name] == "train"
            t.num_valid += split[d.name] == "valid"
            demos.append(DemoEntry(file=fi, name=d.name, task=task_of[d.name], length=d.length, split=split[d.name]))
        files.append(FileEntry(path=info.path, layout=info.layout, size_bytes=info.size_bytes,
                               mtime_ns=os.stat(info.path).st_mtime_ns, fingerprint=fingerprint(info.path),
                               num_demos=len(info.demos), num_steps=info.num_steps, env_args=info.env_args,
                               flip_images=info.flip_images, key_map=info.key_map,
                               obs={k: KeyEntry(shape=list(v.shape), dtype=v.dtype)
                                    for k, v in sorted(info.obs.items())}))
    obs = {k: ObsEntry(shape=list(v.shape), dtype=v.dtype, image=is_image_key(k), compressed=v.compressed)
           for k, v in common_obs(infos).items()}
    manifest = Manifest(files=files, tasks=tasks, demos=demos, obs=obs, action_dim=infos[0].action_dim,
                        split=SplitInfo(source="mask" if any(i.masks for i in infos) else "generated",
                                        valid_fraction=valid_fraction, seed=seed,
                                        train=sum(d.split == "train" for d in demos),
                                        valid=sum(d.split == "valid" for d in demos)))
    return manifest, compute_stats(manifest, progress=progress)


def fingerprint(path: str, span: int = 1 << 20) -> str:
    """A fast content check of a source file: crc32 of its size, first and last MiB."""
    import zlib

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        crc = zlib.crc32(str(size).encode())
        crc = zlib.crc32(f.read(span), crc)
        f.seek(max(0, size - span))
        crc = zlib.crc32(f.read(span), crc)
    return f"crc32:{crc:08x}"


def check_sources(manifest: Manifest, where: str) -> None:
    """Every source file of an ingested manifest is still where it was, with the same size, modification time
    and fingerprint; else ``UserError`` naming it (moved, shortened or edited since `mtil ingest`). Manifests
    written before fingerprints existed are checked for existence and size only."""
    for f in manifest.files:
        path, again = f.path, f"re-run `mtil ingest` (manifest {where})"
        if not os.path.isfile(path):
            raise UserError(f"{path}: source file of the ingested data is gone (moved or deleted?); {again}")
        st = os.stat(path)
        if f.size_bytes is not None and st.st_size != f.size_bytes:
            raise UserError(f"{path}: changed since ingest ({f.size_bytes} -> {st.st_size} bytes); {again}")
        if f.fingerprint is not None and (st.st_mtime_ns != f.mtime_ns or fingerprint(path) != f.fingerprint):
            raise UserError(f"{path}: modified since ingest (modification time or content differs); {again}")


def compute_stats(manifest: Manifest, split: str = "train", progress=None) -> dict:
    """Mean/std/min/max per dimension of actions and every low-dim obs key, over ``split`` demos."""
    keys = [k for k, v in manifest.obs.items() if not v.image]
    running = {"actions": RunningStats(), **{f"obs/{k}": RunningStats() for k in keys}}
    selected = [d for d in manifest.demos if d.split == split] or manifest.demos
    by_file: dict[int, list[DemoEntry]] = {}
    for d in selected:
        by_file.setdefault(d.file, []).append(d)
    for fi, ds in by_file.items():
        finfo = manifest.files[fi]
        with h5py.File(finfo.path, "r") as f:
            for d in ds:
                g = f["data"][d.name]
                running["actions"].update(g["actions"][()])
                for k in keys:
                    running[f"obs/{k}"].update(g["obs"][finfo.stored_key(k)][()])
                if progress is not None:
                    progress.update(1)
    return {name: rs.to_dict() for name, rs in running.items()}


def _manifest_path(path: str) -> str:
    mpath = os.path.join(path, "manifest.json") if os.path.isdir(path) else path
    if not os.path.exists(mpath):
        if os.path.isdir(os.path.join(path, "meta")):
            raise UserError(f"{path}: a LeRobot dataset: run `mtil ingest {path} --out DIR` once (it decodes the "
                            "videos into a file training memory-maps), then use DIR")
        raise UserError(f"{path}: no manifest.json (run `mtil ingest` first or pass HDF5 files)")
    return mpath


def read_manifest(path: str) -> Manifest:
    """``DIR/manifest.json`` (or that file) written by ``mtil ingest``; ``UserError`` naming it when it is
    missing, unreadable or malformed."""
    mpath = _manifest_path(path)
    return Manifest.from_dict(_read_json(mpath), mpath)


def load_manifest(path: str) -> tuple[Manifest, dict | None]:
    """Load ``DIR/manifest.json`` (and ``stats.json`` beside it) written by ``mtil ingest``."""
    mpath = _manifest_path(path)
    manifest = Manifest.from_dict(_read_json(mpath), mpath)
    spath = os.path.join(os.path.dirname(mpath), "stats.json")
    stats = None
    if os.path.exists(spath):
        stats = _read_json(spath)
        _check_stats(stats, manifest, spath)
    return manifest, stats


def _read_json(path: str):
    """The JSON in ``path``; ``UserError`` naming it when it cannot be read or parsed."""
    again = "run `mtil ingest` again"
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); {again}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not valid JSON (not UTF-8 text: byte {e.start}); {again}") from None
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e})") from None


def _check_stats(stats, manifest: Manifest, spath: str) -> None:
    """``stats.json`` holds, for actions and every low-dim key of the manifest, a dict of per-dimension
    count/mean/std/min/max (``RunningStats.to_dict``); ``UserError`` naming the file otherwise."""
    def bad(what: str) -> UserError:
        return UserError(f"{spath}: {what}: not statistics written by `mtil ingest`; run `mtil ingest` again")

    if not isinstance(stats, dict):
        raise bad(f"expected a JSON object, found a {type(stats).__name__}")
    dims = {"actions": manifest.action_dim}
    for k, v in manifest.obs.items():
        if not v.image:
            dims[f"obs/{k}"] = int(np.prod(v.shape or [1]))
    for name, dim in dims.items():
        entry = stats.get(name)
        if not isinstance(entry, dict):
            raise bad(f"{name!r} is missing" if entry is None else f"{name!r} is a {type(entry).__name__}")
        for field in ("mean", "std", "min", "max"):
            values = entry.get(field)
            ok = isinstance(values, list) and all(isinstance(x, (int, float)) and np.isfinite(x) for x in values)
            if not ok or (isinstance(dim, int) and len(values) != dim):
                raise bad(f"{name}.{field} must be a list of {dim} finite numbers")


def manifest_from_inputs(inputs: list[str], instructions: list[str] | None = None,
                         valid_fraction: float = 0.1, seed: int = 0) -> tuple[Manifest, dict]:
    """An ingest directory, or HDF5 files validated on the fly. Used by training and `mtil info`."""
    if len(inputs) == 1 and os.path.isdir(inputs[0]):
        manifest, stats = load_manifest(inputs[0])
        check_sources(manifest, inputs[0])
        if stats is None:
            stats = compute_stats(manifest)
        return manifest, stats
    return build_manifest(inputs, instructions, valid_fraction, seed)


def select_demos(manifest: Manifest, tasks: list[str] | None = None, per_task: dict[str, int] | None = None,
                 default_cap: int | None = None) -> Manifest:
    """A copy of ``manifest`` restricted to some tasks and at most N training demos per task.

    ``tasks``: instructions or task names (the demos' ``mtil_task`` attr, e.g. ``lift_red``) to keep, in
    this order; task ids are renumbered 0..K-1. ``per_task``: cap of *training* demos per task (the first
    ones in file order; ``default_cap`` for the others). Valid and failed demos are kept whole. Raises
    ``UserError`` for a task the data does not hold.
    """
    by_text = {t.instruction: t for t in manifest.tasks}
    by_name = {t.name: t.instruction for t in manifest.tasks if t.name}

    def resolve(text: str) -> str:
        text = by_name.get(text, text)
        if text not in by_text:
            have = "; ".join(f"{t.name} ({t.instruction!r})" if t.name else repr(t.instruction)
                             for t in manifest.tasks)
            raise UserError(f"task {text!r} is not in the data (have: {have})")
        return text

    keep = [resolve(t) for t in tasks] if tasks else [t.instruction for t in manifest.tasks]
    per_task = {resolve(k): n for k, n in (per_task or {}).items()}
    new_id = {by_text[text].id: i for i, text in enumerate(keep)}
    caps = {by_text[text].id: n for text, n in (per_task or {}).items()}
    taken: dict[int, int] = {}
    demos = []
    for d in manifest.demos:
        if d.task not in new_id:
            continue
        if d.split == "train":
            cap = caps.get(d.task, default_cap)
            if cap is not None and taken.get(d.task, 0) >= cap:
                continue
            taken[d.task] = taken.get(d.task, 0) + 1
        demos.append(dataclasses.replace(d, task=new_id[d.task]))
    new_tasks = []
    for i, text in enumerate(keep):
        mine = [d for d in demos if d.task == i]
        new_tasks.append(dataclasses.replace(by_text[text], id=i, num_demos=len(mine),
                                             num_steps=sum(d.length for d in mine),
                                             num_train=sum(d.split == "train" for d in mine),
                                             num_valid=sum(d.split == "valid" for d in mine)))
    out = dataclasses.replace(manifest, tasks=new_tasks, demos=demos)
    out.split = dataclasses.replace(manifest.split, train=out.count("train"), valid=out.count("valid"))
    return out


__all__ = ["MANIFEST_VERSION", "DemoEntry", "FileEntry", "KeyEntry", "Manifest", "ObsEntry", "SplitInfo",
           "TaskEntry", "build_manifest", "check_sources", "compute_stats", "fingerprint", "load_manifest",
           "manifest_from_inputs", "read_manifest", "select_demos"]
