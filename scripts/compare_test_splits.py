"""Two models' test-split scores compared on the cutouts both test splits hold.

Runs trained on the same simulated data set with different 56/14/30 splits (e.g. the CPU run of
``scripts/hsc_cpu.sh`` and the shipped GPU run) each have a test split the other may have trained
on; only the cutouts in both test splits were seen by neither. Reads ``test_scores.csv``
(``id,label,score,...``, from ``python -m train evaluate``) or ``test_scores_device.csv``
(``index,score``, from ``train import-device``); ids ``…/sim_NNNNNN`` are matched by their
simulation index. Labels come from whichever file has them.

    python scripts/compare_test_splits.py A.csv B.csv [--names A B] [--json OUT]
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

from lensscore.metrics import classification_summary  # noqa: E402

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


def compare(a, b, names=("A", "B")) -> dict:
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
    for name, s in zip(names, (sa, sb)):
        out[name] = classification_summary(y, np.array([s[i] for i in common]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--names", nargs=2, default=["A", "B"])
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args(argv)
    r = compare(args.a, args.b, tuple(args.names))
    print(f"{r['n_common']} cutouts in both test splits ({r['n_lenses']} lenses)")
    keys = [k for k in r[args.names[0]] if isinstance(r[args.names[0]][k], (int, float))]
    print(f"{'':24s}" + "".join(f"{n[:28]:>30s}" for n in args.names))
    for k in keys:
        print(f"{k:24s}" + "".join(f"{r[n][k]:>30.4f}" if isinstance(r[n][k], float)
                                   else f"{r[n][k]:>30d}" for n in args.names))
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
