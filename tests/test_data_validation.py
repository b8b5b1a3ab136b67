"""Validation, ingest and info: valid robomimic/LIBERO files pass; every malformed case exits 2 naming
the file and place, leaves --out absent/unchanged and never modifies the source."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import h5py
import numpy as np
import pytest

from mtil.datasets.synthetic import write_synthetic
from mtil.pipeline.cli.main import main


def sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_ingest_robomimic_and_libero(tmp_path, two_task_file, libero_file, capsys):
    robo2 = write_synthetic(str(tmp_path / "more.hdf5"), tasks=["lift the blue cube"], per_demo_language=False,
                            masks=True, seed=3)
    out = tmp_path / "ds"
    assert main(["ingest", two_task_file, robo2, "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    stats = json.loads((out / "stats.json").read_text())
    assert [t["instruction"] for t in manifest["tasks"]] == ["lift the red cube", "lift the green cube",
                                                            "lift the blue cube"]
    assert [t["num_demos"] for t in manifest["tasks"]] == [3, 5, 3]
    assert manifest["obs"]["agentview_image"] == {"shape": [16, 16, 3], "dtype": "uint8", "image": True,
                                                  "compressed": False}
    # the file with masks keeps them: its last demo is valid
    third = [d for d in manifest["demos"] if d["file"] == 1]
    assert [d["split"] for d in third] == ["train", "train", "valid"]
    # streaming stats equal the in-memory ones over the train split
    acts = []
    for d in manifest["demos"]:
        if d["split"] == "train":
            with h5py.File(manifest["files"][d["file"]]["path"]) as f:
                acts.append(f["data"][d["name"]]["actions"][()])
    acts = np.concatenate(acts)
    np.testing.assert_allclose(stats["actions"]["mean"], acts.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats["actions"]["std"], acts.std(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats["actions"]["min"], acts.min(0))
    assert set(stats) == {"actions", "obs/robot0_eef_pos", "obs/robot0_gripper_qpos"}

    out2 = tmp_path / "lib"
    assert main(["ingest", libero_file, "--out", str(out2)]) == 0
    m2 = json.loads((out2 / "manifest.json").read_text())
    assert m2["files"][0]["layout"] == "libero" and m2["files"][0]["flip_images"] is True
    assert "agentview_image" in m2["obs"] and m2["files"][0]["key_map"]["agentview_rgb"] == "agentview_image"
    assert m2["tasks"][0]["instruction"] == "open the drawer"

    capsys.readouterr()
    assert main(["info", two_task_file, libero_file, str(out)]) == 0
    text = capsys.readouterr().out
    assert "lift the green cube" in text and "5" in text and "agentview_rgb" in text and "problems: none" in text


def test_instruction_from_user(tmp_path):
    src = write_synthetic(str(tmp_path / "nolang.hdf5"), tasks=["x"], per_demo_language=False)
    with h5py.File(src, "a") as f:
        del f["data"].attrs["problem_info"]
    assert main(["ingest", src, "--out", str(tmp_path / "a")]) == 2
    assert not (tmp_path / "a").exists()
    assert main(["ingest", src, "--out", str(tmp_path / "b"), "--instruction", "lift the can"]) == 0
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["tasks"][0]["instruction"] == "lift the can"


def _break(kind: str, path: str) -> str:
    """Damage a valid file in one way; returns the text the error must name (the place)."""
    if kind == "not_hdf5":
        with open(path, "wb") as f:
            f.write(b"this is not an HDF5 file at all\n" * 10)
        return "not an HDF5 file"
    if kind == "truncated":
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(size // 2)
        return "truncated"
    with h5py.File(path, "a") as f:
        g = f["data/demo_1"]
        if kind == "no_data":
            f.move("data", "stuff")
            return "data"
        if kind == "no_actions":
            del g["actions"]
            return "demo_1"
        if kind == "obs_length":
            a = g["obs/robot0_eef_pos"][()]
            del g["obs/robot0_eef_pos"]
            g["obs"].create_dataset("robot0_eef_pos", data=a[:-1])
            return "demo_1/obs/robot0_eef_pos"
        if kind == "image_dtype":
            a = g["obs/agentview_image"][()]
            del g["obs/agentview_image"]
            g["obs"].create_dataset("agentview_image", data=a.astype(np.float32))
            return "demo_1/obs/agentview_image"
        if kind == "image_rank":
            a = g["obs/agentview_image"][()]
            del g["obs/agentview_image"]
            g["obs"].create_dataset("agentview_image", data=a[..., 0])
            return "demo_1/obs/agentview_image"
        if kind == "actions_nan":
            a = g["actions"][()]
            a[3, 2] = np.nan
            g["actions"][...] = a
            return "demo_1/actions"
        if kind == "actions_inf":
            a = g["actions"][()]
            a[0, 0] = np.inf
            g["actions"][...] = a
            return "demo_1/actions"
        if kind == "empty_demo":
            for name in list(g.keys()):
                del g[name]
            g.create_dataset("actions", data=np.zeros((0, 7)))
            return "demo_1"
        if kind == "total":
            f["data"].attrs["total"] = 12345
            return "total"
        if kind == "bad_env_args":
            f["data"].attrs["env_args"] = "{not json"
            return "env_args"
        if kind == "bad_problem_info":
            f["data"].attrs["problem_info"] = "[[["
            return "problem_info"
        if kind == "missing_instruction":
            del g.attrs["language_instruction"]
            return "demo_1"
        if kind == "mask_missing_demo":
            f.create_group("mask").create_dataset("train", data=np.array([b"demo_0", b"demo_99"]))
            return "mask/train"
        if kind == "actions_int":
            a = g["actions"][()]
            del g["actions"]
            g.create_dataset("actions", data=a.astype(np.int32))
            return "demo_1/actions"
    raise AssertionError(kind)


MALFORMED = ["not_hdf5", "truncated", "no_data", "no_actions", "obs_length", "image_dtype", "image_rank",
             "actions_nan", "actions_inf", "empty_demo", "total", "bad_env_args", "bad_problem_info",
             "missing_instruction", "mask_missing_demo", "actions_int"]


@pytest.mark.parametrize("kind", MALFORMED)
@pytest.mark.parametrize("out_exists", [False, True])
def test_malformed_rejected(tmp_path, capsys, kind, out_exists):
    good = write_synthetic(str(tmp_path / "good.hdf5"), seed=5)
    bad = write_synthetic(str(tmp_path / "bad.hdf5"), seed=6)
    place = _break(kind, bad)
    before = sha(bad)
    out = tmp_path / "out"
    if out_exists:  # an earlier ingest: must stay byte-identical
        assert main(["ingest", good, "--out", str(out)]) == 0
        old = {p: sha(str(out / p)) for p in os.listdir(out)}
    capsys.readouterr()
    code = main(["ingest", good, bad, "--out", str(out), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2
    first = err.splitlines()[0]
    assert first.startswith("error: ") and "bad.hdf5" in first and place in first, err
    assert "Traceback" not in err
    assert sha(bad) == before  # the source is never modified
    if out_exists:
        assert {p: sha(str(out / p)) for p in os.listdir(out)} == old
    else:
        assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".ingest-")]
    # info reports the same problem and exits 2
    assert main(["info", bad]) == 2
    assert place in capsys.readouterr().out


def test_mismatched_files_rejected(tmp_path, capsys):
    a = write_synthetic(str(tmp_path / "a.hdf5"), action_dim=7)
    b = write_synthetic(str(tmp_path / "b.hdf5"), action_dim=4)
    c = write_synthetic(str(tmp_path / "c.hdf5"), cameras=("agentview",))
    assert main(["ingest", a, b, "--out", str(tmp_path / "o")]) == 2
    assert "action dim 4" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    # keys may differ between files (issue 14): the manifest keeps the ones every file has, same shape
    assert main(["ingest", a, c, "--out", str(tmp_path / "o")]) == 0
    assert "robot0_eye_in_hand_image" in capsys.readouterr().out  # noted as left out
    obs = json.loads((tmp_path / "o" / "manifest.json").read_text())["obs"]
    assert "agentview_image" in obs and "robot0_eye_in_hand_image" not in obs
    # but the files must share a camera
    d = write_synthetic(str(tmp_path / "d.hdf5"), cameras=("frontview",))
    assert main(["ingest", c, d, "--out", str(tmp_path / "p")]) == 2
    assert "shares no camera" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_out_not_empty_and_missing_source(tmp_path, capsys, two_task_file):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["ingest", two_task_file, "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["ingest", str(tmp_path / "nope.hdf5"), "--out", str(tmp_path / "p")]) == 2
    assert "nope.hdf5: file does not exist" in capsys.readouterr().err


def test_console_script_exit_codes(tmp_path, two_task_file):
    import subprocess
    import sys

    exe = shutil.which("mtil", path=os.path.dirname(sys.executable)) or shutil.which("mtil")
    assert exe, "the mtil console script is installed"
    r = subprocess.run([exe, "info", str(tmp_path / "missing.hdf5")], capture_output=True, text=True)
    assert r.returncode == 2 and "missing.hdf5: file does not exist" in r.stdout
    r = subprocess.run([exe, "ingest", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--valid-fraction" in r.stdout and "--instruction" in r.stdout
    r = subprocess.run([exe, "info", two_task_file], capture_output=True, text=True)
    assert r.returncode == 0 and "lift the red cube" in r.stdout
