"""`mtil train` on data from other tools (issue 14): default low-dim keys an env gives at rollout, the
check of the policy's keys against each file's environment, and user errors that end in a message."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from mtil.datasets.manifest import build_manifest
from mtil.datasets.synthetic import write_synthetic
from mtil.pipeline.cli.main import main
from mtil.pipeline.policy.model import default_lowdim_keys

LIFT_ENV_ARGS = {"env_name": "Lift", "type": 1, "env_kwargs": {
    "robots": ["Panda"], "camera_names": ["agentview", "robot0_eye_in_hand"], "camera_heights": 16,
    "camera_widths": 16, "use_camera_obs": True, "use_object_obs": True, "control_freq": 20}}


def robomimic_like(path: str, env_args: dict | None = None) -> str:
    """A synthetic file with the extra proprio keys robomimic's conversion writes, and stock Lift env_args."""
    write_synthetic(path, tasks=["lift the cube"], demos_per_task=3, steps=10, per_demo_language=False)
    with h5py.File(path, "a") as f:
        f["data"].attrs["env_args"] = json.dumps(env_args or LIFT_ENV_ARGS)
        for name in f["data"]:
            obs = f["data"][name]["obs"]
            T = obs["robot0_eef_pos"].shape[0]
            obs["robot0_eef_quat"] = np.tile([0.0, 0.0, 0.0, 1.0], (T, 1))
            obs["robot0_eef_quat_site"] = np.tile([0.0, 0.0, 0.0, 1.0], (T, 1))
            obs["robot0_joint_acc"] = np.zeros((T, 7))
            obs["robot0_gripper_qvel"] = np.zeros((T, 2))
    return path


def test_default_lowdim_keys_are_the_ones_envs_give(tmp_path):
    """Defect 1: the default took every proprio-looking key (robot0_eef_quat_site, robot0_joint_acc, ...)."""
    manifest, _ = build_manifest([robomimic_like(str(tmp_path / "lift.hdf5"))])
    assert default_lowdim_keys(manifest.obs) == ["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"]
    libero = write_synthetic(str(tmp_path / "libero.hdf5"), tasks=["open"], layout="libero")
    obs = build_manifest([libero])[0].obs  # none of them: every low-dim key naming eef, gripper or joint
    assert default_lowdim_keys(obs) == [k for k in obs if not obs[k].image and any(
        s in k for s in ("eef", "gripper", "joint"))] != []


def test_train_checks_keys_against_the_files_env(tmp_path, capsys):
    """A key the file's environment (stock Lift) does not produce: exit 2 naming it, before training;
    --skip-env-check trains anyway; the default keys pass the check."""
    pytest.importorskip("robosuite")
    src = robomimic_like(str(tmp_path / "lift.hdf5"))
    common = ["--data", src, "--steps", "1", "--batch-size", "2", "--conditioning", "onehot", "--cond-dim", "8"]
    assert main(["train", *common, "--out", str(tmp_path / "a"), "--lowdim-keys", "robot0_joint_acc"]) == 2
    err = capsys.readouterr().err
    assert "robot0_joint_acc" in err and "lift.hdf5" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()
    assert main(["train", *common, "--out", str(tmp_path / "b"), "--lowdim-keys", "robot0_joint_acc",
                 "--skip-env-check"]) == 0
    assert main(["train", *common, "--out", str(tmp_path / "c")]) == 0
    policy = json.loads((tmp_path / "c" / "config.json").read_text())["policy"]
    assert policy["lowdim_keys"] == ["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"]
