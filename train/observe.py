"""Observing a simulated scene: the conditions of one cutout (seeing, depth, the noise and
gain they imply, Moffat PSFs per band) and the observation itself (PSF convolution, a star,
sky and source Poisson noise).
"""

from __future__ import annotations

import numpy as np

from .simconfig import flux

__all__ = ["draw_conditions", "observe"]


def observe(R, rng, clean, star, conditions):
    """PSF convolution, star, noise: the observed (bands, size, size) float32 image."""
    from scipy.signal import fftconvolve

    out = np.empty(clean.shape, np.float32)
    for b in range(clean.shape[0]):
        psf = conditions["psf"][b]
        img = fftconvolve(clean[b], psf, mode="same")
        if star is not None:
            sx, sy, mags = star
            k = psf.shape[0] // 2
            stamp = flux(mags[b]) * psf
            y0, x0 = sy - k, sx - k
            ys, xs = slice(max(y0, 0), min(y0 + psf.shape[0], img.shape[0])), \
                slice(max(x0, 0), min(x0 + psf.shape[1], img.shape[1]))
            img[ys, xs] += stamp[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        sigma, gain = conditions["sigma"][b], conditions["gain"][b]
        var = sigma ** 2 + np.clip(img, 0, None) / gain
        out[b] = img + rng.normal(0.0, 1.0, img.shape) * np.sqrt(var)
    return out


def draw_conditions(R, rng):
    """The observing conditions of one cutout: seeing (log-normal scatter about the preset's)
    and depth per band, and the pixel noise ``sigma``, ``gain`` (photons per count, from the sky
    brightness) and PSF they imply. Drawn first in every cutout, lens or not."""
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
        s = float(flux(depth[b]) / (5 * np.sqrt(nea)))
        sky = float(flux(cfg.sky_mag[b]) * cfg.pixel_scale ** 2)  # counts/pixel
        sigma.append(s)
        gain.append(sky / s ** 2)  # photons per count implied by sky-limited noise
    return {"seeing": seeing.tolist(), "depth": depth.tolist(), "sigma": sigma, "gain": gain,
            "psf": psfs}
