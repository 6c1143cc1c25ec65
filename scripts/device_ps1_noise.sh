#!/usr/bin/env bash
# Issue 30 follow-up on the GPU machine: the training noise of the PS1 D4 fine-tune. The imported
# run runs/ps1_d4 (python -m train import-device) travels with the tree; each seed fine-tunes it
# with the same folds and recipe as scripts/device_d4.sh (seed 0), into $OUT/sN/.
set -uo pipefail
OUT=${OUT:?set OUT}
SEEDS=${SEEDS:-"1 2"}
EPOCHS=${EPOCHS:-8}
WORKERS=${WORKERS:-15}
. scripts/device_env.sh
for s in $SEEDS; do
  mkdir -p "$OUT/s$s"
  python3 scripts/device_finetune.py --run runs/ps1_d4 --real ${REAL_NPZ:-.devin/realdata-ps1.npz} \
    --name "ps1_d4_ft_s$s" --epochs "$EPOCHS" --n-sim 6000 --n-test 500 --seed "$s" \
    --workers "$WORKERS" --out "$OUT/s$s" 2>&1 | grep --line-buffered -v -E "cuda_|absl::"
  rm -f "$OUT/s$s"/*.part*   # the CV scores are what this measures; the weights stay there
done
