"""Rendering the simulator's galaxies: the supersampled grid and lenstronomy models shared by
every cutout of a process (:class:`Renderer`), the colour model, and the galaxy components
(Sersic bodies, clumps, early-type and star-forming galaxies) that lenses, non-lenses and their
environment are made of.

A component is ``(unit map on the supersampled grid, g r i magnitudes)``;
:func:`components_image` sums components into counts at pixel resolution, before the PSF.
"""

from __future__ import annotations

import numpy as np

from .population import draw_lens
from .simconfig import SimConfig, flux

__all__ = ["Renderer", "renderer", "e12", "COLOURS", "draw_mags", "component", "lrg",
           "star_forming", "population_lrg", "components_image"]


def e12(rng, qmin=0.5, qmax=1.0):
    """Ellipticity ``(e1, e2)`` of a random position angle and an axis ratio in
    ``[qmin, qmax)`` (lenstronomy's convention)."""
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    return phi_q2_ellipticity(rng.uniform(0, np.pi), rng.uniform(qmin, qmax))


class Renderer:
    """Grids, PSFs and lenstronomy models shared by all cutouts of one process."""

    def __init__(self, cfg: SimConfig):
        from lenstronomy.LensModel.lens_model import LensModel
        from lenstronomy.LightModel.light_model import LightModel

        self.cfg = cfg
        n, ss = cfg.size, cfg.supersample
        d = cfg.pixel_scale / ss
        c = (np.arange(n * ss) - (n * ss - 1) / 2) * d
        self.x, self.y = (a.ravel() for a in np.meshgrid(c, c))
        self.darea = d * d
        # SIE + shear. lenstronomy's analytic SIE deflects as its EPL with slope 2 does (tested:
        # test_sie_deflects_as_the_epl_with_slope_2) at a fraction of the cost
        self.lens = LensModel(["SIE", "SHEAR"])
        self.sersic = LightModel(["SERSIC_ELLIPSE"])
        self.gauss = LightModel(["GAUSSIAN"])

    def bin(self, m):
        n, ss = self.cfg.size, self.cfg.supersample
        return m.reshape(n, ss, n, ss).sum(axis=(1, 3))

    def sersic_map(self, x, y, r, n, e1, e2, cx, cy):
        """Unit-flux Sersic (normalised on the unlensed grid), evaluated at x, y."""
        kw = [{"amp": 1.0, "R_sersic": r, "n_sersic": n, "e1": e1, "e2": e2,
               "center_x": cx, "center_y": cy}]
        unlensed = self.sersic.surface_brightness(self.x, self.y, kw)
        # an unlensed component is evaluated on the grid itself: no second evaluation
        m = unlensed if (x is self.x and y is self.y) else self.sersic.surface_brightness(x, y, kw)
        return m / max(unlensed.sum(), 1e-30)

    def gauss_map(self, x, y, sigma, cx, cy):
        """Unit-flux Gaussian (lenstronomy's ``amp`` is the total flux)."""
        kw = [{"amp": 1.0, "sigma": sigma, "center_x": cx, "center_y": cy}]
        return self.gauss.surface_brightness(x, y, kw) * self.darea

    def psf(self, fwhm):
        from lenstronomy.Util.kernel_util import kernel_moffat

        k = kernel_moffat(self.cfg.psf_size * 3, self.cfg.pixel_scale / 3, fwhm,
                          self.cfg.moffat_beta)
        n = self.cfg.psf_size
        k = k.reshape(n, 3, n, 3).sum(axis=(1, 3))
        return k / k.sum()


_RENDERERS: dict = {}


def renderer(cfg: SimConfig) -> Renderer:
    """The process's :class:`Renderer` for ``cfg``, built once: its grids and lenstronomy
    models cost more than a cutout."""
    key = cfg.to_json()
    if key not in _RENDERERS:
        _RENDERERS[key] = Renderer(cfg)
    return _RENDERERS[key]


# colours: (g - r, r - i) ranges
COLOURS = {"lrg": ((1.3, 1.8), (0.45, 0.7)), "blue": ((-0.1, 0.45), (-0.1, 0.3)),
           "clump": ((-0.3, 0.2), (-0.2, 0.15)), "disc": ((0.4, 0.9), (0.2, 0.45)),
           "any": ((-0.1, 1.7), (0.0, 0.7))}


def draw_mags(rng, mag_i, col):
    """g, r, i magnitudes of an i magnitude and colours drawn in ``col``'s ranges."""
    gr, ri = (rng.uniform(*col[0]), rng.uniform(*col[1]))
    return np.array([mag_i + ri + gr, mag_i + ri, mag_i])


def component(R: Renderer, rng, kind, mag_i, cx, cy, x=None, y=None, **kw):
    """(unit map on the supersampled grid, g r i magnitudes) of one galaxy component."""
    x = R.x if x is None else x
    y = R.y if y is None else y
    if kind == "gauss":
        return (R.gauss_map(x, y, kw["sigma"], cx, cy),
                draw_mags(rng, mag_i, kw.get("col", COLOURS["clump"])))
    e1, e2 = kw.get("e", e12(rng, kw.get("qmin", 0.5)))
    return (R.sersic_map(x, y, kw["r"], kw["n"], e1, e2, cx, cy),
            draw_mags(rng, mag_i, kw.get("col", COLOURS["any"])))


def lrg(R, rng, mag_i=None, cx=0.0, cy=0.0):
    """An early-type galaxy (Sersic n 3-5.5, LRG colours, i 17-21 unless given), its size
    growing with its luminosity: the "uniform" deflectors and the non-lens LRGs."""
    mag_i = rng.uniform(17.0, 21.0) if mag_i is None else mag_i
    r_eff = float(np.clip(0.9 * 10 ** (-0.2 * (mag_i - 19)) * rng.lognormal(0, 0.25), 0.3, 3.0))
    return [component(R, rng, "sersic", mag_i, cx, cy, r=r_eff, n=rng.uniform(3, 5.5),
                      qmin=0.6, col=COLOURS["lrg"])]


def star_forming(R, rng, mag_i, cx, cy, x=None, y=None, r=None, n_clumps=None, col=None):
    """A Sersic body (colours ``col``, default blue) plus 0-4 bluer clumps (a star-forming
    galaxy); maps at (x, y)."""
    r = rng.uniform(0.1, 0.45) if r is None else r
    n_clumps = int(rng.integers(0, 5)) if n_clumps is None else n_clumps
    f_clumps = rng.uniform(0.1, 0.4) if n_clumps else 0.0
    comps = [component(R, rng, "sersic", mag_i - 2.5 * np.log10(1 - f_clumps), cx, cy, x, y,
                       r=r, n=rng.uniform(0.5, 2.0), col=col or COLOURS["blue"])]
    for _ in range(n_clumps):
        dx, dy = rng.normal(0, r, 2)
        comps.append(component(R, rng, "gauss", mag_i - 2.5 * np.log10(f_clumps / n_clumps),
                               cx + dx, cy + dy, x, y, sigma=rng.uniform(0.02, 0.07)))
    return comps


def population_lrg(R, rng, cfg):
    """An early-type galaxy of the lens population (sis-vdf): its light, and the draw."""
    pop = draw_lens(rng, cfg.theta_e_range, max_mag_i=cfg.deflector_max_mag)
    col = ((pop["g_r"],) * 2, (pop["r_i"],) * 2)
    return [component(R, rng, "sersic", pop["mag_i"], 0.0, 0.0, r=pop["r_eff"],
                      n=rng.uniform(3, 5.5), qmin=0.6, col=col)], pop


def components_image(R, comps) -> np.ndarray:
    """Sum of components into (bands, size, size) counts at pixel resolution, before the PSF."""
    n = R.cfg.size
    img = np.zeros((len(R.cfg.bands), n, n))
    for m, mags in comps:
        binned = R.bin(m.reshape(n * R.cfg.supersample, -1))
        img += flux(mags)[:, None, None] * binned[None]
    return img
