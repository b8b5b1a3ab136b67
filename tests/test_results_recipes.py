"""The results recipes (scripts/results.py): every command they would run parses with mtil's own CLI, and
the train configs they imply are valid; tables are built from summary JSON."""

from __future__ import annotations

import json
import os

import pytest

from mtil.pipeline.cli.main import build_parser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def recipes(script):
    return script("results")


def test_every_recipe_step_parses(recipes, tmp_path):
    from mtil.pipeline.cli.argsfrom import dataclass_from_args
    from mtil.pipeline.training.config import TrainConfig, parse_demo_caps

    steps = [s for exp in recipes.experiments().values() for s in exp]
    assert {s.kind for s in steps} == {"collect", "train", "eval"}
    for s in steps:
        argv = s.argv(str(tmp_path))
        assert os.path.basename(argv[0]) == "mtil"
        args = build_parser(argv[1]).parse_args(argv[1:])  # SystemExit (exit 2) on any unknown option
        if s.kind == "train":
            cfg = dataclass_from_args(TrainConfig, args)  # validation runs in __post_init__
            assert cfg.out.endswith(s.out) and cfg.steps >= 1
            parse_demo_caps(cfg.demos_per_task)
    runs = {s.out for s in steps if s.kind == "train"}
    for s in steps:  # every evaluated checkpoint is trained by some recipe
        if s.kind == "eval":
            assert os.path.dirname(s.args[0]) in runs, s.args[0]
    for out in {s.out for s in steps}:  # a step shared by experiments (lifts_language) is defined once
        assert len({(s.kind, tuple(s.args)) for s in steps if s.out == out}) == 1, out


def test_tables_from_summary(recipes, tmp_path, capsys, monkeypatch):
    d = tmp_path / "docs" / "results"
    d.mkdir(parents=True)
    row = {"task": "lift_red", "condition": "train instruction", "instruction": "lift the red cube", "successes": 3,
           "n": 4, "success_rate": 0.75, "ci95": [0.3, 0.95], "errors": 0, "mean_length": 90.0}
    (d / "demo.json").write_text(json.dumps({
        "experiment": "demo", "created": "2026-11-25", "machine": "x86_64, 2 cores",
        "eval": {"runs/a/eval": {"rows": [row], "overall": {"train instruction": row}}},
        "train": {"runs/a": {"steps": 10, "seconds": 120.0, "steps_per_s": 0.08, "config": {"batch_size": 32},
                             "train_demos": [45]}}}))
    monkeypatch.setattr(recipes, "REPO", str(tmp_path))
    recipes.tables()
    out = capsys.readouterr().out
    assert "| a/eval | lift_red | train instruction | lift the red cube | 3/4 = 75% [30%, 95%] |" in out
    assert "| a | 10 | 32 | 2.0 min | 0.08 | [45] |" in out


def _eval_json(path, rows):
    os.makedirs(path)
    with open(os.path.join(path, "eval.json"), "w") as f:
        json.dump({"checkpoint": str(path), "complete": True, "rows": rows}, f)


def _row(task, successes, n=20, condition="train instruction"):
    return {"task": task, "condition": condition, "successes": successes, "n": n, "errors": 0,
            "where_episodes_end": {"stages": {"success": successes}, "stalled": 0}}


def test_compare_runs_per_task_matrix(script, tmp_path, monkeypatch, capsys):
    """Single-task runs (one task each) and a multi-task run line up per task; rows of other conditions
    (paraphrases) do not count when training-instruction rows exist; a task a setup lacks shows '-'."""
    cmp = script("compare_runs")
    for s, (r, g) in enumerate([(20, 7), (18, 9)]):
        _eval_json(tmp_path / f"seed_{s}" / "single_lift_red" / "eval", [_row("lift_red", r)])
        _eval_json(tmp_path / f"seed_{s}" / "single_lift_green" / "eval", [_row("lift_green", g)])
        _eval_json(tmp_path / f"seed_{s}" / "multi" / "eval",
                   [_row("lift_red", 19 - s), _row("lift_red", 0, condition="paraphrase")])
    monkeypatch.setattr("sys.argv", ["compare_runs", "--per-task", f"single={tmp_path}/seed_*/single_*/eval",
                                     f"multi={tmp_path}/seed_*/multi/eval"])
    assert cmp.main() == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| task | single | multi |"
    assert "| lift_red | 20, 18 of 20 = 95% | 19, 18 of 20 = 92% |" in out
    assert "| lift_green | 7, 9 of 20 = 40% | - |" in out


def test_compare_runs_rare_task_rows_and_plot(script, tmp_path, monkeypatch, capsys):
    """--task counts one task's rows per seed; --plot draws the seeds of every setup into a PNG; --plot with
    --per-task is refused with exit code 2 and nothing written."""
    cmp = script("compare_runs")
    for s, (a, b) in enumerate([(2, 11), (19, 18), (7, 7)]):
        _eval_json(tmp_path / f"s{s}_strat" / "eval", [_row("lift_red", 20), _row("lift_blue", a)])
        _eval_json(tmp_path / f"s{s}_size" / "eval", [_row("lift_red", 10), _row("lift_blue", b)])
    png = tmp_path / "seeds.png"
    setups = [f"stratified={tmp_path}/s*_strat/eval", f"size={tmp_path}/s*_size/eval"]
    monkeypatch.setattr("sys.argv", ["compare_runs", "--task", "lift_blue", "--plot", str(png), *setups])
    assert cmp.main() == 0
    out = capsys.readouterr().out.splitlines()
    assert "| stratified (lift_blue) | 2/20, 19/20, 7/20 | 47% [10%, 95%] |" in out
    assert "| size (lift_blue) | 11/20, 18/20, 7/20 | 60% [35%, 90%] |" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other = tmp_path / "no.png"
    monkeypatch.setattr("sys.argv", ["compare_runs", "--per-task", "--plot", str(other), *setups])
    assert cmp.main() == 2
    assert "cannot be combined" in capsys.readouterr().err and not other.exists()
