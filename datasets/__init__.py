"""mtil.datasets: the HDF5 data layer.

Schema and validation of robomimic-layout files (and LIBERO's variant), ingest into a manifest with
streaming statistics, a windowed uint8 dataset, the stratified per-task batch sampler and hindsight
goal sampling. Import the pieces from their modules, e.g. ``from mtil.datasets.sampler import
StratifiedTaskBatchSampler``; nothing heavy is imported here.
"""

from mtil.datasets.errors import DataError, Problem, UserError

__all__ = ["DataError", "Problem", "UserError"]
