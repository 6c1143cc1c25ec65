"""HSC-like mock lenses and hard negatives, simulated with lenstronomy.

Every cutout is a pure function of ``(seed, index)``: the same seed gives byte-identical files
whatever the number of worker processes. Even indices are lenses, odd ones non-lenses.

Conventions (HSC Wide, g r i): 72x72 pixels of 0.168", flux in counts with zero point 27, Moffat PSF
(beta 3.5) with seeing drawn around g 0.80", r 0.75", i 0.60" (12 % log-normal scatter), sky noise
giving 5-sigma point-source depths g 26.5, r 26.1, i 25.9 (+-0.15 mag), source Poisson noise with
the effective gain implied by the sky brightness (g 22.0, r 21.3, i 20.5 mag/arcsec^2).

Lenses: an LRG deflector (Sersic n 3-5.5, i 17-21, LRG colours, size growing with luminosity),
SIE (lenstronomy's ``SIE``: the deflections of its ``EPL`` with slope 2) + external shear,
Einstein radius 0.75"-2.5"; a star-forming source (Sersic plus 0-4 bluer clumps, i 20.5-24.5,
z~1-3 sizes; in a quarter of the lenses a quasar, i 19.5-23, with its host) placed inside the
caustic region so that arcs, rings, doubles and quads occur. Kept only if a person could see it:
total magnification >= 5, arc S/N >= 20 in g+r+i over the pixels where the lensed light exceeds
the 1-sigma noise, and in g the arc's brightest pixel at least as bright as the deflector there
(before the PSF; up to 40 redraws, else the last draw is kept with ``visible`` false).
Non-lenses (HOLISMOKES XI-like mix): 1/3 spirals (bright arms, edge-on discs), 1/4 LRGs (half
with unrelated blue companions, some tangentially elongated), 1/12 compact groups, 1/3 other
galaxies (random Sersics, ring galaxies, mergers with tidal arcs). Both classes get the same
environment: 0-3 neighbours, a star with probability 0.3, the same noise.

Options (``SimConfig``; the defaults make the shipped models' sets): ``deflectors="sis-vdf"``
draws the lens population physically instead (velocity dispersion, redshifts, SIS Einstein
radius weighted by its cross-section, Faber-Jackson light, LRG colours by redshift, source sizes
and colours by redshift; non-lens LRGs are the same population unlensed: :mod:`train.population`),
with ``deflector_max_mag`` keeping only deflectors a galaxy catalogue would hold;
``los_per_arcmin2`` adds faint line-of-sight galaxies anywhere in the cutout.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lensscore.config import DEFAULT_BANDS, DEFAULT_SIZE, DEFAULT_ZEROPOINT
from lensscore.files import atomic_path

from .population import draw_lens, draw_los, source_colours, source_size_arcsec
from .presets import PRESETS

__all__ = ["SimConfig", "simulate_one", "simulate", "trivial_classifier_accuracy",
           "measure_noise", "measure_fwhm", "sim_check", "preview", "compare_real",
           "NONLENS_TYPES"]

log = logging.getLogger(__name__)

#: the bands the colour model (:data:`_COL`, :func:`_mags`) draws magnitudes in: g - r, r - i
BANDS = DEFAULT_BANDS
#: the zero point of the internal flux unit (:func:`_flux`); images are rescaled to
#: ``SimConfig.zeropoint`` when they are written
ZP = DEFAULT_ZEROPOINT
#: the HSC preset: SimConfig's defaults
_HSC = PRESETS["hsc"]
NONLENS_TYPES = {"spiral": 2 / 9, "edge_on_disc": 1 / 9, "lrg": 1 / 8, "lrg_blue_companion": 1 / 8,
                 "compact_group": 1 / 12, "random_galaxy": 1 / 6, "ring_galaxy": 1 / 12,
                 "merger": 1 / 12, "field_star": 1 / 12, "blank_sky": 1 / 12}


DEFLECTORS = ("uniform", "sis-vdf")
#: "uniform" deflectors' brightness: i = 19.2 - 2.5 log10(theta_E / 1.2") + N(0, 0.8 mag)
#: (a rule of thumb; train.paint inverts it for real galaxies of known brightness)
DEFLECTOR_MAG_REF, DEFLECTOR_THETA_REF, DEFLECTOR_MAG_SCATTER = 19.2, 1.2, 0.8
HANDEDNESS = ("both", "one")


@dataclass(frozen=True)
class SimConfig:
    """Survey and simulation parameters (defaults: HSC Wide g, r, i)."""

    size: int = DEFAULT_SIZE
    pixel_scale: float = _HSC["pixel_scale"]
    supersample: int = 2
    seeing: tuple = _HSC["seeing"]
    seeing_scatter: float = 0.12
    depth: tuple = _HSC["depth"]
    depth_scatter: float = 0.15
    sky_mag: tuple = _HSC["sky_mag"]
    moffat_beta: float = 3.5
    psf_size: int = 25
    theta_e_range: tuple = (0.75, 2.5)
    min_magnification: float = 5.0
    min_arc_snr: float = 20.0
    min_contrast: float = 1.0
    max_redraws: int = 40
    star_fraction: float = 0.3
    quasar_fraction: float = 0.25
    bands: tuple = BANDS
    zeropoint: float = _HSC["zeropoint"]
    survey: str = "hsc"
    #: "uniform" (theta_E drawn in ``theta_e_range``, deflector brightness by a rule of thumb:
    #: the shipped models' sets) or "sis-vdf" (a physical population, :mod:`train.population`)
    deflectors: str = "uniform"
    #: line-of-sight field galaxies per arcmin^2 (i 20-25), anywhere in the cutout; 0 for none
    los_per_arcmin2: float = 0.0
    #: sis-vdf only: the faintest deflector (i magnitude; None for no limit). A lens search
    #: starts from catalogued galaxies, and a deflector at the survey's depth is in none.
    deflector_max_mag: float | None = None
    #: "both": every chiral feature (today: the winding of spiral arms) drawn with either
    #: handedness, half each, as on the sky; "one": every spiral winds the same way, the sets the
    #: models before issue 30 were trained on (kept so that their test splits can be made again)
    handedness: str = "both"

    def __post_init__(self):
        if tuple(self.bands) != BANDS:
            raise ValueError(f"bands must be {', '.join(BANDS)} (the bands the colour model draws "
                             f"magnitudes in), got {self.bands!r}")
        for name in ("seeing", "depth", "sky_mag"):
            if len(getattr(self, name)) != len(self.bands):
                raise ValueError(f"{name} needs one value per band ({len(self.bands)}), "
                                 f"got {getattr(self, name)!r}")
        if self.handedness not in HANDEDNESS:
            raise ValueError(f"handedness must be one of {', '.join(HANDEDNESS)}, "
                             f"got {self.handedness!r}")
        if self.deflectors not in DEFLECTORS:
            raise ValueError(f"deflectors must be one of {', '.join(DEFLECTORS)}, "
                             f"got {self.deflectors!r}")
        if self.deflector_max_mag is not None and self.deflectors != "sis-vdf":
            raise ValueError("deflector_max_mag (--deflector-max-mag) needs deflectors sis-vdf")
        if not self.los_per_arcmin2 >= 0:
            raise ValueError(f"los_per_arcmin2 must be >= 0, got {self.los_per_arcmin2}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def for_survey(cls, survey: str = "hsc", **overrides) -> SimConfig:
        """The preset of a survey (:mod:`train.presets`), with ``overrides`` on top."""
        from .presets import preset

        return cls(**{**preset(survey), **overrides})

    @classmethod
    def from_json(cls, d: str | dict) -> SimConfig:
        d = json.loads(d) if isinstance(d, str) else d
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _flux(mag):
    return 10 ** (-0.4 * (np.asarray(mag, float) - ZP))


def _e12(rng, qmin=0.5, qmax=1.0):
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    return phi_q2_ellipticity(rng.uniform(0, np.pi), rng.uniform(qmin, qmax))


class _Renderer:
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


def _renderer(cfg: SimConfig) -> _Renderer:
    key = cfg.to_json()
    if key not in _RENDERERS:
        _RENDERERS[key] = _Renderer(cfg)
    return _RENDERERS[key]


# colours: (g - r, r - i) ranges
_COL = {"lrg": ((1.3, 1.8), (0.45, 0.7)), "blue": ((-0.1, 0.45), (-0.1, 0.3)),
        "clump": ((-0.3, 0.2), (-0.2, 0.15)), "disc": ((0.4, 0.9), (0.2, 0.45)),
        "any": ((-0.1, 1.7), (0.0, 0.7))}


def _mags(rng, mag_i, col):
    gr, ri = (rng.uniform(*col[0]), rng.uniform(*col[1]))
    return np.array([mag_i + ri + gr, mag_i + ri, mag_i])


def _component(R: _Renderer, rng, kind, mag_i, cx, cy, x=None, y=None, **kw):
    """(unit map on the supersampled grid, g r i magnitudes) of one galaxy component."""
    x = R.x if x is None else x
    y = R.y if y is None else y
    if kind == "gauss":
        return R.gauss_map(x, y, kw["sigma"], cx, cy), _mags(rng, mag_i, kw.get("col", _COL["clump"]))
    e1, e2 = kw.get("e", _e12(rng, kw.get("qmin", 0.5)))
    return (R.sersic_map(x, y, kw["r"], kw["n"], e1, e2, cx, cy),
            _mags(rng, mag_i, kw.get("col", _COL["any"])))


def _lrg(R, rng, mag_i=None, cx=0.0, cy=0.0):
    mag_i = rng.uniform(17.0, 21.0) if mag_i is None else mag_i
    r_eff = float(np.clip(0.9 * 10 ** (-0.2 * (mag_i - 19)) * rng.lognormal(0, 0.25), 0.3, 3.0))
    return [_component(R, rng, "sersic", mag_i, cx, cy, r=r_eff, n=rng.uniform(3, 5.5),
                       qmin=0.6, col=_COL["lrg"])]


def _star_forming(R, rng, mag_i, cx, cy, x=None, y=None, r=None, n_clumps=None, col=None):
    """A Sersic body (colours ``col``, default blue) plus 0-4 bluer clumps (a star-forming
    galaxy); maps at (x, y)."""
    r = rng.uniform(0.1, 0.45) if r is None else r
    n_clumps = int(rng.integers(0, 5)) if n_clumps is None else n_clumps
    f_clumps = rng.uniform(0.1, 0.4) if n_clumps else 0.0
    comps = [_component(R, rng, "sersic", mag_i - 2.5 * np.log10(1 - f_clumps), cx, cy, x, y,
                        r=r, n=rng.uniform(0.5, 2.0), col=col or _COL["blue"])]
    for _ in range(n_clumps):
        dx, dy = rng.normal(0, r, 2)
        comps.append(_component(R, rng, "gauss", mag_i - 2.5 * np.log10(f_clumps / n_clumps),
                                cx + dx, cy + dy, x, y, sigma=rng.uniform(0.02, 0.07)))
    return comps


def image_positions(R, kwl, sx, sy, bx, by) -> tuple[list[float], list[float]]:
    """Images of the source point ``(sx, sy)``: local minima of ``|beta(theta) - beta_s|`` on
    the supersampled grid already ray-shot for the extended source (``bx, by``), each refined by
    Newton steps on the lens equation with the lens model's Hessian; images closer than a grid
    cell are one.

    It finds the images lenstronomy's ``LensEquationSolver`` finds (same count, positions
    within 1e-9 arcsec on 300 random SIE + shear systems; ``tests/test_simulate.py``) in a fifth
    of the time, because the grid is shot once for the arcs anyway.
    """
    from scipy.ndimage import minimum_filter

    n = R.cfg.size * R.cfg.supersample
    step = R.cfg.pixel_scale / R.cfg.supersample
    d = np.hypot(bx - sx, by - sy).reshape(n, n)
    cand = np.flatnonzero((d == minimum_filter(d, size=3, mode="nearest")) & (d < 4 * step))
    xs: list[float] = []
    ys: list[float] = []
    for c in cand:
        x, y = float(R.x[c]), float(R.y[c])
        for _ in range(30):
            b1, b2 = R.lens.ray_shooting(x, y, kwl)
            rx, ry = sx - b1, sy - b2
            if rx * rx + ry * ry < 1e-20:
                break
            fxx, fxy, fyx, fyy = R.lens.hessian(x, y, kwl)
            a11, a12, a21, a22 = 1 - fxx, -fxy, -fyx, 1 - fyy
            det = a11 * a22 - a12 * a21
            if det == 0:
                break
            x, y = x + (a22 * rx - a12 * ry) / det, y + (a11 * ry - a21 * rx) / det
        b1, b2 = R.lens.ray_shooting(x, y, kwl)
        inside = max(abs(x), abs(y)) <= n * step / 2
        if np.hypot(sx - b1, sy - b2) < 1e-8 and inside and \
                all(np.hypot(x - a, y - b) > step for a, b in zip(xs, ys)):
            xs.append(float(x))
            ys.append(float(y))
    return xs, ys


def _lensed_quasar(R, rng, kwl, sx, sy, bx, by):
    """A quasar (point images from the lens equation) and its faint host, as seen lensed.

    Each image is a Gaussian of 0.6 supersampled pixels (a point once convolved with the PSF)
    carrying the flux of its magnification; the host is a Sersic 1.5-3 mag fainter, lensed.
    """
    mag_q = float(rng.uniform(19.5, 23.0))
    x_img, y_img = image_positions(R, kwl, sx, sy, bx, by)
    comps = []
    sigma = 0.6 * R.cfg.pixel_scale / R.cfg.supersample
    mags_q = _mags(rng, mag_q, _COL["blue"])
    for x, y in zip(x_img, y_img):
        mu = abs(float(R.lens.magnification(x, y, kwl)))
        comps.append((R.gauss_map(R.x, R.y, sigma, x, y), mags_q - 2.5 * np.log10(max(mu, 1e-3))))
    host = _component(R, rng, "sersic", mag_q + rng.uniform(1.5, 3.0), sx, sy, bx, by,
                      r=rng.uniform(0.15, 0.4), n=rng.uniform(0.8, 2.5), col=_COL["blue"])
    # the unlensed fluxes (for the magnification) are those of the quasar and host as drawn
    comps.append(host)
    return _QuasarComps(comps, [mags_q, host[1]])


class _QuasarComps(list):
    """Lensed components whose unlensed magnitudes are not one per component (point images)."""

    def __init__(self, comps, unlensed_mags):
        super().__init__(comps)
        self.unlensed_mags = unlensed_mags


def _arc_of_clumps(R, rng, mag_i, radius, phi0, width, cx=0.0, cy=0.0, n=10, sigma=0.1, col=None):
    """Clumps along a circular arc (spiral arms, rings, tidal tails): not lensed."""
    comps = []
    for phi in phi0 + np.linspace(-width / 2, width / 2, n):
        rr = radius * rng.uniform(0.95, 1.05)
        comps.append(_component(R, rng, "gauss", mag_i + 2.5 * np.log10(n),
                                cx + rr * np.cos(phi), cy + rr * np.sin(phi),
                                sigma=sigma * rng.uniform(0.7, 1.3), col=col or _COL["clump"]))
    return comps


def _population_lrg(R, rng, cfg):
    """An early-type galaxy of the lens population (sis-vdf): its light, and the draw."""
    pop = draw_lens(rng, cfg.theta_e_range, max_mag_i=cfg.deflector_max_mag)
    col = ((pop["g_r"],) * 2, (pop["r_i"],) * 2)
    return [_component(R, rng, "sersic", pop["mag_i"], 0.0, 0.0, r=pop["r_eff"],
                       n=rng.uniform(3, 5.5), qmin=0.6, col=col)], pop


def _nonlens(R, rng, subtype, cfg):
    """Components of a non-lens of the given subtype, centred in the cutout. With ``sis-vdf``
    deflectors, LRGs are the lens population's galaxies, unlensed: a deflector's brightness,
    colour and size then tell nothing about the class."""
    mi = rng.uniform(17.0, 21.0)
    if subtype in ("lrg", "lrg_blue_companion"):
        if cfg.deflectors == "sis-vdf":
            comps = _population_lrg(R, rng, cfg)[0]
        else:
            comps = _lrg(R, rng, mi)
        if subtype == "lrg_blue_companion":
            for _ in range(int(rng.integers(1, 3))):
                d, phi = rng.uniform(1.0, 3.0), rng.uniform(0, 2 * np.pi)
                e = (0.0, 0.0)
                if rng.random() < 0.5:  # tangentially elongated: looks like an arc, is not lensed
                    from lenstronomy.Util.param_util import phi_q2_ellipticity

                    e = phi_q2_ellipticity(phi + np.pi / 2, rng.uniform(0.25, 0.5))
                comps.append(_component(R, rng, "sersic", rng.uniform(20.5, 23.5), d * np.cos(phi),
                                        d * np.sin(phi), r=rng.uniform(0.15, 0.5), n=1.0, e=e,
                                        col=_COL["blue"]))
        return comps
    if subtype in ("spiral", "edge_on_disc"):
        qmin, qmax = (0.1, 0.25) if subtype == "edge_on_disc" else (0.4, 1.0)
        from lenstronomy.Util.param_util import phi_q2_ellipticity

        pa, q = rng.uniform(0, np.pi), rng.uniform(qmin, qmax)
        r_d = rng.uniform(0.8, 2.2)
        comps = [_component(R, rng, "sersic", mi + 0.4, 0, 0, r=r_d, n=1.0,
                            e=phi_q2_ellipticity(pa, q), col=_COL["disc"]),
                 _component(R, rng, "sersic", mi + 1.5, 0, 0, r=0.3 * r_d, n=rng.uniform(2, 4),
                            qmin=0.7, col=_COL["lrg"])]
        if subtype == "spiral":  # two bright blue arms, winding out
            # the sky has no handedness: either winding, half each (``one``: always the same)
            wind = 2.5 if cfg.handedness == "one" or rng.random() < 0.5 else -2.5
            for arm in range(2):
                phi0 = rng.uniform(0, 2 * np.pi) + arm * np.pi
                for t in np.linspace(0, 1, 12):
                    rr, ph = r_d * (0.6 + 1.2 * t), phi0 + wind * t
                    comps.append(_component(R, rng, "gauss", mi + 0.8 + 2.5 * np.log10(24), rr *
                                            np.cos(ph), rr * np.sin(ph), sigma=rng.uniform(0.06, 0.15)))
        return comps
    if subtype == "compact_group":
        comps = []
        for _ in range(int(rng.integers(3, 6))):
            d, phi = rng.uniform(0, 3.0), rng.uniform(0, 2 * np.pi)
            col = _COL["lrg"] if rng.random() < 0.5 else _COL["any"]  # groups are red-rich
            comps.append(_component(R, rng, "sersic", mi + rng.uniform(0, 2.5), d * np.cos(phi),
                                    d * np.sin(phi), r=rng.uniform(0.3, 1.2), n=rng.uniform(1, 4),
                                    col=col))
        return comps
    if subtype == "ring_galaxy":
        comps = [_component(R, rng, "sersic", mi + 0.3, 0, 0, r=rng.uniform(0.3, 0.8),
                            n=rng.uniform(2, 4), qmin=0.7, col=_COL["any"])]
        return comps + _arc_of_clumps(R, rng, mi + rng.uniform(0.5, 2.0), rng.uniform(1.0, 2.5), 0,
                                      2 * np.pi, n=24, sigma=0.12)
    if subtype == "merger":
        d, phi = rng.uniform(0.6, 2.0), rng.uniform(0, 2 * np.pi)
        comps = [_component(R, rng, "sersic", mi, 0, 0, r=rng.uniform(0.4, 1.2), n=rng.uniform(1, 4)),
                 _component(R, rng, "sersic", mi + rng.uniform(0, 1.5), d * np.cos(phi),
                            d * np.sin(phi), r=rng.uniform(0.3, 1.0), n=rng.uniform(1, 4))]
        return comps + _arc_of_clumps(R, rng, mi + rng.uniform(1.5, 3.0), rng.uniform(1.2, 2.8),
                                      phi + np.pi, rng.uniform(1.0, 2.5), n=10, sigma=0.12,
                                      col=_COL["any"])
    # random galaxy: at these magnitudes about half are early types with LRG-like colours
    early = rng.random() < 0.5
    return [_component(R, rng, "sersic", mi, 0, 0, r=rng.uniform(0.3, 2.0),
                       n=rng.uniform(2.5, 5) if early else rng.uniform(0.7, 2.5), qmin=0.3,
                       col=_COL["lrg"] if early else _COL["any"])]


def _environment(R, rng, cfg):
    """Neighbours and a star, the same for both classes: (components, star or None)."""
    half = cfg.size * cfg.pixel_scale / 2
    comps = []
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = rng.uniform(-half, half, 2)
        if np.hypot(cx, cy) < 2.5:
            cx, cy = cx + np.sign(cx) * 2.5, cy + np.sign(cy) * 2.5
        comps.append(_component(R, rng, "sersic", rng.uniform(20.0, 24.5), cx, cy,
                                r=rng.uniform(0.15, 0.8), n=rng.uniform(0.7, 4)))
    star = None
    if rng.random() < cfg.star_fraction:
        min_px = 2.5 / cfg.pixel_scale  # keep the star 2.5" off the centre
        px = rng.integers(4, cfg.size - 4, 2)
        while np.hypot(*(px - cfg.size / 2)) < min_px:
            px = rng.integers(4, cfg.size - 4, 2)
        star = (int(px[0]), int(px[1]), _mags(rng, rng.uniform(17.5, 23.0), _COL["any"]))
    return comps, star


def _line_of_sight(R, rng, cfg, truth) -> list:
    """Faint field galaxies anywhere in the cutout, over the centre too (none by default; draws
    nothing then, so the default cutouts are unchanged)."""
    if not cfg.los_per_arcmin2:
        return []
    gals = draw_los(rng, cfg.los_per_arcmin2, cfg.size * cfg.pixel_scale / 2)
    truth["n_los"] = len(gals)
    return [_component(R, rng, "sersic", m, x, y, r=r, n=rng.uniform(0.7, 3), qmin=0.3,
                       col=_COL["blue"] if rng.random() < 0.6 else _COL["any"])
            for x, y, m, r in gals]


def _components_image(R, comps) -> np.ndarray:
    """Sum of components into (bands, size, size) counts at pixel resolution, before the PSF."""
    n = R.cfg.size
    img = np.zeros((len(R.cfg.bands), n, n))
    for m, mags in comps:
        binned = R.bin(m.reshape(n * R.cfg.supersample, -1))
        img += _flux(mags)[:, None, None] * binned[None]
    return img


def _observe(R, rng, clean, star, conditions):
    """PSF convolution, star, noise: the observed (bands, size, size) float32 image."""
    from scipy.signal import fftconvolve

    out = np.empty(clean.shape, np.float32)
    for b in range(clean.shape[0]):
        psf = conditions["psf"][b]
        img = fftconvolve(clean[b], psf, mode="same")
        if star is not None:
            sx, sy, mags = star
            k = psf.shape[0] // 2
            stamp = _flux(mags[b]) * psf
            y0, x0 = sy - k, sx - k
            ys, xs = slice(max(y0, 0), min(y0 + psf.shape[0], img.shape[0])), \
                slice(max(x0, 0), min(x0 + psf.shape[1], img.shape[1]))
            img[ys, xs] += stamp[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        sigma, gain = conditions["sigma"][b], conditions["gain"][b]
        var = sigma ** 2 + np.clip(img, 0, None) / gain
        out[b] = img + rng.normal(0.0, 1.0, img.shape) * np.sqrt(var)
    return out


def _conditions(R, rng):
    cfg = R.cfg
    nb = len(cfg.bands)
    seeing = np.array(cfg.seeing) * rng.lognormal(0, cfg.seeing_scatter, nb)
    seeing = np.clip(seeing, 0.4, 1.5)
    depth = np.array(cfg.depth) + rng.uniform(-cfg.depth_scatter, cfg.depth_scatter, nb)
    sigma, gain, psfs = [], [], []
    for b in range(nb):
        psf = R.psf(seeing[b])
        psfs.append(psf)
        nea = 1.0 / np.sum(psf ** 2)  # noise-equivalent area of PSF photometry, pixels
        s = float(_flux(depth[b]) / (5 * np.sqrt(nea)))
        sky = float(_flux(cfg.sky_mag[b]) * cfg.pixel_scale ** 2)  # counts/pixel
        sigma.append(s)
        gain.append(sky / s ** 2)  # photons per count implied by sky-limited noise
    return {"seeing": seeing.tolist(), "depth": depth.tolist(), "sigma": sigma, "gain": gain,
            "psf": psfs}


def _lens_system(R, rng, cfg, cond):
    """Draw lens systems until one is visible; returns components and truth."""
    from scipy import ndimage

    attempt, ok, pop = 0, False, None
    quasar = rng.random() < cfg.quasar_fraction
    for attempt in range(cfg.max_redraws):
        if attempt % 4 == 0:  # a new deflector every 4 tries; sources are cheap to redraw
            if cfg.deflectors == "sis-vdf":
                defl, pop = _population_lrg(R, rng, cfg)
                theta_e = pop["theta_e"]
            else:
                theta_e = float(cfg.theta_e_range[0] + (cfg.theta_e_range[1] -
                                                        cfg.theta_e_range[0]) * rng.random() ** 1.3)
                mag_d = float(np.clip(DEFLECTOR_MAG_REF - 2.5 * np.log10(
                    theta_e / DEFLECTOR_THETA_REF) + rng.normal(0, DEFLECTOR_MAG_SCATTER),
                    17.0, 21.0))
                defl = _lrg(R, rng, mag_d)
            defl_g = _components_image(R, defl)[0]
            e1, e2 = _e12(rng, 0.6)
            g1, g2 = rng.normal(0, 0.04, 2)
            kwl = [{"theta_E": theta_e, "e1": e1, "e2": e2, "center_x": 0.0,
                    "center_y": 0.0}, {"gamma1": g1, "gamma2": g2, "ra_0": 0.0, "dec_0": 0.0}]
            bx, by = R.lens.ray_shooting(R.x, R.y, kwl)
        src, lensed, unl, mu = lensed_source(R, rng, theta_e, kwl, bx, by, quasar, pop)
        snr = arc_snr(lensed, cond["sigma"], cond["gain"])
        peak = np.unravel_index(np.argmax(lensed[0]), lensed[0].shape)
        contrast = float(lensed[0][peak] / max(defl_g[peak], 1e-12))
        ok = mu >= cfg.min_magnification and snr >= cfg.min_arc_snr and \
            contrast >= cfg.min_contrast
        if ok:
            break
    # morphology from the 3-sigma footprint of the lensed light: images and azimuthal coverage
    mask3 = lensed.sum(0) > 3 * np.sqrt(np.sum(np.square(cond["sigma"])))
    _, nimg = ndimage.label(mask3)
    ys, xs = np.nonzero(mask3)
    ang = np.arctan2(ys - (cfg.size - 1) / 2, xs - (cfg.size - 1) / 2)
    cover = len(np.unique(np.floor((ang + np.pi) / (2 * np.pi) * 36))) / 36  # azimuthal coverage
    sub = "ring" if cover > 0.85 else "quad" if nimg >= 3 else "double" if nimg == 2 else "arc"
    sub = f"quasar_{sub}" if quasar else sub
    truth = {"subtype": sub, "theta_e": theta_e, "magnification": mu, "arc_snr": snr,
             **{f"src_mag_{band}": float(-2.5 * np.log10(unl[b]) + ZP)
                for b, band in enumerate(cfg.bands)},
             **{f"defl_mag_{band}": float(defl[0][1][b]) for b, band in enumerate(cfg.bands)},
             "redraws": attempt, "visible": bool(ok), "arc_contrast_g": contrast}
    if pop is not None:
        truth.update(sigma_v=pop["sigma"], z_d=pop["z_d"], z_s=pop["z_s"])
    return defl + src, truth


def lensed_source(R: _Renderer, rng, theta_e, kwl, bx, by, quasar: bool, pop=None):
    """A source drawn behind the lens ``kwl`` (already ray-shot: ``bx, by``), seen lensed.

    The source sits inside the caustic region (within ``theta_e / sqrt 2`` of the optical
    axis): a star-forming galaxy (i 20.5-24.5), or with ``quasar`` a quasar and its host.
    ``pop`` (a :func:`train.population.draw_lens` draw) sets its size and colours by redshift.

    Returns
    -------
    components : list
        The source's components (unit maps on the supersampled grid, magnitudes).
    lensed : ndarray, shape ``(bands, size, size)``
        The lensed light in internal counts (zero point 27), before the PSF.
    unlensed : ndarray, shape ``(bands,)``
        The source's total flux unlensed, per band.
    magnification : float
        Total lensed over unlensed flux (all bands).
    """
    rs, ps = theta_e * np.sqrt(rng.uniform(0, 0.5)), rng.uniform(0, 2 * np.pi)
    sx, sy = rs * np.cos(ps), rs * np.sin(ps)
    if quasar:
        src = _lensed_quasar(R, rng, kwl, sx, sy, bx, by)
    else:
        mag_s = float(rng.uniform(20.5, 24.5))
        if pop is None:
            r, col = rng.uniform(0.08, 0.4), None
        else:  # size and colours by the source's redshift
            r, col = source_size_arcsec(rng, pop["z_s"]), source_colours(pop["z_s"])
        src = _star_forming(R, rng, mag_s, sx, sy, bx, by, r=r, col=col)
    lensed = _components_image(R, src)
    src_mags = getattr(src, "unlensed_mags", [m for _, m in src])
    unl = np.array([sum(_flux(m[b]) for m in src_mags) for b in range(lensed.shape[0])])
    return src, lensed, unl, float(lensed.sum(axis=(1, 2)).sum() / unl.sum())


def arc_snr(lensed, sigma, gain) -> float:
    """S/N of lensed light summed over bands, over the pixels where it exceeds the 1-sigma
    noise of the band sum (sky noise ``sigma`` and the arc's own Poisson noise, ``gain``
    photons per count, per band)."""
    mask = lensed.sum(0) > np.sqrt(np.sum(np.square(sigma)))
    if not mask.any():
        return 0.0
    noise = np.sqrt(sum(np.sum(sigma[b] ** 2 + lensed[b][mask] / gain[b])
                        for b in range(lensed.shape[0])))
    return float(lensed.sum(0)[mask].sum() / noise)


def simulate_one(index: int, seed: int = 0, cfg: SimConfig = SimConfig(), *, kind=None):
    """One cutout: ``(image (3, size, size) float32, truth dict)``; pure in ``(seed, index)``.

    ``kind``: ``None`` (lens for even index, non-lens for odd), or ``"lens"``, ``"nonlens"``,
    ``"star"`` (a field with one bright star and nothing else: for PSF and noise checks).
    """
    R = _renderer(cfg)
    rng = np.random.default_rng([seed, index])
    kind = kind or ("lens" if index % 2 == 0 else "nonlens")
    cond = _conditions(R, rng)
    truth = {"index": index, "seed": seed, "label": int(kind == "lens"), "class": kind,
             "theta_e": np.nan, "magnification": np.nan, "arc_snr": np.nan,
             **{f"{k}_{band}": np.nan for k in ("src_mag", "defl_mag") for band in cfg.bands},
             "redraws": 0, "visible": True, "arc_contrast_g": np.nan,
             "sigma_v": np.nan, "z_d": np.nan, "z_s": np.nan, "n_los": 0}
    if kind == "star":
        comps, star = [], (cfg.size // 2, cfg.size // 2, np.full(len(cfg.bands), 18.0))
        truth["subtype"] = "star"
    else:
        env, star = _environment(R, rng, cfg)
        if kind == "lens":
            comps, t = _lens_system(R, rng, cfg, cond)
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
                    star = (c, c, _mags(rng, rng.uniform(15.5, 22.0), _COL["any"]))
            else:
                comps = _nonlens(R, rng, sub, cfg)
                mags = comps[0][1]
                truth.update({f"defl_mag_{band}": float(mags[b])
                              for b, band in enumerate(cfg.bands)})
        comps = comps + env + _line_of_sight(R, rng, cfg, truth)
    img = _observe(R, rng, _components_image(R, comps), star, cond)
    # flux unit: the internal zero point -> the survey's
    unit = np.float32(10 ** (0.4 * (cfg.zeropoint - ZP)))
    img = img * unit
    for b, band in enumerate(cfg.bands):
        truth[f"seeing_{band}"] = float(cond["seeing"][b])
        truth[f"sigma_{band}"] = float(cond["sigma"][b] * unit)
    truth["has_star"] = star is not None
    return img, truth


def _header(cfg: SimConfig, index: int, truth: dict):
    from astropy.io import fits
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    ra = 150.0 + (index % 1000) * 0.01
    dec = 2.0 + (index // 1000) * 0.01
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(cfg.size + 1) / 2] * 2
    w.wcs.cdelt = [-cfg.pixel_scale / 3600, cfg.pixel_scale / 3600]
    h = fits.Header()
    h.update(w.to_header())
    for k, b in enumerate(cfg.bands):
        h[f"BAND{k}"] = b
    h["BUNIT"] = ("count", f"flux, zero point {cfg.zeropoint:g}")
    h["MAGZERO"] = cfg.zeropoint
    h["PIXSCALE"] = (cfg.pixel_scale, "arcsec/pixel")
    h["SURVEY"] = (cfg.survey, "lensscore simulate preset")
    h["SIMSEED"] = (truth["seed"], "lensscore simulate seed")
    h["SIMINDEX"] = (index, "cutout index")
    h["SIMCLASS"] = truth["class"]
    h["SUBTYPE"] = truth["subtype"]
    return h


def _work(args):
    out_dir, start, stop, seed, cfg_json = args
    from astropy.io import fits

    cfg = SimConfig.from_json(cfg_json)
    rows = []
    for i in range(start, stop):
        img, truth = simulate_one(i, seed, cfg)
        rel = f"{'lenses' if truth['label'] else 'nonlenses'}/sim_{i:06d}.fits"
        path = Path(out_dir) / rel
        with atomic_path(path, suffix=".fits") as tmp:
            fits.PrimaryHDU(img, header=_header(cfg, i, truth)).writeto(tmp, overwrite=True)
        truth["id"] = rel[:-5]
        truth["path"] = rel
        rows.append(truth)
    return rows


def simulate(out_dir, n: int, seed: int = 0, workers: int = 1, cfg: SimConfig = SimConfig(),
             chunk: int = 32, progress=None) -> list[dict]:
    """Write ``n`` cutouts under ``out_dir/lenses`` and ``out_dir/nonlenses`` and ``truth.ecsv``.

    Files are written atomically; ``progress(done, n)`` is called as chunks finish. Rows of the
    truth catalog are in index order.
    """
    from astropy.table import Table

    out = Path(out_dir)
    for d in ("lenses", "nonlenses"):
        (out / d).mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), s, min(s + chunk, n), seed, cfg.to_json()) for s in range(0, n, chunk)]
    rows: list[dict] = []
    if workers <= 1:
        for j in jobs:
            rows += _work(j)
            if progress:
                progress(len(rows), n)
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("forkserver")) as ex:
            for r in ex.map(_work, jobs):
                rows += r
                if progress:
                    progress(len(rows), n)
    cols = ["id", "path", "index", "class", "label", "subtype", "theta_e", "magnification",
            "arc_snr", *(f"{k}_{band}" for k in ("src_mag", "defl_mag", "seeing", "sigma")
                         for band in cfg.bands),
            "arc_contrast_g", "has_star", "visible", "redraws", "seed", "sigma_v", "z_d", "z_s",
            "n_los"]
    t = Table(rows=[[r[c] for c in cols] for r in rows], names=cols)
    t.meta["simconfig"] = json.loads(cfg.to_json())
    t.meta["n"] = n
    t.write(out / "truth.ecsv", overwrite=True)
    return rows


# --------------------------------------------------------------------------- checks


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


def _save(fig, path, dpi) -> Path:
    """Lay out, write (PNG or JPEG by the name) and close a figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _panel(ax, img, stretch=1.0):
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
                _panel(ax, None)
                continue
            img = fits.getdata(Path(data_dir) / rows[c]["path"]).astype(float)
            _panel(ax, img, max(float(np.percentile(img, 99.5)) / 4, 1e-3))
            label = f"θE {rows[c]['theta_e']:.2f}\" μ {rows[c]['magnification']:.0f}" \
                if rows[c]["label"] else f"i={rows[c]['defl_mag_i']:.1f}"
            ax.set_title(label, fontsize=6)
        axes[r, 0].set_ylabel(sub.replace("_", " "), fontsize=7)
    return _save(fig, png, 110)


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
            _panel(axes[r, c], ims[c].astype(float) if c < len(ims) else None, stretch)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(f"{cfg.survey}: {g.size} px at {g.pixel_scale}\"/px, zero point "
                 f"{g.zeropoint:g}, one stretch ({stretch:.3g})", fontsize=9)
    return _save(fig, png, 80)
