#!/usr/bin/env bash
# Install mtil with its test extras into a virtualenv and run the whole test suite (+ ruff).
#   bash scripts/test.sh [pytest args...]
# The venv is .venv in the checkout unless MTIL_VENV names another (CI keeps one outside the checkout).
# pytest is started through its console script, never `python -m pytest`, so the repo root is not put
# on sys.path (a top-level datasets/ folder there would shadow Hugging Face `datasets`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh "[test]"
# robomimic's own reader checks that our files (DAgger rounds included) are robomimic-readable; its
# dependency list pins old packages, and its reader needs none of them beyond ours: --no-deps
if ! (cd / && "$VENV/bin/python" -c "import robomimic" 2>/dev/null); then
  mtil_pip robomimic install --no-deps robomimic==0.3.0
fi
# LeRobot 0.4.4's own reader and writer check both directions of the LeRobot format (tests/test_lerobot_library.py);
# it needs its own environment (it pins torch < 2.11): built once beside the venv, then reused
bash scripts/lerobot_env.sh "$VENV" "$MTIL_LEROBOT_VENV"
export MTIL_LEROBOT_PYTHON="$MTIL_LEROBOT_VENV/bin/python" MTIL_REQUIRE_LEROBOT=1
"$VENV/bin/ruff" check --quiet .
"$VENV/bin/pytest" -q "$@"
