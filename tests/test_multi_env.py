"""Issue 14, defect 2: multi-task over per-task files from different environments. A stock robosuite Lift
file in robomimic's layout (its own env_args, a 10-d `object`, extra proprio keys) and an `mtil collect`
suite file (28-d `object`) ingest together; the policy reads the keys they share with equal shapes; train
with default options; eval builds each task's own env, with zero error episodes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

pytest.importorskip("robosuite")

from mtil.datasets.manifest import build_manifest  # noqa: E402
from mtil.datasets.synthetic import write_synthetic  # noqa: E402
from mtil.pipeline.cli.main import main  # noqa: E402

LIFT_ENV_ARGS = {"env_name": "Lift", "type": 1, "env_kwargs": {
    "robots": ["Panda"], "camera_names": ["agentview", "robot0_eye_in_hand"], "camera_heights": 16,
    "camera_widths": 16, "use_camera_obs": True, "use_object_obs": True, "control_freq": 20,
    "reward_shaping": False, "has_renderer": False, "has_offscreen_renderer": True}}


def write_stock_lift(path: str, demos: int = 2, steps: int = 12) -> str:
    """A robomimic-layout file recorded in robosuite's stock Lift, as robomimic's conversion writes it: no
    language, extra keys the mtil env does not give (robot0_eef_quat_site, robot0_joint_acc)."""
    from mtil.pipeline.sim.envs import make_env

    env = make_env(LIFT_ENV_ARGS)
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps(LIFT_ENV_ARGS)
        total = 0
        for i in range(demos):
            obs, rows, states, actions = env.reset(seed=i), [], [], []
            for _ in range(steps):
                rows.append(obs)
                states.append(env.get_state())
                a = np.clip(rng.normal(0, 0.3, 7), -1, 1)
                actions.append(a)
                obs, _, _, _ = env.step(a)
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = steps
            g["actions"], g["states"] = np.array(actions), np.array(states)
            g["rewards"], g["dones"] = np.zeros(steps), np.zeros(steps)
            for k in rows[0]:
                g[f"obs/{k}"] = np.stack([r[k] for r in rows])
            g["obs/robot0_eef_quat_site"] = g["obs/robot0_eef_quat"][()]
            g["obs/robot0_joint_acc"] = np.zeros((steps, 7))
            total += steps
        data.attrs["total"] = total
    env.close()
    return path


def test_files_may_differ_in_keys_the_policy_does_not_read(tmp_path):
    a = write_synthetic(str(tmp_path / "a.hdf5"), tasks=["lift the cube"], per_demo_language=False)
    b = write_synthetic(str(tmp_path / "b.hdf5"), tasks=["open the drawer"])
    with h5py.File(a, "a") as f:
        for d in f["data"]:
            T = f[f"data/{d}/actions"].shape[0]
            f[f"data/{d}/obs/object"] = np.zeros((T, 10))
    with h5py.File(b, "a") as f:
        for d in f["data"]:
            T = f[f"data/{d}/actions"].shape[0]
            f[f"data/{d}/obs/object"] = np.zeros((T, 14))  # same key, another shape
            f[f"data/{d}/obs/robot0_joint_acc"] = np.zeros((T, 7))  # a key only this file has
    manifest, stats = build_manifest([a, b])
    assert "object" not in manifest.obs and "robot0_joint_acc" not in manifest.obs
    assert set(manifest.obs) == {"agentview_image", "robot0_eye_in_hand_image", "robot0_eef_pos",
                                    "robot0_gripper_qpos"}
    assert manifest.files[1].obs["object"].shape == [14]
    assert "obs/object" not in stats


def test_stock_lift_and_suite_file_train_and_evaluate_each_in_its_own_env(tmp_path, capsys):
    lift = write_stock_lift(str(tmp_path / "lift.hdf5"))
    suite = str(tmp_path / "suite.hdf5")
    assert main(["collect", "--tasks", "lift_red", "--demos-per-task", "2", "--workers", "1", "--out", suite,
                 "--image-size", "16", "--no-progress"]) == 0
    data = tmp_path / "data"
    assert main(["ingest", lift, suite, "--out", str(data), "--instruction", "lift the cube"]) == 0
    assert "object" in capsys.readouterr().out  # noted: 10-d in Lift, 28-d in the suite
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--steps", "2", "--batch-size", "4",
                 "--action-horizon", "4", "--exec-steps", "2"]) == 0  # default options otherwise
    out = tmp_path / "eval"
    capsys.readouterr()
    assert main(["eval", str(run / "last.pt"), "--out", str(out), "--episodes-per-task", "1", "--workers", "1",
                 "--max-steps", "4", "--video-episodes", "0"]) == 0, capsys.readouterr().err
    report = json.loads((out / "eval.json").read_text())
    assert sorted(r["task"] for r in report["rows"]) == ["Lift", "lift_red"]
    assert report["errors"] == 0 and report["complete"] is True
    assert report["env_name"] in ("Lift, MtilTabletop", "MtilTabletop, Lift")
