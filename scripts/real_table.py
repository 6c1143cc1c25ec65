"""Markdown rows of real-data metrics, one per ``lensscore scan`` catalog of the PS1 development set.

The columns of the model card's real-data tables: ROC AUC of the lenses against all non-lenses,
against the field sources alone and against the sky positions alone, TPR at FPR 1 %, and how many
of each group score at least the threshold (:func:`lensscore.metrics.real_metrics`).

    python scripts/real_table.py "CPU rot=runs/hsc_cpu/rot/real.csv" "shipped rot=out/rot-real.csv"

With two catalogs and ``--boot N``, it also prints the first model's AUC minus the second's
(against all non-lenses, and against the field sources alone) on the cutouts both scored, with
the 95 % interval of N paired bootstrap resamplings (:func:`lensscore.metrics.paired_auc`):
whether a difference is beyond the noise of these few hundred real cutouts. It says nothing of
training noise: two runs of one recipe can differ by more.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lensscore.catalog import read_catalog
from lensscore.metrics import paired_auc, real_metrics

HEAD = ("| model | AUC, all | lenses vs field sources | lenses vs sky | TPR at FPR 1 % | "
        "lenses ≥ 0.5 | field sources ≥ 0.5 | sky ≥ 0.5 |\n| --- " + "| ---: " * 7 + "|")


def row(name: str, catalog) -> str:
    r = real_metrics(read_catalog(catalog), name)
    m, g = r["metrics"], r["nonlens_groups"]
    cells = [f"{m['roc_auc']:.3f}",
             *(f"{g[k]['auc_lenses_vs']:.3f}" if k in g else "–" for k in ("src", "sky")),
             f"{m['tpr_at_fpr_1pct']:.3f}", f"{m['tp']}/{m['n_lens']}",
             *(f"{g[k]['n_above']}/{g[k]['n']}" if k in g else "–" for k in ("src", "sky"))]
    return f"| {name} | " + " | ".join(cells) + " |"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("catalogs", nargs="+", metavar="NAME=CATALOG")
    p.add_argument("--boot", type=int, default=0, metavar="N",
                   help="with two catalogs: paired bootstrap interval of their AUC difference")
    args = p.parse_args(argv)
    if args.boot and len(args.catalogs) != 2:
        p.error("--boot compares exactly two catalogs")
    lines, named = [HEAD], []
    for spec in args.catalogs:
        name, sep, path = spec.rpartition("=")
        if not sep or not name:
            p.error(f"{spec!r}: give NAME=CATALOG")
        if not Path(path).is_file():
            p.error(f"{path}: no such catalog")
        lines.append(row(name, path))
        named.append((name, path))
    if args.boot:
        (na, a), (nb, b) = named
        lines.append(f"\n{na} − {nb}, ROC AUC, 95 % interval of {args.boot} paired bootstrap "
                     "resamplings:")
        labels = {"all": "lenses vs all non-lenses", "src": "lenses vs field sources"}
        for g, d in paired_auc(read_catalog(a), read_catalog(b), args.boot).items():
            lines.append(f"- {labels[g]}: {d['a_minus_b']:+.3f} [{d['lo95']:+.3f}, "
                         f"{d['hi95']:+.3f}] ({d['n']} cutouts)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
