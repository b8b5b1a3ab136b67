#!/usr/bin/env bash
# Issue 22's round trip: does a policy trained on our demos after a trip through LeRobot's format (export ->
# mp4 + parquet -> ingest) succeed as often as one trained on the original file? Paired by seed: the same
# collected demos, training seed and evaluation seeds; only the data path differs (lossy video in between).
#   bash scripts/lerobot_roundtrip.sh WORKDIR SEED
# WORKDIR/direct_S: `mtil quickstart --seed S` (collect 40 DART demos x 3 lifts, train 3000 steps, 60 episodes)
# WORKDIR/lerobot_S, ingested_S, roundtrip_S: export, ingest, the same training and evaluation. Timings in
# WORKDIR/roundtrip_S/times.txt. A finished step is skipped on a rerun.
set -euo pipefail
W="$1"; S="$2"
MTIL="${MTIL:-mtil}"
mkdir -p "$W"
[ -f "$W/direct_$S/eval/eval.json" ] || "$MTIL" quickstart --seed "$S" --out "$W/direct_$S" > "$W/direct_$S.log" 2>&1
mkdir -p "$W/roundtrip_$S"
T="$W/roundtrip_$S/times.txt"
if [ ! -d "$W/ingested_$S" ]; then
  rm -rf "$W/lerobot_$S"
  s=$(date +%s.%N); "$MTIL" export "$W/direct_$S/demos.hdf5" --format lerobot --out "$W/lerobot_$S"
  e=$(date +%s.%N); echo "export_s $(echo "$e - $s" | bc)" > "$T"
  s=$(date +%s.%N); "$MTIL" ingest "$W/lerobot_$S" --out "$W/ingested_$S"; e=$(date +%s.%N)
  echo "ingest_s $(echo "$e - $s" | bc)" >> "$T"
  du -sb "$W/direct_$S/demos.hdf5" "$W/lerobot_$S" >> "$T"
fi
R="$W/roundtrip_$S"
[ -f "$R/run/train_summary.json" ] || "$MTIL" train --data "$W/ingested_$S" --out "$R/run" --steps 3000 --seed "$S" \
  --save-every 1000 > "$R/train.log" 2>&1
[ -f "$R/eval/eval.json" ] || "$MTIL" eval "$R/run/last.pt" --out "$R/eval" --episodes-per-task 20 --max-steps 200 \
  --workers 2 > "$R/eval.log" 2>&1
