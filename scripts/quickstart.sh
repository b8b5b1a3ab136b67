#!/usr/bin/env bash
# Install mtil into .venv (or $MTIL_VENV) and run `mtil quickstart` (extra args are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh ""
"$VENV/bin/mtil" quickstart "$@"
