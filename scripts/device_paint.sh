#!/usr/bin/env bash
# Issue 31 on the GPU machine: fine-tune the PS1 D4 run (runs/ps1_d4, imported with
# python -m train import-device) on the development half's real cutouts with the sources detected
# around the lenses as extra real negatives, without and with arcs painted onto the real
# non-lenses (train/paint.py), two training seeds each, the same folds (grouped by position).
# The real cutouts travel as REAL_NPZ (train.finetune.save_real, made here by load_real).
set -uo pipefail
OUT=${OUT:?set OUT}
. scripts/device_env.sh
python3 scripts/device_finetune.py --run runs/ps1_d4 --real "${REAL_NPZ:-.devin/real-ps1-det.npz}" \
  --name ps1_d4_ft --epochs "${EPOCHS:-8}" --n-sim "${NSIM:-6000}" --n-test "${NTEST:-2000}" \
  --paint ${PAINT:-0 20000} --seeds ${SEEDS:-0 1} --workers "${WORKERS:-15}" \
  ${EXTRA:-} --out "$OUT" 2>&1 | grep --line-buffered -v -E "cuda_|absl::"
