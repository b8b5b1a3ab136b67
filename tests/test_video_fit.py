"""`mtil fit-video` (issue 21): a video encoder fitted onto a language policy's task space. The policy is not
changed, a clip of a held-out demo is identified as its task, the checkpoint takes clips of the chosen camera,
and bad input exits 2 writing nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mtil.datasets.synthetic import write_synthetic
from mtil.pipeline.checkpoint import load_policy
from mtil.pipeline.cli.main import main

TASKS = ["lift the red cube", "open the drawer"]
TINY = ["--steps", "2", "--batch-size", "4", "--cond-dim", "8", "--action-horizon", "4", "--exec-steps", "2",
        "--feature-dim", "8", "--hidden-dim", "16", "--skip-env-check"]


@pytest.fixture(scope="module")
def policy_run(tmp_path_factory):
    """A language policy trained 2 steps on synthetic demos whose images tell the tasks apart by colour."""
    d = tmp_path_factory.mktemp("fitvideo")
    data = write_synthetic(str(d / "demos.hdf5"), tasks=TASKS, demos_per_task=[6, 6], steps=12, image_size=16,
                           masks=True)
    assert main(["train", "--data", data, "--out", str(d / "run"), *TINY]) == 0
    return data, str(d / "run" / "last.pt")


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """Demos of the same tasks drawn with another seed: never fitted on."""
    path = str(tmp_path_factory.mktemp("fitvideo_heldout") / "unseen.hdf5")
    return write_synthetic(path, tasks=TASKS, demos_per_task=[2, 2], steps=12, image_size=16, seed=5)


def _obs(policy):
    obs = {k: np.full((16, 16, 3), 90, np.uint8) for k in policy.cfg.image_keys}
    obs.update({k: np.zeros(n) for k, n in zip(policy.cfg.lowdim_keys, policy.cfg.lowdim_dims)})
    return obs


def test_fit_video_identifies_heldout_clips_and_leaves_the_policy_unchanged(policy_run, heldout, tmp_path, capsys):
    data, ckpt = policy_run
    out = tmp_path / "video"
    assert main(["fit-video", ckpt, "--data", data, "--heldout", heldout, "--out", str(out), "--steps", "60",
                 "--clips-per-task", "3"]) == 0
    assert "heldout clips (agentview_image)" in capsys.readouterr().out
    report = json.loads((out / "fit_video.json").read_text())
    held = report["identification_heldout"]
    assert held["n"] == 4 and held["correct"] == 4, held
    assert report["history"][-1]["loss"] < report["history"][0]["loss"]
    before, _ = load_policy(ckpt)
    after, fitted = load_policy(str(out / "last.pt"))
    assert fitted.policy_config.conditioning_config.kind == "video"
    assert fitted.policy_config.conditioning_config.video_camera == ""  # the policy's first camera
    for name, value in before.state_dict().items():  # every weight of the policy as it was
        torch.testing.assert_close(after.state_dict()[name], value, rtol=0, atol=0)
    obs = _obs(after)
    np.testing.assert_array_equal(before.predict_action(obs, TASKS[1]), after.predict_action(obs, TASKS[1]))
    import h5py

    from mtil.datasets.schema import inspect_file

    name = next(d.name for d in inspect_file(heldout).demos if d.instruction == TASKS[1])
    with h5py.File(heldout) as f:  # a clip of an unseen demo of task 1 lands nearer its words than the other's
        clip = f["data"][name]["obs"]["agentview_image"][:4]
    with torch.no_grad():
        z_video = after.resolve_task({"video": clip}, 1)
        z_words = after.resolve_task(TASKS[1], 1)
        z_other = after.resolve_task(TASKS[0], 1)
    assert torch.dist(z_video, z_words) < torch.dist(z_video, z_other)


def test_task_space_separation():
    from mtil.pipeline.recipes.fit_video import task_space

    targets = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
    z, sep2 = task_space(lambda e: 2 * e, targets)  # a projection that doubles distances
    torch.testing.assert_close(z, 2 * targets)
    torch.testing.assert_close(sep2, torch.tensor([4.0, 36.0, 4.0]))  # nearest other task, squared
    assert task_space(lambda e: e, targets[:1])[1].tolist() == [1.0]


def test_the_task_space_loss_brings_heldout_clips_nearer_their_tasks_z(policy_run, heldout, tmp_path):
    """Same seed and steps, with and without --z-weight: where held-out clips land in the policy's space, as a
    share of the distance to the nearest other task, is reported per clip and is smaller with the loss, which
    starts once the batches' clips are told apart (the step is reported)."""
    data, ckpt = policy_run
    rel = {}
    for w in ("0", "1"):
        out = tmp_path / f"w{w}"
        assert main(["fit-video", ckpt, "--data", data, "--heldout", heldout, "--out", str(out), "--steps", "60",
                     "--clips-per-task", "3", "--z-weight", w]) == 0
        fit = json.loads((out / "fit_video.json").read_text())
        held = fit["identification_heldout"]
        z_from = fit["z_loss_from_step"]
        assert z_from is None if w == "0" else 1 < z_from < 60, z_from
        assert sorted(held["z_rel"]) == ["0", "1"] and len(held["z_rel"]["0"]) == 2
        assert held["z_rel_max"] == max(v for vs in held["z_rel"].values() for v in vs)
        rel[w] = held["z_rel_mean"]
    assert rel["1"] < rel["0"], rel


def test_fit_video_from_another_camera(policy_run, tmp_path, capsys):
    """--camera: clips of a camera other than the policy's first; the checkpoint remembers which. Two steps
    cannot tell the clips apart: the fit says the task-space loss never started."""
    data, ckpt = policy_run
    out = tmp_path / "wrist"
    assert main(["fit-video", ckpt, "--data", data, "--out", str(out), "--steps", "2",
                 "--camera", "robot0_eye_in_hand_image"]) == 0
    _, fitted = load_policy(str(out / "last.pt"))
    assert fitted.policy_config.conditioning_config.video_camera == "robot0_eye_in_hand_image"
    fit = json.loads((out / "fit_video.json").read_text())
    assert fit["camera"] == "robot0_eye_in_hand_image" and fit["z_loss_from_step"] is None
    assert "the task-space loss (--z-weight) never started" in capsys.readouterr().err
    # `mtil eval --condition video --demos` shows the task by a clip of that camera, not the policy's first
    import h5py

    from mtil.encoders.video import sample_clip
    from mtil.pipeline.evaluation.rows import _demo_rows
    from mtil.pipeline.evaluation.run import EvalConfig

    rows = _demo_rows([], EvalConfig(str(out / "last.pt"), str(tmp_path / "ev"), demos=data), fitted, "video",
                      {"drawer": TASKS[1]})
    from mtil.datasets.schema import inspect_file

    last = [d.name for d in inspect_file(data).demos if d.instruction == TASKS[1]][-1]  # eval takes the last
    frames = fitted.policy_config.conditioning_config.video_frames
    with h5py.File(data) as f:
        want = {k: sample_clip(f["data"][last]["obs"][k], frames).permute(0, 2, 3, 1).numpy()
                for k in ("agentview_image", "robot0_eye_in_hand_image")}
    clip = rows[0].task_input["video"]
    assert np.array_equal(clip, want["robot0_eye_in_hand_image"]) and not np.array_equal(clip, want["agentview_image"])


def test_eval_clips_come_from_the_validation_demos_first(policy_run, tmp_path):
    """--clips N: the task's last N demos, those in mask/valid first, one clip each."""
    import shutil

    import h5py

    from mtil.datasets.schema import inspect_file
    from mtil.pipeline.evaluation.rows import _demo_rows
    from mtil.pipeline.evaluation.run import EvalConfig

    data, ckpt = policy_run
    fitted_dir = tmp_path / "fit"
    assert main(["fit-video", ckpt, "--data", data, "--out", str(fitted_dir), "--steps", "2"]) == 0
    _, fitted = load_policy(str(fitted_dir / "last.pt"))
    red = [d.name for d in inspect_file(data).demos if d.instruction == TASKS[0]]  # 6 demos, none in mask/valid
    copy = str(tmp_path / "demos.hdf5")
    shutil.copy(data, copy)
    with h5py.File(copy, "a") as f:
        del f["mask/valid"]
        f["mask/valid"] = np.array([red[1]], dtype="S")
    cfg = EvalConfig(str(fitted_dir / "last.pt"), str(tmp_path / "ev"), demos=copy, clips=3)
    rows = _demo_rows([], cfg, fitted, "video", {"red": TASKS[0]})
    assert rows[0].task_input["names"] == [red[1], red[5], red[4]]  # the valid one, then the latest
    assert len(rows[0].task_input["clips"]) == 3
    one = _demo_rows([], EvalConfig(str(fitted_dir / "last.pt"), str(tmp_path / "ev1"), demos=copy), fitted,
                     "video", {"red": TASKS[0]})
    assert set(one[0].task_input) == {"video"}  # --clips 1 (default): one clip shows the whole row
    with h5py.File(copy, "a") as f:
        del f["mask/valid"]
        f["mask/valid"] = np.array([red[1], red[3]], dtype="S")
    every = _demo_rows([], EvalConfig(str(fitted_dir / "last.pt"), str(tmp_path / "ev0"), demos=copy, clips=0),
                       fitted, "video", {"red": TASKS[0], "drawer": TASKS[1]})
    assert every[0].task_input["names"] == [red[3], red[1]]  # --clips 0: every validation demo of the task
    assert set(every[1].task_input) == {"video"}  # a task with none in mask/valid: its latest demo


def test_fit_video_bad_input_exits_2_and_writes_nothing(policy_run, tmp_path, capsys):
    data, ckpt = policy_run
    out = tmp_path / "x"
    onehot = tmp_path / "onehot"
    assert main(["train", "--data", data, "--out", str(onehot), *TINY, "--conditioning", "onehot"]) == 0
    other = write_synthetic(str(tmp_path / "other.hdf5"), tasks=["close the drawer"], demos_per_task=2, steps=8,
                            image_size=16)
    cases = [
        ([str(onehot / "last.pt"), "--data", data], "onehot-conditioned policy; fit-video adds"),
        ([ckpt, "--data", data, "--camera", "frontview_image"], "no frontview_image in its demos"),
        ([ckpt, "--data", other], "no training demo of task(s) 'lift the red cube', 'open the drawer'"),
        ([ckpt, "--data", data, "--steps", "0"], "--steps"),
        ([ckpt, "--data", data, "--z-weight", "-1"], "--z-weight must be a finite number >= 0, got -1"),
        ([ckpt, "--data", str(tmp_path / "missing.hdf5")], "missing.hdf5"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["fit-video", *args, "--out", str(out)]) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert not out.exists()
    out.mkdir()
    (out / "last.pt").write_bytes(b"keep")
    assert main(["fit-video", ckpt, "--data", data, "--out", str(out), "--steps", "1"]) == 2
    assert "already holds last.pt" in capsys.readouterr().err and (out / "last.pt").read_bytes() == b"keep"
