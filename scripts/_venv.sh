# Sourced by scripts/test.sh and scripts/quickstart.sh: make sure $VENV exists (.venv in the checkout,
# or $MTIL_VENV) and holds mtil installed editable with the extras in $1 (e.g. "[test]" or "").
# pip's own output (index notes, build backend banners) goes to $MTIL_INSTALL_LOG, named on failure; a
# stamp of pyproject.toml + extras skips the reinstall when nothing it depends on changed.
source scripts/_paths.sh

mtil_pip() {  # mtil_pip WHAT PIP-ARGS...: pip into the log; on failure one line naming the log and its tail
  if ! "$VENV/bin/pip" "${@:2}" >>"$MTIL_INSTALL_LOG" 2>&1; then
    echo "error: installing $1 failed; pip's output is in $MTIL_INSTALL_LOG (last lines below)" >&2
    tail -n 15 "$MTIL_INSTALL_LOG" >&2
    exit 1
  fi
}

STAMP="$VENV/.mtil-installed"
WANT="$(sha256sum pyproject.toml | cut -c1-16) $1 $(pwd)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    echo "mtil: creating $VENV and installing the pinned stack (torch, mujoco, robosuite, transformers; a few minutes the first time)"
    python3 -m venv "$VENV"
    : >"$MTIL_INSTALL_LOG"
    mtil_pip pip install --upgrade pip
  else
    echo "mtil: updating the install in $VENV"
  fi
  mtil_pip "mtil$1" install -e ".$1"
  echo "$WANT" >"$STAMP"
fi
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
