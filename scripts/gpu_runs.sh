#!/usr/bin/env bash
# The GPU runs behind docs/benchmarks.md (training throughput) and docs/results.md (issue 16: the full-suite
# headline and the re-run ablations), as one driver for a lent GPU machine (../shared/device/README.md):
#
#   setsid nohup bash scripts/gpu_runs.sh WORK [SCALE] > WORK.log 2>&1 &     # after: source .device/env.sh
#
# WORK gets bench.jsonl, data/, runs/, and results/ (the small outputs worth copying back: bench lines,
# train summaries, checkpoints of the ablations, eval.json/report.md of the suite). SCALE=tiny runs every
# step at toy sizes (a check of the script itself, minutes on a CPU). Steps already done are skipped, so
# the driver can be started again after an interruption. Order: throughput bench alone on the machine,
# collection, the suite's 3 training seeds at once, their evaluations (one per seed) while the ablation
# trainings use the GPU.
set -u
W=${1:?usage: gpu_runs.sh WORK [full|tiny]}; SCALE=${2:-full}
mkdir -p "$W/data" "$W/runs" "$W/results"; cd "$(dirname "$0")/.." || exit 2; REPO=$PWD
# the console script where installed; else (the GPU kit: env.sh's PYTHONPATH, whose shell function does not
# reach this script) its target
command -v mtil >/dev/null 2>&1 || mtil() {
  python3 -P -c "import sys; from mtil.pipeline.cli.main import main; sys.argv[0] = 'mtil'; sys.exit(main())" "$@"; }
NPROC=$(nproc)
if [ "$SCALE" = tiny ]; then
  DEMOS=3; SUITE_STEPS=30; ABL_STEPS=30; SINGLE_STEPS=10; EPS=1; BENCH=(40 40); EVW=1; MAXS=30; COLW=2
else
  DEMOS=50; SUITE_STEPS=${SUITE_STEPS:-10000}; ABL_STEPS=3000; SINGLE_STEPS=1000; EPS=50; BENCH=(500 2500)
  EVW=$(( (NPROC - 1) / 3 )); MAXS=250; COLW=$((NPROC - 1))
fi
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
done_train() { [ -f "$1/train_summary.json" ]; }
done_eval() { python3 -c "import json, sys; sys.exit(not json.load(open(sys.argv[1]))['complete'])" "$1/eval.json" 2>/dev/null; }
slim() {  # RUN DEST: the checkpoint's EMA policy without optimizer state (a quarter of the size), evaluable anywhere
  python3 -c "import sys, torch; from mtil.pipeline.checkpoint import load_checkpoint as L
torch.save(L(sys.argv[1]).for_inference(), sys.argv[2])" "$1/last.pt" "$2/policy.pt"
}

# 1. training throughput, alone on the machine: the code before issue 16 (OLDSRC, if carried) and now
OLDSRC=${OLDSRC:-$REPO/.device/oldsrc}
if [ ! -f "$W/results/bench.done" ]; then
  log "bench"
  B="python3 $REPO/scripts/bench_train.py --image-size 84 --threads 1 --json $W/results/bench.jsonl"
  [ -d "$OLDSRC/mtil" ] && PYTHONPATH=$OLDSRC:${PYTHONPATH:-} timeout 120 $B --steps "${BENCH[0]}" --label before
  timeout 120 $B --steps "${BENCH[1]}" --label after
  timeout 150 $B --steps "${BENCH[1]}" --label after+compile --compile default
  touch "$W/results/bench.done"
fi

# 2. data: the 9 suite tasks, DART noise 0.2 (the default recipe), 84 px, 50 demos per task (5 are validation)
D=$W/data/suite_dart2.hdf5
[ -f "$D" ] || { log "collect"; mtil collect --tasks all --demos-per-task $DEMOS --image-size 84 --noise 0.2 \
  --seed 0 --workers $COLW --no-progress --out "$D" > "$W/data/collect.log" 2>&1; }
[ -f "$D" ] || { log "collection failed"; tail -5 "$W/data/collect.log"; exit 1; }

# 3. the suite: 3 training seeds at once, each evaluated (50 episodes per task) as soon as it is trained
suite_seed() {
  local s=$1 R=$W/runs/suite-s$1
  done_train "$R" || mtil train --data "$D" --out "$R" --steps $SUITE_STEPS --seed "$s" > "$R.train.log" 2>&1
  touch "$R.trained"
  mkdir -p "$W/results/suite-s$s"; cp "$R/train_summary.json" "$R/config.json" "$W/results/suite-s$s/" 2>/dev/null
  slim "$R" "$W/results/suite-s$s"
  done_eval "$R/eval" || mtil eval "$R/last.pt" --out "$R/eval" --episodes-per-task $EPS --max-steps $MAXS \
    --workers $EVW --video-episodes 0 > "$R.eval.log" 2>&1
  cp "$R/eval/eval.json" "$R/eval/report.md" "$W/results/suite-s$s/" 2>/dev/null
  log "suite seed $s done"
}
log "suite"
for s in 0 1 2; do suite_seed $s & done

# 4. ablations on the three lift tasks (2 seeds each), trained after the suite runs, evaluated elsewhere
abl() {  # name seed args...
  local n=$1 s=$2; shift 2; local R=$W/runs/$n-s$s
  done_train "$R" || mtil train --data "$D" --out "$R" --seed "$s" "$@" > "$R.train.log" 2>&1
  mkdir -p "$W/results/$n-s$s"; cp "$R/train_summary.json" "$R/config.json" "$W/results/$n-s$s/" 2>/dev/null
  slim "$R" "$W/results/$n-s$s"
}
LIFTS=(--tasks lift_red lift_green lift_blue)
until [ -f "$W/runs/suite-s0.trained" ] && [ -f "$W/runs/suite-s1.trained" ] && [ -f "$W/runs/suite-s2.trained" ]; do
  sleep 3; done
log "ablations"
slot() { while [ "$(jobs -rp | wc -l)" -ge $((3 + 4)) ]; do sleep 1; done; }   # 4 trainings beside the suite jobs
for s in 0 1; do
  slot; abl lifts_language $s "${LIFTS[@]}" --steps $ABL_STEPS &
  slot; abl lifts_onehot $s "${LIFTS[@]}" --steps $ABL_STEPS --conditioning onehot &
  slot; abl lifts_video $s "${LIFTS[@]}" --steps $ABL_STEPS --conditioning video &
  slot; abl imbalanced_stratified $s "${LIFTS[@]}" --steps $ABL_STEPS --demos-per-task lift_blue=5 --sampler stratified &
  slot; abl imbalanced_size $s "${LIFTS[@]}" --steps $ABL_STEPS --demos-per-task lift_blue=5 --sampler size &
  for t in lift_red lift_green lift_blue; do slot; abl single_$t $s --tasks $t --steps $SINGLE_STEPS & done
done
wait
log "ALL DONE"
