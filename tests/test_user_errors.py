"""Issue 14, defect 5: user errors that ended in a traceback (exit 1) end in one message naming what and
where (exit 2), with nothing written."""

from __future__ import annotations

import json
import os
import shutil

import h5py
import numpy as np
import pytest

from mtil.datasets.synthetic import write_synthetic
from mtil.pipeline.cli.main import main

TRAIN = ["--steps", "1", "--batch-size", "2", "--conditioning", "onehot", "--cond-dim", "8", "--skip-env-check"]


@pytest.fixture
def src(tmp_path):
    return write_synthetic(str(tmp_path / "demos.hdf5"), demos_per_task=[2, 2], steps=10)


def test_negative_seed(src, tmp_path, fails):
    fails(["ingest", src, "--out", str(tmp_path / "d"), "--seed", "-1"], "--seed")
    fails(["train", "--data", src, "--out", str(tmp_path / "r"), "--seed", "-1", *TRAIN], "--seed")
    assert not (tmp_path / "d").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize("edit, expect", [
    (lambda f: f["data"].attrs.__setitem__("total", np.array([10, 10])), "data.attrs['total']: must be one integer"),
    (lambda f: f["data/demo_1"].attrs.__setitem__("num_samples", np.array([5, 5])),
     "data/demo_1.attrs['num_samples']: must be one integer"),
    (lambda f: f.create_group("mask/train"), "mask/train: is a group"),
    (lambda f: [f[f"data/{d}/obs"].__delitem__(k) for d in f["data"] for k in list(f[f"data/{d}/obs"])],
     "data/demo_0/obs: is empty"),
])
def test_malformed_files_are_named(src, tmp_path, edit, expect, fails):
    with h5py.File(src, "a") as f:
        edit(f)
    fails(["ingest", src, "--out", str(tmp_path / "d")], expect)
    assert not (tmp_path / "d").exists()


def test_manifest_that_is_a_json_list(tmp_path, fails):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "manifest.json").write_text("[1, 2]")
    fails(["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"), *TRAIN],
          "manifest.json: expected a JSON object")


def test_train_out_that_is_a_file_or_unwritable(src, tmp_path, fails):
    (tmp_path / "f").write_text("x")
    fails(["train", "--data", src, "--out", str(tmp_path / "f"), *TRAIN], "not a directory")
    fails(["train", "--data", src, "--out", str(tmp_path / "f" / "run"), *TRAIN], "is a file")
    fails(["train", "--data", src, "--out", "/proc/mtil-run", *TRAIN], "cannot write in /proc")


@pytest.mark.parametrize("change, expect", [
    (lambda p, tmp: shutil.move(p, tmp / "moved.hdf5"), "gone"),
    (lambda p, tmp: os.truncate(p, os.path.getsize(p) - 100), "changed since ingest"),
    (lambda p, tmp: h5py.File(p, "a").close() or _flip_byte(p), "modified since ingest"),
])
def test_stale_source_after_ingest_is_refused(src, tmp_path, change, expect, fails):
    out = tmp_path / "d"
    assert main(["ingest", src, "--out", str(out)]) == 0
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert files[0]["fingerprint"].startswith("crc32:") and files[0]["mtime_ns"] > 0
    change(src, tmp_path)
    fails(["train", "--data", str(out), "--out", str(tmp_path / "r"), *TRAIN], src, expect, "mtil ingest")
    assert not (tmp_path / "r").exists()


def _flip_byte(path: str) -> None:
    """Edit one byte near the end, keeping the size (and restore the modification time: content alone)."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(st.st_size - 10)
        b = f.read(1)
        f.seek(st.st_size - 10)
        f.write(bytes([b[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("value, expect", [
    (5, "must be a text, found int64 5"),
    (np.array([1.0, 2.0]), "must be a text, found ndarray"),
    (np.void(b"\xff\xfe lift"), "must be a text"),
    (b"\xff\xfe lift", "not valid UTF-8"),
])
def test_non_text_instructions_are_not_task_names(src, tmp_path, value, expect, fails):
    """Defect 8: an int, an array or invalid UTF-8 was taken as a task name."""
    with h5py.File(src, "a") as f:
        f["data/demo_1"].attrs["language_instruction"] = value
    fails(["ingest", src, "--out", str(tmp_path / "d")], "data/demo_1.attrs['language_instruction']",
          expect)


def test_data_counted_twice_is_refused(src, tmp_path, fails):
    """Defect 8: the same file given twice (or through a link), or a demo soft-linked to another."""
    fails(["ingest", src, src, "--out", str(tmp_path / "d")], "given twice")
    os.symlink(src, tmp_path / "alias.hdf5")
    fails(["ingest", src, str(tmp_path / "alias.hdf5"), "--out", str(tmp_path / "d")], "given twice")
    with h5py.File(src, "a") as f:
        f["data/demo_9"] = h5py.SoftLink("/data/demo_0")
    fails(["ingest", src, "--out", str(tmp_path / "d")], "data/demo_9: is a link to /data/demo_0")


def test_train_without_language_points_to_ingest(tmp_path, fails):
    """Defect 8: `mtil train` suggested an --instruction option it does not have."""
    src = write_synthetic(str(tmp_path / "x.hdf5"), tasks=["t"], per_demo_language=False)
    with h5py.File(src, "a") as f:
        del f["data"].attrs["problem_info"]
    err = fails(["train", "--data", src, "--out", str(tmp_path / "r"), *TRAIN], "mtil ingest")
    assert "--instruction TEXT --out DIR" in err


def test_full_disk_is_one_message(src, tmp_path, monkeypatch, fails):
    """Defect 5: a full disk while writing ended in a traceback; now one line, exit 2, no temp file left."""
    import errno

    import mtil.datasets.atomic as atomic

    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr("mtil.datasets.ingest.write_json_atomic", full)
    err = fails(["ingest", src, "--out", str(tmp_path / "d")], "No space left on device", "manifest.json")
    assert "Traceback" not in err and not (tmp_path / "d").exists()
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]
    assert atomic.write_json_atomic is not full  # only ingest's reference was replaced
