"""Two models' test-split scores compared on the cutouts both test splits hold.

Runs trained on the same simulated data set with different 56/14/30 splits (e.g. the CPU run of
``scripts/hsc_cpu.sh`` and the shipped GPU run) each have a test split the other may have trained
on; only the cutouts in both test splits were seen by neither. Reads ``test_scores.csv``
(``id,label,score,...``, from ``python -m train evaluate``) or ``test_scores_device.csv``
(``index,score``, from ``train import-device``); ids ``…/sim_NNNNNN`` are matched by their
simulation index. Labels come from whichever file has them.

The difference A − B of each metric comes with a paired bootstrap interval (both models scored
on the same resampled cutouts, lenses and non-lenses resampled apart so the class counts stay
fixed): a difference whose 95 % interval holds 0 is within the noise of this test set.

    python scripts/compare_test_splits.py A.csv B.csv [--names A B] [--json OUT] [--boot N]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lensscore.metrics import accuracy, classification_summary, roc_auc, tpr_at_fpr  # noqa: E402

_INDEX = re.compile(r"sim_(\d+)$")


def read_scores(path) -> tuple[dict[int, float], dict[int, int]]:
    """``({index: score}, {index: label})`` (labels empty when the file has none)."""
    scores, labels = {}, {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("index") not in (None, ""):
                i = int(row["index"])
            else:
                m = _INDEX.search(row.get("id", ""))
                if not m:
                    raise SystemExit(f"{path}: row without an index or a sim_NNNNNN id: {row}")
                i = int(m.group(1))
            scores[i] = float(row["score"])
            if row.get("label") not in (None, ""):
                labels[i] = int(row["label"])
    return scores, labels


_METRICS = {"accuracy": accuracy, "roc_auc": roc_auc,
            "tpr_at_fpr_1pct": lambda y, s: tpr_at_fpr(y, s, 0.01),
            "tpr_at_fpr_0.1pct": lambda y, s: tpr_at_fpr(y, s, 0.001)}


def paired_bootstrap(y, sa, sb, n_boot: int = 1000, seed: int = 0) -> dict:
    """``{metric: {"a_minus_b", "lo95", "hi95"}}``: A − B on all cutouts, and the 2.5 and 97.5
    percentiles of A − B over ``n_boot`` resamplings (with replacement, lenses and non-lenses
    apart) that score both models on the same cutouts."""
    y, sa, sb = np.asarray(y), np.asarray(sa, float), np.asarray(sb, float)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    diffs = {k: np.empty(n_boot) for k in _METRICS}
    for r in range(n_boot):
        i = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        for k, f in _METRICS.items():
            diffs[k][r] = f(y[i], sa[i]) - f(y[i], sb[i])
    return {k: {"a_minus_b": _METRICS[k](y, sa) - _METRICS[k](y, sb),
                "lo95": float(np.percentile(d, 2.5)), "hi95": float(np.percentile(d, 97.5))}
            for k, d in diffs.items()}


def compare(a, b, names=("A", "B"), n_boot: int = 1000) -> dict:
    sa, la = read_scores(a)
    sb, lb = read_scores(b)
    labels = {**lb, **la}
    for i in set(la) & set(lb):
        if la[i] != lb[i]:
            raise SystemExit(f"the files disagree on the label of index {i}")
    common = sorted(set(sa) & set(sb) & set(labels))
    if not common:
        raise SystemExit("no labelled cutout is in both test splits")
    y = np.array([labels[i] for i in common])
    out = {"n_common": len(common), "n_lenses": int(y.sum()),
           "n_only": {names[0]: len(sa) - len(common), names[1]: len(sb) - len(common)}}
    scored = [np.array([s[i] for i in common]) for s in (sa, sb)]
    for name, s in zip(names, scored):
        out[name] = classification_summary(y, s)
    if n_boot:
        out["difference"] = paired_bootstrap(y, *scored, n_boot=n_boot)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--names", nargs=2, default=["A", "B"])
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument("--boot", type=int, default=1000, metavar="N",
                   help="paired bootstrap resamplings for the differences (0: none)")
    args = p.parse_args(argv)
    r = compare(args.a, args.b, tuple(args.names), args.boot)
    print(f"{r['n_common']} cutouts in both test splits ({r['n_lenses']} lenses)")
    keys = [k for k in r[args.names[0]] if isinstance(r[args.names[0]][k], (int, float))]
    print(f"{'':24s}" + "".join(f"{n[:28]:>30s}" for n in args.names))
    for k in keys:
        print(f"{k:24s}" + "".join(f"{r[n][k]:>30.4f}" if isinstance(r[n][k], float)
                                   else f"{r[n][k]:>30d}" for n in args.names))
    if "difference" in r:
        print(f"{args.names[0]} − {args.names[1]}, with the 95 % interval of {args.boot} paired "
              "bootstrap resamplings:")
    for k, d in r.get("difference", {}).items():
        print(f"{k:24s}{d['a_minus_b']:>+12.4f}  [{d['lo95']:+.4f}, {d['hi95']:+.4f}]")
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
