"""Evaluation: Wilson intervals, paired seeding, a crashing worker as an error row, eval.json schema."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("robosuite")

from mtil.pipeline.evaluation import run as ev  # noqa: E402
from mtil.pipeline.evaluation.report import wilson  # noqa: E402
from mtil.pipeline.evaluation.run import EvalConfig, Row  # noqa: E402


def test_wilson_values():
    # reference values of the Wilson score interval (z = 1.96)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(17, 20) == pytest.approx((0.6396, 0.9476), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_wilson_contains_the_rate_and_plots_all_successes(tmp_path):
    """Rounding once put the upper bound of 10/10 just below 1: the bar plot then refused a negative error."""
    from mtil.pipeline.evaluation.report import _plot

    for n in range(1, 201):
        for k in range(n + 1):
            lo, hi = wilson(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0, (k, n)
    rows = [{"task": t, "condition": "train instruction", "instruction": t, "success_rate": k / 10,
             "ci95": list(wilson(k, 10)), "n": 10} for t, k in (("a", 10), ("b", 0), ("c", 4))]
    _plot(str(tmp_path / "s.png"), {"rows": rows, "checkpoint": "x.pt", "step": 1, "complete": True})
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_config_validation():
    from mtil.datasets.errors import UserError

    with pytest.raises(UserError, match="episodes-per-task"):
        EvalConfig("x.pt", "out", episodes_per_task=0)
    with pytest.raises(UserError, match="instructions"):
        EvalConfig("x.pt", "out", instructions="some")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny policy trained a few steps on 2 collected demos of one suite task (16 px cameras)."""
    from mtil.pipeline.cli.main import main

    d = tmp_path_factory.mktemp("eval")
    data = str(d / "demos.hdf5")
    assert main(["collect", "--tasks", "lift_red", "--demos-per-task", "2", "--workers", "1", "--out", data,
                 "--image-size", "16"]) == 0
    assert main(["train", "--data", data, "--out", str(d / "run"), "--steps", "2", "--batch-size", "4",
                 "--conditioning", "onehot", "--cond-dim", "8", "--save-every", "2"]) == 0
    return str(d / "run" / "last.pt")


def test_periodic_rollouts_evaluate_the_in_memory_policy(trained, tmp_path):
    """--rollout-every evaluates the EMA weights held in memory (shipped to spawned workers as a state dict,
    no checkpoint file written for it) and writes best.pt with its success recorded. That a worse later
    rollout keeps best.pt: test_train.py::test_periodic_rollouts_keep_best."""
    import torch

    from mtil.pipeline.training.loop import TrainConfig, train

    data = os.path.join(os.path.dirname(os.path.dirname(trained)), "demos.hdf5")
    out = tmp_path / "run"
    train(TrainConfig(data=[data], out=str(out), steps=2, batch_size=4, conditioning="onehot", cond_dim=8,
                      save_every=2, rollout_every=2, rollout_episodes=1))
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["step"] == 2 and 0.0 <= best["best_success"] <= 1.0
    report = json.loads((out / "rollouts" / "step_2" / "eval.json").read_text())
    assert report["step"] == 2 and report["checkpoint_sha256"] == "(in memory)" and report["complete"]
    assert report["rows"][0]["n"] == 1 and report["rows"][0]["errors"] == 0
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".pt") == ["best.pt", "last.pt", "step_2.pt"]


def test_eval_outputs_and_paired_seeds(trained, tmp_path, capsys):
    from mtil.pipeline.cli.main import main

    out1, out2 = tmp_path / "a", tmp_path / "b"
    args = ["--episodes-per-task", "2", "--workers", "1", "--max-steps", "8", "--video-episodes", "1"]
    assert main(["eval", trained, "--out", str(out1), *args]) == 0
    assert main(["eval", trained, "--out", str(out2), *args]) == 0
    r1 = json.loads((out1 / "eval.json").read_text())
    r2 = json.loads((out2 / "eval.json").read_text())
    assert r1["schema"] == "mtil-eval/1" and r1["complete"] is True
    assert len(r1["checkpoint_sha256"]) == 64 and r1["step"] == 2
    row = r1["rows"][0]
    assert set(row) >= {"task", "condition", "instruction", "successes", "n", "success_rate", "ci95", "errors",
                        "mean_length", "episodes"}
    assert row["task"] == "lift_red" and row["condition"] == "train instruction" and row["n"] == 2
    assert [e["seed"] for e in row["episodes"]] == [1000, 1001]
    assert "train instruction" in r1["overall"]
    # same checkpoint, same seeds -> identical outcomes and lengths
    strip = lambda r: [(e["seed"], e["success"], e["length"]) for x in r["rows"] for e in x["episodes"]]  # noqa
    assert strip(r1) == strip(r2)
    assert (out1 / "success.png").stat().st_size > 1000
    assert "| lift_red | train instruction |" in (out1 / "report.md").read_text()
    videos = os.listdir(out1 / "videos")
    assert videos == ["lift_red__train_instruction__0.mp4"]
    import imageio.v2 as imageio

    with imageio.get_reader(str(out1 / "videos" / videos[0]), format="ffmpeg") as reader:
        first = reader.get_data(0)
        n_frames = reader.count_frames()
    assert n_frames >= 8 and first.shape == (192, 192, 3)


def test_crashing_worker_is_an_error_row(trained, tmp_path):
    """The first episode's worker is killed (SIGKILL) mid-episode: that episode is an error, a new
    worker takes over, the other episode runs normally, and the run is complete."""
    import signal

    killed = []

    def kill_first(job_id, pid):
        if not killed:
            killed.append(job_id)
            os.kill(pid, signal.SIGKILL)

    res = ev.evaluate(EvalConfig(trained, str(tmp_path / "c"), episodes_per_task=2, workers=1, max_steps=30,
                                 video_episodes=0), on_episode_start=kill_first)
    row = res["rows"][0]
    assert killed and row["errors"] == 1 and row["n"] == 1, row
    errors = [e for e in row["episodes"] if e["error"]]
    assert "worker died" in errors[0]["error"] and errors[0]["seed"] == 1000 + killed[0] % 2
    assert res["complete"] is False and res["interrupted"] is False and res["errors"] == 1


def test_simulator_exception_is_an_error_row(trained, tmp_path, monkeypatch):
    """An exception inside an episode (here: a task input the policy cannot use) is an error entry."""
    monkeypatch.setattr(ev, "plan_rows", lambda cfg, ckpt: ([Row("lift_red", "train instruction", "lift the red cube",
                                                                 np.array([object()]))], ckpt.env_args))
    res = ev.evaluate(EvalConfig(trained, str(tmp_path / "d"), episodes_per_task=2, workers=1, max_steps=5,
                                 video_episodes=0))
    row = res["rows"][0]
    assert row["errors"] == 2 and row["n"] == 0 and row["success_rate"] is None
    assert all(e["error"] and "worker died" not in e["error"] for e in row["episodes"])


def test_unknown_task_and_missing_checkpoint(trained, tmp_path, capsys):
    from mtil.pipeline.cli.main import main

    assert main(["eval", trained, "--out", str(tmp_path / "x"), "--tasks", "fly_to_moon"]) == 2
    assert "fly_to_moon" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "y")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_errored_episodes_make_eval_fail(trained, tmp_path, monkeypatch, capsys):
    """Issue 14, defect 1: episodes that raise make `mtil eval` exit 3 with the error counts, and eval.json
    says complete: false with the errors listed (it said complete: true, exit 0)."""
    from mtil.pipeline.cli.main import main

    monkeypatch.setattr(ev, "plan_rows", lambda cfg, ckpt: ([Row("lift_red", "train instruction", "lift the red cube",
                                                                 np.array([object()]))], ckpt.env_args))
    out = tmp_path / "e"
    assert main(["eval", trained, "--out", str(out), "--episodes-per-task", "2", "--workers", "1",
                 "--max-steps", "3", "--video-episodes", "0"]) == 3
    captured = capsys.readouterr()
    assert "2 episode(s) ended in an error" in captured.err and "2 x " in captured.err
    report = json.loads((out / "eval.json").read_text())
    assert report["complete"] is False and report["errors"] == 2 and sum(report["error_counts"].values()) == 2
    assert "ended in an error" in (out / "report.md").read_text()


def _altered(trained: str, tmp_path, name: str, change) -> str:
    import torch

    d = torch.load(trained, weights_only=True)
    change(d)
    path = str(tmp_path / name)
    torch.save(d, path)
    return path


@pytest.mark.parametrize("what, change, expect", [
    ("env", lambda d: d["env_args"].update(env_name="NoSuchEnv"), "unknown environment 'NoSuchEnv'"),
    ("robot", lambda d: d["env_args"]["env_kwargs"].update(robots=["NoSuchRobot"]), "NoSuchRobot"),
    ("key", lambda d: d["policy_config"]["lowdim_keys"].__setitem__(0, "robot0_eef_quat_site"),
     "robot0_eef_quat_site"),
])
def test_env_that_cannot_serve_the_policy_stops_eval_before_workers(trained, tmp_path, capsys, monkeypatch,
                                                                     what, change, expect):
    """An env that cannot be built (unknown env or robot), or that lacks a key the policy reads: exit 2
    naming the cause, before any worker starts (it was exit 0 with every episode an error)."""
    from mtil.pipeline.cli.main import main

    monkeypatch.setattr(ev, "_worker", None)  # a worker started would fail loudly
    ckpt = _altered(trained, tmp_path, f"{what}.pt", change)
    assert main(["eval", ckpt, "--out", str(tmp_path / what), "--episodes-per-task", "1", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err, err


def test_out_that_is_a_file_is_a_user_error(trained, tmp_path, capsys):
    from mtil.pipeline.cli.main import main

    (tmp_path / "f").write_text("x")
    assert main(["eval", trained, "--out", str(tmp_path / "f"), "--episodes-per-task", "1"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_eval_workers_die_with_the_parent(trained, tmp_path, kill_parent_and_check_workers):
    """Issue 14, defect 4: kill -9 of `mtil eval` left its workers running with episodes queued."""
    kill_parent_and_check_workers(["eval", trained, "--out", str(tmp_path / "k"), "--episodes-per-task", "50",
                                   "--workers", "2", "--video-episodes", "0"], 2)


def test_ctrl_c_during_eval_prints_no_worker_traceback(trained, tmp_path):
    """Ctrl-C (SIGINT to the whole foreground process group): exit 130, what finished is written, and no
    worker prints a traceback."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "i"
    p = subprocess.Popen([sys.executable, "-c", "import sys; from mtil.pipeline.cli.main import main; sys.exit(main("
                          f"['eval', {trained!r}, '--out', {str(out)!r}, '--episodes-per-task', '50', '--workers', "
                          "'2', '--video-episodes', '0']))"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None and not out.exists():
        time.sleep(0.1)
    time.sleep(1.0)  # workers are starting (importing) now
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    report = json.loads((out / "eval.json").read_text())
    assert report["interrupted"] is True and report["complete"] is False


def test_full_disk_loses_videos_not_episodes(trained, tmp_path, monkeypatch, capsys):
    """Defect 5: a full disk while writing a video ended the evaluation with a traceback, finished episodes
    lost; now the video is skipped with a warning and eval.json holds every episode."""
    import errno

    import mtil.pipeline.evaluation.report as report

    def full(path, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(report, "write_video", full)
    res = ev.evaluate(EvalConfig(trained, str(tmp_path / "v"), episodes_per_task=2, workers=1, max_steps=3,
                                 video_episodes=1))
    assert res["rows"][0]["n"] == 2 and res["complete"] is True
    assert "video not written: " in (err := capsys.readouterr().err) and "No space left on device" in err


def test_eval_overrides_rollout_options(trained, tmp_path, fails):
    """--exec-steps / --temporal-ensemble change how the trained chunks are executed at evaluation only; the
    report records them, and an --exec-steps longer than the checkpoint's chunk is refused before any worker."""
    from mtil.pipeline.cli.main import main

    fails(["eval", trained, "--out", str(tmp_path / "x"), "--exec-steps", "9"], "--exec-steps", "chunks of 8")
    fails(["eval", trained, "--out", str(tmp_path / "x"), "--temporal-ensemble", "yes"], "--temporal-ensemble")
    assert not (tmp_path / "x").exists()
    args = ["--episodes-per-task", "1", "--workers", "1", "--max-steps", "6", "--video-episodes", "0"]
    assert main(["eval", trained, "--out", str(tmp_path / "a"), *args, "--exec-steps", "1"]) == 0
    assert main(["eval", trained, "--out", str(tmp_path / "b"), *args, "--temporal-ensemble", "on"]) == 0
    for name, key, value in (("a", "exec_steps", 1), ("b", "temporal_ensemble", "on")):
        report = json.loads((tmp_path / name / "eval.json").read_text())
        assert report["config"][key] == value and report["rows"][0]["errors"] == 0


def test_stall_probe_labels_every_visited_state(trained, tmp_path, capsys, script):
    """scripts/stall_probe.py (docs/results.md section 14): the policy drives, the expert labels each state."""
    probe = script("stall_probe")
    out = tmp_path / "probe.json"
    assert probe.main([trained, "--tasks", "lift_red", "--episodes", "1", "--max-steps", "25", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["lift_red"]
    assert [r["step"] for r in rows] == list(range(25)) and not rows[-1]["episode_success"]
    assert {r["decision"] for r in rows} <= {"approach", "descend", "close", "reopen", "lift"}
    assert not any(r["stalled"] for r in rows[:11])  # needs 10 steps of history
    assert {r["furthest"] for r in rows} <= {"start", "reached", "grasped"}  # the episode's furthest stage
    assert all(0.0 <= r["yaw_err"] <= np.pi / 4 + 1e-9 and r["d_xy"] >= 0.0 for r in rows)
    assert all(r["drop_xy"] is None and r["over_release"] is None for r in rows)  # a lift has no drop point
    assert "lift_red:" in capsys.readouterr().out


def test_stall_probe_measures_the_drop_while_the_expert_carries(script):
    """The probe's transport errors: held and lowering -> within the funnel and above the release height;
    after letting go -> none."""
    from mtil.pipeline.sim.envs import make_env, suite_env_args
    from mtil.pipeline.sim.experts import FUNNEL_XY, ScriptedExpert

    probe = script("stall_probe")
    env = make_env(suite_env_args(image_size=16), task="stack_red_on_green")
    env.reset(seed=3)
    expert = ScriptedExpert("stack_red_on_green", env.raw, np.random.default_rng(3))
    seen = {}
    for _ in range(300):
        a = expert.act(env.raw)
        seen.setdefault(expert.decision, probe.transport_errors(env.raw, expert))
        if "retreat" in seen:
            break
        env.step(a)
    env.close()
    drop_xy, over = seen["lower"]
    assert drop_xy <= FUNNEL_XY and over > 0.004
    assert seen["approach"] == (None, None) and seen["retreat"] == (None, None)
