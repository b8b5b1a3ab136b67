"""DART collection and evaluation diagnosis: clean labels, stage tables, episodes from the demos' initial states.

(Apart from test_recovery.py: that module keeps simulators open in this process, and a policy trained
in-process next to them crashed in MuJoCo's EGL teardown.)
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

pytest.importorskip("robosuite")

from mtil.pipeline.sim.collect import episode_seed  # noqa: E402
from mtil.pipeline.sim.experts import ScriptedExpert  # noqa: E402


@pytest.fixture(scope="module")
def dart_file(tmp_path_factory):
    from mtil.pipeline.cli.main import main

    path = str(tmp_path_factory.mktemp("dart") / "dart.hdf5")
    assert main(["collect", "--tasks", "lift_red", "--demos-per-task", "2", "--workers", "1", "--out", path,
                 "--image-size", "16", "--noise", "0.15", "--no-progress"]) == 0
    return path


def test_dart_labels_are_the_clean_expert_actions(dart_file):
    from mtil.pipeline.sim.envs import make_env, suite_env_args

    env = make_env(suite_env_args(), task="lift_red", use_camera_obs=False)
    with h5py.File(dart_file) as f:
        assert f["data"].attrs["mtil_source"] == "dart"
        g = f["data"]["demo_0"]
        seed = int(g.attrs["seed"])
        assert seed == episode_seed(0, "lift_red", 0)
        states, actions, executed = g["states"][()], g["actions"][()], g["executed_actions"][()]
    noise = executed - actions
    assert np.abs(noise[:, :3]).mean() > 0.05 and np.all(noise[:, 3:] == 0)  # translation noise only
    env.reset(seed=seed)
    expert = ScriptedExpert("lift_red", env.raw, np.random.default_rng([seed, 7919]))  # the episode's style
    for t in range(0, len(actions), 7):
        env.reset_to_state(states[t])
        np.testing.assert_allclose(expert.act(env.raw), actions[t], atol=1e-6, err_msg=f"step {t}")
    env.close()


def test_dart_noise_out_of_range_is_a_user_error(tmp_path):
    from mtil.pipeline.cli.main import main

    assert main(["collect", "--tasks", "lift_red", "--out", str(tmp_path / "x.hdf5"), "--noise", "1.5"]) == 2
    assert main(["collect", "--tasks", "lift_red", "--out", str(tmp_path / "x.hdf5"), "--noise", "0.1",
                 "--action-noise", "0.1"]) == 2
    assert not os.listdir(tmp_path)


def test_eval_reports_stages_and_starts_from_demo_states(dart_file, tmp_path):
    from mtil.pipeline.checkpoint import load_checkpoint
    from mtil.pipeline.cli.main import main
    from mtil.pipeline.evaluation.run import EvalConfig, evaluate, plan_rows

    run = tmp_path / "run"
    assert main(["train", "--data", dart_file, "--out", str(run), "--steps", "2", "--batch-size", "4",
                 "--conditioning", "onehot", "--cond-dim", "8", "--save-every", "2"]) == 0
    cfg = EvalConfig(str(run / "last.pt"), str(tmp_path / "eval"), episodes_per_task=2, workers=1, max_steps=35,
                     video_episodes=0, seeds_from=dart_file)
    rows, _ = plan_rows(cfg, load_checkpoint(cfg.checkpoint))
    with h5py.File(dart_file) as f:
        for i in range(2):
            np.testing.assert_array_equal(rows[0].init_states[i], f["data"][f"demo_{i}"]["states"][0])
    result = evaluate(cfg)
    eps = result["rows"][0]["episodes"]
    assert all(e["stage"] in ("start", "reached", "grasped", "success") and "stalled" in e for e in eps)
    assert sum(result["rows"][0]["where_episodes_end"]["stages"].values()) == 2
    report = open(tmp_path / "eval" / "report.md").read()
    assert "## Where episodes end" in report and "| lift_red | train instruction |" in report
    assert json.load(open(tmp_path / "eval" / "eval.json"))["config"]["seeds_from"] == dart_file
    with pytest.raises(Exception, match="needs 3"):
        plan_rows(EvalConfig(cfg.checkpoint, cfg.out, episodes_per_task=3, seeds_from=dart_file),
                  load_checkpoint(cfg.checkpoint))
