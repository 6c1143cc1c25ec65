#!/usr/bin/env bash
# GPU-machine HSC runs (scripts/device_train.py --jobs hsc:rot,hsc:baseline) beside the shipped
# models, by the model card's ship rule (models/README.md): on the same regenerated simulated
# test cutouts (the same seed gives the same split, so every test cutout is unseen by both), and
# scanned as a user would on the real PS1 development set. Needs the [train] extra. Usage:
#
#   bash scripts/compare_with_shipped.sh RESULTS_JSON [OUT]   # OUT defaults to runs/device_vs_shipped
#
# For each architecture, in OUT/ARCH: the imported run, its int8 export (model.onnx, as shipped),
# test_scores.csv and onnx_eval.json of both models on the first N (4,000) test cutouts,
# compare_shipped.txt/json (paired bootstrap), real.csv / real_shipped.csv and real_table.md.
set -euo pipefail
RESULTS=${1:?usage: compare_with_shipped.sh RESULTS_JSON [OUT]}
OUT=${2:-runs/device_vs_shipped}
N=${N:-4000}
REAL=${REAL:-../shared/realdata/ps1-sled-dev/raw}
for a in rot baseline; do
  run=$OUT/$a
  mkdir -p "$run/shipped"
  [ -f "$run/model.keras" ] || python -m train import-device "$RESULTS" "hsc_$a" --out "$run"
  [ -f "$run/model.onnx" ] || python -m export "$run/model.keras" "$run/model.onnx" \
    --weights int8 --overwrite --json > "$run/export.json"
  python - "$RESULTS" "$a" "$run" "$N" <<'PY'
import json, sys
from train.device import evaluate_onnx
res, a, run, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
for onnx, where in ((f"{run}/model.onnx", run), (f"models/{a}.onnx", f"{run}/shipped")):
    print(onnx, json.dumps(evaluate_onnx(res, f"hsc_{a}", onnx, where, n)["metrics"]))
PY
  python scripts/compare_test_splits.py "$run/test_scores.csv" "$run/shipped/test_scores.csv" \
    --names "new $a" "shipped $a" --json "$run/compare_shipped.json" | tee "$run/compare_shipped.txt"
  if [ -d "$REAL" ]; then  # neither model was trained on it
    for m in "$run/model.onnx=$run/real.csv" "models/$a.onnx=$run/real_shipped.csv"; do
      lensscore scan "$REAL" -m "${m%%=*}" -o "${m#*=}" --overwrite --quiet --top 0 \
        || test $? = 3  # 3: some rows are error rows
    done
    python scripts/real_table.py "new $a=$run/real.csv" "shipped $a=$run/real_shipped.csv" \
      --boot 1000 | tee "$run/real_table.md"
  fi
done
