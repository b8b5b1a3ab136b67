"""Task suite definitions and `mtil tasks/collect/replay` input errors (no simulator needed)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mtil.datasets.errors import UserError
from mtil.pipeline.cli.main import main
from mtil.pipeline.sim.collect import CollectConfig, episode_seed
from mtil.pipeline.sim.tasks import SCENES, TASKS, held_out_tasks, resolve_tasks, task_for_instruction, training_tasks


def test_suite_shape():
    train = training_tasks()
    assert len(train) >= 8
    assert len({TASKS[t].scene for t in train}) >= 2
    per_scene = {s: sum(TASKS[t].scene == s for t in train) for s in SCENES}
    assert max(per_scene.values()) >= 4  # tasks told apart only by the instruction
    assert len(held_out_tasks()) >= 2
    instructions = [t.instruction for t in TASKS.values()]
    assert len(set(instructions)) == len(instructions)
    for t in TASKS.values():
        assert len(t.paraphrases) >= 3 and len(set(t.paraphrases)) == len(t.paraphrases)
        assert t.instruction not in t.paraphrases
        assert not set(t.paraphrases) & set(instructions)  # a paraphrase never equals a training instruction
        SCENES[t.scene].object(t.obj)
        if t.target:
            SCENES[t.scene].object(t.target)
        assert task_for_instruction(t.instruction.upper()) == t.name


def test_held_out_are_new_compositions_of_seen_words():
    seen_words = {w for t in training_tasks() for w in TASKS[t].instruction.split()}
    train_pairs = {(TASKS[t].obj, TASKS[t].target) for t in training_tasks()}
    for name in held_out_tasks():
        t = TASKS[name]
        assert set(t.instruction.split()) <= seen_words
        assert (t.obj, t.target) not in train_pairs


def test_resolve_tasks():
    assert resolve_tasks("all") == training_tasks()
    assert resolve_tasks("held_out") == held_out_tasks()
    assert resolve_tasks("lift_red, lift_red,lift_blue") == ["lift_red", "lift_blue"]
    with pytest.raises(UserError, match="unknown task 'nope'"):
        resolve_tasks("lift_red,nope")


def test_episode_seed_is_stable():
    assert episode_seed(0, "lift_red", 0) == episode_seed(0, "lift_red", 0)
    seeds = {episode_seed(s, t, i) for s in (0, 1) for t in ("lift_red", "lift_blue") for i in range(5)}
    assert len(seeds) == 20


def test_collect_config_errors(tmp_path):
    out = str(tmp_path / "x.hdf5")
    with pytest.raises(UserError, match="--workers"):
        CollectConfig(out=out, workers=0)
    with pytest.raises(UserError, match="--demos-per-task"):
        CollectConfig(out=out, demos_per_task=0)
    with pytest.raises(UserError, match="does not exist"):
        CollectConfig(out=str(tmp_path / "missing_dir" / "x.hdf5"))
    with pytest.raises(UserError, match="--cameras agentview ceiling: give distinct cameras among agentview"):
        CollectConfig(out=out, cameras=["agentview", "ceiling"])
    with pytest.raises(UserError, match="--cameras agentview agentview"):
        CollectConfig(out=out, cameras=["agentview", "agentview"])


def test_collect_records_the_cameras_asked_for(tmp_path):
    """--cameras: a third view (frontview) recorded beside agentview, the wrist camera left out."""
    import h5py

    out = tmp_path / "front.hdf5"
    assert main(["collect", "--tasks", "lift_red", "--demos-per-task", "1", "--workers", "1", "--image-size", "16",
                 "--cameras", "agentview", "frontview", "--out", str(out), "--no-progress"]) == 0
    with h5py.File(out) as f:
        obs = f["data/demo_0/obs"]
        assert {k for k in obs if k.endswith("_image")} == {"agentview_image", "frontview_image"}
        assert obs["frontview_image"].shape == obs["agentview_image"].shape
        assert obs["frontview_image"].shape[1:] == (16, 16, 3)
        assert not np.array_equal(obs["frontview_image"][0], obs["agentview_image"][0])


def test_cli_tasks_lists_everything(capsys):
    assert main(["tasks"]) == 0
    text = capsys.readouterr().out
    for t in TASKS.values():
        assert t.name in text and t.instruction in text and t.paraphrases[0] in text


def test_cli_bad_input_exit_2(tmp_path, capsys):
    out = tmp_path / "x.hdf5"
    assert main(["collect", "--tasks", "fly_to_moon", "--out", str(out)]) == 2
    assert "unknown task 'fly_to_moon'" in capsys.readouterr().err
    assert main(["collect", "--workers", "0", "--out", str(out)]) == 2
    out.write_bytes(b"precious")
    before = os.stat(out).st_mtime_ns
    assert main(["collect", "--tasks", "lift_red", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == b"precious" and os.stat(out).st_mtime_ns == before
    assert main(["replay", str(tmp_path / "none.hdf5")]) == 2
    assert main(["replay", str(out)]) == 2  # not HDF5
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp files left
