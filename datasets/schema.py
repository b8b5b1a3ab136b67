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

import os
import re
from dataclasses import dataclass, field

import h5py
import numpy as np

from mtil.datasets.errors import DataError, Problem
from mtil.datasets.h5read import attr_text, dangling_links, demo_names, int_attr, parse_json_attr, read_error

IMAGE_SUFFIXES = ("_image", "_rgb")
PROPRIO_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")
"""The proprioception keys mtil's environments give at rollout (pipeline/sim/envs.py): the default low-dim
keys of a policy, where the data has them."""


def is_image_key(key: str) -> bool:
    return key.endswith(IMAGE_SUFFIXES)


def demo_sort_key(name: str) -> tuple[int, str]:
    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else -1, name)


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
    given_instruction_used: bool = False  # some demo took the ``instruction`` given to ``inspect_file``

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
    if _has_nul(value, info, where, "the text "):
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
        info.problems.append(Problem(path, "", read_error(e)))
    return info


def _inspect_open_file(f: h5py.File, info: FileInfo, instruction: str | None, check_values: bool) -> None:
    if "data" not in f or not isinstance(f["data"], h5py.Group):
        info.problems.append(Problem(info.path, "data", "missing: not a robomimic-layout file (no 'data' group)"))
        return
    data = f["data"]
    problem_info = _read_data_attrs(data, info)
    names = demo_names(data, info.path, info.problems, demo_sort_key)
    if not names:
        info.problems.append(Problem(info.path, "data", "contains no demos"))
        return
    stored_keys: list[str] | None = None
    for name in names:
        stored_keys = _inspect_demo(data[name], name, info, instruction, check_values, stored_keys)
    _set_layout(info, stored_keys or [], problem_info)
    total = int_attr(data.attrs, "total", info, "data")
    if total is not None:
        actual = sum(d.length for d in info.demos)
        if total != actual and not info.problems:
            info.problems.append(Problem(info.path, "data.attrs['total']",
                                         f"is {total} but the demos hold {actual} steps"))
    _read_masks(f, info, names)


def _read_data_attrs(data: h5py.Group, info: FileInfo) -> dict | None:
    """``env_args`` and LIBERO's ``problem_info`` (whose instruction is the file's); returns problem_info."""
    info.env_args = parse_json_attr(data.attrs, "env_args", info, "data")
    problem_info = parse_json_attr(data.attrs, "problem_info", info, "data")
    if problem_info and problem_info.get("language_instruction"):
        text = problem_info["language_instruction"]
        if isinstance(text, list) and all(isinstance(t, str) for t in text):  # LIBERO: a list of words
            text = " ".join(text)
        info.file_instruction = _instruction(text, info, "data.attrs['problem_info'].language_instruction")
    return problem_info


def _has_nul(text: str | None, info: FileInfo, where: str, what: str) -> bool:
    """A NUL character cannot be part of a task name (it ends C strings, file names, TensorBoard tags)."""
    if text is None or "\x00" not in text:
        return False
    info.problems.append(Problem(info.path, where, f"{what}{text!r} contains a NUL character (\\x00) at "
                                                   f"position {text.index(chr(0))}: it cannot name a task"))
    return True


def _demo_instruction(g: h5py.Group, where: str, info: FileInfo, instruction: str | None) -> str | None:
    """The demo's own instruction, else the file's, else the given one (a problem if none)."""
    demo_instruction = None
    if "language_instruction" in g.attrs:
        demo_instruction = _instruction(g.attrs["language_instruction"], info, f"{where}.attrs['language_instruction']")
    text = demo_instruction or info.file_instruction or instruction
    bad_attr = "language_instruction" in g.attrs and demo_instruction is None  # already a problem
    if text is not None and not demo_instruction and not info.file_instruction:  # the given one
        if not info.given_instruction_used and _has_nul(text, info, where, "the --instruction "):
            bad_attr = True
        info.given_instruction_used = True
    if (not text or not text.strip()) and not bad_attr:
        info.problems.append(Problem(info.path, where, "has no language instruction (give one at ingest: `mtil "
                                                       "ingest FILE --instruction TEXT --out DIR`, and train on DIR)"))
    return text


def _demo_actions(g: h5py.Group, where: str, info: FileInfo, check_values: bool) -> int | None:
    """Check ``actions`` and the per-step datasets that must match it; the number of steps, or None when the
    demo is unusable."""
    p = info.problems
    if "actions" not in g:
        p.append(Problem(info.path, where, "has no 'actions' dataset"))
        return None
    actions = g["actions"]
    if not isinstance(actions, h5py.Dataset) or actions.ndim != 2 or actions.dtype.kind != "f":
        found = (f"shape {actions.shape} dtype {actions.dtype}" if isinstance(actions, h5py.Dataset)
                 else "a group")
        p.append(Problem(info.path, f"{where}/actions", f"must be a (T, A) float array, found {found}"))
        return None
    T = actions.shape[0]
    if T == 0:
        p.append(Problem(info.path, where, "is empty (0 steps)"))
        return None
    if info.action_dim is None:
        info.action_dim = actions.shape[1]
    elif actions.shape[1] != info.action_dim:
        p.append(Problem(info.path, f"{where}/actions",
                         f"has action dim {actions.shape[1]}, other demos have {info.action_dim}"))
    if check_values:
        bad = np.flatnonzero(~np.isfinite(actions[()]).all(axis=1))
        if bad.size:
            p.append(Problem(info.path, f"{where}/actions", f"contains NaN/inf at step {int(bad[0])}"))
    num_samples = int_attr(g.attrs, "num_samples", info, where)
    if num_samples is not None and num_samples != T:
        p.append(Problem(info.path, where, f"attr num_samples={num_samples} but actions has {T} steps"))
    for opt in ("states", "rewards", "dones"):
        if opt in g and (not isinstance(g[opt], h5py.Dataset) or g[opt].ndim == 0 or g[opt].shape[0] != T):
            steps = g[opt].shape[:1] if isinstance(g[opt], h5py.Dataset) else "a group, no"
            p.append(Problem(info.path, f"{where}/{opt}", f"has {steps} steps, actions has {T}"))
    return T


def _inspect_demo(g: h5py.Group, name: str, info: FileInfo, instruction: str | None, check_values: bool,
                  stored_keys: list[str] | None) -> list[str] | None:
    """Check demo ``data/<name>`` and add it to ``info.demos`` when usable; returns the observation keys every
    demo must have (the first demo's)."""
    where = f"data/{name}"
    if dangling_links(g, where, info.path, info.problems):
        return stored_keys
    text = _demo_instruction(g, where, info, instruction)
    T = _demo_actions(g, where, info, check_values)
    if T is None:
        return stored_keys
    if "obs" not in g or not isinstance(g["obs"], h5py.Group):
        info.problems.append(Problem(info.path, where, "has no 'obs' group"))
        return stored_keys
    keys = sorted(g["obs"].keys())
    if not keys:
        info.problems.append(Problem(info.path, f"{where}/obs", "is empty: no observation keys"))
        return stored_keys
    if stored_keys is None:
        stored_keys = keys
    elif keys != stored_keys:
        info.problems.append(Problem(info.path, f"{where}/obs", f"has keys {keys}, first demo has {stored_keys}"))
    for key in keys:
        _check_obs(g["obs"][key], f"{where}/obs/{key}", key, T, info, check_values)
    task_name = attr_text(g.attrs["mtil_task"]) if "mtil_task" in g.attrs else None
    if _has_nul(task_name, info, f"{where}.attrs['mtil_task']", "task name "):
        return stored_keys
    info.demos.append(DemoInfo(name, T, text.strip() if text else None, task_name))
    return stored_keys


def _set_layout(info: FileInfo, stored_keys: list[str], problem_info: dict | None) -> None:
    if any(k.endswith("_rgb") for k in stored_keys) or (problem_info is not None):
        info.layout = "libero"
    info.key_map = {k: canonical_key(k) for k in stored_keys}
    convention = (info.env_args or {}).get("image_convention")
    info.flip_images = convention == "opengl" or (convention is None and info.layout == "libero")


def _read_masks(f: h5py.File, info: FileInfo, names: list[str]) -> None:
    """``mask/<filter>``: datasets of demo names (train, valid, failed, ...), each naming existing demos."""
    p = info.problems
    if "mask" in f and not isinstance(f["mask"], h5py.Group):
        p.append(Problem(info.path, "mask", "is not a group (expected mask/<filter> datasets of demo names)"))
    elif "mask" in f:
        present = set(names)
        for filt in f["mask"].keys():
            if not isinstance(f["mask"][filt], h5py.Dataset):
                p.append(Problem(info.path, f"mask/{filt}", "is a group, expected a dataset of demo names"))
                continue
            listed = [attr_text(x) for x in np.asarray(f["mask"][filt][()]).reshape(-1)]
            missing = [n for n in listed if n not in present]
            if missing:
                p.append(Problem(info.path, f"mask/{filt}", f"names missing demo '{missing[0]}'"))
            info.masks[filt] = listed


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
