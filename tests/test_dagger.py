"""`mtil dagger`: a round writes expert-labelled policy rollouts that ingest (and robomimic) read, trains on the
aggregate, evaluates, resumes; a policy without a scripted expert is refused."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
import torch

pytest.importorskip("robosuite")

from mtil.pipeline.cli.main import main  # noqa: E402


@pytest.fixture(scope="module")
def dagger_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("dagger")
    data = str(d / "demos.hdf5")
    assert main(["collect", "--tasks", "lift_red", "--demos-per-task", "2", "--workers", "1", "--out", data,
                 "--image-size", "16", "--no-progress"]) == 0
    assert main(["train", "--data", data, "--out", str(d / "run"), "--steps", "2", "--batch-size", "4",
                 "--conditioning", "onehot", "--cond-dim", "8", "--save-every", "2"]) == 0
    args = [str(d / "run" / "last.pt"), "--data", data, "--out", str(d / "dagger"), "--rounds", "1",
            "--episodes-per-task", "2", "--steps", "2", "--horizon", "15", "--eval-episodes", "1", "--workers", "1",
            "--beta", "0.5"]
    assert main(["dagger", *args]) == 0
    return d, args


def test_round_file_is_expert_labelled_and_ingestible(dagger_run):
    from mtil.datasets.manifest import manifest_from_inputs
    from mtil.pipeline.sim.envs import make_env, suite_env_args
    from mtil.pipeline.sim.experts import ScriptedExpert

    d, _ = dagger_run
    path = str(d / "dagger" / "round_1" / "rollouts.hdf5")
    manifest, _ = manifest_from_inputs([path])  # mtil ingest's validation
    assert manifest.split.train == 2  # every rollout trains, failed or not
    with h5py.File(path) as f:
        a = f["data"].attrs
        assert a["mtil_source"] == "dagger" and a["dagger_round"] == 1
        assert a["dagger_policy"] == str(d / "run" / "last.pt")
        g = f["data"]["demo_0"]
        seed = int(g.attrs["seed"])
        states, labels, executed = g["states"][()], g["actions"][()], g["executed_actions"][()]
    assert len(labels) == 15  # a 2-step policy does not lift: the episode runs to the horizon
    assert not np.allclose(labels, executed)  # the policy acted on at least some steps
    env = make_env(suite_env_args(), task="lift_red", use_camera_obs=False)
    env.reset(seed=seed)
    expert = ScriptedExpert("lift_red", env.raw, np.random.default_rng([seed, 7919]))
    for t in range(len(labels)):
        env.reset_to_state(states[t])
        np.testing.assert_allclose(expert.act(env.raw), labels[t], atol=1e-6, err_msg=f"step {t}")
    env.close()


def test_round_trains_evaluates_and_resumes(dagger_run):
    d, args = dagger_run
    out = d / "dagger"
    summary = json.load(open(out / "dagger.json"))
    assert [r["round"] for r in summary["rounds"]] == [0, 1]
    assert summary["rounds"][1]["rollout_episodes"] == 2 and summary["rounds"][1]["n"] == 1
    ck = torch.load(out / "round_1" / "run" / "last.pt", weights_only=True)
    assert ck["step"] == 2 and len(ck["train_config"]["data"]) == 2  # demos + round 1
    assert ck["train_config"]["init_from"] == str(d / "run" / "last.pt")
    assert "| 1 | 0.5 | 2 (" in open(out / "dagger.md").read()
    before = os.path.getmtime(out / "round_1" / "rollouts.hdf5"), os.path.getmtime(out / "round_1" / "run" / "last.pt")
    assert main(["dagger", *args]) == 0  # everything done: reused, not redone
    assert (os.path.getmtime(out / "round_1" / "rollouts.hdf5"),
            os.path.getmtime(out / "round_1" / "run" / "last.pt")) == before


def test_policy_without_an_expert_is_refused(dagger_run, tmp_path, capsys):
    d, args = dagger_run
    ck = torch.load(d / "run" / "last.pt", weights_only=True)
    ck["env_args"] = {"env_name": "Lift", "type": 1, "env_kwargs": {}}
    torch.save(ck, tmp_path / "lift.pt")
    assert main(["dagger", str(tmp_path / "lift.pt"), "--data", args[2], "--out", str(tmp_path / "o")]) == 2
    assert "needs a scripted expert" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_robomimic_reads_a_round_file(dagger_run):
    pytest.importorskip("robomimic")
    from robomimic.utils.dataset import SequenceDataset

    d, _ = dagger_run
    ds = SequenceDataset(hdf5_path=str(d / "dagger" / "round_1" / "rollouts.hdf5"),
                         obs_keys=("robot0_eef_pos", "agentview_image"), dataset_keys=("actions",),
                         load_next_obs=False, seq_length=4, hdf5_cache_mode=None)
    item = ds[0]
    assert item["actions"].shape == (4, 7) and item["obs"]["agentview_image"].shape[0] == 4


def test_next_obs_are_virtual_and_robomimic_reads_them_by_default(dagger_run):
    """Without --next-obs, collect links next_obs/<key> to obs/<key> shifted by one step (no extra bytes), so
    robomimic's default load_next_obs=True works on mtil files."""
    from mtil.datasets.manifest import manifest_from_inputs

    d, args = dagger_run
    data = args[2]
    manifest_from_inputs([data])
    with h5py.File(data) as f:
        g = f["data"]["demo_0"]
        for k in g["obs"]:
            assert g["next_obs"][k].is_virtual
            np.testing.assert_array_equal(g["next_obs"][k][:-1], g["obs"][k][1:])
            np.testing.assert_array_equal(g["next_obs"][k][-1], g["obs"][k][-1])
    pytest.importorskip("robomimic")
    from robomimic.utils.dataset import SequenceDataset

    ds = SequenceDataset(hdf5_path=data, obs_keys=("robot0_eef_pos", "agentview_image"), dataset_keys=("actions",),
                         load_next_obs=True, seq_length=4, hdf5_cache_mode=None)
    item = ds[2]
    np.testing.assert_allclose(item["next_obs"]["robot0_eef_pos"][:-1], item["obs"]["robot0_eef_pos"][1:])


def test_round_whose_rollouts_all_error_exits_3(dagger_run, tmp_path, capsys):
    """A policy that reads an observation the simulator does not produce: every rollout errors, the round
    stops with exit 3 and a message, and no round file is left behind."""
    d, args = dagger_run
    ck = torch.load(d / "run" / "last.pt", weights_only=True)
    keys = ck["policy_config"]["lowdim_keys"]
    ck["stats"]["obs/robot0_missing"] = ck["stats"].pop(f"obs/{keys[0]}")
    keys[0] = "robot0_missing"
    torch.save(ck, tmp_path / "broken.pt")
    out = tmp_path / "o"
    rc = main(["dagger", str(tmp_path / "broken.pt"), "--data", args[2], "--out", str(out), "--rounds", "1",
               "--episodes-per-task", "1", "--steps", "1", "--horizon", "15", "--eval-episodes", "0",
               "--workers", "1"])
    assert rc == 3
    assert "error" in capsys.readouterr().err
    assert not (out / "round_1" / "rollouts.hdf5").exists()


# ---- issue 20's probe: DAgger inputs checked before any rollout, reruns that would mix settings refused
def test_out_naming_a_file_is_refused(dagger_run, tmp_path, capsys):
    d, args = dagger_run
    f = tmp_path / "taken"
    f.write_text("mine")
    assert main(["dagger", args[0], "--data", args[2], "--out", str(f)]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err and f.read_text() == "mine"


@pytest.mark.parametrize("change, expect", [
    (["--episodes-per-task", "3"], "episodes_per_task: 2 -> 3"),
    (["--beta", "0.2"], "beta: 0.5 -> 0.2"),
])
def test_rerun_with_other_settings_is_refused(dagger_run, capsys, change, expect):
    """Probe 7: old rounds were reused silently while dagger.json named the new settings."""
    d, args = dagger_run
    i = args.index(change[0])
    new = [*args[:i], *change, *args[i + 2:]]
    before = sorted(os.listdir(d / "dagger"))
    assert main(["dagger", *new]) == 2
    err = capsys.readouterr().err
    assert expect in err and "another --out" in err
    assert sorted(os.listdir(d / "dagger")) == before


def test_rerun_with_another_checkpoint_is_refused(dagger_run, tmp_path, capsys):
    import shutil

    d, args = dagger_run
    other = tmp_path / "other.pt"
    shutil.copy(args[0], other)
    assert main(["dagger", str(other), *args[1:]]) == 2
    assert "checkpoint:" in capsys.readouterr().err


@pytest.mark.parametrize("what", ["not_hdf5", "other_tasks", "stock_lift"])
def test_bad_data_is_refused_before_any_rollout(dagger_run, tmp_path, capsys, monkeypatch, what):
    """Probe 11: such --data failed only after 15-19 s of rollouts, naming --init-from (never given)."""
    import mtil.pipeline.sim.collect as collect_mod
    from mtil.datasets.synthetic import write_synthetic

    d, args = dagger_run
    path = tmp_path / "data.hdf5"
    if what == "not_hdf5":
        path.write_text("not hdf5")
        expect = "not a readable HDF5 file"
    elif what == "other_tasks":
        assert main(["collect", "--tasks", "lift_blue", "--demos-per-task", "1", "--workers", "1", "--out",
                     str(path), "--image-size", "16", "--no-progress"]) == 0
        expect = "are not the tasks"
    else:
        write_synthetic(str(path), tasks=["lift"], demos_per_task=[2], steps=8, image_size=16)
        with h5py.File(path, "a") as f:
            f["data"].attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})
        expect = "demos of Lift, not of the simulated suite"
    monkeypatch.setattr(collect_mod, "collect", None)  # a rollout started would fail loudly
    capsys.readouterr()
    assert main(["dagger", args[0], "--data", str(path), "--out", str(tmp_path / "o"), "--rounds", "1"]) == 2
    err = capsys.readouterr().err
    assert expect in err and str(path) in err and "--init-from" not in err, err


def test_stale_round_temp_file_is_removed_by_the_next_collection(dagger_run, tmp_path, capsys):
    """Probe 13: a kill -9 mid-collection left `.NAME.tmp-*.hdf5` (collect, DAgger rounds) forever."""
    out = tmp_path / "rollouts.hdf5"
    stale = tmp_path / ".rollouts.hdf5.tmp-ab12cd34.hdf5"
    stale.write_bytes(b"half a file")
    other = tmp_path / ".other.hdf5.tmp-ab12cd34.hdf5"  # another output's temp: not ours to remove
    other.write_bytes(b"x")
    assert main(["collect", "--tasks", "lift_red", "--demos-per-task", "1", "--workers", "1", "--out", str(out),
                 "--image-size", "16", "--no-progress"]) == 0
    assert not stale.exists() and other.exists() and out.exists()
    assert "left by an interrupted collection" in capsys.readouterr().err


def test_rerun_with_a_retrained_checkpoint_at_the_same_path_is_refused(dagger_run, tmp_path, capsys):
    """The same --checkpoint path holding other weights is another starting policy: its rounds are not reused."""
    import shutil

    d, args = dagger_run
    out = tmp_path / "o"
    ck = tmp_path / "policy.pt"
    shutil.copy(args[0], ck)
    from mtil.pipeline.recipes.dagger import DaggerConfig, check_out

    cfg = DaggerConfig(checkpoint=str(ck), data=[args[2]], out=str(out))
    os.makedirs(out)
    check_out(cfg, str(out))  # first run: records the settings
    c = torch.load(ck, weights_only=True)
    c["step"] += 1
    torch.save(c, ck)
    with pytest.raises(Exception, match="checkpoint_sha256"):
        check_out(cfg, str(out))
