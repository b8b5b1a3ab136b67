"""The README's scripts derive their environments' paths absolute (issue 35): the tests run the LeRobot
python from another working directory, so a relative `.venv` (a fresh clone's default) or a relative
MTIL_VENV once made `bash scripts/test.sh` fail while CI, with an absolute path, passed."""

from __future__ import annotations

import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _paths(env_overrides: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MTIL_VENV", "MTIL_LEROBOT_VENV")}
    env.update(env_overrides)
    out = subprocess.run(["bash", "-c", 'source scripts/_paths.sh; echo "$VENV"; echo "$MTIL_LEROBOT_VENV"; '
                          'echo "$MTIL_INSTALL_LOG"'], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.split("\n")
    return dict(zip(("venv", "lerobot", "log"), out))


@pytest.mark.parametrize("given, venv", [
    ({}, os.path.join(ROOT, ".venv")),
    ({"MTIL_VENV": "envs/mine/"}, os.path.join(ROOT, "envs", "mine")),
    ({"MTIL_VENV": "../elsewhere/venv"}, os.path.join(os.path.dirname(ROOT), "elsewhere", "venv")),
    ({"MTIL_VENV": "/opt/venv"}, "/opt/venv"),
])
def test_environment_paths_are_absolute(given, venv):
    p = _paths(given)
    assert p["venv"] == venv
    assert p["lerobot"] == venv + "-lerobot"
    assert p["log"] == os.path.join(venv, "mtil-install.log")


def test_a_relative_lerobot_venv_is_made_absolute_too():
    p = _paths({"MTIL_VENV": "/opt/venv", "MTIL_LEROBOT_VENV": "lr"})
    assert p["lerobot"] == os.path.join(ROOT, "lr")


def test_ci_hands_the_scripts_a_relative_venv():
    """CI must exercise the fresh clone's path handling: .ci/run passes MTIL_VENV relative to the checkout."""
    text = open(os.path.join(ROOT, ".ci", "run")).read()
    assert 'realpath -m --relative-to=.' in text and "bash scripts/test.sh" in text
