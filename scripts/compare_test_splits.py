"""Two models' test-split scores compared on the cutouts both test splits hold.

The comparison is :func:`train.compare.compare_test_splits` (which files, how they are
matched); this script prints it.

The difference A − B of each metric comes with a paired bootstrap interval (both models scored
on the same resampled cutouts, lenses and non-lenses resampled apart so the class counts stay
fixed): a difference whose 95 % interval holds 0 is within the noise of this test set.

    python scripts/compare_test_splits.py A.csv B.csv [--names A B] [--json OUT] [--boot N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from train.compare import compare_test_splits


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--names", nargs=2, default=["A", "B"])
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument("--boot", type=int, default=1000, metavar="N",
                   help="paired bootstrap resamplings for the differences (0: none)")
    args = p.parse_args(argv)
    try:
        r = compare_test_splits(args.a, args.b, tuple(args.names), args.boot)
    except ValueError as exc:
        p.exit(1, f"{exc}\n")
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
