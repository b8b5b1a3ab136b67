"""Shared fixtures: tiny real HDF5 files written by mtil.datasets.synthetic."""

from __future__ import annotations

import os

import pytest

from mtil.datasets.synthetic import write_synthetic

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def two_task_file(tmp_path):
    return write_synthetic(str(tmp_path / "two.hdf5"), demos_per_task=[3, 5], steps=(8, 14), seed=1)


@pytest.fixture
def libero_file(tmp_path):
    return write_synthetic(str(tmp_path / "libero.hdf5"), tasks=["open the drawer"], layout="libero", seed=2)
