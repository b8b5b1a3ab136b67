"""Atomic file writes: a temp file in the target's folder, fsync, then one rename. Readers see the old
file or the new one, never half of one; an exception or Ctrl-C leaves the old file untouched."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import IO


def atomic_write(path: str, write: Callable[[IO], None], binary: bool = False) -> None:
    """Call ``write(f)`` on a temp file beside ``path``, fsync it and rename it over ``path``."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=d)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str, obj) -> None:
    atomic_write(path, lambda f: json.dump(obj, f, indent=1))
