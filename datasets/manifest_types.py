"""The manifest's layout: ``Manifest`` and its entries, the one place that knows the keys of ``manifest.json``.

``Manifest.to_dict`` gives the JSON `mtil ingest` writes and ``Manifest.from_dict`` reads one back (a
malformed one is a ``UserError`` naming the file and what is wrong); every other module reads attributes
(``manifest.tasks[0].instruction``, ``demo.split``, ``file.env_args``).

Layout (version 1; keys in this order)::

    written_by                                           # "mtil ingest" (absent in manifests built in memory)
    version
    files: [{path, layout, size_bytes, mtime_ns, fingerprint, num_demos, num_steps, env_args, flip_images,
             key_map, obs: {key: {shape, dtype}}}]
    tasks: [{id, instruction, name, num_demos, num_steps, num_train, num_valid}]
    demos: [{file, name, task, length, split}]           # file = index into files; split: train | valid |
                                                         # failed (mask/failed: unsuccessful episodes) | unused
    obs:   {key: {shape, dtype, image, compressed}}      # canonical keys (LIBERO *_rgb -> *_image) that every
                                                         # file has with the same shape; files[i].obs: all of
                                                         # file i's keys (they may differ between files)
    action_dim
    split: {source, valid_fraction, seed, train, valid}

Manifests written before some keys existed still load: files without ``mtime_ns`` and ``fingerprint``
(before the source checks) or ``obs`` (before per-file keys), tasks without ``name``, no ``written_by``.
``to_dict`` leaves out those keys of a file where they are None; a task without a name is written
``name: null``, as today's ingest writes a task whose demos carry no ``mtil_task``.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import ClassVar

from mtil.datasets.errors import UserError

MANIFEST_VERSION = 1
SPLITS = ("train", "valid", "failed", "unused")
"""a demo's split; ``failed``: an unsuccessful episode (mask/failed), ``unused``: in neither mask"""


def _plain(value):
    """Entries -> dicts, recursively through lists and dicts (copies: the JSON shares nothing with them)."""
    if is_dataclass(value):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _is(value, tp) -> bool:
    """``value`` is of the annotated type ``tp`` (int, str, list[int], dict[str, X], X | None, ...)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_is(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_is(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and _is(v, args[1]) for k, v in value.items())
    if tp is type(None):
        return value is None
    if tp in (int, float):  # JSON numbers: a float field may hold an int; never a bool
        return isinstance(value, (int, float) if tp is float else int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _bad(source: str, what: str) -> UserError:
    return UserError(f"{source}: not a valid manifest ({what}): run `mtil ingest` again")


@functools.cache
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def _read(value, tp, source: str, where: str):
    """``value`` with the entries that the annotated type ``tp`` holds read from their dicts."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, _Entry):
        return tp.from_dict(value, source, where)
    if origin is list and isinstance(value, list):
        return [_read(v, args[0], source, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict and isinstance(value, dict):
        return {k: _read(v, args[1], source, f"{where}.{k}") for k, v in value.items()}
    return value


class _Entry:
    """What every entry shares: ``to_dict`` in field order and the checked reading of ``from_dict``."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()
    """keys older manifests lack: None when absent, and left out of ``to_dict`` when None"""

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)
                if not (f.name in self.OPTIONAL and getattr(self, f.name) is None)}

    @classmethod
    def from_dict(cls, d, source: str, where: str):
        """``d`` (one JSON object) -> the entry; ``UserError`` naming ``source`` and ``where`` in it when a
        key is missing or holds a value of the wrong type."""
        if not isinstance(d, dict):
            raise _bad(source, f"{where} is a {type(d).__name__}, not an object")
        own, hints = fields(cls), _hints(cls)
        missing = [f.name for f in own if f.default is MISSING and f.default_factory is MISSING and f.name not in d]
        if missing:
            raise _bad(source, f"{where} has no {', '.join(missing)}")
        kw = {f.name: _read(d[f.name], hints[f.name], source, f"{where}.{f.name}") for f in own if f.name in d}
        for f in own:
            if f.name in kw and not _is(kw[f.name], hints[f.name]):
                raise _bad(source, f"{where}.{f.name} is {d[f.name]!r:.60}, not of type {f.type}")
        return cls(**kw)


@dataclass(kw_only=True)
class KeyEntry(_Entry):
    """One observation key of one file."""

    shape: list[int]
    """per-step shape, e.g. [84, 84, 3]"""
    dtype: str
    """numpy dtype name, e.g. uint8"""


@dataclass(kw_only=True)
class ObsEntry(KeyEntry):
    """An observation key every file holds with the same shape: what a policy can read."""

    image: bool
    """a camera (``*_image`` key): uint8 frames"""
    compressed: bool
    """compressed or chunked in some file (cannot be memory-mapped)"""


@dataclass(kw_only=True)
class FileEntry(_Entry):
    """One source HDF5 file."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("size_bytes", "mtime_ns", "fingerprint", "obs")

    path: str
    """the file as given to ingest"""
    layout: str
    """robomimic | libero"""
    size_bytes: int | None = None
    """size at ingest (training refuses a file whose size changed)"""
    mtime_ns: int | None = None
    """modification time at ingest (None: a manifest from before the source checks)"""
    fingerprint: str | None = None
    """crc32 of the size and the first and last MiB at ingest (``manifest.fingerprint``)"""
    num_demos: int
    """demos in the file"""
    num_steps: int
    """steps of all its demos"""
    env_args: dict | None
    """the file's environment description (``data`` attr ``env_args``), None when it has none"""
    flip_images: bool
    """images stored upside down (OpenGL convention): rows flipped on read"""
    key_map: dict[str, str]
    """stored key -> canonical key (LIBERO's agentview_rgb -> agentview_image)"""
    obs: dict[str, KeyEntry] | None = None
    """every observation key of this file, canonical (None: a manifest from before per-file keys)"""

    def stored_key(self, key: str) -> str:
        """The name under which this file stores the canonical observation ``key``."""
        return {v: k for k, v in self.key_map.items()}.get(key, key)


@dataclass(kw_only=True)
class TaskEntry(_Entry):
    """One task: the demos sharing an instruction."""

    id: int
    """index into the manifest's tasks (the policy's task id)"""
    instruction: str
    """the language instruction (the task's identity)"""
    name: str | None = None
    """short task name from the demos' ``mtil_task`` attr (e.g. lift_red), None without one"""
    num_demos: int
    """demos of the task, every split"""
    num_steps: int
    """steps of those demos"""
    num_train: int
    """demos in the train split"""
    num_valid: int
    """demos in the valid split"""


@dataclass(kw_only=True)
class DemoEntry(_Entry):
    """One demonstration."""

    file: int
    """index into the manifest's files"""
    name: str
    """its group in the file: ``data/<name>``"""
    task: int
    """index into the manifest's tasks"""
    length: int
    """steps"""
    split: str
    """train | valid | failed | unused (``SPLITS``)"""


@dataclass(kw_only=True)
class SplitInfo(_Entry):
    """How the demos were split, and the counts."""

    source: str
    """mask (the files' mask/train, mask/valid) | generated (``valid_fraction`` of each task, seeded)"""
    valid_fraction: float
    """share of each task's demos held out when generated"""
    seed: int
    """seed of the generated split"""
    train: int
    """demos in the train split"""
    valid: int
    """demos in the valid split"""


@dataclass(kw_only=True)
class Manifest(_Entry):
    """What a set of demonstration files holds: ``build_manifest`` makes one, ``load_manifest`` reads one."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("written_by",)

    written_by: str | None = None
    """"mtil ingest" in a manifest.json ingest wrote (what --overwrite looks for); None in memory"""
    version: int = MANIFEST_VERSION
    """layout version"""
    files: list[FileEntry]
    """the source files"""
    tasks: list[TaskEntry]
    """the tasks, by id"""
    demos: list[DemoEntry]
    """every demo of every file, in file order"""
    obs: dict[str, ObsEntry]
    """the observation keys every file holds with the same shape (sorted)"""
    action_dim: int
    """size of one action"""
    split: SplitInfo
    """how the demos were split"""

    def count(self, split: str) -> int:
        """Demos in ``split``."""
        return sum(d.split == split for d in self.demos)

    def task_env_args(self) -> dict | None:
        """{instruction: env_args of the file holding the task's first demo} when the files describe different
        environments (each task is then evaluated in its own); None when they all share one."""
        if all(f.env_args == self.files[0].env_args for f in self.files):
            return None
        first: dict[int, int] = {}
        for d in self.demos:
            first.setdefault(d.task, d.file)
        return {t.instruction: self.files[first[t.id]].env_args for t in self.tasks if t.id in first}

    @classmethod
    def from_dict(cls, d, source: str, where: str = "manifest") -> Manifest:
        """A loaded manifest.json -> ``Manifest``; ``UserError`` naming ``source`` (the file) when it is not a
        manifest of this version or any part of it is missing or malformed."""
        if not isinstance(d, dict):
            raise UserError(f"{source}: expected a JSON object (a manifest written by `mtil ingest`), found a "
                            f"{type(d).__name__}")
        if d.get("version") != MANIFEST_VERSION:
            raise UserError(f"{source}: manifest version {d.get('version')!r}, expected {MANIFEST_VERSION}")
        missing = [k for k in ("files", "tasks", "demos", "obs", "action_dim", "split") if k not in d]
        if missing:
            raise UserError(f"{source}: not a complete manifest (missing {', '.join(missing)}): run `mtil ingest` "
                            "again")
        m = super().from_dict(d, source, where)
        for i, t in enumerate(m.tasks):
            if t.id != i:
                raise _bad(source, f"tasks[{i}].id is {t.id}")
        for i, dm in enumerate(m.demos):
            if not 0 <= dm.file < len(m.files) or not 0 <= dm.task < len(m.tasks) or dm.split not in SPLITS:
                raise _bad(source, f"demos[{i}]: file {dm.file} of {len(m.files)}, task {dm.task} of "
                                   f"{len(m.tasks)}, split {dm.split!r} (one of {', '.join(SPLITS)})")
        return m
