#!/usr/bin/env bash
# Install mtil into .venv (or $MTIL_VENV) and run `mtil quickstart` (extra args are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MTIL_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
fi
"$VENV/bin/pip" install --quiet -e .
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$VENV/bin/mtil" quickstart "$@"
