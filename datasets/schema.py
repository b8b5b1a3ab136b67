"""Schema and validation of demonstration files (robomimic's HDF5 layout and LIBERO's variant).

Layout (DESIGN.md §3)::

    data                      attrs: total (int), env_args (JSON), optional problem_info (JSON, LIBERO)
    data/demo_<n>             attrs: num_samples, optional language_instruction, model_file
        actions   (T, A) float
        states    (T, S)        optional, for replay
        rewards   (T,), dones (T,)  optional
        obs/<key> (T, ...)      images: uint8 (T, H, W, 3), keys ending in _image (or _rgb in LIBERO)
        next_obs/<key>          optional
    mask/<filter>             arrays of demo names (train, valid, ...)

``inspect_file`` reads a file without ever writing to it and returns a ``FileInfo`` listing every problem
found (it does not stop at the first); ``validate_files`` raises ``DataError`` if any file has one.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import h5py
import numpy as np

from mtil.datasets.errors import DataError, Problem

IMAGE_SUFFIXES = ("_image", "_rgb")
PROPRIO_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")
"""The proprioception keys mtil's environments give at rollout (pipeline/sim/envs.py): the default low-dim
keys of a policy, where the data has them."""


def is_image_key(key: str) -> bool:
    return key.endswith(IMAGE_SUFFIXES)


def demo_sort_key(name: str) -> tuple[int, str]:
    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else -1, name)


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value.item())
    return str(value)


@dataclass
class DemoInfo:
    name: str
    length: int
    instruction: str | None
    task_name: str | None = None  # short task name from the demo attr ``mtil_task`` (mtil collect), if any


@dataclass
class KeyInfo:
    shape: tuple[int, ...]  # per step, e.g. (84, 84, 3)
    dtype: str
    compressed: bool  # gzip/lzf or chunked: cannot be memory-mapped


@dataclass
class FileInfo:
    path: str
    size_bytes: int = 0
    layout: str = "robomimic"  # or "libero"
    env_args: dict | None = None
    file_instruction: str | None = None
    demos: list[DemoInfo] = field(default_factory=list)
    obs: dict[str, KeyInfo] = field(default_factory=dict)  # by canonical key
    key_map: dict[str, str] = field(default_factory=dict)  # stored key -> canonical key
    flip_images: bool = False  # stored upside down (OpenGL convention): flip rows on read
    action_dim: int | None = None
    masks: dict[str, list[str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def num_steps(self) -> int:
        return sum(d.length for d in self.demos)

    def stored_key(self, canonical: str) -> str:
        for stored, canon in self.key_map.items():
            if canon == canonical:
                return stored
        return canonical


def canonical_key(key: str) -> str:
    """LIBERO's ``agentview_rgb`` is our ``agentview_image``; other keys keep their names."""
    return key[: -len("_rgb")] + "_image" if key.endswith("_rgb") else key


def _instruction(value, info: FileInfo, where: str) -> str | None:
    """A language instruction: text (str, or bytes in UTF-8); anything else (a number, an array, invalid
    UTF-8) is a problem, not a task name."""
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)) and value.dtype.kind in "OSU":
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as e:
            info.problems.append(Problem(info.path, where, f"is not valid UTF-8 text (byte {e.start})"))
            return None
    if isinstance(value, str):
        try:
            value.encode("utf-8")  # h5py hands invalid UTF-8 over as lone surrogates
        except UnicodeEncodeError as e:
            info.problems.append(Problem(info.path, where, f"is not valid UTF-8 text (character {e.start})"))
            return None
    if not isinstance(value, str):
        shown = value.tolist() if isinstance(value, np.ndarray) else value
        info.problems.append(Problem(info.path, where, f"must be a text, found {type(value).__name__} {shown!r}"))
        return None
    return value


def _int_attr(attrs, name: str, info: FileInfo, where: str) -> int | None:
    """An attribute that must hold one integer (``total``, ``num_samples``); a problem and None otherwise."""
    if name not in attrs:
        return None
    value = np.asarray(attrs[name])
    first = value.reshape(-1)[0] if value.size == 1 else None
    if first is None or value.dtype.kind not in "iuf" or not np.isfinite(first) or first % 1 != 0:
        info.problems.append(Problem(info.path, f"{where}.attrs['{name}']",
                                     f"must be one integer, found {value.tolist()!r} (dtype {value.dtype})"))
        return None
    return int(first)


def _parse_json_attr(attrs, name: str, info: FileInfo, where: str) -> dict | None:
    if name not in attrs:
        return None
    try:
        value = json.loads(_text(attrs[name]))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        info.problems.append(Problem(info.path, f"{where}.attrs['{name}']", f"is not valid JSON ({e.msg})"))
        return None
    if not isinstance(value, dict):
        info.problems.append(Problem(info.path, f"{where}.attrs['{name}']", "is JSON but not an object"))
        return None
    return value


def inspect_file(path: str, instruction: str | None = None, check_values: bool = True) -> FileInfo:
    """Read ``path`` (never writing) and describe it; every problem found goes to ``info.problems``.

    ``instruction`` is used for demos that carry no language of their own. ``check_values`` scans
    actions and low-dim observations for NaN/inf (images are uint8 and need no scan).
    """
    info = FileInfo(path=os.path.abspath(path))
    if not os.path.exists(path):
        info.problems.append(Problem(path, "", "file does not exist"))
        return info
    if os.path.isdir(path):
        info.problems.append(Problem(path, "", "is a directory, expected an HDF5 file"))
        return info
    info.size_bytes = os.path.getsize(path)
    try:
        if not h5py.is_hdf5(path):
            info.problems.append(Problem(path, "", "is not an HDF5 file"))
            return info
        with h5py.File(path, "r") as f:
            _inspect_open_file(f, info, instruction, check_values)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
        # h5py raises these for truncated or corrupt files, often only when a dataset is read; say which.
        guess = "truncated or corrupt? " if isinstance(e, OSError) and not isinstance(e, PermissionError) else ""
        info.problems.append(Problem(path, "", f"cannot be read ({guess}{type(e).__name__}: {e})"))
    return info


def _inspect_open_file(f: h5py.File, info: FileInfo, instruction: str | None, check_values: bool) -> None:
    p = info.problems
    if "data" not in f or not isinstance(f["data"], h5py.Group):
        p.append(Problem(info.path, "data", "missing: not a robomimic-layout file (no 'data' group)"))
        return
    data = f["data"]
    info.env_args = _parse_json_attr(data.attrs, "env_args", info, "data")
    problem_info = _parse_json_attr(data.attrs, "problem_info", info, "data")
    if problem_info and problem_info.get("language_instruction"):
        text = problem_info["language_instruction"]
        if isinstance(text, list) and all(isinstance(t, str) for t in text):  # LIBERO: a list of words
            text = " ".join(text)
        info.file_instruction = _instruction(text, info, "data.attrs['problem_info'].language_instruction")

    names = sorted((k for k in data.keys() if isinstance(data[k], h5py.Group)), key=demo_sort_key)
    for name in names:  # a soft link to another demo would count its data twice
        link = data.get(name, getlink=True)
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            p.append(Problem(info.path, f"data/{name}", f"is a link to {link.path}: its steps would count twice"))
    if not names:
        p.append(Problem(info.path, "data", "contains no demos"))
        return

    stored_keys: list[str] | None = None
    for name in names:
        where = f"data/{name}"
        g = data[name]
        demo_instruction = (_instruction(g.attrs["language_instruction"], info,
                                         f"{where}.attrs['language_instruction']")
                            if "language_instruction" in g.attrs else None)
        text = demo_instruction or info.file_instruction or instruction
        bad_attr = "language_instruction" in g.attrs and demo_instruction is None  # already a problem
        if (not text or not text.strip()) and not bad_attr:
            p.append(Problem(info.path, where, "has no language instruction (give one at ingest: `mtil ingest "
                                               "FILE --instruction TEXT --out DIR`, and train on DIR)"))
        if "actions" not in g:
            p.append(Problem(info.path, where, "has no 'actions' dataset"))
            continue
        actions = g["actions"]
        if actions.ndim != 2 or actions.dtype.kind != "f":
            p.append(Problem(info.path, f"{where}/actions",
                             f"must be a (T, A) float array, found shape {actions.shape} dtype {actions.dtype}"))
            continue
        T = actions.shape[0]
        if T == 0:
            p.append(Problem(info.path, where, "is empty (0 steps)"))
            continue
        if info.action_dim is None:
            info.action_dim = actions.shape[1]
        elif actions.shape[1] != info.action_dim:
            p.append(Problem(info.path, f"{where}/actions",
                             f"has action dim {actions.shape[1]}, other demos have {info.action_dim}"))
        if check_values:
            a = actions[()]
            bad = np.flatnonzero(~np.isfinite(a).all(axis=1))
            if bad.size:
                p.append(Problem(info.path, f"{where}/actions", f"contains NaN/inf at step {int(bad[0])}"))
        num_samples = _int_attr(g.attrs, "num_samples", info, where)
        if num_samples is not None and num_samples != T:
            p.append(Problem(info.path, where, f"attr num_samples={num_samples} but actions has {T} steps"))
        for opt in ("states", "rewards", "dones"):
            if opt in g and (g[opt].ndim == 0 or g[opt].shape[0] != T):
                p.append(Problem(info.path, f"{where}/{opt}", f"has {g[opt].shape[:1]} steps, actions has {T}"))
        if "obs" not in g or not isinstance(g["obs"], h5py.Group):
            p.append(Problem(info.path, where, "has no 'obs' group"))
            continue
        keys = sorted(g["obs"].keys())
        if not keys:
            p.append(Problem(info.path, f"{where}/obs", "is empty: no observation keys"))
            continue
        if stored_keys is None:
            stored_keys = keys
        elif keys != stored_keys:
            p.append(Problem(info.path, f"{where}/obs", f"has keys {keys}, first demo has {stored_keys}"))
        for key in keys:
            _check_obs(g["obs"][key], f"{where}/obs/{key}", key, T, info, check_values)
        task_name = _text(g.attrs["mtil_task"]) if "mtil_task" in g.attrs else None
        info.demos.append(DemoInfo(name, T, text.strip() if text else None, task_name))

    if any(k.endswith("_rgb") for k in stored_keys or []) or (problem_info is not None):
        info.layout = "libero"
    info.key_map = {k: canonical_key(k) for k in stored_keys or []}
    convention = (info.env_args or {}).get("image_convention")
    info.flip_images = convention == "opengl" or (convention is None and info.layout == "libero")

    total = _int_attr(data.attrs, "total", info, "data")
    if total is not None:
        actual = sum(d.length for d in info.demos)
        if total != actual and not p:
            p.append(Problem(info.path, "data.attrs['total']", f"is {total} but the demos hold {actual} steps"))

    if "mask" in f and not isinstance(f["mask"], h5py.Group):
        p.append(Problem(info.path, "mask", "is not a group (expected mask/<filter> datasets of demo names)"))
    elif "mask" in f:
        present = set(names)
        for filt in f["mask"].keys():
            if not isinstance(f["mask"][filt], h5py.Dataset):
                p.append(Problem(info.path, f"mask/{filt}", "is a group, expected a dataset of demo names"))
                continue
            demo_names = [_text(x) for x in np.asarray(f["mask"][filt][()]).reshape(-1)]
            missing = [n for n in demo_names if n not in present]
            if missing:
                p.append(Problem(info.path, f"mask/{filt}", f"names missing demo '{missing[0]}'"))
            info.masks[filt] = demo_names


def _check_obs(ds, where: str, key: str, T: int, info: FileInfo, check_values: bool) -> None:
    p = info.problems
    if not isinstance(ds, h5py.Dataset):
        p.append(Problem(info.path, where, "is a group, expected a dataset"))
        return
    if ds.ndim == 0 or ds.shape[0] != T:
        p.append(Problem(info.path, where, f"has {ds.shape[:1] or 0} steps but actions has {T}"))
        return
    compressed = ds.compression is not None or ds.chunks is not None
    if is_image_key(key):
        if ds.ndim != 4 or ds.shape[-1] != 3:
            p.append(Problem(info.path, where, f"image must be (T, H, W, 3), found shape {ds.shape}"))
            return
        if ds.dtype != np.uint8:
            p.append(Problem(info.path, where, f"image must be uint8, found {ds.dtype}"))
            return
    else:
        if ds.dtype.kind not in "fiub":
            p.append(Problem(info.path, where, f"low-dim obs must be numeric, found {ds.dtype}"))
            return
        if check_values and ds.dtype.kind == "f":
            v = ds[()]
            bad = np.flatnonzero(~np.isfinite(v.reshape(T, -1)).all(axis=1))
            if bad.size:
                p.append(Problem(info.path, where, f"contains NaN/inf at step {int(bad[0])}"))
    canon = canonical_key(key)
    ki = KeyInfo(tuple(int(s) for s in ds.shape[1:]), str(ds.dtype), compressed)
    old = info.obs.get(canon)
    if old is None:
        info.obs[canon] = ki
    elif old.shape != ki.shape or old.dtype != ki.dtype:
        p.append(Problem(info.path, where, f"shape {ki.shape} {ki.dtype} differs from other demos' "
                                           f"{old.shape} {old.dtype}"))
    elif compressed:
        old.compressed = True


def common_obs(infos: list[FileInfo]) -> dict[str, KeyInfo]:
    """The observation keys every file has, with the same shape in every file (sorted by name); compressed
    if any file stores the key compressed."""
    keys = set(infos[0].obs)
    for info in infos[1:]:
        keys &= {k for k, v in info.obs.items() if k in infos[0].obs and v.shape == infos[0].obs[k].shape}
    return {k: KeyInfo(infos[0].obs[k].shape, infos[0].obs[k].dtype, any(i.obs[k].compressed for i in infos))
            for k in sorted(keys)}


def validate_files(paths: list[str], instructions: list[str] | None = None) -> list[FileInfo]:
    """Inspect every file and check they agree with each other; raise ``DataError`` listing all problems.

    ``instructions``: none, one for every file, or one per file (for files with no language of their own).
    """
    instructions = instructions or []
    if len(instructions) not in (0, 1, len(paths)):
        raise DataError([Problem("--instruction", "", f"give one instruction or one per file ({len(paths)}), "
                                                      f"got {len(instructions)}")])
    seen: dict[str, str] = {}
    for path in paths:  # the same file twice (or through a link) would count its demos twice
        real = os.path.realpath(path)
        if real in seen:
            raise DataError([Problem(path, "", f"given twice (also as {seen[real]}): its demos would count twice")])
        seen[real] = path
    infos = []
    for i, path in enumerate(paths):
        text = instructions[0] if len(instructions) == 1 else (instructions[i] if instructions else None)
        infos.append(inspect_file(path, text))
    problems = [pr for info in infos for pr in info.problems]
    ok = [i for i in infos if not i.problems]
    if ok:
        ref = ok[0]
        for info in ok[1:]:
            if info.action_dim != ref.action_dim:
                problems.append(Problem(info.path, "data/*/actions",
                                        f"action dim {info.action_dim} differs from {ref.path} ({ref.action_dim})"))
            # Observation keys may differ between files (each its own env): the policy reads the keys they
            # share with equal shapes (``common_obs``); the images it reads must be a camera of every file.
            if not any(is_image_key(k) for k in common_obs([ref, info])):
                problems.append(Problem(info.path, "obs", f"shares no camera (an *_image key of the same shape) "
                                                          f"with {ref.path}"))
    if problems:
        raise DataError(problems)
    return infos
