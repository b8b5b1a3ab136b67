"""Goal-conditioned training with hindsight relabeling (issue 9): failed episodes kept by collection,
mixed language/goal conditioning, goal-image evaluation on the expert's same-seed episode, training-data
selection and the bad inputs of goal training."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
import torch

from mtil.datasets.manifest import build_manifest, select_demos
from mtil.datasets.synthetic import write_synthetic
from mtil.datasets.windowed import GoalSampling, WindowedDataset
from mtil.pipeline.checkpoint import load_policy
from mtil.pipeline.cli.main import main
from mtil.pipeline.policy.model import MultiTaskPolicy, PolicyConfig

FAST = ["--batch-size", "4", "--action-horizon", "4", "--exec-steps", "2", "--warmup-steps", "2", "--cond-dim", "8",
        "--save-every", "2"]


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """lift_red with noisy expert actions, failures kept: 2 successes and the failures met on the way."""
    d = tmp_path_factory.mktemp("noisy")
    path = str(d / "noisy.hdf5")
    assert main(["collect", "--tasks", "lift_red", "--demos-per-task", "2", "--workers", "1", "--out", path,
                 "--image-size", "16", "--keep-failures", "--action-noise", "0.4", "--horizon", "120",
                 "--no-progress"]) == 0
    return path


def test_keep_failures_marks_them(noisy, capsys):
    with h5py.File(noisy, "r") as f:
        failed = [n.decode() for n in f["mask/failed"][()]]
        train = [n.decode() for n in f["mask/train"][()]]
        assert failed, "noise 0.4 should make some lift_red episodes fail"
        assert all(not f["data"][n].attrs["success"] for n in failed)
        assert all(f["data"][n].attrs["success"] for n in train)
        assert not set(failed) & set(train) and len(train) == 2
        assert len(f["data"]) == len(failed) + 2
    m, _ = build_manifest([noisy])
    assert sorted(d.name for d in m.demos if d.split == "failed") == sorted(failed)
    capsys.readouterr()
    assert main(["info", noisy]) == 0  # a valid file for every reader


def _split_of_run(tmp_path, data, *args):
    out = tmp_path / "-".join(a.strip("-") for a in args)
    assert main(["train", "--data", data, "--out", str(out), "--steps", "2", *FAST, *args]) == 0
    return out


def test_failed_episodes_only_train_goal_policies(noisy, tmp_path, capsys):
    capsys.readouterr()
    _split_of_run(tmp_path, noisy, "--conditioning", "goal_image")
    assert "used as hindsight-goal data" in capsys.readouterr().err
    _split_of_run(tmp_path, noisy, "--conditioning", "onehot")
    assert "skipped" in capsys.readouterr().err
    code = main(["train", "--data", noisy, "--out", str(tmp_path / "x"), "--conditioning", "onehot",
                 "--failed-demos", "use", *FAST])
    assert code == 2 and "only goal_image or mixed" in capsys.readouterr().err


def test_mixed_policy_takes_instruction_or_goal_and_failed_samples_use_goals(tmp_path):
    """goal_prob 0: the policy's z is the instruction's for successful demos and the goal's for failed
    ones, in training mode; the same checkpoint predicts from either kind of task input."""
    path = write_synthetic(str(tmp_path / "d.hdf5"), demos_per_task=[2, 2], steps=10, image_size=16, seed=4)
    with h5py.File(path, "a") as f:  # mark demo_1 as a failed episode
        f.create_dataset("mask/failed", data=np.array([b"demo_1"]))
        f.create_dataset("mask/train", data=np.array([b"demo_0", b"demo_2", b"demo_3"]))
    m, stats = build_manifest([path])
    ds = WindowedDataset(m, ("train", "failed"), ["agentview_image", "robot0_eef_pos"], 1, 4,
                         goal=GoalSampling(seed=0))
    batch = ds.__getitems__(np.arange(len(ds)))
    failed = batch["failed"]
    assert failed.any() and not failed.all()
    cfg = PolicyConfig(image_keys=["agentview_image"], lowdim_keys=["robot0_eef_pos"], lowdim_dims=[3],
                       image_size=[16, 16], action_dim=7, action_horizon=4,
                       conditioning={"kind": "mixed", "out_dim": 8, "goal_prob": 0.0},
                       tasks=[t.instruction for t in m.tasks])
    policy = MultiTaskPolicy(cfg, stats, torch.randn(2, 384)).train()
    z, _ = policy.task_vector(batch)
    z_lang = policy.cond.project(policy.task_lang_emb[batch["task"]])
    z_goal = policy.cond(batch["goal"]["agentview_image"].permute(0, 3, 1, 2))
    assert torch.equal(z[~failed], z_lang[~failed]) and torch.equal(z[failed], z_goal[failed])
    policy.cond.cfg.goal_prob = 1.0
    z_all_goal, _ = policy.task_vector(batch)
    assert torch.equal(z_all_goal, z_goal)
    obs = {"agentview_image": np.zeros((16, 16, 3), np.uint8), "robot0_eef_pos": np.zeros(3, np.float32)}
    policy.eval()
    a = policy.predict_action(obs, m.tasks[0].instruction)
    policy.reset()
    b = policy.predict_action(obs, np.full((16, 16, 3), 128, np.uint8))
    assert a.shape == b.shape == (7,) and not np.allclose(a, b)


def test_mixed_training_and_goal_eval_from_same_seed_expert(noisy, tmp_path, capsys):
    run = _split_of_run(tmp_path, noisy, "--conditioning", "mixed")
    ckpt = str(run / "last.pt")
    policy, _ = load_policy(ckpt)
    assert policy.kind == "mixed"
    for condition, label in (("auto", "train instruction"), ("goal_image", "goal image")):
        out = tmp_path / f"eval_{condition}"
        capsys.readouterr()
        assert main(["eval", ckpt, "--out", str(out), "--episodes-per-task", "1", "--workers", "1",
                     "--max-steps", "3", "--condition", condition, "--video-episodes", "1"]) == 0
        res = json.loads((out / "eval.json").read_text())
        assert [r["condition"] for r in res["rows"]] == [label]
        ep = res["rows"][0]["episodes"][0]
        assert ep["error"] is None and ep["length"] == 3
        if condition == "goal_image":  # the goal came from the expert's own episode on this seed
            assert ep["goal_demo_success"] is True
        assert len(os.listdir(out / "videos")) == 1


def test_goal_training_needs_no_language(tmp_path, capsys):
    path = write_synthetic(str(tmp_path / "d.hdf5"), tasks=["pick it"], demos_per_task=3, steps=10, image_size=16)
    with h5py.File(path, "a") as f:
        f["data"].attrs.pop("problem_info", None)
        for g in f["data"].values():
            g.attrs.pop("language_instruction", None)
    args = ["train", "--data", path, "--steps", "2", *FAST]
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "lang")]) == 2
    assert "has no language instruction" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "goal"), "--conditioning", "goal_image"]) == 0
    _, ckpt = load_policy(str(tmp_path / "goal" / "last.pt"))
    assert ckpt.tasks == ["(no instruction)"]


def test_select_demos_caps_and_renumbers(tmp_path):
    path = write_synthetic(str(tmp_path / "d.hdf5"), tasks=["a b", "c d", "e f"], demos_per_task=[4, 4, 4],
                           steps=10, image_size=16)
    m, _ = build_manifest([path], valid_fraction=0.25)
    s = select_demos(m, ["e f", "a b"], {"a b": 1}, default_cap=2)
    assert [t.instruction for t in s.tasks] == ["e f", "a b"]
    assert [t.num_train for t in s.tasks] == [2, 1] and [t.num_valid for t in s.tasks] == [1, 1]
    firsts = [d.name for d in m.demos if d.task == 0 and d.split == "train"][:1]
    assert [d.name for d in s.demos if d.task == 1 and d.split == "train"] == firsts
    with pytest.raises(Exception, match="not in the data"):
        select_demos(m, ["x y"])


def test_bad_input_exit_2(tmp_path, capsys):
    data = write_synthetic(str(tmp_path / "d.hdf5"), demos_per_task=[2, 2], steps=(5, 9), image_size=16)
    out = tmp_path / "run"

    def run(*args) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["train", "--data", data, "--out", str(out), "--steps", "2", "--batch-size", "4", *args])
        return code, capsys.readouterr().err

    code, err = run("--action-horizon", "8")  # demos of 5-9 steps
    assert code == 2 and "fewer than the action horizon" in err and "d.hdf5" in err and "data/demo_" in err
    code, err = run("--action-horizon", "4", "--conditioning", "goal_image", "--goal-max-offset", "50")
    assert code == 2 and "not shorter than any demo" in err
    code, err = run("--action-horizon", "4", "--demos-per-task", "lift=x")
    assert code == 2 and "--demos-per-task" in err
    code, err = run("--action-horizon", "4", "--tasks", "stack the moon")
    assert code == 2 and "'stack the moon' is not in the data" in err
    assert not out.exists()
