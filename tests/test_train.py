"""Training: CLI end to end, exact resume after kill -9, 2-process DDP, checkpoint safety, a
conditioning ablation that must learn, and predict_action after a save/load round trip."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mtil.datasets.errors import UserError
from mtil.datasets.manifest import build_manifest
from mtil.datasets.sampler import StratifiedTaskBatchSampler
from mtil.datasets.synthetic import write_synthetic
from mtil.datasets.windowed import WindowedDataset
from mtil.encoders.conditioning import ConditioningConfig
from mtil.pipeline.checkpoint import load_policy
from mtil.pipeline.cli.main import main
from mtil.pipeline.policy.model import MultiTaskPolicy, PolicyConfig

BIN = os.path.dirname(sys.executable)
FAST = ["--batch-size", "6", "--obs-horizon", "1", "--action-horizon", "4", "--exec-steps", "2",
        "--warmup-steps", "5", "--cond-dim", "16"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    return write_synthetic(str(d / "three.hdf5"), tasks=["lift the red cube", "open the drawer", "push the button"],
                           demos_per_task=[3, 3, 2], steps=12, image_size=16, seed=0)


def mtil(*args, **kw):
    return subprocess.run([os.path.join(BIN, "mtil"), *args], capture_output=True, text=True, **kw)


def test_train_cli_end_to_end(tmp_path, data):
    out = tmp_path / "run"
    r = mtil("train", "--data", data, "--out", str(out), "--steps", "12", "--save-every", "6", *FAST)
    assert r.returncode == 0, r.stderr
    assert sorted(p for p in os.listdir(out) if p.endswith(".pt")) == ["last.pt", "step_12.pt", "step_6.pt"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["steps"] == 12 and cfg["policy"]["tasks"][1] == "open the drawer"
    assert os.listdir(out / "tb") and "train" in r.stderr  # progress bar and TensorBoard events
    # a checkpoint alone runs predict_action, with a trained and an unseen (paraphrased) instruction
    policy, ckpt = load_policy(str(out / "last.pt"))
    assert ckpt.step == 12
    obs = {"agentview_image": np.zeros((16, 16, 3), np.uint8), "robot0_eye_in_hand_image": np.zeros((16, 16, 3),
           np.uint8), "robot0_eef_pos": np.zeros(3, np.float32), "robot0_gripper_qpos": np.zeros(2, np.float32)}
    a = policy.predict_action(obs, "open the drawer")
    assert a.shape == (7,) and np.isfinite(a).all()
    policy.reset()
    b = policy.predict_action(obs, "pull the drawer open")
    assert b.shape == (7,)


def test_bad_input(tmp_path, data, capsys):
    out = tmp_path / "run"

    def run(*args) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["train", "--data", data, "--out", str(out), *args])
        return code, capsys.readouterr().err

    code, err = run("--steps", "0")
    assert code == 2 and "--steps" in err and not out.exists()
    code, err = run("--batch-size", "2")
    assert code == 2 and "smaller than the number of tasks" in err
    other = write_synthetic(str(tmp_path / "a4.hdf5"), action_dim=4, image_size=16)
    capsys.readouterr()
    assert main(["train", "--data", data, other, "--out", str(out)]) == 2
    assert "action dim" in capsys.readouterr().err
    # corrupt, foreign and code-carrying checkpoints are refused, and the run directory is left alone
    out.mkdir()
    (out / "last.pt").write_bytes(b"garbage" * 100)
    code, err = run("--resume", *FAST)
    assert code == 2 and "last.pt" in err and (out / "last.pt").read_bytes() == b"garbage" * 100
    torch.save({"weights": torch.zeros(3)}, out / "last.pt")
    code, err = run("--resume", *FAST)
    assert code == 2 and "not an mtil checkpoint" in err

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    with open(out / "last.pt", "wb") as f:
        pickle.dump({"format": "mtil-checkpoint", "x": Evil()}, f)
    code, err = run("--resume", *FAST)
    assert code == 2 and "refused" in err and not (tmp_path / "pwned").exists()
    before = (out / "last.pt").read_bytes()
    code, err = run(*FAST)  # an existing run is not overwritten
    assert code == 2 and "--resume" in err and (out / "last.pt").read_bytes() == before


def _weights(path):
    ck = torch.load(path, weights_only=True)
    return ck["model"], ck["ema"], ck["optimizer"]["state"]


def test_kill9_resume_is_bit_identical(tmp_path, data):
    args = ["--data", data, "--steps", "40", "--save-every", "8", *FAST, "--seed", "3"]
    ref = tmp_path / "ref"
    r = mtil("train", "--out", str(ref), *args)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    p = subprocess.Popen([os.path.join(BIN, "mtil"), "train", "--out", str(run), *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "step_16.pt").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (run / "step_40.pt").exists(), "the run finished before it could be killed"
    r = mtil("train", "--out", str(run), "--resume", *args)
    assert r.returncode == 0, r.stderr
    a, b = _weights(ref / "last.pt"), _weights(run / "last.pt")
    for x, y in zip(a[:2], b[:2]):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), k
    r = mtil("train", "--out", str(run), "--resume", *args[:-1], "4")  # changed seed
    assert r.returncode == 2 and "config changed" in r.stderr


def test_ddp_two_processes(tmp_path, data):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([os.path.join(BIN, "torchrun"), "--nproc_per_node", "2", "--master_port", "29517",
                        "-m", "mtil.pipeline.cli.train", "--data", data, "--out", str(out), "--steps", "6",
                        "--save-every", "3", "--conditioning", "onehot", *FAST],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["world_size"] == 2 and ck["step"] == 6
    assert sorted(p for p in os.listdir(out) if p.endswith(".pt")) == ["last.pt", "step_3.pt", "step_6.pt"]


def _fit(ds, policy, zero_task: bool, steps: int = 250) -> float:
    torch.manual_seed(0)
    opt = torch.optim.Adam(policy.parameters(), lr=2e-3)
    sampler = StratifiedTaskBatchSampler(ds.task_indices(), 24, seed=0, batches_per_epoch=10**6)
    it = iter(sampler)
    losses = []
    for _ in range(steps):
        batch = ds.__getitems__(next(it))
        if zero_task:
            batch["task"] = torch.zeros_like(batch["task"])
        loss, m = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(m["bc_loss"]))
    return float(np.mean(losses[-20:]))


def test_conditioning_is_what_learns_the_task(tmp_path):
    """Actions depend only on the task; observations carry no trace of it."""
    path = write_synthetic(str(tmp_path / "blind.hdf5"), tasks=["a", "b", "c"], demos_per_task=2, steps=10,
                           image_size=16, task_in_obs=False, seed=0)
    manifest, stats = build_manifest([path], valid_fraction=0)
    ds = WindowedDataset(manifest, obs_horizon=1, action_horizon=2)

    def policy():
        cfg = PolicyConfig(image_keys=["agentview_image"], lowdim_keys=[], lowdim_dims=[], image_size=[16, 16],
                           action_dim=7, obs_horizon=1, action_horizon=2, exec_steps=1, shift_pad=0,
                           conditioning=ConditioningConfig("onehot", out_dim=16, num_tasks=3).to_dict(),
                           tasks=["a", "b", "c"], feature_dim=16, hidden_dim=64)
        torch.manual_seed(0)
        return MultiTaskPolicy(cfg, stats)

    conditioned = _fit(ds, policy(), zero_task=False)
    blind = _fit(ds, policy(), zero_task=True)
    # Without the task, the best an L1 regressor can do is predict the per-dimension median: in each of
    # the 3 task dimensions the normalized target is +1 for one task and -1 for two, so the floor is
    # 3 dims * (1/3 * 2) / 7 dims = 2/7 ~= 0.286.
    assert conditioned < 0.05, conditioned
    assert blind > 0.25, blind


def test_policy_save_load_roundtrip(tmp_path, data):
    manifest, stats = build_manifest([data], valid_fraction=0)
    cfg = PolicyConfig(image_keys=["agentview_image", "robot0_eye_in_hand_image"], lowdim_keys=["robot0_eef_pos"],
                       lowdim_dims=[3], image_size=[16, 16], action_dim=7, head="gmm",
                       conditioning=ConditioningConfig("onehot", out_dim=16, num_tasks=3).to_dict(),
                       tasks=[t.instruction for t in manifest.tasks])
    torch.manual_seed(1)
    a = MultiTaskPolicy(cfg, stats).eval()
    torch.save(a.state_dict(), tmp_path / "w.pt")
    torch.manual_seed(2)
    b = MultiTaskPolicy(cfg, stats).eval()
    ds = WindowedDataset(manifest, obs_horizon=2, action_horizon=8)
    obs = {k: v[0, -1].numpy() for k, v in ds.__getitems__([0])["obs"].items()}
    assert not np.allclose(a.predict_action(obs, 0), b.predict_action(obs, 0)), "a fresh model already matches"
    a.reset()
    b.reset()
    b.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    for t in range(3):
        obs = {k: v[0, -1].numpy() for k, v in ds.__getitems__([t * 30])["obs"].items()}
        for _ in range(5):  # several steps: history and action queue behave the same
            torch.testing.assert_close(a.predict_action(obs, t), b.predict_action(obs, t))
        a.reset()
        b.reset()
    shutil.rmtree(tmp_path)


def test_video_conditioning_encodes_one_clip_per_task(tmp_path, data):
    """Video training end to end; the batch carries one clip per task present, and encoding those once
    gives exactly the task vectors of encoding one clip per sample."""
    from mtil.pipeline.training.data import add_clips

    out = tmp_path / "run"
    r = mtil("train", "--data", data, "--out", str(out), "--steps", "3", "--conditioning", "video", *FAST)
    assert r.returncode == 0, r.stderr
    policy, _ = load_policy(str(out / "last.pt"))
    m, _ = build_manifest([data])
    ds = WindowedDataset(m, "train", policy.cfg.image_keys + policy.cfg.lowdim_keys, 1, 4)
    batch = ds.__getitems__(np.arange(0, len(ds), 3))
    add_clips(batch, ds, np.random.default_rng(0), 4, "agentview_image")
    tasks = batch["task"].unique()
    assert batch["clips"].shape[:2] == (len(tasks), 4) and batch["clip_index"].shape == batch["task"].shape
    z_shared, _ = policy.task_vector(batch)
    per_sample = {**batch, "clip": batch["clips"][batch["clip_index"]]}
    del per_sample["clips"]
    z_each, _ = policy.task_vector(per_sample)
    assert torch.allclose(z_shared, z_each, atol=1e-5)


def _tiny_policy(stats, **options) -> MultiTaskPolicy:
    cfg = PolicyConfig(image_keys=["agentview_image"], lowdim_keys=[], lowdim_dims=[], image_size=[16, 16],
                       action_dim=7, conditioning=ConditioningConfig("onehot", out_dim=8, num_tasks=3).to_dict(),
                       tasks=["lift the red cube", "open the drawer", "push the button"], feature_dim=8,
                       hidden_dim=16, **options)
    torch.manual_seed(0)
    return MultiTaskPolicy(cfg, stats).eval()


def test_temporal_ensemble_averages_overlapping_chunks(data):
    """Every step re-plans; the action for step t is the mean of the predictions for t of every chunk
    still covering it, the oldest weighted exp(0), the next exp(-decay), ... (ACT's weights)."""
    _, stats = build_manifest([data], valid_fraction=0)
    decay, H, A = 0.3, 3, 7
    policy = _tiny_policy(stats, action_horizon=H, exec_steps=1, temporal_ensemble=True, ensemble_decay=decay)
    chunks = [torch.full((1, H, A), 0.0) + 100.0 * s + torch.arange(H, dtype=torch.float32)[None, :, None]
              for s in range(6)]  # chunk planned at step s predicts 100 s + k for its k-th step
    calls = []

    def planned(obs, z):  # stands in for the network: the next chunk
        calls.append(z.shape)
        return chunks[len(calls) - 1]

    policy.predict_chunk = planned
    obs = {"agentview_image": np.zeros((16, 16, 3), np.uint8)}
    got = [policy.predict_action(obs, 0) for _ in range(5)]
    assert len(calls) == 5  # a new chunk at every step
    for t, action in enumerate(got):
        starts = [s for s in range(t + 1) if t - s < H]  # oldest first
        w = np.exp(-decay * np.arange(len(starts)))
        expected = sum(wi * (100.0 * s + (t - s)) for wi, s in zip(w, starts)) / w.sum()
        np.testing.assert_allclose(action, np.full(A, expected), rtol=1e-5)
    assert got[0][0] == 0.0 and got[1][0] != 1.0  # the first step has one chunk; later ones mix several


def test_checkpoint_of_the_old_layout_still_loads(tmp_path, data):
    """A checkpoint with exactly the keys train() wrote before checkpoint.build_checkpoint existed loads,
    runs, and resumes; one missing what evaluation needs is refused with a clear message."""
    from mtil.pipeline.checkpoint import read_checkpoint
    from mtil.pipeline.training.loop import TrainConfig, resume_checkpoint

    manifest, stats = build_manifest([data], valid_fraction=0)
    policy = _tiny_policy(stats, obs_horizon=2)
    sd = policy.state_dict()
    policy_config = {  # the old PolicyConfig's fields, spelled out (obs_horizon defaulted to 2 then)
        "image_keys": ["agentview_image"], "lowdim_keys": [], "lowdim_dims": [], "image_size": [16, 16],
        "action_dim": 7, "conditioning": policy.cfg.conditioning, "obs_horizon": 2, "action_horizon": 8,
        "exec_steps": 4, "temporal_ensemble": False, "ensemble_decay": 0.1, "backbone": "small_cnn",
        "feature_dim": 8, "hidden_dim": 16, "head": "l1", "gmm_modes": 5, "shift_pad": 4, "align_weight": 1.0,
        "tasks": policy.cfg.tasks}
    cfg = TrainConfig(data=[data], out=str(tmp_path), conditioning="onehot", resume=True)
    old_train_config = {k: v for k, v in dataclasses.asdict(cfg).items()
                        if k not in ("temporal_ensemble", "ensemble_decay", "feature_dim", "hidden_dim",
                                     "gmm_modes", "shift_pad", "align_weight")}  # options the CLI lacked
    old = {"format": "mtil-checkpoint", "version": 1, "step": 7, "train_config": old_train_config,
           "policy_config": policy_config, "model": sd, "ema": sd, "optimizer": {"state": {}, "param_groups": []},
           "scheduler": {"kind": "warmup_cosine", "lr": 1e-3}, "sampler": {"epoch": 0, "batch": 7},
           "rng": {"torch": torch.get_rng_state()}, "stats": stats, "tasks": policy.cfg.tasks,
           "env_args": {"env_name": "Lift"}, "world_size": 1, "best_success": 0.25}
    torch.save(old, tmp_path / "last.pt")
    loaded, ckpt = load_policy(str(tmp_path / "last.pt"))
    assert (ckpt.step, ckpt.env_args, ckpt.best_success, ckpt.policy_config.obs_horizon) == (7, {"env_name": "Lift"},
                                                                                             0.25, 2)
    obs = {"agentview_image": np.full((16, 16, 3), 90, np.uint8)}
    ref = MultiTaskPolicy(PolicyConfig(**policy_config), stats).eval()
    ref.load_state_dict(sd)
    np.testing.assert_allclose(loaded.predict_action(obs, 1), ref.predict_action(obs, 1))
    assert resume_checkpoint(cfg, str(tmp_path / "last.pt")).sampler["batch"] == 7  # new options at defaults
    del old["model"]
    with pytest.raises(UserError, match="older or unknown layout: no model"):
        read_checkpoint(old, "old.pt")


def test_periodic_rollouts_keep_best(tmp_path, data, monkeypatch):
    """A worse later rollout leaves best.pt alone (the rollout itself is replaced by given rates)."""
    import mtil.pipeline.training.loop as train_mod

    rates = iter([0.5, 0.2])
    seen = []

    def fake_rollout(cfg, out, ckpt):
        seen.append(ckpt.step)
        assert ckpt.ema is not None and ckpt.policy_config.conditioning["kind"] == "onehot"  # in memory
        return next(rates)

    monkeypatch.setattr(train_mod, "rollout_success", fake_rollout)
    out = tmp_path / "run"
    train_mod.train(train_mod.TrainConfig(data=[data], out=str(out), steps=2, batch_size=6, conditioning="onehot",
                                          cond_dim=8, obs_horizon=1, action_horizon=4, exec_steps=2, warmup_steps=1,
                                          save_every=2, rollout_every=1))
    assert seen == [1, 2]
    best = torch.load(out / "best.pt", weights_only=True)
    last = torch.load(out / "last.pt", weights_only=True)
    assert best["step"] == 1 and best["best_success"] == 0.5
    assert last["step"] == 2 and last["best_success"] == 0.5
    assert not any(torch.equal(best["ema"][k], last["ema"][k]) for k in ("head.out.weight", "trunk.0.weight"))
