"""The fourth outside probe's misses (issue 35), each on real files, a real simulator and, for full disks and
read-only folders, real tmpfs mounts (`small_fs` in conftest):

1. a LeRobot ingest onto a full disk crashed the interpreter (segfault after HDF5 could not close its file);
2-5. null or NaN fields of the episodes parquet, a non-integer task_index in meta/tasks.parquet: TypeErrors;
6. actions whose size differs from info.json, or from the environment's: ingest, train and eval went on;
7. the same LeRobot folder given twice (a symlink, a trailing slash) was decoded twice;
8. an unusable MTIL_CACHE_DIR surfaced as errored episodes and a traceback;
9. `--seed -1` reached numpy as a traceback (every command's seed is checked now);
10. language on a video policy trained with --align-weight 0 (its language input never trained) ran silently;
11. an evaluation onto a full disk named no path, let ffmpeg's raw output through and left an empty videos/.
"""

from __future__ import annotations

import json
import os
import shutil

import h5py
import pytest

from mtil.datasets.synthetic import write_synthetic
from mtil.pipeline.cli.main import build_parser, main


def _one_error(capsys_or_fd, *expect: str) -> str:
    err = capsys_or_fd.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1, err
    for e in expect:
        assert e in err, err
    return err


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A LeRobot v3.0 dataset (7 episodes, two 32 px cameras, 7-d actions) written by `mtil export`."""
    d = tmp_path_factory.mktemp("lr")
    src = write_synthetic(str(d / "syn.hdf5"), demos_per_task=[4, 3], steps=(12, 20), image_size=32, masks=True)
    assert main(["export", src, "--format", "lerobot", "--out", str(d / "export"), "--fps", "20"]) == 0
    return str(d / "export")


def _copy(src: str, tmp_path) -> str:
    dst = str(tmp_path / "dataset")
    shutil.copytree(src, dst)
    return dst


def _edit_parquet(root: str, rel: str, edit) -> None:
    import pyarrow.parquet as pq

    path = os.path.join(root, rel)
    pq.write_table(edit(pq.read_table(path)), path)


def _episodes_rel(root: str) -> str:
    folder = os.path.join(root, "meta", "episodes")
    return next(os.path.relpath(os.path.join(d, n), root) for d, _, ns in os.walk(folder) for n in ns
                if n.endswith(".parquet"))


def _set_column(name: str, values):
    import pyarrow as pa

    def edit(table):
        i = table.column_names.index(name)
        return table.set_column(i, name, pa.array(values, type=table.schema.field(name).type
                                                  if not isinstance(values[0], str) else pa.string()))
    return edit


# ------------------------------------------------------------------------------- 1: a full disk
def test_lerobot_ingest_onto_a_full_disk_is_one_line_not_a_crash(exported, small_fs, tmp_path):
    """Run in a subprocess: the crash was a segfault at interpreter exit, after HDF5 failed to close."""
    import subprocess
    import sys

    full = small_fs("1m")
    for out in (os.path.join(full, "ing"), os.path.join(small_fs("4m", leave_free="224k"), "ing")):
        p = subprocess.run([sys.executable, "-m", "mtil.pipeline.cli.main", "ingest", exported, "--out", out],
                           capture_output=True, text=True, timeout=300, cwd="/")
        assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
        assert "Traceback" not in p.stderr and p.stderr.count("error:") == 1, p.stderr
        assert "no space left on device" in p.stderr.lower() and out in p.stderr, p.stderr
        assert not [n for n in os.listdir(os.path.dirname(out)) if n != "filler"], os.listdir(os.path.dirname(out))


# ------------------------------------------------------------------------------- 2-5: bad parquet fields
@pytest.mark.parametrize("column, value, expect", [
    ("data/chunk_index", None, "data/chunk_index"),
    ("dataset_from_index", None, "dataset_from_index"),
    ("videos/observation.images.agentview/from_timestamp", float("nan"), "from_timestamp"),
])
def test_bad_episode_fields_are_named(exported, tmp_path, capsys, column, value, expect):
    root = _copy(exported, tmp_path)
    rel = _episodes_rel(root)
    import pyarrow.parquet as pq

    n = pq.read_table(os.path.join(root, rel)).num_rows
    values = [value] + list(pq.read_table(os.path.join(root, rel)).column(column).to_pylist()[1:])
    _edit_parquet(root, rel, _set_column(column, values))
    assert n > 1
    assert main(["ingest", root, "--out", str(tmp_path / "o")]) == 2
    _one_error(capsys, rel, "episode 0", expect)
    assert not (tmp_path / "o").exists()


def test_non_integer_task_index_is_named(exported, tmp_path, capsys):
    root = _copy(exported, tmp_path)
    _edit_parquet(root, "meta/tasks.parquet", _set_column("task_index", ["zero", "one"]))
    assert main(["ingest", root, "--out", str(tmp_path / "o")]) == 2
    _one_error(capsys, "meta/tasks.parquet", "task_index", "'zero'")


# ------------------------------------------------------------------------------- 6: action sizes
def _actions_6d(table):
    import pyarrow as pa

    i = table.column_names.index("action")
    rows = [a[:6] for a in table.column("action").to_pylist()]
    return table.set_column(i, "action", pa.array(rows, type=pa.list_(pa.float32(), 6)))


def _info_action_dim(root: str, n: int) -> None:
    path = os.path.join(root, "meta", "info.json")
    info = json.loads(open(path).read())
    info["features"]["action"]["shape"] = [n]
    if info["features"]["action"].get("names"):
        info["features"]["action"]["names"] = info["features"]["action"]["names"][:n]
    open(path, "w").write(json.dumps(info))


def test_parquet_actions_of_another_size_than_info_json(exported, tmp_path, capsys):
    root = _copy(exported, tmp_path)
    _edit_parquet(root, "data/chunk-000/file-000.parquet", _actions_6d)  # info.json still says 7
    assert main(["ingest", root, "--out", str(tmp_path / "o")]) == 2
    _one_error(capsys, "action", "6", "info.json", "7")
    root2 = _copy(exported, tmp_path / "b")
    _info_action_dim(root2, 6)  # the parquet still holds 7
    assert main(["ingest", root2, "--out", str(tmp_path / "o")]) == 2
    _one_error(capsys, "action", "7", "info.json", "6")
    assert not (tmp_path / "o").exists()


def test_actions_of_another_size_than_the_env_from_file(exported, tmp_path, capsys):
    root = _copy(exported, tmp_path)
    _edit_parquet(root, "data/chunk-000/file-000.parquet", _actions_6d)
    _info_action_dim(root, 6)
    env_from = write_synthetic(str(tmp_path / "env7.hdf5"), demos_per_task=[1, 1], image_size=32)  # 7-d actions
    assert main(["ingest", root, "--env-from", env_from, "--out", str(tmp_path / "o")]) == 2
    _one_error(capsys, "--env-from", "6", "7")
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """Two lift_red demos at 16 px from the scripted expert in robosuite (7-d OSC actions)."""
    path = str(tmp_path_factory.mktemp("col") / "demos.hdf5")
    assert main(["collect", "--tasks", "lift_red", "--demos-per-task", "2", "--workers", "1", "--seed", "5",
                 "--out", path, "--image-size", "16"]) == 0
    return path


def test_train_and_eval_refuse_actions_the_env_does_not_take(collected, tmp_path, capsys):
    six = str(tmp_path / "six.hdf5")
    shutil.copy(collected, six)
    with h5py.File(six, "a") as f:
        for name in list(f["data"]):
            a = f[f"data/{name}/actions"][()]
            del f[f"data/{name}/actions"]
            f[f"data/{name}/actions"] = a[:, :6]
    run = str(tmp_path / "run")
    assert main(["train", "--data", six, "--out", run, "--steps", "2", "--batch-size", "4"]) == 2
    _one_error(capsys, "6", "7", "action")
    assert not os.path.exists(os.path.join(run, "last.pt"))
    assert main(["train", "--data", six, "--out", run, "--steps", "2", "--batch-size", "4", "--skip-env-check",
                 "--rollout-every", "0"]) == 0
    capsys.readouterr()
    assert main(["eval", os.path.join(run, "last.pt"), "--out", str(tmp_path / "ev"), "--episodes-per-task", "1",
                 "--workers", "1", "--max-steps", "3"]) == 2
    _one_error(capsys, "6", "7", "action")
    assert not (tmp_path / "ev").exists()


# ------------------------------------------------------------------------------- 7: a folder twice
def test_the_same_lerobot_folder_twice_is_refused_before_decoding(exported, tmp_path, capsys):
    link = str(tmp_path / "link")
    os.symlink(exported, link)
    for second in (link, exported + os.sep):
        assert main(["ingest", exported, second, "--out", str(tmp_path / "o")]) == 2
        err = _one_error(capsys, "given twice", second)
        assert exported in err and "decod" not in err
        assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------- 8: the cache folder
@pytest.mark.parametrize("kind", ["read-only", "full", "file"])
def test_unusable_cache_dir_is_one_line_up_front(kind, small_fs, tmp_path, monkeypatch, capsys):
    if kind == "read-only":
        cache = small_fs("1m", read_only=True)
    elif kind == "full":
        cache = small_fs("1m", leave_free="0")
    else:
        cache = str(tmp_path / "a_file")
        open(cache, "w").write("x")
    monkeypatch.setenv("MTIL_CACHE_DIR", cache)
    out = str(tmp_path / "c.hdf5")
    assert main(["collect", "--tasks", "lift_red", "--demos-per-task", "1", "--workers", "1", "--seed", "5",
                 "--image-size", "16", "--out", out]) == 2
    err = _one_error(capsys, "MTIL_CACHE_DIR", cache)
    assert "errored" not in err and not os.path.exists(out)


# ------------------------------------------------------------------------------- 9: seeds
def _commands_with_seed() -> list[str]:
    import argparse

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(name for name, p in sub.choices.items()
                  if any("--seed" in a.option_strings for a in p._actions))


SEED_ARGV = {  # the least each command needs to reach its option checks (files need not exist)
    "collect": ["collect", "--tasks", "lift_red", "--out", "{tmp}/c.hdf5"],
    "dagger": ["dagger", "{tmp}/missing.pt", "--data", "{tmp}/missing.hdf5", "--out", "{tmp}/d"],
    "eval": ["eval", "{tmp}/missing.pt", "--out", "{tmp}/e"],
    "fit-video": ["fit-video", "{tmp}/missing.pt", "--out", "{tmp}/f", "--data", "{tmp}/missing.hdf5"],
    "ingest": ["ingest", "{tmp}/missing.hdf5", "--out", "{tmp}/i"],
    "quickstart": ["quickstart", "--out", "{tmp}/q"],
    "train": ["train", "--data", "{tmp}/missing.hdf5", "--out", "{tmp}/t"],
}


def test_every_seed_option_is_listed_here():
    assert _commands_with_seed() == sorted(SEED_ARGV)


@pytest.mark.parametrize("command", sorted(SEED_ARGV))
def test_negative_seed_is_refused_by_every_command(command, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in SEED_ARGV[command]] + ["--seed", "-1"]
    assert main(argv) == 2
    err = _one_error(capsys, "--seed must be", "-1")
    assert "missing" not in err
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------- 10: untrained language
def test_language_on_a_video_policy_without_alignment_is_refused(collected, tmp_path, capsys):
    run = str(tmp_path / "runv")
    assert main(["train", "--data", collected, "--out", run, "--steps", "2", "--batch-size", "4",
                 "--conditioning", "video", "--align-weight", "0", "--rollout-every", "0"]) == 0
    capsys.readouterr()
    assert main(["eval", os.path.join(run, "last.pt"), "--condition", "language", "--out", str(tmp_path / "ev"),
                 "--episodes-per-task", "1", "--workers", "1", "--max-steps", "3"]) == 2
    _one_error(capsys, "--align-weight 0", "--condition video")
    assert not (tmp_path / "ev").exists()


# ------------------------------------------------------------------------------- 11: eval, full disk
@pytest.fixture(scope="module")
def lift_policy(collected, tmp_path_factory):
    run = str(tmp_path_factory.mktemp("run"))
    assert main(["train", "--data", collected, "--out", run, "--steps", "2", "--batch-size", "4",
                 "--rollout-every", "0"]) == 0
    return os.path.join(run, "last.pt")


EVAL_ARGS = ["--episodes-per-task", "2", "--workers", "1", "--max-steps", "5", "--video-episodes", "2"]


def test_eval_onto_a_full_disk_names_the_path_and_leaves_nothing(lift_policy, small_fs, capfd):
    """Every episode runs; each lost video is one warning naming it, the report that cannot be written is
    the one error (naming eval.json), FFmpeg's own messages never reach the terminal, no folder is left."""
    out = os.path.join(small_fs("1m", leave_free="0"), "ev")
    capfd.readouterr()
    assert main(["eval", lift_policy, "--out", out, *EVAL_ARGS]) == 2
    err = _one_error(capfd, "No space left on device", os.path.join(out, "eval.json"))
    lost = [line for line in err.splitlines() if line.startswith("warning: video not written")]
    assert [line.split(": ")[2] for line in lost] == [
        os.path.join(out, "videos", f"lift_red__train_instruction__{i}.mp4") for i in range(2)], err
    assert all(line.endswith("No space left on device") for line in lost), err
    assert "ffmpeg" not in err.lower() and "av_interleaved" not in err and "[out#" not in err, err
    assert not os.path.exists(out), os.listdir(out)


def test_a_write_that_fails_mid_decoding_is_an_oserror_not_a_crash(exported, small_fs):
    """The room check comes first; should the disk still fill up while the frames are written (another
    writer), the failed write is an ENOSPC OSError naming the file and the interpreter exits normally. (Room
    for the tables but not the 663 KiB of frames. A disk that fills while HDF5 writes its own metadata can
    still crash inside the library: docs/design-notes.md, "Full disks and HDF5".)"""
    import subprocess
    import sys

    out = os.path.join(small_fs("1m", leave_free="400k"), "x.hdf5")
    code = ("import errno, sys\nfrom mtil.datasets.lerobot_read import check_lerobot\n"
            "from mtil.datasets.lerobot_convert import convert_lerobot\n"
            f"info = check_lerobot({exported!r})\n"
            f"try:\n    convert_lerobot(info, {out!r})\nexcept OSError as e:\n"
            "    print('caught', e.errno == errno.ENOSPC, e.filename)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
    assert p.stdout.strip() == f"caught True {out}", p.stdout + p.stderr[-2000:]
