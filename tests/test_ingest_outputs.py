"""Issue 14, defect 3: ingest never destroys or mixes data. --overwrite replaces only a directory `mtil
ingest` wrote (or an empty one), never the filesystem root or another project's folder, and two ingests
racing into one --out cannot both write it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mtil.datasets.synthetic import write_synthetic
from mtil.pipeline.cli.main import main


@pytest.fixture
def src(tmp_path):
    return write_synthetic(str(tmp_path / "demos.hdf5"), demos_per_task=[2, 2], steps=8)


def test_overwrite_replaces_only_what_ingest_wrote(src, tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["ingest", src, "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["written_by"] == "mtil ingest"
    assert main(["ingest", src, "--out", str(out), "--overwrite", "--valid-fraction", "0.5"]) == 0
    assert json.loads((out / "manifest.json").read_text())["split"]["valid_fraction"] == 0.5
    assert sorted(os.listdir(out)) == ["manifest.json", "stats.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "demos.hdf5"]  # no temp or lock left

    other = tmp_path / "project"  # an unrelated project's folder with its own manifest.json
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"name": "webapp", "version": "2.0"}))
    assert main(["ingest", src, "--out", str(other), "--overwrite"]) == 2
    assert "not written by `mtil ingest`" in capsys.readouterr().err
    assert json.loads((other / "manifest.json").read_text())["name"] == "webapp"

    (out / "notes.txt").write_text("mine")  # a user's file inside an ingest dir is not ours to delete
    assert main(["ingest", src, "--out", str(out), "--overwrite"]) == 2
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").exists()

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.txt").write_text("x")
    assert main(["ingest", src, "--out", str(plain), "--overwrite"]) == 2
    assert (plain / "a.txt").exists()


def test_out_root_is_refused(src, capsys):
    assert main(["ingest", src, "--out", "/", "--overwrite"]) == 2
    assert "root" in capsys.readouterr().err
    assert not os.path.exists("/manifest.json")


def test_concurrent_ingests_one_wins(tmp_path):
    """Two processes ingest different data into one --out at once: exactly one succeeds (the other is
    refused: lock held, or --out no longer empty) and the manifest is wholly the winner's."""
    srcs = [write_synthetic(str(tmp_path / f"{n}.hdf5"), tasks=[f"task {n}"], demos_per_task=40, steps=30,
                            image_size=32) for n in ("a", "b")]
    out = str(tmp_path / "data")
    procs = [subprocess.Popen([sys.executable, "-c", "import sys; from mtil.pipeline.cli.main import main; "
                               f"sys.exit(main(['ingest', {s!r}, '--out', {out!r}]))"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/") for s in srcs]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes == [0, 2], results
    loser = next(err for c, err in results if c == 2)
    assert "another `mtil ingest` is writing it" in loser or "not empty" in loser, loser
    winner = srcs[[c for c, _ in results].index(0)]
    manifest = json.loads(open(os.path.join(out, "manifest.json")).read())
    assert [f["path"] for f in manifest["files"]] == [winner]
    stats = json.loads(open(os.path.join(out, "stats.json")).read())
    assert stats["actions"]["count"] == sum(d["length"] for d in manifest["demos"] if d["split"] == "train")
