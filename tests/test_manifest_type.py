"""The typed manifest: ``Manifest.to_dict`` is the JSON `mtil ingest` writes, ``Manifest.from_dict`` reads it
back, ingest directories written before the type existed still load, and a malformed one is a UserError
naming the file."""

from __future__ import annotations

import copy
import json
import os

import pytest

from mtil.datasets.errors import UserError
from mtil.datasets.manifest import (
    Manifest,
    build_manifest,
    fingerprint,
    load_manifest,
    manifest_from_inputs,
    select_demos,
)
from mtil.datasets.synthetic import write_synthetic
from mtil.pipeline.cli.main import main


@pytest.fixture
def src(tmp_path):
    return write_synthetic(str(tmp_path / "demos.hdf5"), tasks=["lift the red cube", "open the drawer"],
                           demos_per_task=[2, 1], steps=6)


def written_before(path: str) -> dict:
    """manifest.json as `mtil ingest` wrote it before the manifest was a type, for the ``src`` file."""
    st = os.stat(path)
    key = {"shape": [16, 16, 3], "dtype": "uint8"}
    return {
        "written_by": "mtil ingest", "version": 1,
        "files": [{"path": path, "layout": "robomimic", "size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
                   "fingerprint": fingerprint(path), "num_demos": 3, "num_steps": 18,
                   "env_args": {"env_name": "Synthetic", "type": 1, "env_kwargs": {}, "image_convention": "opencv"},
                   "flip_images": False,
                   "key_map": {k: k for k in ("agentview_image", "robot0_eef_pos", "robot0_eye_in_hand_image",
                                              "robot0_gripper_qpos")},
                   "obs": {"agentview_image": key, "robot0_eef_pos": {"shape": [3], "dtype": "float32"},
                           "robot0_eye_in_hand_image": key,
                           "robot0_gripper_qpos": {"shape": [2], "dtype": "float64"}}}],
        "tasks": [{"id": 0, "instruction": "lift the red cube", "name": None, "num_demos": 2, "num_steps": 12,
                   "num_train": 1, "num_valid": 1},
                  {"id": 1, "instruction": "open the drawer", "name": None, "num_demos": 1, "num_steps": 6,
                   "num_train": 1, "num_valid": 0}],
        "demos": [{"file": 0, "name": "demo_0", "task": 0, "length": 6, "split": "train"},
                  {"file": 0, "name": "demo_1", "task": 0, "length": 6, "split": "valid"},
                  {"file": 0, "name": "demo_2", "task": 1, "length": 6, "split": "train"}],
        "obs": {"agentview_image": {**key, "image": True, "compressed": False},
                "robot0_eef_pos": {"shape": [3], "dtype": "float32", "image": False, "compressed": False},
                "robot0_eye_in_hand_image": {**key, "image": True, "compressed": False},
                "robot0_gripper_qpos": {"shape": [2], "dtype": "float64", "image": False, "compressed": False}},
        "action_dim": 7,
        "split": {"source": "generated", "valid_fraction": 0.5, "seed": 0, "train": 2, "valid": 1},
    }


def test_round_trip_and_ingest_writes_the_same_layout(src, tmp_path):
    manifest, _ = build_manifest([src], valid_fraction=0.5)
    d = manifest.to_dict()
    assert Manifest.from_dict(json.loads(json.dumps(d)), "m.json") == manifest
    assert Manifest.from_dict(d, "m.json").to_dict() == d
    sub = select_demos(manifest, ["open the drawer"])  # a derived manifest round-trips as well
    assert Manifest.from_dict(sub.to_dict(), "m.json") == sub and sub.tasks[0].id == 0
    # `mtil ingest` writes today's layout byte for byte: keys, order and indentation
    assert main(["ingest", src, "--out", str(tmp_path / "data"), "--valid-fraction", "0.5"]) == 0
    assert (tmp_path / "data" / "manifest.json").read_text() == json.dumps(written_before(src), indent=1)


def test_an_ingest_directory_written_before_loads(src, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps(written_before(src), indent=1))
    _, stats = build_manifest([src], valid_fraction=0.5)
    (out / "stats.json").write_text(json.dumps(stats))
    manifest, loaded_stats = manifest_from_inputs([str(out)])  # with the source checks of training
    assert loaded_stats == stats and manifest.to_dict() == written_before(src)
    assert manifest.written_by == "mtil ingest" and manifest.files[0].env_args["env_name"] == "Synthetic"
    assert [t.instruction for t in manifest.tasks] == ["lift the red cube", "open the drawer"]
    assert [d.split for d in manifest.demos] == ["train", "valid", "train"] and manifest.count("valid") == 1
    assert manifest.obs["robot0_eef_pos"].shape == [3] and not manifest.obs["robot0_eef_pos"].image

    # older still: no written_by, no task names, no modification time, fingerprint or per-file keys
    oldest = written_before(src)
    del oldest["written_by"]
    for k in ("mtime_ns", "fingerprint", "obs"):
        del oldest["files"][0][k]
    for t in oldest["tasks"]:
        del t["name"]
    (out / "manifest.json").write_text(json.dumps(oldest))
    manifest, _ = manifest_from_inputs([str(out)])
    assert manifest.written_by is None and manifest.files[0].fingerprint is None and manifest.files[0].obs is None
    assert manifest.tasks[0].name is None
    assert manifest.to_dict() == {**oldest, "tasks": [{**t, "name": None} for t in oldest["tasks"]]}


def _broken(d: dict, what: str) -> dict:
    d = copy.deepcopy(d)
    if what == "demo without split":
        del d["demos"][1]["split"]
    elif what == "demo of a missing file":
        d["demos"][2]["file"] = 3
    elif what == "task id a string":
        d["tasks"][1]["id"] = "1"
    elif what == "obs a list":
        d["obs"] = [1, 2]
    elif what == "shape of floats":
        d["files"][0]["obs"]["robot0_eef_pos"]["shape"] = [3.5]
    elif what == "no split":
        del d["split"]
    return d


@pytest.mark.parametrize("what, message", [
    ("demo without split", "manifest.demos[1] has no split"),
    ("demo of a missing file", "demos[2]: file 3 of 1"),
    ("task id a string", "manifest.tasks[1].id is '1', not of type int"),
    ("obs a list", "manifest.obs is [1, 2], not of type dict[str, ObsEntry]"),
    ("shape of floats", "manifest.files[0].obs.robot0_eef_pos.shape is [3.5]"),
    ("no split", "not a complete manifest (missing split)"),
])
def test_a_malformed_manifest_names_the_file(src, tmp_path, what, message):
    out = tmp_path / "bad"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps(_broken(written_before(src), what)))
    with pytest.raises(UserError) as e:
        load_manifest(str(out))
    assert str(e.value).startswith(str(out / "manifest.json") + ": ") and message in str(e.value), str(e.value)
