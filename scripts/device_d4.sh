#!/usr/bin/env bash
# Issue 30 on the GPU machine (one H200, 16 cores, no TensorFlow), in one call of <= 10 minutes:
# simulate the PS1 and HSC presets without handedness (80,400 cutouts each, seed 16), train the
# D4 network on each to early stopping or the time budget (scripts/device_train.py), then
# fine-tune the PS1 one on the real development set by 5-fold CV grouped by field
# (scripts/device_finetune.py). Everything lands in $OUT as at most 8 files:
#   results.json, ps1_d4.part0, hsc_d4.part0, hsc_d4.part1     (device_train)
#   ft/results.json, ft/ps1_d4_ft.part0, ft/cv_scores.csv      (device_finetune)
#   log
# Needs, in the working tree: .whl/ (keras, namex, optree, astropy, pyerfa, astropy-iers-data,
# lenstronomy wheels for Python 3.12, installed --no-deps) and .devin/realdata-ps1.npz (the real
# cutouts through the scorer's reader, made here: see models/README.md, "Reproduce").
# Toy run on a CPU: N=120 EPOCHS=1 FT_EPOCHS=1 KERAS_BACKEND=tensorflow OUT=/tmp/o bash $0
set -uo pipefail
OUT=${OUT:?set OUT}
N=${N:-80400}
EPOCHS=${EPOCHS:-35}
FT_EPOCHS=${FT_EPOCHS:-8}
BUDGET=${BUDGET:-370}          # seconds for simulating and training both networks
WORKERS=${WORKERS:-15}
. scripts/device_env.sh
mkdir -p "$OUT/ft"
{
  python3 scripts/device_train.py --jobs ps1:d4,hsc:d4 --n "$N" --epochs "$EPOCHS" \
    --budget "$BUDGET" --workers "$WORKERS" --out "$OUT" --runs /tmp/device-runs || exit 1
  python3 -c "from train.device import import_run; import_run('$OUT/results.json', 'ps1_d4', \
'/tmp/device-runs/ps1_d4_imported')" || exit 1
  python3 scripts/device_finetune.py --run /tmp/device-runs/ps1_d4_imported \
    --real .devin/realdata-ps1.npz --name ps1_d4_ft --epochs "$FT_EPOCHS" --n-sim 6000 \
    --n-test 4000 --workers "$WORKERS" --out "$OUT/ft"
} 2>&1 | grep --line-buffered -v -E "cuda_|TF_ENABLE|oneDNN|cpu_feature_guard|absl::" \
  | tee "$OUT/log"
