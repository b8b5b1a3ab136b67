"""Module paths from before pipeline/ was laid out by role (issue 35), mapped to where they live now.

``import mtil.pipeline.train`` (or any name below, or a submodule of it) still works: it gives the new
module itself, with a FutureWarning naming the new path, so a user's script keeps running and says what to
change. ``install()`` is called once by ``mtil.pipeline``; the finder it adds answers only these names (it
comes first, so a submodule of a moved package, ``mtil.pipeline.heads.l1``, is the new module too, never a
second copy loaded through the package's folder)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "mtil.pipeline.train": "mtil.pipeline.training.loop",
    "mtil.pipeline.train_config": "mtil.pipeline.training.config",
    "mtil.pipeline.train_data": "mtil.pipeline.training.data",
    "mtil.pipeline.distributed": "mtil.pipeline.training.distributed",
    "mtil.pipeline.evaluate": "mtil.pipeline.evaluation.run",
    "mtil.pipeline.eval_config": "mtil.pipeline.evaluation.config",
    "mtil.pipeline.eval_rows": "mtil.pipeline.evaluation.rows",
    "mtil.pipeline.eval_checks": "mtil.pipeline.evaluation.checks",
    "mtil.pipeline.eval_report": "mtil.pipeline.evaluation.report",
    "mtil.pipeline.quickstart": "mtil.pipeline.recipes.quickstart",
    "mtil.pipeline.dagger": "mtil.pipeline.recipes.dagger",
    "mtil.pipeline.video_fit": "mtil.pipeline.recipes.fit_video",
    "mtil.pipeline.normalizer": "mtil.pipeline.policy.normalizer",
    "mtil.pipeline.heads": "mtil.pipeline.policy.heads",
    "mtil.pipeline.trunks": "mtil.pipeline.policy.trunks",
}


def new_name(old: str) -> str | None:
    """Where the module ``old`` (or the package it is in) lives now; None if it did not move."""
    for before, after in MOVED.items():
        if old == before or old.startswith(before + "."):
            return after + old[len(before):]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {self.target}: import it from there", FutureWarning, stacklevel=2)
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:  # the target module ran when it was imported
        pass


class MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = new_name(fullname)
        if new is None:
            return None
        is_pkg = importlib.util.find_spec(new).submodule_search_locations is not None
        return importlib.util.spec_from_loader(fullname, _Alias(new), is_package=is_pkg)


def install() -> None:
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())
