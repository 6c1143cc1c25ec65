"""How far does photometry alone rank the real PS1 development set? (issue 31)

    python scripts/photometry_baseline.py RAW models/cv/ps1_d4_issue31.csv OUT.csv
    python scripts/ft_table.py OUT.csv models/cv/ps1_d4_issue31.csv --boot 1000

Seven numbers per cutout, measured on the cutout as a scan reads it (PS1 preset grid, zero
point 25) by :func:`train.paint.host_photometry` and :func:`ring_ratio`: the i-band magnitude in
a 2.5" aperture, g - r, r - i, the central source's width over the PSF's, the offset of its
light peak from the centre, the i-band light 1-3" from the centre over that within 1", and a
flag for no positive flux. A logistic regression on them (standardised, L2 penalty 1e-2),
cross-validated on the folds of the fine-tunes' out-of-fold table (its ``fold`` column: 5 folds
grouped by sky position), scores every cutout with a model fitted without its fold. The
output has the wide layout of ``models/cv/`` (id, label, fold, group, one score column), so
``ft_table.py`` puts it beside the CNN fine-tunes on the same folds.

If a few photometric numbers rank real lenses nearly as well as a fine-tuned CNN, most of the
CNN's real-data AUC is "a red galaxy at the centre", not arcs.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

FEATURES = ("i", "g-r", "r-i", "width", "offset", "no flux", "i 1-3\"/<1\"")
#: the sign that makes each feature a lens score, fixed by what a lens is before any number was
#: seen: bright, red, extended (a deflector galaxy, an arc around it), centred
DIRECTION = {"i": -1, "g-r": 1, "r-i": 1, "width": 1, "offset": -1, "i 1-3\"/<1\"": 1}


def features(mags: dict, width: float, offset: float, ring: float = 0.0) -> list[float]:
    """The feature row of one cutout; magnitudes that are not finite (no positive flux in the
    aperture: blank sky) become 25 with the 'no flux' flag set. ``ring``: the i-band light
    1-3" from the centre over that within 1" (:func:`ring_ratio`)."""
    m = {b: (v if math.isfinite(v) else 25.0) for b, v in mags.items()}
    missing = float(not all(math.isfinite(v) for v in mags.values()))
    w = width if math.isfinite(width) else 0.0
    return [m["i"], m["g"] - m["r"], m["r"] - m["i"], w, offset, missing, ring]


def ring_ratio(img: np.ndarray, pixel_scale: float) -> float:
    """Light 1-3" from the centre over light within 1" (sky from the border): how extended the
    central source is -- a star ~0, a galaxy or a lens with arcs more. 0 where the core's flux
    is not positive."""
    from train.paint import _sky

    n = img.shape[-1]
    c = (n - 1) / 2
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(xx - c, yy - c) * pixel_scale
    sub = img.astype(np.float64) - _sky(img)
    core, ring = sub[r < 1.0].sum(), sub[(r >= 1.0) & (r < 3.0)].sum()
    return float(ring / core) if core > 0 else 0.0


def _key(obj_id: str) -> str:
    """A detection's id without the directory of its stamp: ``nonlenses/det/<stamp>/det<k>``
    (the fine-tunes' tables) and ``nonlenses/det/<dir>/<stamp>/det<k>`` (today's reader)
    agree."""
    p = obj_id.split("/")
    return "/".join(p[:2] + p[-2:]) if obj_id.startswith("nonlenses/det/") else obj_id


def measure(raw: Path, ids: list[str], recentre: bool = False) -> np.ndarray:
    """Feature rows of the cutouts ``ids`` (the development set's ids, detections included);
    with ``recentre`` the lenses cut centred on their detections (:func:`train.paint.recentre`),
    as the non-lenses were."""
    from lensscore.io import load_source

    from train.data import labelled_sources
    from train.paint import detections_around, host_photometry
    from train.paint import recentre as recentre_sources
    from train.presets import read_options
    from train.simulate import SimConfig

    bands = ("g", "r", "i")
    options = read_options("ps1", bands)
    cfg = SimConfig.for_survey("ps1", bands=bands)
    sources = labelled_sources(raw, bands)
    if any(i.startswith("nonlenses/det/") for i in ids):
        sources += detections_around(sources, bands, options)
    if recentre:
        sources, _ = recentre_sources(sources, bands, options)
    by_id = {_key(s.id): s for s in sources}
    if len(by_id) != len(sources):
        sys.exit(f"{raw}: two cutouts with the same id")
    missing = [i for i in ids if _key(i) not in by_id]
    if missing:
        sys.exit(f"{len(missing)} ids of the table are not in {raw}, e.g. {missing[0]}")
    rows = []
    for i in ids:
        c = load_source(by_id[_key(i)], bands, cfg.size, options)
        mags, width, _, offset = host_photometry(c.data, cfg)
        ring = ring_ratio(c.data[bands.index("i")], cfg.pixel_scale)
        rows.append(features(mags, width, offset, ring))
    return np.asarray(rows, float)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """Weights (bias last) of an L2-penalised logistic regression, by L-BFGS."""
    from scipy.optimize import minimize

    xb = np.hstack([x, np.ones((len(x), 1))])

    def loss(w):
        z = xb @ w
        p = 1 / (1 + np.exp(-z))
        nll = np.sum(np.logaddexp(0, z) - y * z) / len(y) + l2 * np.sum(w[:-1] ** 2)
        grad = xb.T @ (p - y) / len(y)
        grad[:-1] += 2 * l2 * w[:-1]
        return nll, grad

    return minimize(loss, np.zeros(xb.shape[1]), jac=True, method="L-BFGS-B").x


def cross_validated(x: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Out-of-fold probabilities: each fold scored by a model fitted (and standardised) on the
    other folds only."""
    out = np.empty(len(y))
    for f in np.unique(fold):
        tr, te = fold != f, fold == f
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-12
        w = fit_logistic((x[tr] - mu) / sd, y[tr])
        z = np.hstack([(x[te] - mu) / sd, np.ones((te.sum(), 1))]) @ w
        out[te] = 1 / (1 + np.exp(-z))
    return out


def single_feature_table(x: np.ndarray, ids: list[str], y: np.ndarray, versus=None) -> str:
    """Markdown rows: each feature alone as a lens score (its sign from :data:`DIRECTION`, no
    fitting, so no cross-validation is needed), its AUC of lenses against field sources, sky
    positions and all the development set's non-lenses (detections left out); with ``versus``
    (name, out-of-fold scores), the paired bootstrap interval of feature - that model against
    field sources."""
    from lensscore.metrics import paired_bootstrap, roc_auc

    kind = np.array(["lens" if i.startswith("lenses/") else i.split("/")[1] for i in ids])
    sel = {"field sources": kind == "src", "sky": kind == "sky",
           "all": (kind == "src") | (kind == "sky")}
    head = "| feature alone | " + " | ".join(f"lenses vs {k}" for k in sel) + " |"
    if versus:
        head += f" minus {versus[0]}, vs field sources (95 % interval) |"
    lines = [head, "| --- " + "| ---: " * (len(sel) + bool(versus)) + "|"]
    lens = kind == "lens"
    for f, sign in DIRECTION.items():
        v = sign * x[:, FEATURES.index(f)]
        row = [f"{roc_auc(y[lens | m], v[lens | m]):.3f}" for m in sel.values()]
        if versus:
            m = lens | sel["field sources"]
            d = paired_bootstrap(y[m], v[m], versus[1][m])["roc_auc"]
            row.append(f"{d['a_minus_b']:+.3f} [{d['lo95']:+.3f}, {d['hi95']:+.3f}]")
        lines.append(f"| {f} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _read_folds(path: Path, versus: str | None):
    """Header, rows, labels, folds and the ``versus`` column (name, scores) of an out-of-fold
    table; ValueError for anything else."""
    lines = [r.split(",") for r in path.read_text().splitlines() if r]
    if not lines or lines[0][:4] != ["id", "label", "fold", "group"] or len(lines) < 2:
        raise ValueError("no such header, or no rows")
    head, rows = lines[0], lines[1:]
    y = np.array([int(r[1]) for r in rows])
    fold = np.array([int(r[2]) for r in rows])
    if set(y.tolist()) != {0, 1} or len(set(fold.tolist())) < 2:
        raise ValueError("labels must be 0 and 1, and there must be two folds or more")
    if versus is None:
        return head, rows, y, fold, None
    if versus not in head[4:]:
        raise ValueError(f"no column {versus!r} (have {', '.join(head[4:])})")
    c = head.index(versus)
    return head, rows, y, fold, (versus, np.array([float(r[c]) for r in rows]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raw", type=Path, help="ps1-sled-dev/raw")
    ap.add_argument("folds", type=Path, help="an out-of-fold table of models/cv/ (its folds)")
    ap.add_argument("out", type=Path, help="CSV to write (id, label, fold, group, photometry)")
    ap.add_argument("--recentre", action="store_true",
                    help="cut the lenses centred on their detections, as the non-lenses were")
    ap.add_argument("--versus", help="a score column of the folds table to compare each "
                                     "feature with, against field sources (paired bootstrap)")
    a = ap.parse_args(argv)
    try:
        head, rows, y, fold, versus = _read_folds(a.folds, a.versus)
    except (OSError, ValueError, IndexError) as exc:
        sys.exit(f"{a.folds}: not an out-of-fold table (id, label, fold, group, scores...): "
                 f"{exc}")
    if not a.raw.is_dir() or not a.out.parent.is_dir():
        sys.exit(f"{a.raw if not a.raw.is_dir() else a.out.parent}: no such directory")
    ids = [r[0] for r in rows]
    x = measure(a.raw, ids, a.recentre)
    p = cross_validated(x, y, fold)
    a.out.write_text("id,label,fold,group,photometry\n" + "".join(
        f"{r[0]},{r[1]},{r[2]},{r[3]},{v:.6g}\n" for r, v in zip(rows, p)))
    w = fit_logistic((x - x.mean(0)) / (x.std(0) + 1e-12), y)
    print("weights on all cutouts (standardised features): " + ", ".join(
        f"{n} {v:+.2f}" for n, v in zip(FEATURES + ("bias",), w)))
    print(f"out-of-fold scores of {len(y)} cutouts: {a.out}")
    print(single_feature_table(x, ids, y, versus))
    return 0


if __name__ == "__main__":
    sys.exit(main())
