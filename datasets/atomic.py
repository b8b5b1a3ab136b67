"""Atomic file writes: a temp file (or folder) in the target's folder, fsync, then one rename. Readers see
the old file or the new one, never half of one; an exception or Ctrl-C leaves the old file untouched and
no temp file behind.

    with atomic_path("out/demos.hdf5") as tmp:     # every temp-then-rename write goes through this
        h5py.File(tmp, "w") ...                    # write tmp; on success it replaces out/demos.hdf5
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO


class AtomicPath:
    """A temp path beside ``path`` (same folder, so the rename is atomic; same extension, so tools that
    pick a format by extension still work). ``commit()`` fsyncs it and renames it onto ``path``;
    ``discard()`` removes it (a no-op after a commit). ``directory=True`` makes a temp folder instead (it
    may replace ``path`` only if that is missing or an empty folder)."""

    def __init__(self, path: str, directory: bool = False):
        self.path = os.path.abspath(path)
        folder, base = os.path.split(self.path)
        if directory:
            self.tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=folder)
        else:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{base}.tmp-", suffix=os.path.splitext(base)[1], dir=folder)
            os.close(fd)
        os.chmod(self.tmp, (0o777 if directory else 0o666) & ~_umask())  # as open()/mkdir would make it
        self.done = False

    def commit(self) -> None:
        files = ([os.path.join(self.tmp, n) for n in os.listdir(self.tmp)] if os.path.isdir(self.tmp)
                 else [self.tmp])
        for name in files:
            if os.path.isfile(name):
                with open(name, "rb+") as f:
                    os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        self.done = True

    def discard(self) -> None:
        if not self.done and os.path.lexists(self.tmp):
            if os.path.isdir(self.tmp):
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                os.unlink(self.tmp)
        self.done = True


def check_writable_dir(path: str, option: str = "--out") -> str:
    """``path`` is a directory we can write in, or can be created: its nearest existing ancestor is a
    writable directory (tested by creating a temp file there, which also catches read-only mounts). Creates
    nothing; raises ``UserError`` naming ``option`` otherwise. Returns the absolute path."""
    from mtil.datasets.errors import UserError

    out = os.path.abspath(path)
    probe = out
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        what = "exists and is not a directory" if probe == out else f"{probe} is a file, not a directory"
        raise UserError(f"{option} {path}: {what}")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise UserError(f"{option} {path}: cannot write in {probe} ({e.strerror})") from None
    return out


def remove_stale_temps(folder: str) -> list[str]:
    """Remove the temp files (not folders) ``AtomicPath`` left in ``folder`` when a process was killed
    mid-write (``.<name>.tmp-<8 chars><ext>``); returns their names. Only for folders one process owns
    (a run directory), never for a folder another writer may be using."""
    if not os.path.isdir(folder):
        return []
    stale = [n for n in os.listdir(folder) if re.fullmatch(r"\..+\.tmp-[a-z0-9_]{8}(\.\w+)?", n)
             and os.path.isfile(os.path.join(folder, n))]
    for n in stale:
        os.unlink(os.path.join(folder, n))
    return stale


def remove_stale_temps_beside(path: str, kinds: tuple[str, ...] = ("tmp",), directory: bool = True) -> list[str]:
    """Remove the temp folders (``directory``) or files ``AtomicPath(path, directory)`` left beside ``path`` when
    a process was killed mid-write (exactly ``.<name>.<kind>-<8 chars>`` as ``tempfile`` names them, files with
    ``path``'s extension after it); returns their names. The caller must keep every other writer of ``path``
    out (``mtil ingest``'s lock on --out; collect refuses an existing --out): a match belongs to no running
    process."""
    folder, base = os.path.split(os.path.abspath(path))
    pattern = re.escape(f".{base}.") + f"({'|'.join(map(re.escape, kinds))})" + r"-[a-z0-9_]{8}"
    if not directory:
        pattern += re.escape(os.path.splitext(base)[1])
    kind_ok = os.path.isdir if directory else os.path.isfile
    stale = sorted(n for n in os.listdir(folder) if re.fullmatch(pattern, n)
                   and kind_ok(os.path.join(folder, n)) and not os.path.islink(os.path.join(folder, n)))
    for n in stale:
        (shutil.rmtree if directory else os.unlink)(os.path.join(folder, n))
    return stale


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str, directory: bool = False) -> Iterator[str]:
    """Yield a temp path beside ``path``; on success fsync it and ``os.replace`` it onto ``path``, on any
    error (Ctrl-C included) remove it and re-raise."""
    target = AtomicPath(path, directory)
    try:
        yield target.tmp
        target.commit()
    except OSError as e:
        if e.errno is not None and e.filename in (None, target.tmp):  # name the file the user asked for
            # (a full disk's ENOSPC from a write names no file; one from opening names our temp file)
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), target.path) from e
        raise
    finally:
        target.discard()


def atomic_write(path: str, write: Callable[[IO], None], binary: bool = False) -> None:
    """Call ``write(f)`` on a temp file beside ``path``, then move it onto ``path`` (``atomic_path``)."""
    with atomic_path(path) as tmp, open(tmp, "wb" if binary else "w") as f:
        write(f)


def write_json_atomic(path: str, obj) -> None:
    atomic_write(path, lambda f: json.dump(obj, f, indent=1))
