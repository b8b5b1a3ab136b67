# Sourced by scripts/test.sh and scripts/quickstart.sh: make sure $VENV exists (.venv in the checkout,
# or $MTIL_VENV) and holds mtil installed editable with the extras in $1 (e.g. "[test]" or "").
VENV="${MTIL_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
fi
"$VENV/bin/pip" install --quiet -e ".$1"
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
