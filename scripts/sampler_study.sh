#!/usr/bin/env bash
# Issue 23's sampler study (docs/results.md section 22): the three lift tasks with the rare one cut to 5
# training demos (45 / 45 / 5), trained with each sampler for several seeds on the same data, 20 paired
# episodes per task at 200 steps.
#   bash scripts/sampler_study.sh WORKDIR [SEEDS...]          (default seeds: 0 1 2 3 4)
#   JOBS=2 runs two jobs at a time (one thread each, the 2-core recipe); a finished step is skipped.
# Samplers: stratified (equal thirds), size (proportional to task size), power (n_task^0.5: between them).
# Layout: WORKDIR/demos.hdf5 (collected once, seed 0), WORKDIR/s<SEED>_<SAMPLER>/{run,eval} with logs beside.
# Table: python scripts/compare_runs.py --task lift_blue "stratified=WORKDIR/s*_stratified/eval" ...
set -euo pipefail
W="$1"; shift
SEEDS=("$@"); [ ${#SEEDS[@]} -eq 0 ] && SEEDS=(0 1 2 3 4)
MTIL="${MTIL:-mtil}"
JOBS="${JOBS:-2}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}" MUJOCO_GL="${MUJOCO_GL:-egl}"
mkdir -p "$W"
[ -f "$W/demos.hdf5" ] || "$MTIL" collect --tasks lift_red,lift_green,lift_blue --demos-per-task 50 \
  --image-size 64 --noise 0.2 --seed 0 --workers 2 --out "$W/demos.hdf5" --no-progress > "$W/collect.log" 2>&1
: > "$W/jobs.txt"
for S in "${SEEDS[@]}"; do
  printf '%s stratified\n%s size\n%s power --sampler-alpha 0.5\n' "$S" "$S" "$S" >> "$W/jobs.txt"
done

worker() {  # claims jobs in order (mkdir is atomic), trains and evaluates each
  while read -r S SAMPLER EXTRA; do
    D="$W/s${S}_${SAMPLER}"
    mkdir "$D.claim" 2>/dev/null || continue
    if [ ! -f "$D/run/train_summary.json" ]; then
      # shellcheck disable=SC2086
      "$MTIL" train --data "$W/demos.hdf5" --tasks lift_red lift_green lift_blue --demos-per-task lift_blue=5 \
        --sampler "$SAMPLER" $EXTRA --steps 3000 --seed "$S" --out "$D/run" > "$D.train.log" 2>&1 || { echo "train failed: $D (see $D.train.log)"; continue; }
    fi
    [ -f "$D/eval/eval.json" ] || "$MTIL" eval "$D/run/last.pt" --out "$D/eval" --episodes-per-task 20 \
      --max-steps 200 --workers 1 --video-episodes 1 > "$D.eval.log" 2>&1 || { echo "eval failed: $D (see $D.eval.log)"; continue; }
    echo "$(date -u +%H:%M:%S) done $D"
  done < "$W/jobs.txt"
}

rm -rf "$W"/s*_*.claim
for _ in $(seq "$JOBS"); do worker & done
wait
rm -rf "$W"/s*_*.claim
