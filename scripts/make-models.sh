#!/usr/bin/env bash
# How models/baseline.onnx, models/rot.onnx, their figures and examples/cutouts were made
# (models/README.md). Needs the [train] extra. Run from the repository root; DATA and RUNS may
# be anywhere outside git (about 1.3 GB of FITS files for 20,000 cutouts).
#
# The session that made the shipped models trained both networks side by side, one core each
# (TF_NUM_INTRAOP_THREADS=1), and stopped them at the session's time limit; the epochs each
# reached are in models/README.md. To reproduce exactly, give those numbers as --epochs
# (a run stopped early continues with `fit --resume --epochs N`).
set -euo pipefail
DATA=${DATA:-data/sim20k}
RUNS=${RUNS:-runs}
EPOCHS_BASELINE=${EPOCHS_BASELINE:-35}
EPOCHS_ROT=${EPOCHS_ROT:-35}

python -m train simulate --n 20000 --out "$DATA" --seed 20 --workers 2 --check
TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 python -m train fit --data "$DATA" \
    --arch baseline --out "$RUNS/baseline" --epochs "$EPOCHS_BASELINE" --seed 0 &
TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 python -m train fit --data "$DATA" \
    --arch rot --out "$RUNS/rot" --epochs "$EPOCHS_ROT" --seed 0 &
wait
python -m train evaluate "$RUNS/baseline"
python -m train evaluate "$RUNS/rot"
python -m train plots "$RUNS/baseline" "$RUNS/rot" -o models/figures
python -m export "$RUNS/baseline/model.keras" models/baseline.onnx --weights int8 --overwrite \
    --json > models/baseline.export.json
python -m export "$RUNS/rot/model.keras" models/rot.onnx --weights int8 --overwrite \
    --json > models/rot.export.json
python -m train simulate --n 100 --out examples/cutouts --seed 9001 --overwrite
lensscore scan examples/cutouts -m models/rot.onnx
lensscore scan examples/cutouts -m models/baseline.onnx
