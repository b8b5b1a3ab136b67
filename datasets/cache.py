"""The one cache folder of mtil (language embeddings, decimated meshes): ``$MTIL_CACHE_DIR``, else the
older name ``$MTIL_CACHE`` if set, else ``~/.cache/mtil``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Root of every on-disk cache; read at each call, so a changed environment is honoured."""
    root = os.environ.get("MTIL_CACHE_DIR") or os.environ.get("MTIL_CACHE") or os.path.join("~", ".cache", "mtil")
    return Path(os.path.expanduser(root))
