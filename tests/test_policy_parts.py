"""The policy as parts: every head x trunk learns a fixed batch and acts; the gripper as a binary output;
stochastic heads are reproducible per episode; a new head or trunk is one class plus one table line, and
trains through `mtil train` (shown with toy ones); checkpoints of the older inline head still load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mtil.datasets.manifest import build_manifest
from mtil.datasets.synthetic import write_synthetic
from mtil.datasets.windowed import WindowedDataset
from mtil.encoders.conditioning import ConditioningConfig
from mtil.pipeline.policy.heads import HEADS, ActionHead
from mtil.pipeline.policy.model import MultiTaskPolicy, PolicyConfig
from mtil.pipeline.policy.trunks import TRUNKS

TASKS = ["lift the red cube", "open the drawer"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic(str(tmp_path_factory.mktemp("parts") / "demos.hdf5"), tasks=TASKS,
                           demos_per_task=[3, 3], steps=12, image_size=16)


@pytest.fixture(scope="module")
def batch_and_stats(data):
    manifest, stats = build_manifest([data], valid_fraction=0)
    ds = WindowedDataset(manifest, "train", ["agentview_image", "robot0_eef_pos"], 1, 4)
    return ds.__getitems__(np.arange(0, len(ds), max(1, len(ds) // 16))[:16]), stats


def _policy(stats, **options) -> MultiTaskPolicy:
    cfg = PolicyConfig(image_keys=["agentview_image"], lowdim_keys=["robot0_eef_pos"], lowdim_dims=[3],
                       image_size=[16, 16], action_dim=7, tasks=TASKS,
                       conditioning=ConditioningConfig("onehot", out_dim=8, num_tasks=2).to_dict(), feature_dim=8,
                       hidden_dim=32, **{"action_horizon": 4, "exec_steps": 2, "shift_pad": 0, **options})
    torch.manual_seed(0)
    return MultiTaskPolicy(cfg, stats)


def _fit(policy: MultiTaskPolicy, batch: dict, steps: int) -> tuple[float, float]:
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    policy.train()
    first = None
    for _ in range(steps):
        loss, m = policy.compute_loss(batch)
        assert m["per_sample"].shape == (len(batch["task"]),)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    with torch.no_grad():
        return first, float(policy.compute_loss(batch)[0])


@pytest.mark.parametrize("trunk", sorted(TRUNKS))
@pytest.mark.parametrize("head", sorted(HEADS))
def test_every_head_and_trunk_learns_a_batch_and_acts(batch_and_stats, head, trunk):
    batch, stats = batch_and_stats
    policy = _policy(stats, head=head, trunk=trunk, trunk_layers=1, flow_steps=4)
    first, last = _fit(policy, batch, 60)
    assert np.isfinite(last) and last < first, (first, last)
    policy.eval()
    policy.reset()
    obs = {"agentview_image": np.zeros((16, 16, 3), np.uint8), "robot0_eef_pos": np.zeros(3)}
    action = policy.predict_action(obs, 1)
    assert action.shape == (7,) and np.isfinite(action).all()


def test_gripper_as_a_binary_output(batch_and_stats):
    batch, stats = batch_and_stats
    policy = _policy(stats, gripper_bce=True)
    assert policy.head.action_dim == 6  # the head regresses the arm only
    first, last = _fit(policy, batch, 150)
    assert last < first
    policy.eval()
    z = policy.cond(batch["task"])
    chunk = policy.predict_chunk(batch["obs"], z)
    grip = chunk[..., -1]
    assert set(grip.unique().tolist()) <= {-1.0, 1.0}
    want = torch.where(batch["actions"][..., -1] > 0, 1.0, -1.0)
    assert (grip == want).float().mean() > 0.9  # it fits the open/close labels of the batch


def test_flow_head_is_reproducible_per_episode(batch_and_stats):
    _, stats = batch_and_stats
    policy = _policy(stats, head="flow", exec_steps=1).eval()
    obs = {"agentview_image": np.full((16, 16, 3), 90, np.uint8), "robot0_eef_pos": np.zeros(3)}
    runs = []
    for _ in range(2):
        policy.reset()
        runs.append([policy.predict_action(obs, 0) for _ in range(3)])
    np.testing.assert_array_equal(np.array(runs[0]), np.array(runs[1]))
    assert not np.allclose(runs[0][0], runs[0][1])  # fresh noise within an episode


class ToyHead(ActionHead):
    """A head in a dozen lines: a linear layer trained by the squared error."""

    def __init__(self, in_dim, horizon, action_dim, opts):
        super().__init__(in_dim, horizon, action_dim, opts)
        self.out = nn.Linear(in_dim, horizon * action_dim)

    def sample(self, h):
        return self.out(h).view(-1, self.horizon, self.action_dim)

    def loss(self, h, target, valid):
        return ((self.sample(h) - target) ** 2 * valid[..., None]).mean(dim=(1, 2))


class ToyTrunk(nn.Module):
    """A trunk in a few lines: the mean of the tokens, each projected to hidden_dim."""

    def __init__(self, token_dims, opts):
        super().__init__()
        self.out_dim = opts.hidden_dim
        self.proj = nn.ModuleList(nn.Linear(n, opts.hidden_dim) for n in token_dims)

    def forward(self, tokens):
        return torch.stack([p(t) for p, t in zip(self.proj, tokens)]).mean(0)


def test_a_new_head_and_trunk_train_through_mtil_train(data, tmp_path, monkeypatch, capsys):
    """Registering is one line per table; `mtil train` then offers and trains them, and the checkpoint acts."""
    from mtil.pipeline.checkpoint import load_policy
    from mtil.pipeline.cli.main import main
    from mtil.pipeline.policy import heads, trunks

    monkeypatch.setitem(heads.HEADS, "toy", ToyHead)
    monkeypatch.setitem(trunks.TRUNKS, "toy", ToyTrunk)
    out = tmp_path / "run"
    assert main(["train", "--data", data, "--out", str(out), "--steps", "3", "--batch-size", "4", "--conditioning",
                 "onehot", "--cond-dim", "8", "--head", "toy", "--trunk", "toy", "--skip-env-check"]) == 0
    policy, ckpt = load_policy(str(out / "last.pt"))
    assert isinstance(policy.head, ToyHead) and isinstance(policy.trunk, ToyTrunk) and ckpt.step == 3
    obs = {k: np.zeros((16, 16, 3), np.uint8) for k in policy.cfg.image_keys}
    obs.update({k: np.zeros(d) for k, d in zip(policy.cfg.lowdim_keys, policy.cfg.lowdim_dims)})
    assert policy.predict_action(obs, 0).shape == (7,)
    capsys.readouterr()
    assert main(["train", "--data", data, "--out", str(tmp_path / "x"), "--head", "nope"]) == 2
    assert "--head must be one of l1, gmm, flow, toy" in capsys.readouterr().err


def test_checkpoint_with_the_inline_head_still_loads(batch_and_stats):
    """Before heads were parts the policy held `head` as an nn.Linear: `head.weight` -> `head.out.weight`."""
    _, stats = batch_and_stats
    for kind in ("l1", "gmm"):
        new = _policy(stats, head=kind).eval()
        sd = new.state_dict()
        old = {("head." + k[9:] if k.startswith("head.out.") else k): v for k, v in sd.items()}
        assert "head.weight" in old
        again = _policy(stats, head=kind)
        again.load_state_dict(old)
        obs = {"agentview_image": np.full((16, 16, 3), 7, np.uint8), "robot0_eef_pos": np.ones(3)}
        np.testing.assert_array_equal(new.predict_action(obs, 0), again.eval().predict_action(obs, 0))
