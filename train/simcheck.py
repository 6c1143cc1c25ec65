"""Checks of a simulated set: noise and PSF measured back against the truth, a trivial
classifier that would expose a shortcut between the classes, and figures (a preview per subtype,
real cutouts beside simulated ones).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .scene import simulate_one
from .simconfig import SimConfig

__all__ = ["measure_noise", "measure_fwhm", "trivial_classifier_accuracy", "sim_check",
           "preview", "compare_real", "save_figure", "rgb_panel"]


def measure_noise(img: np.ndarray) -> float:
    """Pixel noise of one band, robust to smooth sources: the MAD of differences of neighbouring
    pixels (var = 2 sigma^2), sigma-clipped."""
    from astropy.stats import sigma_clipped_stats

    d = np.diff(np.asarray(img, np.float64), axis=1).ravel() / np.sqrt(2)
    return float(sigma_clipped_stats(d, sigma=3.0, maxiters=10, stdfunc="mad_std")[2])


def measure_fwhm(img: np.ndarray, x: int, y: int, half: int = 10) -> float:
    """FWHM in pixels of a point source at (x, y), by fitting a 2-D Moffat (astropy.modeling)."""
    from astropy.modeling import fitting, models

    st = img[y - half:y + half + 1, x - half:x + half + 1].astype(float)
    yy, xx = np.mgrid[:st.shape[0], :st.shape[1]]
    m0 = models.Moffat2D(amplitude=st.max(), x_0=half, y_0=half, gamma=3.0, alpha=3.5)
    fit = fitting.LevMarLSQFitter()(m0, xx, yy, st)
    return float(fit.fwhm)


def _features(x: np.ndarray) -> np.ndarray:
    """Per band: log total flux, log peak flux (central 10 px), concentration r<4 / r<12."""
    n = x.shape[-1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    r = np.hypot(xx, yy)
    f = []
    for b in range(x.shape[1]):
        im = x[:, b]
        tot = im[:, r < 20].sum(1)
        peak = im[:, r < 5].max(1)
        conc = im[:, r < 4].sum(1) / np.maximum(im[:, r < 12].sum(1), 1e-9)
        f += [np.log10(np.maximum(tot, 1e-3)), np.log10(np.maximum(peak, 1e-3)), conc]
    for b in range(x.shape[1] - 1):  # colours of the centre
        f.append(f[3 * b] - f[3 * (b + 1)])
    return np.stack(f, 1)


def trivial_classifier_accuracy(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict:
    """Test accuracy of a logistic regression on trivial per-band statistics.

    Features: total flux, peak flux and concentration per band, and centre colours. Trained on
    half of the cutouts (stratified by nothing but a seeded permutation), scored on the other half.
    A simulation whose classes such a classifier separates is teaching the CNN the wrong thing.
    """
    f = _features(np.asarray(x, np.float64))
    idx = np.random.default_rng(seed).permutation(len(y))
    tr, te = idx[: len(y) // 2], idx[len(y) // 2:]
    mu, sd = f[tr].mean(0), f[tr].std(0) + 1e-9
    a = np.c_[np.ones(len(f)), (f - mu) / sd]
    w = np.zeros(a.shape[1])
    for _ in range(50):  # Newton's method with a small ridge
        p = 1 / (1 + np.exp(-a[tr] @ w))
        g = a[tr].T @ (p - y[tr]) + 1e-3 * w
        h = (a[tr] * (p * (1 - p))[:, None]).T @ a[tr] + 1e-3 * np.eye(len(w))
        w -= np.linalg.solve(h, g)
    acc_te = float(np.mean(((a[te] @ w) > 0) == (y[te] == 1)))
    acc_tr = float(np.mean(((a[tr] @ w) > 0) == (y[tr] == 1)))
    return {"test_accuracy": acc_te, "train_accuracy": acc_tr, "n_test": int(len(te)),
            "features": int(f.shape[1])}


def save_figure(fig, path, dpi) -> Path:
    """Lay out, write (PNG or JPEG by the name) and close a figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def rgb_panel(ax, img, stretch=1.0):
    """One Lupton RGB panel (i, r, g as red, green, blue) without ticks; blank for ``None``."""
    from astropy.visualization import make_lupton_rgb

    ax.set_xticks([])
    ax.set_yticks([])
    if img is None:
        ax.axis("off")
        return
    ax.imshow(make_lupton_rgb(img[2], img[1], img[0], Q=8, minimum=0, stretch=stretch),
              origin="lower")


def preview(data_dir, png, per_type: int = 6, truth=None) -> Path:
    """A Lupton-RGB grid (astropy ``make_lupton_rgb``): one row of examples per subtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.io import fits
    from astropy.table import Table

    t = Table.read(truth or Path(data_dir) / "truth.ecsv")
    subs = [s for s in dict.fromkeys(t["subtype"])]
    subs.sort(key=lambda s: (not t["label"][list(t["subtype"]).index(s)], s))
    fig, axes = plt.subplots(len(subs), per_type, figsize=(1.6 * per_type, 1.7 * len(subs)),
                             squeeze=False)
    for r, sub in enumerate(subs):
        rows = t[t["subtype"] == sub][:per_type]
        for c in range(per_type):
            ax = axes[r, c]
            if c >= len(rows):
                rgb_panel(ax, None)
                continue
            img = fits.getdata(Path(data_dir) / rows[c]["path"]).astype(float)
            rgb_panel(ax, img, max(float(np.percentile(img, 99.5)) / 4, 1e-3))
            label = f"θE {rows[c]['theta_e']:.2f}\" μ {rows[c]['magnification']:.0f}" \
                if rows[c]["label"] else f"i={rows[c]['defl_mag_i']:.1f}"
            ax.set_title(label, fontsize=6)
        axes[r, 0].set_ylabel(sub.replace("_", " "), fontsize=7)
    return save_figure(fig, png, 110)


def sim_check(data_dir, n_psf: int = 20, seed: int = 1) -> dict:
    """Measure a simulated set back: noise and PSF FWHM against the truth, trivial classifier.

    Noise: :func:`measure_noise` of every cutout and band over the requested sky sigma (source
    Poisson noise makes it a little larger), and of ``n_psf`` star fields (sky only) made with the
    same code (``kind="star"``); PSF: Moffat fits to the stars of those fields.
    """
    from astropy.io import fits
    from astropy.table import Table

    d = Path(data_dir)
    t = Table.read(d / "truth.ecsv")
    cfg = SimConfig.from_json(dict(t.meta["simconfig"]))
    imgs = np.stack([fits.getdata(d / p).astype(np.float64) for p in t["path"]])
    noise = {}
    for b, band in enumerate(cfg.bands):
        r = np.array([measure_noise(im[b]) for im in imgs]) / np.asarray(t[f"sigma_{band}"])
        noise[band] = {"median": float(np.median(r)), "p16": float(np.percentile(r, 16)),
                       "p84": float(np.percentile(r, 84))}
    fwhm = {band: [] for band in cfg.bands}
    sky = {band: [] for band in cfg.bands}
    for k in range(n_psf):
        img, tr = simulate_one(10_000_000 + k, seed, cfg, kind="star")
        for b, band in enumerate(cfg.bands):
            c = cfg.size // 2
            fwhm[band].append(measure_fwhm(img[b], c, c) * cfg.pixel_scale / tr[f"seeing_{band}"])
            sky[band].append(measure_noise(img[b]) / tr[f"sigma_{band}"])

    def summary(v):
        return {"median": float(np.median(v)), "max_dev": float(np.max(np.abs(np.array(v) - 1)))}

    fw = {band: summary(v) for band, v in fwhm.items()}
    noise["star_fields"] = {band: summary(v) for band, v in sky.items()}
    y = np.asarray(t["label"], int)
    return {"n": len(t), "noise_measured_over_requested": noise,
            "fwhm_measured_over_requested": fw,
            "trivial_classifier": trivial_classifier_accuracy(imgs, y),
            "lens_subtypes": {s: int(np.sum((t["subtype"] == s) & (y == 1)))
                              for s in sorted(set(t["subtype"][y == 1]))},
            "visible_fraction": float(np.mean(np.asarray(t["visible"])[y == 1]))}


def compare_real(real_dir, png, cfg: SimConfig | None = None, seed: int = 0, per_row: int = 8,
                 stretch: float | None = None) -> Path:
    """Real cutouts next to simulated ones of the same preset, at one stretch.

    Rows: real lenses, real non-lenses (``real_dir``'s ``lenses/`` and ``nonlenses/``, read by
    the scorer's reader onto the preset's grid and zero point), simulated lenses, simulated
    non-lenses. Every panel is a Lupton RGB (i, r, g) of sky-subtracted flux with the same
    ``stretch`` (default: a typical bright-pixel level of the real lenses), so brightness,
    colour, noise and seeing compare by eye.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lensscore.io import find_sources, load_source

    from .presets import read_options

    cfg = cfg or SimConfig.for_survey("ps1")
    opts = read_options(cfg.survey, cfg.bands, cfg.size)
    g = opts.grid
    srcs = find_sources(real_dir, g.bands)
    rng = np.random.default_rng(seed)
    rows = {}
    for name, lab in (("real lenses", 1), ("real non-lenses", 0)):
        cand = [s for s in srcs if s.label == lab]
        pick = rng.choice(len(cand), min(per_row, len(cand)), replace=False) if cand else []
        rows[name] = [load_source(cand[k], g.bands, g.size, opts).data for k in pick]
    sims = [simulate_one(i, seed, cfg) for i in range(2 * per_row)]
    rows["simulated lenses"] = [im for im, t in sims if t["label"] == 1]
    rows["simulated non-lenses"] = [im for im, t in sims if t["label"] == 0]
    sub = {k: [im - np.median(im, axis=(1, 2), keepdims=True) for im in v] for k, v in rows.items()}
    if stretch is None:
        stretch = float(np.median([np.percentile(im, 99) for im in sub["real lenses"]] or [1.0]))
    fig, axes = plt.subplots(4, per_row, figsize=(1.5 * per_row, 6.6), squeeze=False)
    for r, (name, ims) in enumerate(sub.items()):
        for c in range(per_row):
            rgb_panel(axes[r, c], ims[c].astype(float) if c < len(ims) else None, stretch)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(f"{cfg.survey}: {g.size} px at {g.pixel_scale}\"/px, zero point "
                 f"{g.zeropoint:g}, one stretch ({stretch:.3g})", fontsize=9)
    return save_figure(fig, png, 80)
