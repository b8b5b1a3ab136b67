"""Token-level language conditioning (issue 21 item 3): the real MiniLM's token states, kept word by word,
and a policy that attends over them with learned queries, trained through `mtil train` and given pairings
of known words it never trained on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtil.datasets.errors import UserError
from mtil.datasets.synthetic import write_synthetic
from mtil.encoders.conditioners.language_tokens import TOKENS
from mtil.encoders.language import LanguageEncoder

TASKS = ["stack the red cube on the green cube", "stack the green cube on the blue cube"]
NEW = "stack the red cube on the blue cube"


def test_token_states_keep_words_apart(tmp_path):
    enc = LanguageEncoder(cache_dir=tmp_path, tokens=TOKENS)
    emb = enc.encode([NEW, "lift the red cube"])
    assert emb.shape == (2, TOKENS * 384) and enc.dim == TOKENS * 384
    tok = emb.view(2, TOKENS, 384)
    norms = tok.norm(dim=-1)
    # [CLS] stack the red cube on the blue cube [SEP] = 10 tokens; [CLS] lift the red cube [SEP] = 6
    np.testing.assert_allclose(norms[0, :10], 1.0, atol=1e-5)
    np.testing.assert_allclose(norms[1, :6], 1.0, atol=1e-5)
    assert float(norms[0, 10:].abs().max()) == 0.0 and float(norms[1, 6:].abs().max()) == 0.0
    # the two colour words of one sentence stay two different vectors (a pooled vector has one)
    assert float(torch.dot(tok[0, 3], tok[0, 7])) < 0.95
    pooled = LanguageEncoder(cache_dir=tmp_path).encode([NEW])  # same cache folder, its own entries
    assert pooled.shape == (1, 384)
    torch.testing.assert_close(LanguageEncoder(cache_dir=tmp_path, tokens=TOKENS).encode([NEW])[0], emb[0])
    with pytest.raises(UserError, match="tokens must be an int >= 0"):
        LanguageEncoder(cache_dir=tmp_path, tokens=-1)


def test_a_token_policy_trains_and_takes_a_new_pairing(tmp_path, capsys, script):
    from mtil.pipeline.checkpoint import load_policy
    from mtil.pipeline.cli.main import main

    data = write_synthetic(str(tmp_path / "demos.hdf5"), tasks=TASKS, demos_per_task=[3, 3], steps=12,
                           image_size=16)
    out = tmp_path / "run"
    assert main(["train", "--data", data, "--out", str(out), "--steps", "3", "--batch-size", "4", "--conditioning",
                 "language_tokens", "--cond-dim", "8", "--action-horizon", "4", "--exec-steps", "2",
                 "--skip-env-check"]) == 0
    policy, _ = load_policy(str(out / "last.pt"))
    assert type(policy.cond).__name__ == "LanguageTokensConditioner"
    assert policy.task_lang_emb.shape == (2, TOKENS * 384)  # the checkpoint holds the trained texts' token states
    with torch.no_grad():  # FiLM starts at the identity: move the weights so that z shows in the action
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    obs = {k: np.full((16, 16, 3), 90, np.uint8) for k in policy.cfg.image_keys}
    obs.update({k: np.zeros(d) for k, d in zip(policy.cfg.lowdim_keys, policy.cfg.lowdim_dims)})
    acts = []
    for task in (*TASKS, NEW):  # the new pairing is embedded by the token encoder at rollout
        policy.reset()
        acts.append(policy.predict_action(obs, task))
    assert all(np.isfinite(a).all() for a in acts)
    assert not np.allclose(acts[2], acts[0]) and not np.allclose(acts[2], acts[1])
    z = policy.resolve_task([NEW, TASKS[0]], 2)
    assert z.shape == (2, 8)
    # scripts/task_similarity.py: a trained instruction is nearest to itself at cosine 1; every task is ranked
    sim = script("task_similarity")
    rows = sim.similarities(policy, [TASKS[1], NEW])
    assert rows[0]["nearest"][0] == (TASKS[1], pytest.approx(1.0, abs=1e-4))
    assert sorted(n for n, _ in rows[1]["nearest"]) == sorted(TASKS)
    cos = [c for _, c in rows[1]["nearest"]]
    assert cos == sorted(cos, reverse=True) and all(-1.0 - 1e-6 <= c <= 1.0 + 1e-6 for c in cos)
    assert sim.main([str(out / "last.pt"), "--instructions", NEW, "--json", str(tmp_path / "s.json")]) == 0
    assert "stack the red cube on the blue cube" in capsys.readouterr().out
    assert sim.main([str(tmp_path / "missing.pt")]) == 2
    capsys.readouterr()
    # a video encoder is fitted onto one sentence vector per task: refused, nothing written
    assert main(["fit-video", str(out / "last.pt"), "--data", data, "--out", str(tmp_path / "v")]) == 2
    assert "one sentence vector per task" in capsys.readouterr().err
    assert not (tmp_path / "v" / "last.pt").exists()
