"""Figure for the model card: the real PS1 field sources that the fine-tuned PS1 model scores
>= 0.5 (cross-validated scores), next to real lenses it scores >= 0.5, at one Lupton stretch.

    python scripts/fig_ps1_field_sources.py runs/ps1_rot_ft/cv_scores.csv \
        ../shared/realdata/ps1-sled-dev/cal models/figures/ps1_field_sources.jpg

``cv_scores.csv`` (``train finetune``): each real cutout scored by the fold model that did not
train on it. The lenses shown are spread evenly over the ranks of the lenses scored >= 0.5.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cv_scores", type=Path)
    p.add_argument("cal", type=Path, help="realdata/ps1-sled-dev/cal")
    p.add_argument("out", type=Path)
    p.add_argument("--threshold", type=float, default=0.5)
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.io import fits

    from lensscore.gallery import lupton_thumbnails

    with open(args.cv_scores, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["score"] = float(r["score_cv"])
    fs = sorted((r for r in rows if "/src/" in r["id"] and r["score"] >= args.threshold),
                key=lambda r: -r["score"])
    lenses = sorted((r for r in rows if r["label"] == "1" and r["score"] >= args.threshold),
                    key=lambda r: -r["score"])
    n = max(len(fs), 1)
    shown = [lenses[int(k)] for k in np.linspace(0, len(lenses) - 1, n).round()] if lenses else []

    def cube(r):
        name = r["id"].split("/")[-1]
        sub = "nonlenses/src" if "/src/" in r["id"] else "lenses"
        return fits.getdata(args.cal / sub / f"{name}.fits").astype(np.float32)

    imgs, used = lupton_thumbnails([cube(r) for r in fs + shown])
    fig, axes = plt.subplots(2, n, figsize=(2.0 * n, 5.0), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for k, (r, img) in enumerate(zip(fs + shown, imgs)):
        ax = axes[k // n, k % n] if k < len(fs) else axes[1, k - len(fs)]
        ax.imshow(img, origin="lower")
        ax.set_title(f"{r['id'].split('/')[-1][:16]}\nscore {r['score']:.2f}", fontsize=7)
    axes[0, 0].set_ylabel(f"field sources\n≥ {args.threshold:g}", fontsize=8)
    axes[1, 0].set_ylabel(f"lenses ≥ {args.threshold:g}", fontsize=8)
    fig.suptitle(f"PS1 dev set, cross-validated scores; one Lupton stretch "
                 f"({used['stretch']:.3g}), 12.1\" a side", fontsize=8)
    fig.tight_layout(h_pad=1.5)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=70, pil_kwargs={"quality": 80} if args.out.suffix in (".jpg", ".jpeg")
                else None)
    print(f"{args.out}: {len(fs)} field sources, {len(shown)} of {len(lenses)} lenses "
          f">= {args.threshold:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
