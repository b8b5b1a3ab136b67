"""The one cache folder of mtil (language embeddings, decimated meshes): ``$MTIL_CACHE_DIR``, else the
older name ``$MTIL_CACHE`` if set, else ``~/.cache/mtil``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MIN_FREE = 8 * 2**20
"""What the caches may need to write: the decimated robot meshes (0.7 MiB), embeddings (1.5 KiB each)."""


def cache_root() -> Path:
    """Root of every on-disk cache; read at each call, so a changed environment is honoured."""
    root = os.environ.get("MTIL_CACHE_DIR") or os.environ.get("MTIL_CACHE") or os.path.join("~", ".cache", "mtil")
    return Path(os.path.expanduser(root))


def _named() -> str:
    for var in ("MTIL_CACHE_DIR", "MTIL_CACHE"):
        if os.environ.get(var):
            return f"{var}={os.environ[var]}"
    return f"the cache folder {cache_root()} (set MTIL_CACHE_DIR to use another)"


def check_cache_root() -> Path:
    """The cache folder exists or can be made, takes a file, and has room for the caches; else a
    ``UserError`` naming the variable that chose it and why. Commands that simulate or embed call it up
    front: a cache that cannot be written would otherwise fail inside every worker's episode."""
    from mtil.datasets.errors import UserError

    root = cache_root()
    how = "mtil keeps decimated meshes and language embeddings there; point MTIL_CACHE_DIR at a writable folder"
    if root.exists() and not root.is_dir():
        raise UserError(f"{_named()}: is a file, not a folder ({how})")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root) as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise UserError(f"{_named()}: cannot be used ({e.strerror or e}; {how})") from None
    free = shutil.disk_usage(root).free
    if free < MIN_FREE:
        raise UserError(f"{_named()}: only {free // 1024} KiB free on its file system, the caches need up to "
                        f"{MIN_FREE // 2**20} MiB ({how})")
    return root
