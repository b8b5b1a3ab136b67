"""Defects an outside probe found in the data layer: each ended in a traceback, a misleading message, a
silently ignored option or debris left behind. Every user error here is one message naming the file and
what is wrong, exit code 2, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from mtil.datasets.synthetic import write_synthetic
from mtil.pipeline.cli.main import main

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = ["--steps", "1", "--batch-size", "2", "--conditioning", "onehot", "--cond-dim", "8", "--skip-env-check"]


@pytest.fixture
def src(tmp_path):
    return write_synthetic(str(tmp_path / "demos.hdf5"), demos_per_task=[2, 2], steps=8)


# ------------------------------------------------------------------------------ 1. corrupt ingest JSON
@pytest.mark.parametrize("name, content", [
    ("stats.json", "{bad"),
    ("stats.json", "[1]"),
    ("stats.json", '{"actions": 1}'),
    ("stats.json", '{"actions": {"mean": [0], "std": [1], "min": [0], "max": [1]}}'),  # wrong dims, keys missing
    ("manifest.json", "\udcff"),  # not UTF-8
])
def test_corrupt_json_in_ingest_dir_is_named(src, tmp_path, capsys, name, content, fails):
    out = tmp_path / "d"
    assert main(["ingest", src, "--out", str(out)]) == 0
    capsys.readouterr()
    (out / name).write_bytes(content.encode("utf-8", "surrogateescape"))
    fails(["info", str(out)], str(out / name))
    fails(["train", "--data", str(out), "--out", str(tmp_path / "r"), *TRAIN], str(out / name))
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------- 2. NUL in an instruction
def test_nul_in_demo_instruction_is_refused(src, tmp_path, capsys, fails):
    with h5py.File(src, "a") as f:  # h5py refuses NULs in variable-length strings; fixed-length bytes keep them
        f["data/demo_1"].attrs["language_instruction"] = np.bytes_(b"lift the\x00 red cube")
    fails(["ingest", src, "--out", str(tmp_path / "d")], src, "data/demo_1", "NUL")
    assert not (tmp_path / "d").exists()
    assert main(["info", src]) == 2
    out = capsys.readouterr().out
    assert "data/demo_1" in out and "NUL" in out, out


def test_nul_in_file_instruction_is_refused(tmp_path, fails):
    src = write_synthetic(str(tmp_path / "l.hdf5"), tasks=["open the drawer"], layout="libero")
    with h5py.File(src, "a") as f:
        f["data"].attrs["problem_info"] = json.dumps({"language_instruction": "open\x00 the drawer"})
    fails(["ingest", src, "--out", str(tmp_path / "d")], src, "problem_info", "NUL")
    assert not (tmp_path / "d").exists()


def test_nul_in_given_instruction_is_refused(tmp_path, fails):
    src = write_synthetic(str(tmp_path / "nolang.hdf5"), demos_per_task=2, steps=8, per_demo_language=False,
                          tasks=["x"])
    with h5py.File(src, "a") as f:
        del f["data"].attrs["problem_info"]
    fails(["ingest", src, "--out", str(tmp_path / "d"), "--instruction", "lift\x00 it"],
          src, "data/demo_0", "--instruction", "NUL")
    assert not (tmp_path / "d").exists()


# ------------------------------------------------------- 3. a file locked by a writer; dangling links
def test_file_locked_by_a_writer_says_so(src, tmp_path, monkeypatch, fails):
    monkeypatch.delenv("HDF5_USE_FILE_LOCKING", raising=False)
    writer = subprocess.Popen([sys.executable, "-c", "import sys, time, h5py; f = h5py.File(sys.argv[1], 'a'); "
                               "print('open', flush=True); time.sleep(60)", src],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "HDF5_USE_FILE_LOCKING": "TRUE"})
    try:
        assert writer.stdout.readline().strip() == "open"
        err = fails(["ingest", src, "--out", str(tmp_path / "d")], src, "locked", "another process")
        assert "truncated or corrupt" not in err
    finally:
        writer.kill()
        writer.wait()
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("link, expect", [
    (lambda: h5py.ExternalLink("missing.hdf5", "/data/demo_0"), ["missing.hdf5", "does not exist"]),
    (lambda: h5py.SoftLink("/data/nowhere"), ["/data/nowhere", "does not exist"]),
])
def test_dangling_demo_link_names_demo_and_target(src, tmp_path, link, expect, fails):
    with h5py.File(src, "a") as f:
        f["data/demo_7"] = link()
    fails(["ingest", src, "--out", str(tmp_path / "d")], src, "data/demo_7", *expect)
    assert not (tmp_path / "d").exists()


def test_dangling_link_inside_a_demo_names_it(src, tmp_path, fails):
    other = write_synthetic(str(tmp_path / "other.hdf5"), demos_per_task=1, steps=8)
    with h5py.File(src, "a") as f:
        del f["data/demo_1/obs/agentview_image"]
        f["data/demo_1/obs/agentview_image"] = h5py.ExternalLink(other, "/data/demo_0/obs/no_such_key")
    fails(["ingest", src, "--out", str(tmp_path / "d")], src, "data/demo_1/obs/agentview_image",
          "no_such_key")


# --------------------------------------------------------------- 4. stale temp folders beside --out
def test_stale_ingest_temps_are_removed_and_reported(src, tmp_path, capsys):
    out = tmp_path / "d"
    stale = [tmp_path / ".d.tmp-ab12cd34", tmp_path / ".d.tmp-zz_9x0y1"]  # what kill -9 mid-write leaves
    for s in stale:
        s.mkdir()
        (s / "manifest.json").write_text("{}")
    keep = [tmp_path / ".d.tmp-notours", tmp_path / ".dd.tmp-ab12cd34", tmp_path / "d.tmp-ab12cd34"]
    for k in keep:
        k.mkdir()
    assert main(["ingest", src, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert ".d.tmp-ab12cd34" in err and "interrupted" in err, err
    assert not any(s.exists() for s in stale)
    assert all(k.exists() for k in keep)
    assert json.loads((out / "manifest.json").read_text())["written_by"] == "mtil ingest"


def test_interrupted_overwrite_keeps_previous_data(src, tmp_path, fails):
    """Killed after moving the old --out aside and before the new one was in place: the next run puts the
    old one back (it is the user's data), then refuses as for any non-empty --out."""
    out = tmp_path / "d"
    assert main(["ingest", src, "--out", str(out)]) == 0
    os.replace(out, tmp_path / ".d.old-ab12cd34")
    fails(["ingest", src, "--out", str(out)], "not empty")
    assert json.loads((out / "manifest.json").read_text())["written_by"] == "mtil ingest"
    assert not (tmp_path / ".d.old-ab12cd34").exists()


# ------------------------------------------------------------------------ 5. hard-linked demos
def test_hard_linked_demo_is_refused(src, tmp_path, fails):
    with h5py.File(src, "a") as f:
        f["data/demo_9"] = f["data/demo_0"]  # a second name for the same group
    fails(["ingest", src, "--out", str(tmp_path / "d")], src, "data/demo_9", "data/demo_0",
          "count twice")
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------- 7. --instruction unused for a file
def test_ingest_notes_files_whose_own_instruction_wins(src, tmp_path, capsys):
    nolang = write_synthetic(str(tmp_path / "nolang.hdf5"), demos_per_task=2, steps=8, tasks=["x"],
                             per_demo_language=False)
    with h5py.File(nolang, "a") as f:
        del f["data"].attrs["problem_info"]
    assert main(["ingest", src, nolang, "--out", str(tmp_path / "d"), "--instruction", "lift the cube"]) == 0
    err = capsys.readouterr().err
    assert src in err and "own" in err and nolang not in err, err
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert "lift the cube" in [t["instruction"] for t in manifest["tasks"]]

    assert main(["ingest", nolang, "--out", str(tmp_path / "e"), "--instruction", "lift the cube"]) == 0
    assert "own" not in capsys.readouterr().err  # used: no note


def test_ingest_help_documents_instruction_precedence(capsys):
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    assert "own" in capsys.readouterr().out


# ---------------------------------------------------------------------------- 8. quickstart/ ignored
def test_quickstart_output_folder_is_git_ignored():
    from mtil.pipeline.recipes.quickstart import PRESETS, QuickstartConfig

    if not os.path.isdir(os.path.join(REPO_ROOT, ".git")):
        pytest.skip("not a git checkout")
    for preset in PRESETS:
        default_out = QuickstartConfig(preset=preset).out
        r = subprocess.run(["git", "check-ignore", "-q", f"{default_out}/report.md"], cwd=REPO_ROOT)
        assert r.returncode == 0, f"{default_out}/ (mtil quickstart --preset {preset}'s --out) is not in .gitignore"


def test_quickstart_presets_fill_what_is_not_given():
    from mtil.datasets.errors import UserError
    from mtil.pipeline.recipes.quickstart import QuickstartConfig

    suite = QuickstartConfig(preset="suite")
    assert (suite.tasks, suite.demos_per_task, suite.steps, suite.episodes_per_task, suite.max_steps) == \
        ("all", 45, 6000, 50, 250)
    lifts = QuickstartConfig(steps=10)  # an option given wins over the preset
    assert (lifts.tasks, lifts.steps, lifts.max_steps, lifts.out) == ("lift_red,lift_green,lift_blue", 10, 200,
                                                                      "quickstart")
    with pytest.raises(UserError, match="--preset must be one of lifts, suite"):
        QuickstartConfig(preset="big")
    with pytest.raises(UserError, match="--conditioning must be language or video"):
        QuickstartConfig(conditioning="onehot")


def test_quickstart_with_video_fits_an_encoder_and_evaluates_with_clips(tmp_path, capsys):
    """--conditioning video: collect, train on words, fit-video, evaluate with each task shown by a clip."""
    import json

    from mtil.pipeline.cli.main import main

    out = tmp_path / "qs"
    assert main(["quickstart", "--conditioning", "video", "--tasks", "lift_red,lift_blue", "--demos-per-task", "3",
                 "--steps", "2", "--video-steps", "2", "--episodes-per-task", "1", "--max-steps", "5",
                 "--workers", "1", "--image-size", "16", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "3/4 fitting a video encoder" in err and "4/4 evaluating 1 episodes per task" in err
    assert "over 2 episodes (each task shown by video clips)" in err, err  # the headline counts the video rows
    assert "each task shown by the clips of its validation demos in turn" in err
    report = json.loads((out / "eval_video" / "eval.json").read_text())
    assert {r["condition"] for r in report["rows"]} == {"video"} and len(report["rows"]) == 2
    assert (out / "video" / "fit_video.json").exists() and not (out / "eval").exists()
    # `mtil eval --clips 2`: episode i is shown the (i mod 2)-th of the task's last two demos, and says which
    assert main(["eval", str(out / "video" / "last.pt"), "--condition", "video", "--demos", str(out / "demos.hdf5"),
                 "--clips", "2", "--tasks", "lift_red", "--episodes-per-task", "3", "--max-steps", "3",
                 "--workers", "1", "--video-episodes", "0", "--out", str(tmp_path / "clips")]) == 0
    eps = json.loads((tmp_path / "clips" / "eval.json").read_text())["rows"][0]["episodes"]
    shown = [e["clip"] for e in eps]
    assert shown[0] == shown[2] != shown[1], shown
    report = (tmp_path / "clips" / "report.md").read_text()
    assert f"| lift_red | {shown[0]}: " in report and f", {shown[1]}: " in report and "/2" in report
