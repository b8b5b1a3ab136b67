"""LeRobot v3.0 in and out with mtil's own reader (issue 22): `mtil export` then `mtil ingest` gives back
the demos (low-dim exact, images within the codec's tolerance, split and instructions kept), and every kind
of bad LeRobot input is named, exits 2 and writes nothing. LeRobot's own reader and writer:
tests/test_lerobot_library.py."""

from __future__ import annotations

import json
import os
import shutil

import h5py
import numpy as np
import pytest

from mtil.datasets.synthetic import write_synthetic
from mtil.pipeline.cli.main import main


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("lerobot")
    src = write_synthetic(str(d / "syn.hdf5"), demos_per_task=[4, 3], steps=(12, 20), image_size=32, masks=True)
    assert main(["export", src, "--format", "lerobot", "--out", str(d / "export"), "--fps", "20"]) == 0
    return src, str(d / "export")


def _copy(exported, tmp_path) -> str:
    dst = str(tmp_path / "dataset")
    shutil.copytree(exported[1], dst)
    return dst


def _demos(path: str) -> dict:
    with h5py.File(path, "r") as f:
        return {n: {"actions": f[f"data/{n}/actions"][()], "task": f[f"data/{n}"].attrs["language_instruction"],
                    **{k: v[()] for k, v in f[f"data/{n}/obs"].items()}}
                for n in sorted(f["data"], key=lambda n: int(n.split("_")[1]))}


def test_export_then_ingest_gives_the_demos_back(exported, tmp_path):
    src, out = exported
    info = json.loads(open(os.path.join(out, "meta", "info.json")).read())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20 and info["total_episodes"] == 7
    assert info["features"]["observation.state"]["names"][:2] == ["robot0_eef_pos.0", "robot0_eef_pos.1"]
    assert main(["ingest", out, "--out", str(tmp_path / "in")]) == 0
    manifest = json.loads((tmp_path / "in" / "manifest.json").read_text())
    original = _demos(src)
    back = _demos(manifest["files"][0]["path"])
    assert manifest["files"][0]["path"] == str(tmp_path / "in" / "lerobot-export.hdf5")
    with h5py.File(src, "r") as f:
        valid = sorted(x.decode() for x in f["mask/valid"][()])
    # the split of the source file is kept: episodes are the demos in file order
    assert sorted(f"demo_{i}" for i, d in enumerate(manifest["demos"]) if d["split"] == "valid") == valid
    for (name, a), b in zip(original.items(), back.values()):
        assert a["task"] == b["task"], name
        np.testing.assert_array_equal(b["actions"], a["actions"].astype(np.float32))
        for key in ("robot0_eef_pos", "robot0_gripper_qpos"):
            np.testing.assert_array_equal(b[key], a[key].astype(np.float32))
        for cam in ("agentview_image", "robot0_eye_in_hand_image"):
            diff = np.abs(b[cam].astype(int) - a[cam].astype(int))
            assert diff.mean() < 4, (name, cam, diff.mean())


def test_info_summarizes_a_lerobot_dataset(exported, capsys):
    assert main(["info", exported[1]]) == 0
    out = capsys.readouterr().out
    assert "LeRobot v3.0 dataset, 7 episodes" in out and "observation.images.agentview" in out
    assert "robot0_eef_pos" in out and "problems: none" in out


def _rewrite_data(root: str, edit) -> None:
    import pyarrow.parquet as pq

    path = os.path.join(root, "data", "chunk-000", "file-000.parquet")
    pq.write_table(edit(pq.read_table(path)), path)


def _nan_action(table):
    import pyarrow as pa

    actions = table.column("action").combine_chunks()
    values = actions.flatten().to_numpy().copy()
    values[7 * 5 + 2] = np.nan  # frame 5
    i = table.column_names.index("action")
    return table.set_column(i, "action", pa.FixedSizeListArray.from_arrays(pa.array(values), 7))


def _short_video(root: str) -> None:
    from mtil.datasets.video_io import read_video, write_video

    path = os.path.join(root, "videos", "observation.images.agentview", "chunk-000", "file-000.mp4")
    frames = read_video(path)
    write_video(path, frames[: len(frames) // 2], 20)


def _set_version(root: str, version: str) -> None:
    p = os.path.join(root, "meta", "info.json")
    info = json.loads(open(p).read())
    info["codebase_version"] = version
    open(p, "w").write(json.dumps(info))


BAD = {
    "no info.json": (lambda r: os.remove(os.path.join(r, "meta", "info.json")), "meta/info.json: missing"),
    "v2.1": (lambda r: _set_version(r, "v2.1"), "convert_dataset_v21_to_v30"),
    "unknown version": (lambda r: _set_version(r, "v7.0"), "unknown codebase_version 'v7.0'"),
    "no tasks": (lambda r: os.remove(os.path.join(r, "meta", "tasks.parquet")), "meta/tasks.parquet: missing"),
    "no episodes": (lambda r: shutil.rmtree(os.path.join(r, "meta", "episodes")), "meta/episodes: missing"),
    "no data file": (lambda r: os.remove(os.path.join(r, "data", "chunk-000", "file-000.parquet")),
                     "data/chunk-000/file-000.parquet: missing"),
    "frame missing": (lambda r: _rewrite_data(r, lambda t: t.slice(1)), "episode 0: has"),
    "NaN action": (lambda r: _rewrite_data(r, _nan_action), "action: contains NaN/inf at episode 0, index 5"),
    "undecodable video": (lambda r: open(os.path.join(r, "videos", "observation.images.agentview", "chunk-000",
                                                      "file-000.mp4"), "wb").write(b"\x00garbage" * 100),
                          "cannot be opened as a video"),
    "short video": (_short_video, "after the end of the video"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_lerobot_input_is_named_and_writes_nothing(kind, exported, tmp_path, fails, capsys):
    root = _copy(exported, tmp_path)
    damage, expect = BAD[kind]
    damage(root)
    out = tmp_path / "in"
    fails(["ingest", root, "--out", str(out)], expect)
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["dataset"]
    if kind not in ("no info.json",):
        assert main(["info", root]) == 2
        assert expect in capsys.readouterr().out


def test_export_and_train_refuse_bad_requests(exported, tmp_path, fails):
    src, lerobot_dir = exported
    fails(["export", src, "--format", "csv", "--out", str(tmp_path / "x")], "--format must be one of lerobot")
    fails(["export", src, "--out", str(tmp_path / "x")], "give --fps")  # synthetic env_args: no control_freq
    fails(["export", src, "--out", str(tmp_path / "x"), "--fps", "20", "--pix-fmt", "rgb24"], "--pix-fmt")
    fails(["export", src, "--out", lerobot_dir, "--fps", "20"], "exists and is not an empty directory")
    fails(["train", "--data", lerobot_dir, "--out", str(tmp_path / "run")], "a LeRobot dataset: run `mtil ingest")
    fails(["ingest", src, "--env-from", src, "--out", str(tmp_path / "y")], "--env-from applies to LeRobot")
    assert sorted(os.listdir(tmp_path)) == []
