"""Markdown rows of real-data metrics, one per ``lensscore scan`` catalog of the PS1 development set.

The columns of the model card's real-data tables: ROC AUC of the lenses against all non-lenses,
against the field sources alone and against the sky positions alone, TPR at FPR 1 %, and how many
of each group score at least the threshold (``export.stamp.real_metrics``).

    python scripts/real_table.py "CPU rot=runs/hsc_cpu/rot/real.csv" "shipped rot=out/rot-real.csv"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from export.stamp import real_metrics  # noqa: E402

HEAD = ("| model | AUC, all | lenses vs field sources | lenses vs sky | TPR at FPR 1 % | "
        "lenses ≥ 0.5 | field sources ≥ 0.5 | sky ≥ 0.5 |\n| --- " + "| ---: " * 7 + "|")


def row(name: str, catalog) -> str:
    r = real_metrics(catalog, name)
    m, g = r["metrics"], r["nonlens_groups"]
    cells = [f"{m['roc_auc']:.3f}",
             *(f"{g[k]['auc_lenses_vs']:.3f}" if k in g else "–" for k in ("src", "sky")),
             f"{m['tpr_at_fpr_1pct']:.3f}", f"{m['tp']}/{m['n_lens']}",
             *(f"{g[k]['n_above']}/{g[k]['n']}" if k in g else "–" for k in ("src", "sky"))]
    return f"| {name} | " + " | ".join(cells) + " |"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("catalogs", nargs="+", metavar="NAME=CATALOG")
    args = p.parse_args(argv)
    lines = [HEAD]
    for spec in args.catalogs:
        name, sep, path = spec.rpartition("=")
        if not sep or not name:
            p.error(f"{spec!r}: give NAME=CATALOG")
        if not Path(path).is_file():
            p.error(f"{path}: no such catalog")
        lines.append(row(name, path))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
