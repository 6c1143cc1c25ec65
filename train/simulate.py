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

The simulator by job, each module importing only those before it: :mod:`train.simconfig`
(:class:`SimConfig`, the internal flux unit), :mod:`train.render` (the grid, lenstronomy models,
colours, galaxy components), :mod:`train.lenses` (lens systems), :mod:`train.nonlenses` (hard
negatives), :mod:`train.observe` (seeing, depth, PSF, noise), :mod:`train.scene`
(:func:`simulate_one`), this module (:func:`simulate`: writing a set), :mod:`train.simcheck`
(measuring a set back, previews). Their public names are importable from here too.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from lensscore.files import atomic_path

from .lenses import arc_snr, image_positions, lensed_source
from .nonlenses import NONLENS_TYPES
from .scene import simulate_one
from .simcheck import compare_real, measure_fwhm, measure_noise, preview, sim_check, \
    trivial_classifier_accuracy
from .simconfig import BANDS, DEFLECTOR_MAG_REF, DEFLECTOR_MAG_SCATTER, DEFLECTOR_THETA_REF, \
    DEFLECTORS, HANDEDNESS, ZP, SimConfig

# the simulator's public names, wherever they live, stay importable from here
__all__ = ["SimConfig", "simulate_one", "simulate", "grid_header", "trivial_classifier_accuracy",
           "measure_noise", "measure_fwhm", "sim_check", "preview", "compare_real",
           "NONLENS_TYPES", "BANDS", "ZP", "DEFLECTORS", "DEFLECTOR_MAG_REF",
           "DEFLECTOR_THETA_REF", "DEFLECTOR_MAG_SCATTER", "HANDEDNESS", "lensed_source",
           "arc_snr", "image_positions"]

log = logging.getLogger(__name__)


def grid_header(cfg: SimConfig, ra: float, dec: float):
    """The FITS header of a cutout on the preset's grid centred on ``(ra, dec)``: a TAN WCS
    (east left, north up) and the band of each plane (``BAND0..``)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(cfg.size + 1) / 2] * 2
    w.wcs.cdelt = [-cfg.pixel_scale / 3600, cfg.pixel_scale / 3600]
    h = fits.Header()
    h.update(w.to_header())
    for k, b in enumerate(cfg.bands):
        h[f"BAND{k}"] = b
    return h


def _header(cfg: SimConfig, index: int, truth: dict):
    """A cutout's FITS header: a TAN WCS (a distinct sky position per index), band names, the
    zero point and pixel scale the scorer reads, and where the cutout came from."""
    h = grid_header(cfg, 150.0 + (index % 1000) * 0.01, 2.0 + (index // 1000) * 0.01)
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
    """Write cutouts ``start..stop`` (one job of :func:`simulate`, in a worker process) and
    return their truth rows; arguments are plain values so that they pickle."""
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
