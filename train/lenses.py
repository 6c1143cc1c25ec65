"""Lens systems: a deflector (SIE + external shear) with a source behind it, drawn until a
person could see the arcs; the images of a point source; the arc's S/N.

:func:`lensed_source` and :func:`arc_snr` are shared with :mod:`train.paint`, which paints the
same sources onto real galaxies.
"""

from __future__ import annotations

import numpy as np

from .population import source_colours, source_size_arcsec
from .render import COLOURS, Renderer, component, components_image, draw_mags, e12, lrg, \
    population_lrg, star_forming
from .simconfig import DEFLECTOR_MAG_REF, DEFLECTOR_MAG_SCATTER, DEFLECTOR_THETA_REF, ZP, flux

__all__ = ["lens_system", "lensed_source", "arc_snr", "image_positions", "draw_lens_model"]


def draw_lens_model(R, rng, theta_e: float):
    """An SIE (axis ratio 0.6-1, any orientation) of Einstein radius ``theta_e`` at the
    centre, plus external shear (each component N(0, 0.04)): lenstronomy's keyword list, and
    the supersampled grid ray-shot through it (``bx, by``), for every lensed source behind it.
    """
    e1, e2 = e12(rng, 0.6)
    g1, g2 = rng.normal(0, 0.04, 2)
    kwl = [{"theta_E": theta_e, "e1": e1, "e2": e2, "center_x": 0.0, "center_y": 0.0},
           {"gamma1": g1, "gamma2": g2, "ra_0": 0.0, "dec_0": 0.0}]
    bx, by = R.lens.ray_shooting(R.x, R.y, kwl)
    return kwl, bx, by


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
    mags_q = draw_mags(rng, mag_q, COLOURS["blue"])
    for x, y in zip(x_img, y_img):
        mu = abs(float(R.lens.magnification(x, y, kwl)))
        comps.append((R.gauss_map(R.x, R.y, sigma, x, y), mags_q - 2.5 * np.log10(max(mu, 1e-3))))
    host = component(R, rng, "sersic", mag_q + rng.uniform(1.5, 3.0), sx, sy, bx, by,
                     r=rng.uniform(0.15, 0.4), n=rng.uniform(0.8, 2.5), col=COLOURS["blue"])
    # the unlensed fluxes (for the magnification) are those of the quasar and host as drawn
    comps.append(host)
    return _QuasarComps(comps, [mags_q, host[1]])


class _QuasarComps(list):
    """Lensed components whose unlensed magnitudes are not one per component (point images)."""

    def __init__(self, comps, unlensed_mags):
        super().__init__(comps)
        self.unlensed_mags = unlensed_mags


def lens_system(R, rng, cfg, cond):
    """Draw lens systems until one is visible; returns components and truth."""
    from scipy import ndimage

    attempt, ok, pop = 0, False, None
    quasar = rng.random() < cfg.quasar_fraction
    for attempt in range(cfg.max_redraws):
        if attempt % 4 == 0:  # a new deflector every 4 tries; sources are cheap to redraw
            if cfg.deflectors == "sis-vdf":
                defl, pop = population_lrg(R, rng, cfg)
                theta_e = pop["theta_e"]
            else:
                theta_e = float(cfg.theta_e_range[0] + (cfg.theta_e_range[1] -
                                                        cfg.theta_e_range[0]) * rng.random() ** 1.3)
                mag_d = float(np.clip(DEFLECTOR_MAG_REF - 2.5 * np.log10(
                    theta_e / DEFLECTOR_THETA_REF) + rng.normal(0, DEFLECTOR_MAG_SCATTER),
                    17.0, 21.0))
                defl = lrg(R, rng, mag_d)
            defl_g = components_image(R, defl)[0]
            kwl, bx, by = draw_lens_model(R, rng, theta_e)
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


def lensed_source(R: Renderer, rng, theta_e, kwl, bx, by, quasar: bool, pop=None):
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
        src = star_forming(R, rng, mag_s, sx, sy, bx, by, r=r, col=col)
    lensed = components_image(R, src)
    src_mags = getattr(src, "unlensed_mags", [m for _, m in src])
    unl = np.array([sum(flux(m[b]) for m in src_mags) for b in range(lensed.shape[0])])
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
