"""Both directions of LeRobot v3.0 checked by LeRobot 0.4.4 itself (issue 22), on real robosuite frames:
its LeRobotDataset loads what `mtil export` writes, and a dataset its create/add_frame/save_episode/finalize
wrote is ingested, trained on and evaluated in the simulator.

LeRobot lives in a second environment (scripts/lerobot_env.sh; scripts/test.sh builds it and exports
MTIL_LEROBOT_PYTHON and MTIL_REQUIRE_LEROBOT=1, so CI fails rather than skips when it is missing). Its
Python runs tests/lerobot_side.py; arrays come back as .npz files.
"""

from __future__ import annotations

import json
import os
import subprocess

import h5py
import numpy as np
import pytest

SIDE = os.path.join(os.path.dirname(__file__), "lerobot_side.py")
IMAGE_TOLERANCE = (6.0, 80.0)
"""Decoded frames vs the originals, in 0..255 units: mean absolute difference and its 99th percentile.
Measured with the default H.264, crf 18, yuv420p: 4.0-4.7 / 36-62 at these 16 px frames (the wrist camera
the worse), 2.5 / 18 at 64 px: the 2x2 chroma subsampling smears coloured edges, and at 16 px most pixels
are edges. A flip or channel swap costs far more; a frame off by one is caught by the alignment check."""
LEROBOT_TOLERANCE = (12.0, 100.0)
"""The same for frames LeRobot's writer encoded (H.264 at its crf 30): 8.1 / 63 measured at 16 px."""


@pytest.fixture(scope="module")
def lerobot_python():
    py = os.environ.get("MTIL_LEROBOT_PYTHON", "")
    if not py or not os.access(py, os.X_OK):
        if os.environ.get("MTIL_REQUIRE_LEROBOT") == "1":
            pytest.fail("MTIL_LEROBOT_PYTHON is not a LeRobot environment's python (scripts/lerobot_env.sh)")
        pytest.skip("no LeRobot environment: run through scripts/test.sh, or set MTIL_LEROBOT_PYTHON")
    return py


def _side(py: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([py, SIDE, *args], cwd="/", env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """Two demos of lift_red at 16 px, collected by the scripted expert in robosuite."""
    from mtil.pipeline.cli.main import main

    path = str(tmp_path_factory.mktemp("lr") / "demos.hdf5")
    assert main(["collect", "--tasks", "lift_red", "--demos-per-task", "2", "--workers", "1", "--out", path,
                 "--image-size", "16"]) == 0
    return path


def _demos(path: str) -> list[dict]:
    with h5py.File(path, "r") as f:
        names = sorted(f["data"], key=lambda n: int(n.split("_")[1]))
        return [{"actions": f[f"data/{n}/actions"][()], "task": f[f"data/{n}"].attrs["language_instruction"],
                 **{k: v[()] for k, v in f[f"data/{n}/obs"].items()}} for n in names]


def _close_images(decoded: np.ndarray, original: np.ndarray, tolerance=IMAGE_TOLERANCE) -> None:
    diff = np.abs(decoded.astype(np.float64) - original.astype(np.float64))
    assert decoded.shape == original.shape
    assert diff.mean() <= tolerance[0] and np.percentile(diff, 99) <= tolerance[1], \
        (diff.mean(), np.percentile(diff, 99))
    # each frame is nearest its own original, not a neighbour's (a frame dropped or repeated shifts them all)
    err = lambda a, b: np.abs(a.astype(np.float64) - b.astype(np.float64)).mean()  # noqa: E731
    own = err(decoded[1:-1], original[1:-1])
    assert own < err(decoded[1:-1], original[:-2]) and own < err(decoded[1:-1], original[2:]), own


def test_lerobot_loads_our_export(lerobot_python, collected, tmp_path):
    from mtil.pipeline.cli.main import main

    out = str(tmp_path / "export")
    assert main(["export", collected, "--format", "lerobot", "--out", out]) == 0
    stats = json.loads(_side(lerobot_python, "load", out, str(tmp_path / "frames.npz")).strip().splitlines()[-1])
    demos = _demos(collected)
    assert stats["episodes"] == len(demos) and stats["fps"] == 20
    got = np.load(tmp_path / "frames.npz")
    cat = lambda k: np.concatenate([d[k] for d in demos])  # noqa: E731
    state = np.concatenate([cat(k) for k in ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")], 1)
    np.testing.assert_array_equal(got["observation.state"], state.astype(np.float32))
    np.testing.assert_array_equal(got["observation.environment_state"], cat("object").astype(np.float32))
    np.testing.assert_array_equal(got["action"], cat("actions").astype(np.float32))
    assert list(got["task"]) == [d["task"] for d in demos for _ in range(len(d["actions"]))]
    lengths = [len(d["actions"]) for d in demos]
    np.testing.assert_array_equal(got["episode_index"], np.repeat(np.arange(len(demos)), lengths))
    for cam in ("agentview", "robot0_eye_in_hand"):
        frames = np.round(got[f"observation.images.{cam}"].transpose(0, 2, 3, 1) * 255)  # LeRobot: (C, H, W) in [0, 1]
        _close_images(frames, cat(f"{cam}_image"))


def test_dataset_written_by_lerobot_ingests_trains_and_evaluates(lerobot_python, collected, tmp_path):
    from mtil.pipeline.cli.main import main

    demos = _demos(collected)
    proprio = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")
    spec = {"fps": np.array(20), "tasks": np.array([d["task"] for d in demos]),
            "lengths": np.array([len(d["actions"]) for d in demos]),
            "action": np.concatenate([d["actions"] for d in demos]).astype(np.float32),
            "names:action": np.array(["x", "y", "z", "roll", "pitch", "yaw", "gripper"]),
            "observation.state": np.concatenate([np.concatenate([d[k] for k in proprio], 1)
                                                 for d in demos]).astype(np.float32),
            "names:observation.state": np.array([f"{k}.{i}" for k in proprio for i in range(demos[0][k].shape[1])])}
    for cam in ("agentview", "robot0_eye_in_hand"):
        spec[f"observation.images.{cam}"] = np.concatenate([d[f"{cam}_image"] for d in demos])
    np.savez(tmp_path / "spec.npz", **spec)
    root = str(tmp_path / "written_by_lerobot")
    _side(lerobot_python, "write", str(tmp_path / "spec.npz"), root)

    ingested = str(tmp_path / "ingested")
    assert main(["ingest", root, "--env-from", collected, "--out", ingested]) == 0
    converted = os.path.join(ingested, "lerobot-written_by_lerobot.hdf5")
    back = _demos(converted)
    assert [d["task"] for d in back] == [d["task"] for d in demos]
    for a, b in zip(back, demos):
        np.testing.assert_array_equal(a["actions"], b["actions"].astype(np.float32))
        for k in proprio:
            np.testing.assert_array_equal(a[k], b[k].astype(np.float32))
        for cam in ("agentview", "robot0_eye_in_hand"):
            _close_images(a[f"{cam}_image"], b[f"{cam}_image"], LEROBOT_TOLERANCE)

    run = str(tmp_path / "run")
    assert main(["train", "--data", ingested, "--out", run, "--steps", "2", "--batch-size", "4", "--conditioning",
                 "onehot", "--cond-dim", "8", "--save-every", "2"]) == 0
    ev = str(tmp_path / "eval")
    assert main(["eval", os.path.join(run, "last.pt"), "--out", ev, "--episodes-per-task", "1", "--workers", "1",
                 "--max-steps", "8"]) == 0
    report = json.loads(open(os.path.join(ev, "eval.json")).read())
    assert report["complete"] and report["rows"][0]["task"] == "lift_red" and report["rows"][0]["errors"] == 0


@pytest.fixture(scope="module")
def collected_metaworld(tmp_path_factory):
    """Two demos each of two Meta-World tasks at 32 px, from the package's scripted policies."""
    pytest.importorskip("metaworld")
    from mtil.pipeline.cli.main import main

    path = str(tmp_path_factory.mktemp("mw") / "mw.hdf5")
    assert main(["collect", "--tasks", "reach-v3,drawer-close-v3", "--demos-per-task", "2", "--workers", "1",
                 "--out", path, "--image-size", "32", "--no-progress"]) == 0
    return path


def test_lerobot_loads_a_metaworld_export(lerobot_python, collected_metaworld, tmp_path):
    """Issue 36: a Meta-World file exported with `mtil export` is a dataset LeRobot loads (80 fps, its
    4-d actions, the benchmark's task sentences, the corner2 frames)."""
    from mtil.pipeline.cli.main import main

    out = str(tmp_path / "export")
    assert main(["export", collected_metaworld, "--format", "lerobot", "--out", out]) == 0
    stats = json.loads(_side(lerobot_python, "load", out, str(tmp_path / "frames.npz")).strip().splitlines()[-1])
    demos = _demos(collected_metaworld)
    assert stats["episodes"] == len(demos) == 4 and stats["fps"] == 80
    got = np.load(tmp_path / "frames.npz")
    cat = lambda k: np.concatenate([d[k] for d in demos])  # noqa: E731
    np.testing.assert_array_equal(got["action"], cat("actions").astype(np.float32))
    assert got["action"].shape[1] == 4
    assert list(got["task"]) == [d["task"] for d in demos for _ in range(len(d["actions"]))]
    assert {"reach a goal position", "push and close a drawer"} == set(got["task"])
    frames = np.round(got["observation.images.corner2"].transpose(0, 2, 3, 1) * 255)
    _close_images(frames, cat("corner2_image"), tolerance=(8.0, 90.0))
