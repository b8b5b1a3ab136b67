"""Conditioning kinds as parts (issue 21 item 4): every kind's policy keeps the state-dict layout it always had
and reloads from a state dict + config saved the old way to act identically; a new kind is one class plus one
table line, and trains through `mtil train` (shown with a toy kind)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from mtil.datasets.manifest import build_manifest
from mtil.datasets.synthetic import write_synthetic
from mtil.encoders.conditioners import CONDITIONERS, PolicyTasks, TaskConditioner
from mtil.pipeline.policy.model import MultiTaskPolicy, PolicyConfig

TASKS = ["lift the red cube", "open the drawer"]

# The task-conditioner keys each kind's checkpoints have always held (prefix under `cond.`: number of keys),
# and what the policy is given at rollout.
OLD_LAYOUT = {
    "language": {"proj": 4},
    "video": {"proj": 4, "video": 38},
    "onehot": {"table": 1},
    "goal_image": {"backbone": 21},
    "mixed": {"proj": 4, "backbone": 21},
}
CLIP = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
GOAL = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
TASK_INPUTS = {
    "language": [TASKS[1], 0],
    "video": [{"video": CLIP}, TASKS[0]],
    "onehot": [1, TASKS[0]],
    "goal_image": [GOAL],
    "mixed": [TASKS[1], GOAL],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic(str(tmp_path_factory.mktemp("cond") / "demos.hdf5"), tasks=TASKS,
                           demos_per_task=[3, 3], steps=12, image_size=16)


def _old_config(kind: str) -> dict:
    """A policy config dict as checkpoints hold it, the conditioning with exactly the fields written before
    kinds were classes."""
    cond = {"kind": kind, "out_dim": 8, "lang_dim": 384, "num_tasks": 2, "video_frames": 4, "video_frame_dim": 32,
            "video_layers": 1, "goal_prob": 0.5}
    cfg = PolicyConfig(image_keys=["agentview_image"], lowdim_keys=["robot0_eef_pos"], lowdim_dims=[3],
                       image_size=[16, 16], action_dim=7, conditioning=cond, tasks=TASKS, feature_dim=8,
                       hidden_dim=16, action_horizon=4, exec_steps=2)
    return dataclasses.asdict(cfg)


@pytest.mark.parametrize("kind", list(OLD_LAYOUT))
def test_every_kind_keeps_its_layout_and_reloads_identically(kind, data, tmp_path):
    _, stats = build_manifest([data], valid_fraction=0)
    lang = torch.nn.functional.normalize(torch.randn(2, 384, generator=torch.Generator().manual_seed(3)), dim=-1)
    lang = lang if CONDITIONERS[kind].uses_language else None
    torch.manual_seed(0)
    a = MultiTaskPolicy(PolicyConfig.from_dict(_old_config(kind)), stats, lang).eval()
    with torch.no_grad():  # FiLM starts at the identity: move every weight so that z matters
        for p in a.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    sd = a.state_dict()
    cond_keys = [k[5:] for k in sd if k.startswith("cond.")]
    assert {p: sum(k.startswith(p + ".") for k in cond_keys) for p in OLD_LAYOUT[kind]} == OLD_LAYOUT[kind]
    assert len(cond_keys) == sum(OLD_LAYOUT[kind].values())
    torch.save({"model": sd, "policy_config": _old_config(kind)}, tmp_path / "w.pt")

    saved = torch.load(tmp_path / "w.pt", weights_only=True)
    torch.manual_seed(1)
    b = MultiTaskPolicy(PolicyConfig.from_dict(saved["policy_config"]), stats, lang).eval()
    b.load_state_dict(saved["model"])
    obs = {"agentview_image": np.full((16, 16, 3), 60, np.uint8), "robot0_eef_pos": np.array([0.1, 0.0, 0.9])}
    outs = []
    for task in TASK_INPUTS[kind]:
        a.reset()
        b.reset()
        for _ in range(3):  # several steps: history and action queue behave the same
            got = a.predict_action(obs, task)
            np.testing.assert_array_equal(got, b.predict_action(obs, task))
        outs.append(got)
    if len(outs) > 1:
        assert not np.allclose(outs[0], outs[1]), "the task input does not change the action"


class TaskCodes(TaskConditioner):
    """A toy kind in a dozen lines: a learned code per task id, named by its id or training instruction."""

    conditions = ("language",)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.codes = nn.Parameter(0.1 * torch.randn(cfg.num_tasks, cfg.out_dim))

    def forward(self, ids):
        return self.codes[ids]

    def task_vector(self, batch, tasks: PolicyTasks):
        return self(batch["task"]), None

    def from_instruction(self, texts, tasks: PolicyTasks):
        return self(torch.tensor([tasks.names.index(t) for t in texts], device=tasks.lang_emb.device))


def test_a_new_kind_trains_through_mtil_train(data, tmp_path, monkeypatch, capsys):
    """Registering is one table line; `mtil train` then trains it (no language model, no goals, no clips, as
    its class says), the checkpoint acts on a task id or its instruction, and `mtil eval` offers it only the
    conditions its class lists."""
    from mtil.encoders import conditioners
    from mtil.pipeline.checkpoint import load_policy
    from mtil.pipeline.cli.main import main

    monkeypatch.setitem(conditioners.CONDITIONERS, "codes", TaskCodes)
    out = tmp_path / "run"
    assert main(["train", "--data", data, "--out", str(out), "--steps", "2", "--batch-size", "4", "--conditioning",
                 "codes", "--cond-dim", "8", "--action-horizon", "4", "--exec-steps", "2", "--skip-env-check"]) == 0
    policy, ckpt = load_policy(str(out / "last.pt"))
    assert isinstance(policy.cond, TaskCodes) and ckpt.step == 2
    assert policy.cond.codes.shape == (2, 8) and policy.task_lang_emb.shape[1] == 0  # no language embedded
    obs = {k: np.zeros((16, 16, 3), np.uint8) for k in policy.cfg.image_keys}
    obs.update({k: np.zeros(d) for k, d in zip(policy.cfg.lowdim_keys, policy.cfg.lowdim_dims)})
    by_id = policy.predict_action(obs, 1)
    policy.reset()
    np.testing.assert_array_equal(by_id, policy.predict_action(obs, TASKS[1]))
    policy.reset()
    with pytest.raises(Exception, match="cannot take a goal image"):
        policy.predict_action(obs, np.zeros((16, 16, 3), np.uint8))
    capsys.readouterr()
    for condition in ("goal_image", "video"):  # refused by what the class says, before any env is built
        assert main(["eval", str(out / "last.pt"), "--out", str(tmp_path / "ev"), "--condition", condition]) == 2
        assert f"codes-conditioned: it cannot take --condition {condition}" in capsys.readouterr().err
    assert main(["train", "--data", data, "--out", str(tmp_path / "x"), "--conditioning", "nope"]) == 2
    assert "choose one of language, language_tokens, video, onehot, goal_image, mixed, codes" in capsys.readouterr().err
