"""Score regenerated simulated test cutouts with several ONNX models under all 8 transforms.

    python scripts/sim_transforms.py RESULTS.json JOB N MODEL [MODEL ...] [--identity]

Makes the first ``N`` test cutouts of ``JOB`` (a ``scripts/device_train.py`` or
``device_finetune.py`` results file; the simulator options it recorded, pure in seed and index)
again, scores them with each model under the 8 transforms of D4 (``Scorer.score_transforms``),
and prints per model the classification metrics, rotation stability and mirror stability; with
two or more models, the first model minus the second, with the 95 % interval of 1,000 paired
bootstrap resamplings (:func:`lensscore.metrics.paired_bootstrap`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lensscore.metrics import classification_summary, mirror_stability, paired_bootstrap, \
    rotation_stability
from lensscore.scorer import Scorer
from train.device import recorded_sim, regenerate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results")
    ap.add_argument("job")
    ap.add_argument("n", type=int)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--identity", action="store_true",
                    help="score each cutout as made only (no transforms, 8x faster): the "
                         "classification metrics and the paired differences alone")
    a = ap.parse_args(argv)
    res = json.loads(Path(a.results).read_text())
    e = res["jobs"][a.job]
    idx = e["test_index"][:a.n]
    t = time.time()
    first = Scorer(a.models[0])
    x, y = regenerate(e["survey"], res["seed"], idx, first.spec, sim=recorded_sim(res.get("sim")))
    print(f"{len(idx)} test cutouts of {a.job} made again in {time.time() - t:.0f} s "
          f"({int(y.sum())} lenses)", flush=True)
    scores = {}
    for m in a.models:
        sc = Scorer(m)
        r = (sc.score(x, preprocessed=True)[:, None] if a.identity
             else sc.score_transforms(x, preprocessed=True)).astype(np.float64)
        scores[m] = r
        cls = classification_summary(y, r[:, 0])
        print(m, json.dumps({k: round(v, 5) for k, v in cls.items() if isinstance(v, float)}))
        if not a.identity:
            print("  rotations", json.dumps(rotation_stability(r[:, :4])))
            print("  mirror", json.dumps(mirror_stability(r)), flush=True)
    if len(a.models) > 1:
        b = paired_bootstrap(y, scores[a.models[0]][:, 0], scores[a.models[1]][:, 0], 1000)
        print(f"{a.models[0]} - {a.models[1]}:", json.dumps(b))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
