# Sourced by scripts/_venv.sh (and tests/test_scripts.py): the environments' paths, made absolute before
# anything uses them. The tests run the LeRobot python from another working directory, so a relative
# path (the default .venv, or a relative MTIL_VENV) would point nowhere there. Needs the working directory
# to be the checkout's root (every script cds there first).
VENV="$(realpath -m "${MTIL_VENV:-.venv}")"
MTIL_LEROBOT_VENV="$(realpath -m "${MTIL_LEROBOT_VENV:-${VENV%/}-lerobot}")"
MTIL_INSTALL_LOG="$VENV/mtil-install.log"  # pip's output, kept out of the terminal
export VENV MTIL_LEROBOT_VENV MTIL_INSTALL_LOG
