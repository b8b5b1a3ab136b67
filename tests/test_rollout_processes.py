"""`mtil train --rollout-every N` rolls out in worker processes only: the training process itself never imports
robosuite or mujoco, before, during or after its periodic rollouts, and the rollouts still choose best.pt."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("robosuite")


def test_periodic_rollouts_load_the_simulator_only_in_workers(tmp_path):
    from mtil.pipeline.cli.main import main

    data = str(tmp_path / "demos.hdf5")
    assert main(["collect", "--tasks", "lift_red", "--demos-per-task", "2", "--workers", "1", "--out", data,
                 "--image-size", "16", "--no-progress"]) == 0
    argv = ["train", "--data", data, "--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "4",
            "--conditioning", "onehot", "--cond-dim", "8", "--rollout-every", "2", "--rollout-episodes", "1"]
    code = (f"import json, sys; from mtil.pipeline.cli.main import main; rc = main({argv!r}); "
            "print(json.dumps([rc, sorted(m for m in sys.modules if m.split('.')[0] in ('robosuite', 'mujoco'))]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd="/")
    rc, loaded = json.loads(p.stdout.strip().splitlines()[-1])
    assert rc == 0 and loaded == [], p.stderr[-2000:]
    assert (tmp_path / "run" / "rollouts" / "step_2" / "eval.json").exists()
    assert (tmp_path / "run" / "best.pt").exists()
    assert "robosuite WARNING" not in p.stderr and "robosuite INFO" not in p.stderr  # the banner, silenced
