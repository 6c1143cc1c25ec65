"""One simulated cutout, a pure function of ``(seed, index)``: a lens or a non-lens, the same
environment for both (neighbours, a star, line-of-sight galaxies), observed.
"""

from __future__ import annotations

import numpy as np

from .lenses import lens_system
from .nonlenses import NONLENS_TYPES, nonlens
from .observe import draw_conditions, observe
from .population import draw_los
from .render import COLOURS, component, components_image, draw_mags, renderer
from .simconfig import ZP, SimConfig

__all__ = ["simulate_one", "environment", "line_of_sight"]


def environment(R, rng, cfg):
    """Neighbours and a star, the same for both classes: (components, star or None)."""
    half = cfg.size * cfg.pixel_scale / 2
    comps = []
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = rng.uniform(-half, half, 2)
        if np.hypot(cx, cy) < 2.5:
            cx, cy = cx + np.sign(cx) * 2.5, cy + np.sign(cy) * 2.5
        comps.append(component(R, rng, "sersic", rng.uniform(20.0, 24.5), cx, cy,
                               r=rng.uniform(0.15, 0.8), n=rng.uniform(0.7, 4)))
    star = None
    if rng.random() < cfg.star_fraction:
        min_px = 2.5 / cfg.pixel_scale  # keep the star 2.5" off the centre
        px = rng.integers(4, cfg.size - 4, 2)
        while np.hypot(*(px - cfg.size / 2)) < min_px:
            px = rng.integers(4, cfg.size - 4, 2)
        star = (int(px[0]), int(px[1]), draw_mags(rng, rng.uniform(17.5, 23.0), COLOURS["any"]))
    return comps, star


def line_of_sight(R, rng, cfg, truth) -> list:
    """Faint field galaxies anywhere in the cutout, over the centre too (none by default; draws
    nothing then, so the default cutouts are unchanged)."""
    if not cfg.los_per_arcmin2:
        return []
    gals = draw_los(rng, cfg.los_per_arcmin2, cfg.size * cfg.pixel_scale / 2)
    truth["n_los"] = len(gals)
    return [component(R, rng, "sersic", m, x, y, r=r, n=rng.uniform(0.7, 3), qmin=0.3,
                      col=COLOURS["blue"] if rng.random() < 0.6 else COLOURS["any"])
            for x, y, m, r in gals]


def simulate_one(index: int, seed: int = 0, cfg: SimConfig = SimConfig(), *, kind=None):
    """One cutout: ``(image (3, size, size) float32, truth dict)``; pure in ``(seed, index)``.

    ``kind``: ``None`` (lens for even index, non-lens for odd), or ``"lens"``, ``"nonlens"``,
    ``"star"`` (a field with one bright star and nothing else: for PSF and noise checks).
    """
    R = renderer(cfg)
    rng = np.random.default_rng([seed, index])
    kind = kind or ("lens" if index % 2 == 0 else "nonlens")
    cond = draw_conditions(R, rng)
    truth = {"index": index, "seed": seed, "label": int(kind == "lens"), "class": kind,
             "theta_e": np.nan, "magnification": np.nan, "arc_snr": np.nan,
             **{f"{k}_{band}": np.nan for k in ("src_mag", "defl_mag") for band in cfg.bands},
             "redraws": 0, "visible": True, "arc_contrast_g": np.nan,
             "sigma_v": np.nan, "z_d": np.nan, "z_s": np.nan, "n_los": 0}
    if kind == "star":
        comps, star = [], (cfg.size // 2, cfg.size // 2, np.full(len(cfg.bands), 18.0))
        truth["subtype"] = "star"
    else:
        env, star = environment(R, rng, cfg)
        if kind == "lens":
            comps, t = lens_system(R, rng, cfg, cond)
            truth.update(t)
        else:
            sub = str(rng.choice(list(NONLENS_TYPES), p=np.array(list(NONLENS_TYPES.values())) /
                                 sum(NONLENS_TYPES.values())))
            truth["subtype"] = sub
            if sub in ("field_star", "blank_sky"):
                # what a survey catalog also holds: a star, or a sky position with no source
                comps = []
                if sub == "field_star":
                    c = cfg.size // 2
                    star = (c, c, draw_mags(rng, rng.uniform(15.5, 22.0), COLOURS["any"]))
            else:
                comps = nonlens(R, rng, sub, cfg)
                mags = comps[0][1]
                truth.update({f"defl_mag_{band}": float(mags[b])
                              for b, band in enumerate(cfg.bands)})
        comps = comps + env + line_of_sight(R, rng, cfg, truth)
    img = observe(R, rng, components_image(R, comps), star, cond)
    # flux unit: the internal zero point -> the survey's
    unit = np.float32(10 ** (0.4 * (cfg.zeropoint - ZP)))
    img = img * unit
    for b, band in enumerate(cfg.bands):
        truth[f"seeing_{band}"] = float(cond["seeing"][b])
        truth[f"sigma_{band}"] = float(cond["sigma"][b] * unit)
    truth["has_star"] = star is not None
    return img, truth
