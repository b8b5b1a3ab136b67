#!/usr/bin/env bash
# A second environment with LeRobot 0.4.4, the library whose reader and writer check `mtil ingest` and
# `mtil export --format lerobot` in the tests (tests/test_lerobot.py). LeRobot 0.4.4 pins torch < 2.11 and
# mtil needs torch 2.14.1 (the pair with torchvision that imports here), so LeRobot goes in --no-deps with
# the dependencies its dataset code imports, on top of mtil's venv: its site-packages are reached through
# a .pth file (torch, numpy, ... are not installed twice), and this venv's own packages win where both
# have one (huggingface-hub < 0.36 for LeRobot). Video decoding goes through torchcodec 0.17.0 and Debian's
# FFmpeg 5 libraries; LeRobot's "pyav" backend calls torchvision.io.VideoReader, gone from torchvision 0.29.
#   bash scripts/lerobot_env.sh MTIL_VENV LEROBOT_VENV      (reused when it already imports lerobot)
set -euo pipefail
BASE="$(realpath "$1")"; LR="$(realpath -m "$2")"
cd /  # `python -c` puts the working directory on sys.path: the mtil checkout's datasets/ would shadow HF datasets
if [ -x "$LR/bin/python" ] && "$LR/bin/python" -c "import lerobot.datasets.lerobot_dataset, torchcodec.decoders" 2>/dev/null; then
  exit 0
fi
LIBS=(libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8)
if ! dpkg -s "${LIBS[@]}" >/dev/null 2>&1; then
  SUDO=(); [ "$(id -u)" = 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${LIBS[@]}" >/dev/null 2>&1 || {
    "${SUDO[@]}" apt-get update -qq >/dev/null && \
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${LIBS[@]}" >/dev/null; }
fi
LOG="$LR/mtil-install.log"  # pip's output (resolver notes about LeRobot's pins, which --no-deps sets aside)
echo "mtil: building the LeRobot 0.4.4 environment for the tests in $LR (once; log: $LOG)"
pip_lr() {
  if ! "$LR/bin/pip" "$@" >>"$LOG" 2>&1; then
    echo "error: building the LeRobot environment failed; pip's output is in $LOG (last lines below)" >&2
    tail -n 15 "$LOG" >&2
    exit 1
  fi
}
rm -rf "$LR"
python3 -m venv "$LR"
: >"$LOG"
SITE_BASE=$("$BASE/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
SITE_LR=$("$LR/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$SITE_BASE" > "$SITE_LR/mtil_base.pth"
pip_lr install --upgrade pip
pip_lr install --no-deps lerobot==0.4.4
pip_lr install "datasets>=2.19,<4.2" "huggingface-hub[hf-transfer]>=0.34.2,<0.36" av jsonlines \
  draccus==0.10.0 einops deepdiff accelerate "imageio[ffmpeg]" pyarrow pandas torchcodec==0.17.0 \
  "torch==2.14.1" "torchvision==0.29.1"
"$LR/bin/python" -c "import lerobot.datasets.lerobot_dataset, torchcodec.decoders"
