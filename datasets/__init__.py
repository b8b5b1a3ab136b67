"""mtil.datasets: the HDF5 data layer.

Schema and validation of robomimic-layout files (and LIBERO's variant), ingest into a manifest with
streaming statistics, a windowed uint8 dataset, the stratified per-task batch sampler and hindsight
goal sampling. Import the pieces from their modules, e.g. ``from mtil.datasets.sampler import
StratifiedTaskBatchSampler``; nothing heavy is imported here.
"""

if __name__ == "datasets":  # imported by the bare name: the repo root is on sys.path (python -c/-m there)
    raise ImportError("this is mtil's datasets/ folder, not Hugging Face `datasets`: the mtil repo root is on "
                      "sys.path (python -c / python -m started in it). Use the `mtil` and `pytest` commands, or "
                      "start Python elsewhere; mtil's data layer is `mtil.datasets`.")

from mtil.datasets.errors import DataError, Problem, UserError  # noqa: E402

__all__ = ["DataError", "Problem", "UserError"]
