"""Issue 14, defect 4: crashes leave no garbage and no processes behind. Collect's temp HDF5 goes even when
closing it fails; collect's and eval's workers die with their parent; --resume finds the newest checkpoint
after a kill between step_N.pt and last.pt; a plain rerun never overwrites step files; temp files of
interrupted saves are cleaned at the next start."""

from __future__ import annotations

import os
import shutil

import h5py
import pytest

from mtil.datasets.synthetic import write_synthetic
from mtil.pipeline.cli.main import main

TRAIN = ["--batch-size", "4", "--conditioning", "onehot", "--cond-dim", "8", "--action-horizon", "4"]


def test_collect_temp_file_removed_when_close_fails(tmp_path, monkeypatch, capsys):
    """A full disk: writing fails, and closing the file then fails too; the temp file is removed anyway."""
    pytest.importorskip("robosuite")
    from mtil.pipeline.sim.collect import CollectConfig, collect

    def disk_full(self, *a, **k):
        raise OSError(28, "No space left on device")

    real_close = h5py.File.close

    def close_fails(self):
        real_close(self)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(h5py.File, "create_group", disk_full)
    monkeypatch.setattr(h5py.File, "close", close_fails)
    with pytest.raises(OSError, match="No space"):
        collect(CollectConfig(tasks="lift_red", demos_per_task=1, workers=1, out=str(tmp_path / "d.hdf5")))
    assert os.listdir(tmp_path) == []


def test_collect_workers_die_with_the_parent(tmp_path, kill_parent_and_check_workers):
    pytest.importorskip("robosuite")
    kill_parent_and_check_workers(["collect", "--tasks", "lift_red", "--demos-per-task", "20", "--workers", "2",
                                   "--out", str(tmp_path / "d.hdf5"), "--image-size", "16", "--no-progress"], 2)


def test_resume_from_the_newest_checkpoint(tmp_path, capsys):
    data = write_synthetic(str(tmp_path / "demos.hdf5"), demos_per_task=[2, 2], steps=8, image_size=16)
    run = tmp_path / "run"
    args = ["train", "--data", data, "--out", str(run), "--steps", "3", "--save-every", "1", *TRAIN]
    assert main([*args[:6], "2", *args[7:]]) == 0  # 2 steps: step_1.pt, step_2.pt, last.pt (step 2)
    # a kill between writing step_2.pt and last.pt: last.pt still holds step 1
    shutil.copy(run / "step_1.pt", run / "last.pt")
    (run / ".last.pt.tmp-ab12cd34.pt").write_bytes(b"half a checkpoint")  # an interrupted save
    capsys.readouterr()
    assert main(["train", "--data", data, "--out", str(run), "--steps", "2", "--save-every", "1", "--resume",
                 *TRAIN]) == 0
    err = capsys.readouterr().err
    assert "resuming from step_2.pt" in err
    assert not (run / ".last.pt.tmp-ab12cd34.pt").exists()
    # last.pt missing altogether: the newest step file
    os.unlink(run / "last.pt")
    before = (run / "step_2.pt").read_bytes()
    # a plain rerun refuses (it would restart at step 0 and overwrite step_1.pt, step_2.pt)
    assert main(["train", "--data", data, "--out", str(run), "--steps", "2", *TRAIN]) == 2
    assert "step_2.pt" in capsys.readouterr().err and (run / "step_2.pt").read_bytes() == before
    assert main(["train", "--data", data, "--out", str(run), "--steps", "3", "--save-every", "1", "--resume",
                 *TRAIN]) == 2  # --steps changed: the config check still applies
    assert main(["train", "--data", data, "--out", str(run), "--steps", "2", "--save-every", "1", "--resume",
                 *TRAIN]) == 0
    assert "resuming from step_2.pt" in capsys.readouterr().err and (run / "last.pt").exists()
