#!/usr/bin/env bash
# Issue 23's ladder on the 9-task suite, CPU recipe of docs/results.md section 11 (45 DART 0.2 demos per task
# at 64 px, 6000 steps, 20 episodes per task at 250 steps), one rung per policy variant, same data and seeds.
#   bash scripts/ladder.sh WORKDIR SEED RUNG[@EVAL]...
#   rungs (training): base | gripper | transformer | flow | trans_grip | grip_over (windows near gripper switches x3)
#   @EVAL (evaluation only, same checkpoint): te (temporal ensembling) | exec1 | exec2 | exec8 (actions per chunk)
# Each rung: WORKDIR/seed_S/RUNG/{run,eval[_EVAL]}; a finished step is skipped (rerun continues). Logs beside them.
# DEMOS=FILE shares one collection between training seeds (default: WORKDIR/seed_S/demos.hdf5, collected with seed S).
set -euo pipefail
W="$1"; S="$2"; shift 2
MTIL="${MTIL:-mtil}"
mkdir -p "$W/seed_$S"
DEMOS="${DEMOS:-$W/seed_$S/demos.hdf5}"
[ -f "$DEMOS" ] || "$MTIL" collect --tasks all --demos-per-task 45 --seed "$S" --image-size 64 --noise 0.2 \
  --workers 2 --out "$DEMOS" --no-progress > "${DEMOS%.hdf5}.collect.log" 2>&1
for SPEC in "$@"; do
  RUNG="${SPEC%@*}"; EV=""; [ "$SPEC" != "$RUNG" ] && EV="${SPEC#*@}"
  case "$EV" in
    "") EOPTS=() ;;
    te) EOPTS=(--temporal-ensemble on) ;;
    exec1) EOPTS=(--exec-steps 1) ;;
    exec2) EOPTS=(--exec-steps 2) ;;
    exec8) EOPTS=(--exec-steps 8) ;;
    *) echo "unknown evaluation variant $EV" >&2; exit 2 ;;
  esac
  case "$RUNG" in
    base) OPTS=() ;;
    gripper) OPTS=(--gripper-bce) ;;
    transformer) OPTS=(--trunk transformer) ;;
    flow) OPTS=(--head flow) ;;
    trans_grip) OPTS=(--trunk transformer --gripper-bce) ;;
    grip_over) OPTS=(--gripper-oversample 3 --gripper-window 8) ;;
    *) echo "unknown rung $RUNG" >&2; exit 2 ;;
  esac
  D="$W/seed_$S/$RUNG"
  mkdir -p "$D"
  if [ ! -f "$D/run/train_summary.json" ]; then
    RESUME=(); [ -f "$D/run/last.pt" ] && RESUME=(--resume)
    "$MTIL" train --data "$DEMOS" --out "$D/run" --steps 6000 --seed "$S" --save-every 2000 "${OPTS[@]}" \
      "${RESUME[@]}" > "$D/train.log" 2>&1
  fi
  E="$D/eval${EV:+_$EV}"
  [ -f "$E/eval.json" ] || "$MTIL" eval "$D/run/last.pt" --out "$E" --episodes-per-task 20 \
    --max-steps 250 --workers 2 "${EOPTS[@]}" > "$E.log" 2>&1
done
