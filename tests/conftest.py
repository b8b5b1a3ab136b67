"""Shared fixtures: tiny real HDF5 files written by mtil.datasets.synthetic."""

from __future__ import annotations

import os

import pytest
import torch

from mtil.datasets.synthetic import write_synthetic

# Test models are tiny: one thread each is fastest, and two OpenMP threads per process thrash badly when
# the 2 cores are shared (measured: 23 ms vs 850 ms per step under load). Subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

# Measured: when a MuJoCo EGL context already exists in the process, the first import of triton (pulled in
# lazily by torch during training) segfaults. Tests that simulate and train in one process would then
# crash depending on test order; importing it first, as `mtil train` alone always does, avoids that.
try:
    import triton.runtime  # noqa: F401
except ImportError:
    pass

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def two_task_file(tmp_path):
    return write_synthetic(str(tmp_path / "two.hdf5"), demos_per_task=[3, 5], steps=(8, 14), seed=1)


@pytest.fixture
def libero_file(tmp_path):
    return write_synthetic(str(tmp_path / "libero.hdf5"), tasks=["open the drawer"], layout="libero", seed=2)
