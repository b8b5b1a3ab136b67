#!/usr/bin/env bash
# The BC / DART / DAgger comparison of docs/results.md section 7 (issue 15), on the quickstart tasks.
#   bash scripts/recovery_experiment.sh WORKDIR        (needs `mtil` on PATH; ~2 h on 2 cores)
# Equal training compute: every arm trains 2500 steps (batch 64) in all; 2 training seeds per arm, two
# trainings at a time with one thread each. Equal evaluation: 20 episodes per task, seeds 1000-1019.
# Steps whose output exists are skipped, so a rerun continues. Tables: scripts/compare_runs.py.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
W="${1:?usage: recovery_experiment.sh WORKDIR}"
mkdir -p "$W/runs" "$W/logs" && cd "$W"
T=lift_red,lift_green,lift_blue
EVAL=(--episodes-per-task 20 --workers 2 --max-steps 200)

# data: 40 demos per task, 64 px; plain expert demos and DART at two noise levels
for v in bc:0 dart1:0.1 dart2:0.2; do
  name=${v%%:*}; noise=${v##*:}
  [ -f $name.hdf5 ] || mtil collect --tasks $T --demos-per-task 40 --workers 2 --image-size 64 --noise "$noise" \
    --out $name.hdf5 --no-progress
done

train_pair() {  # name data steps [extra args]: seeds 0 and 1 side by side
  local name=$1 data=$2 steps=$3; shift 3
  for s in 0 1; do
    [ -f runs/$name-s$s/train_summary.json ] && continue
    OMP_NUM_THREADS=1 mtil train --data $data --out runs/$name-s$s --steps $steps --seed $s --save-every $steps "$@" \
      > logs/train-$name-s$s.log 2>&1 &
  done
  wait
}
evaluate() {  # checkpoint eval-dir
  [ -f "$2/eval.json" ] || mtil eval "$1" --out "$2" "${EVAL[@]}" > "logs/eval-$(echo "$2" | tr / _).log" 2>&1
}

for name in bc dart1 dart2; do
  train_pair $name $name.hdf5 2500
  for s in 0 1; do evaluate runs/$name-s$s/last.pt runs/$name-s$s/eval; done
done

# DAgger: BC for 1000 steps, then 3 rounds of 10 policy rollouts per task (labelled by the expert) and
# 500 fine-tuning steps on the aggregate: 2500 training steps in all
train_pair dagbase bc.hdf5 1000
for s in 0 1; do
  OMP_NUM_THREADS=1 mtil dagger runs/dagbase-s$s/last.pt --data bc.hdf5 --out runs/dagger-s$s --rounds 3 \
    --episodes-per-task 10 --steps 500 --eval-episodes 10 --workers 1 --seed $s > logs/dagger-s$s.log 2>&1 &
done
wait
for s in 0 1; do evaluate runs/dagger-s$s/round_3/run/last.pt runs/dagger-s$s/final_eval; done

python "$HERE/compare_runs.py" "BC=runs/bc-s*/eval" "DART 0.1=runs/dart1-s*/eval" \
  "DART 0.2=runs/dart2-s*/eval" "DAgger=runs/dagger-s*/final_eval" --stages
