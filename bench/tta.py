"""The seed's question in numbers: the rotational layer (rot.onnx) against the baseline with
test-time augmentation (mean over the four rotations), on the shipped HSC models' own simulated
test split -- accuracy, ROC AUC, TPR at low FPR, and cost per cutout, measured side by side.

The cutouts are made again here: the test split of the 80,400-cutout HSC simulation (seed 16)
the shipped models were trained on (models/README.md), pure in (seed, index).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

#: the rot and baseline models' training simulation (models/README.md, scripts/device_train.py):
#: made before issue 30, with every spiral winding the same way
SIM = {"survey": "hsc", "seed": 16, "n": 80_400, "sim": {"handedness": "one"}}


def test_indices(n: int) -> np.ndarray:
    """The first ``n`` indices of the shipped models' test split (lenses are the even indices)."""
    from train.data import make_split

    y = (np.arange(SIM["n"]) % 2 == 0).astype(np.int8)
    return make_split(y, seed=SIM["seed"])["test"][:n]


def _timed(fn, x, reps: int) -> tuple[np.ndarray, float]:
    """``fn(x)`` and the median seconds per cutout over ``reps`` calls."""
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn(x)
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times)) / len(x)


def tta_runs(models: dict, n: int, reps: int, flops: dict, threads=None) -> dict:
    """Metrics and cost of rot, baseline and baseline + TTA on ``n`` test cutouts."""
    from lensscore.metrics import classification_summary
    from lensscore.scorer import Scorer
    from train.device import regenerate

    idx = test_indices(n)
    t0 = time.perf_counter()
    rot, base = (Scorer(models[k], threads=threads) for k in ("rot", "baseline"))
    assert rot.spec == base.spec, "the two models preprocess differently"
    x, y = regenerate(SIM["survey"], SIM["seed"], idx, rot.spec, sim=SIM["sim"])
    sim_s = time.perf_counter() - t0
    runs = {
        "rot": (rot, lambda v: rot.score(v, preprocessed=True), flops["rot"]),
        "baseline": (base, lambda v: base.score(v, preprocessed=True), flops["baseline"]),
        "baseline + TTA rot4": (base, lambda v: base.score(v, preprocessed=True, tta="rot4"),
                                4 * flops["baseline"]),
        "rot + TTA rot4": (rot, lambda v: rot.score(v, preprocessed=True, tta="rot4"),
                           4 * flops["rot"]),
    }
    out = {"n": len(idx), "n_lens": int(y.sum()), "simulate_s": sim_s, "models": {}}
    for name, (_, fn, f) in runs.items():
        s, sec = _timed(fn, x, reps)
        m = classification_summary(y, s.astype(np.float64))
        out["models"][name] = {
            "ms_per_cutout": 1e3 * sec, "gflop_per_cutout": f / 1e9,
            **{k: m[k] for k in ("accuracy", "roc_auc", "tpr_at_fpr_1pct", "tpr_at_fpr_0.1pct",
                                 "tpr0")}}
        if name == "rot + TTA rot4":
            out["models"][name]["max_diff_from_rot"] = float(
                np.abs(s - runs["rot"][1](x)).max())
    return out


def rows(r: dict) -> list[tuple[str, str, str, str]]:
    """Table rows (measurement, value, ratio, target) for bench/run.py."""
    t = r.get("tta")
    if not t:
        return []
    base = t["models"]["baseline"]["ms_per_cutout"]
    out = []
    for name, m in t["models"].items():
        extra = (f"; max |score − rot's| {m['max_diff_from_rot']:.1e}"
                 if "max_diff_from_rot" in m else "")
        out.append((f"{name}, {t['n']} simulated HSC test cutouts ({m['gflop_per_cutout']:.2f}"
                    " GFLOP/cutout)",
                    f"acc {100 * m['accuracy']:.2f}%, AUC {m['roc_auc']:.4f}, TPR@FPR1% "
                    f"{100 * m['tpr_at_fpr_1pct']:.1f}%, TPR@FPR0.1% "
                    f"{100 * m['tpr_at_fpr_0.1pct']:.1f}%",
                    f"{m['ms_per_cutout']:.2f} ms/cutout = {m['ms_per_cutout'] / base:.2f}× "
                    f"baseline{extra}", ""))
    return out


if __name__ == "__main__":  # python -m bench.tta N: the comparison alone
    import json
    import sys

    from bench.flops import onnx_flops

    root = Path(__file__).resolve().parent.parent / "models"
    ms = {k: root / f"{k}.onnx" for k in ("rot", "baseline")}
    res = tta_runs(ms, int(sys.argv[1]) if len(sys.argv) > 1 else 2000, 3,
                   {k: onnx_flops(p)["total"] for k, p in ms.items()})
    print(json.dumps(res, indent=1))
