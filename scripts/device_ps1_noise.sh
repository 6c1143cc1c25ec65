#!/usr/bin/env bash
# Issue 30 follow-up on the GPU machine: the training noise of the PS1 D4 fine-tune. The imported
# run runs/ps1_d4 (python -m train import-device) travels with the tree; each seed fine-tunes it
# with the same folds and recipe as scripts/device_d4.sh (seed 0), into $OUT/sN/.
set -uo pipefail
OUT=${OUT:?set OUT}
SEEDS=${SEEDS:-"1 2"}
EPOCHS=${EPOCHS:-8}
WORKERS=${WORKERS:-15}
if compgen -G ".whl/*.whl" >/dev/null && ! python3 -c "import keras, lenstronomy" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD KERAS_BACKEND=${KERAS_BACKEND:-jax} \
  PYTHONUNBUFFERED=1
for s in $SEEDS; do
  mkdir -p "$OUT/s$s"
  python3 scripts/device_finetune.py --run runs/ps1_d4 --real ${REAL_NPZ:-.devin/realdata-ps1.npz} \
    --name "ps1_d4_ft_s$s" --epochs "$EPOCHS" --n-sim 6000 --n-test 500 --seed "$s" \
    --workers "$WORKERS" --out "$OUT/s$s" 2>&1 | grep --line-buffered -v -E "cuda_|absl::"
  rm -f "$OUT/s$s"/*.part*   # the CV scores are what this measures; the weights stay there
done
