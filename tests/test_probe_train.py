"""Issue 20's probe, training: a failed checkpoint write is a message (exit 2) with the previous files intact,
and a non-finite loss or gradient stops training naming the step, never saving NaN weights."""

from __future__ import annotations

import os

import pytest
import torch

import mtil.pipeline.training.loop as train_mod
from mtil.datasets.synthetic import write_synthetic
from mtil.pipeline.cli.main import main

TRAIN = ["--batch-size", "4", "--conditioning", "onehot", "--cond-dim", "8", "--action-horizon", "4",
         "--skip-env-check"]


@pytest.fixture
def data(tmp_path):
    return write_synthetic(str(tmp_path / "demos.hdf5"), demos_per_task=[2, 2], steps=8, image_size=16)


def test_disk_full_during_a_checkpoint_save(tmp_path, data, monkeypatch, capsys):
    """Probe 1: torch's writer raises RuntimeError on a full disk; the message must say so, exit 2, with the
    temp file removed and the step files already written intact."""
    real_save = torch.save
    saves = []

    def full_after_two(obj, f, *a, **k):
        saves.append(1)
        if len(saves) > 2:  # step_1.pt and last.pt of step 1 go through; step 2's do not
            raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing "
                               "file data/3: file write failed")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full_after_two)
    run = tmp_path / "run"
    rc = main(["train", "--data", data, "--out", str(run), "--steps", "2", "--save-every", "1", *TRAIN])
    err = capsys.readouterr().err
    assert rc == 2 and "could not write the checkpoint" in err and "disk full" in err and "Traceback" not in err
    assert "step_2.pt" in err
    assert sorted(n for n in os.listdir(run) if n.endswith(".pt") or ".tmp-" in n) == ["last.pt", "step_1.pt"]
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 1


def test_non_finite_loss_stops_training_and_keeps_the_good_checkpoint(tmp_path, data, monkeypatch, capsys):
    """Probe 5: a NaN loss trained to the end, exit 0, with NaN weights in last.pt. Here the loss turns NaN at
    step 3 of 4 (checkpoints every 2 steps): training stops naming step 3, last.pt stays the good step 2."""
    real_step = train_mod.train_step

    def poisoned(state, net, batch, cfg, n):
        m = real_step(state, net, batch, cfg, n)
        if state.step >= 3:
            m["loss"] = m["loss"] * float("nan")
        return m

    monkeypatch.setattr(train_mod, "train_step", poisoned)
    run = tmp_path / "run"
    rc = main(["train", "--data", data, "--out", str(run), "--steps", "4", "--save-every", "2", *TRAIN])
    err = capsys.readouterr().err
    assert rc == 2 and "not finite at step 3" in err and "Traceback" not in err, err
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["step"] == 2 and all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert not (run / "step_4.pt").exists()


def test_infinite_learning_rate_diverges_with_a_message(tmp_path, data, capsys):
    """The loop's own guard, with validation bypassed (options are range-checked before training starts)."""
    cfg = train_mod.TrainConfig(data=[data], out=str(tmp_path / "run"), steps=3, batch_size=4, conditioning="onehot",
                                cond_dim=8, action_horizon=4, skip_env_check=True, save_every=1)
    cfg.lr = float("inf")
    with pytest.raises(train_mod.Diverged, match=r"not finite (at|after) step 1\b"):
        train_mod.train(cfg)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_video_run_with_one_demo_per_task_says_its_clips_are_that_demo(tmp_path, capsys):
    """Probe, smaller: a one-demo-per-task video run silently used that demo as its own clip."""
    one = write_synthetic(str(tmp_path / "one.hdf5"), demos_per_task=[1, 2], steps=8, image_size=16)
    assert main(["train", "--data", one, "--out", str(tmp_path / "run"), "--steps", "1", "--conditioning", "video",
                 *TRAIN[:2], *TRAIN[6:]]) == 0
    err = capsys.readouterr().err
    assert "1 task(s) have one training demo" in err and "same demo" in err


@pytest.mark.parametrize("args, expect", [
    (["--beta", "0.5"], "need --policy"),
    (["--dagger-round", "2"], "need --policy"),
    (["--max-failures", "-1"], "--max-failures must be >= 0"),
    (["--seed", "-1"], "--seed must be in [0, 2^31)"),
    (["--beta", "nan", "--policy", "x.pt"], "--beta must be in [0, 1]"),
])
def test_collect_options_are_checked(tmp_path, capsys, args, expect):
    """Probe 6: collect accepted --beta/--dagger-round without --policy, --max-failures -1 and --seed -1."""
    if "--policy" in args:
        (tmp_path / "x.pt").write_bytes(b"")
        args = [a if a != "x.pt" else str(tmp_path / "x.pt") for a in args]
    out = tmp_path / "d.hdf5"
    assert main(["collect", "--tasks", "lift_red", "--demos-per-task", "1", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err and not out.exists(), err
