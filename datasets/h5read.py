"""Reading HDF5 demo files defensively: attributes of the wrong type, links between groups, and what
h5py's errors mean. Problems go to ``info.problems`` (a ``FileInfo``, or anything with ``path`` and
``problems``) or to a given list, each naming the place in the file.

A demo reached twice (through a soft or external link, or a second hard-linked name for the same group)
would count its steps twice; a link whose target is missing cannot be read. Both are problems naming the
demo (and the missing target), never a ``KeyError`` from deep inside h5py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import h5py
import numpy as np

from mtil.datasets.errors import Problem


def attr_text(value) -> str:
    """An attribute as text: bytes decoded as UTF-8 (invalid bytes replaced), scalars unwrapped."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return attr_text(value.item())
    return str(value)


def int_attr(attrs, name: str, info, where: str) -> int | None:
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


def parse_json_attr(attrs, name: str, info, where: str) -> dict | None:
    """An attribute holding a JSON object (``env_args``, ``problem_info``); a problem and None otherwise."""
    if name not in attrs:
        return None
    try:
        value = json.loads(attr_text(attrs[name]))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        info.problems.append(Problem(info.path, f"{where}.attrs['{name}']", f"is not valid JSON ({e.msg})"))
        return None
    if not isinstance(value, dict):
        info.problems.append(Problem(info.path, f"{where}.attrs['{name}']", "is JSON but not an object"))
        return None
    return value


def link_target(link) -> str:
    return f"{link.filename}:{link.path}" if isinstance(link, h5py.ExternalLink) else link.path


def dangling_what(link, path: str) -> str:
    """Why a link (in file ``path``) whose target cannot be opened is broken: its missing file or object."""
    if isinstance(link, h5py.ExternalLink):
        candidates = [link.filename, os.path.join(os.path.dirname(os.path.abspath(path)), link.filename)]
        if not any(os.path.isfile(c) for c in candidates):
            return f"is an external link to {link_target(link)}, but file {link.filename} does not exist"
        return (f"is an external link to {link_target(link)}, but {link.path} does not exist in {link.filename} "
                "(or cannot be opened)")
    if isinstance(link, h5py.SoftLink):
        return f"is a soft link to {link.path}, which does not exist"
    return "cannot be opened"


def open_member(group: h5py.Group, name: str):
    """``group[name]``, or None when it is a link whose target is missing."""
    try:
        return group.get(name)
    except (KeyError, OSError):
        return None


def demo_names(data: h5py.Group, path: str, problems: list[Problem], sort_key: Callable) -> list[str]:
    """The groups in ``data`` (the demos), sorted by ``sort_key``. A demo reached through a soft or external
    link, a second (hard-linked) name for another demo, and a link to a missing target are each a problem
    naming the demo."""
    names: list[str] = []
    first_name: dict = {}  # object id (file and address) -> the first name it was seen under
    for name in sorted(data.keys(), key=sort_key):
        where = f"data/{name}"
        link = data.get(name, getlink=True)
        g = open_member(data, name)
        if g is None:
            problems.append(Problem(path, where, dangling_what(link, path)))
            continue
        if not isinstance(g, h5py.Group):
            continue
        names.append(name)
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            problems.append(Problem(path, where, f"is a link to {link_target(link)}: its steps would count twice"))
        elif g.id in first_name:
            problems.append(Problem(path, where, f"is another name (an HDF5 hard link) for data/{first_name[g.id]}: "
                                                 "its steps would count twice"))
        else:
            first_name[g.id] = name
    return names


def dangling_links(group: h5py.Group, where: str, path: str, problems: list[Problem], depth: int = 3) -> bool:
    """Append a problem for every link below ``group`` (``where`` in file ``path``) whose target is missing;
    True if any. Follows hard links only, ``depth`` levels down (a demo: its datasets, obs/<key>)."""
    found = False
    for name in group.keys():
        link = group.get(name, getlink=True)
        obj = open_member(group, name)
        if obj is None:
            problems.append(Problem(path, f"{where}/{name}", dangling_what(link, path)))
            found = True
        elif depth > 1 and isinstance(obj, h5py.Group) and isinstance(link, h5py.HardLink):
            found = dangling_links(obj, f"{where}/{name}", path, problems, depth - 1) or found
    return found


def read_error(e: Exception) -> str:
    """What an exception from h5py while reading a file most likely means. HDF5 locks a file its writer
    has open (errno 11), and marks a file open for SWMR writing until the writer closes it."""
    text = f"{type(e).__name__}: {e}"
    if isinstance(e, BlockingIOError) or "unable to lock file" in str(e):
        return (f"is locked: another process has it open for writing (a writer still running? wait for it to "
                f"finish or stop it) ({text})")
    if "already open for write" in str(e):
        return (f"is marked as open for writing by another process (a writer still running? if it crashed, "
                f"`h5clear -s FILE` clears the mark) ({text})")
    # h5py raises these for truncated or corrupt files, often only when a dataset is read; say which.
    guess = "truncated or corrupt? " if isinstance(e, OSError) and not isinstance(e, PermissionError) else ""
    return f"cannot be read ({guess}{text})"
