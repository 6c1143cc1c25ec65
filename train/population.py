"""A physical lens population for the simulator (``SimConfig.deflectors = "sis-vdf"``).

The default simulator (``"uniform"``) draws the Einstein radius from a fixed range and the
deflector's brightness from it by a rule of thumb. Here the deflector is a galaxy first, and the
lens follows from it:

* **velocity dispersion** from the early-type velocity-dispersion function of SDSS (Choi, Park &
  Vogeley 2007, ApJ 658, 884: modified Schechter, sigma* 161 km/s, alpha 2.32, beta 2.67);
* **deflector redshift** uniform in comoving volume (flat LCDM, H0 70, Omega_m 0.3), 0.1-1.0;
* **source redshift** from p(z) ~ z^2 exp(-(z/z0)^1.5), z0 = 1.0 (a star-forming population:
  mode z 1.2, median 1.4, mean 1.5 before the cut), above the deflector;
* **Einstein radius** of the singular isothermal sphere, 4 pi (sigma/c)^2 D_ds / D_s;
  candidates are accepted with probability proportional to theta_E^2 (the lensing cross-section)
  inside ``theta_e_range``: the optical depth that makes most real lenses small;
* **deflector light consistent with sigma**: Faber-Jackson, M_r = -21.7 - 10 log10(sigma / 200
  km/s) with 0.4 mag scatter (Hyde & Bernardi 2009, MNRAS 394, 1978: L ~ sigma^4 for SDSS
  early types); observed i from the distance modulus plus an early-type K + evolution term
  (rest r -> observed i, passive brightening ~1.2 mag per unit z); colours on the LRG track
  (g-r rising to ~1.85 at z 0.45, r-i to ~1.1 at z 0.7, Eisenstein et al. 2001, AJ 122, 2267);
  half-light radius from the size-luminosity relation of early types (Shen et al. 2003,
  MNRAS 343, 978: R ~ L^0.6, 4.5 kpc at M_r = -21.7, 0.15 dex scatter);
* **source size by redshift**: half-light radius ~1.5 kpc x ((1 + z) / 3)^-1 (0.2 dex scatter),
  turned into arcsec at the source's distance.

Every function takes the caller's ``numpy.random.Generator``: a cutout stays a pure function of
``(seed, index)``. The numbers are approximations with their sources named; they are meant to
put the right *shape* into the training set (many small, faint, compact lenses; deflector light
that goes with the Einstein radius), not to be a mock catalogue of any one survey.

**Line-of-sight galaxies** (``SimConfig.los_per_arcmin2``): faint field galaxies placed anywhere
in the cutout, over the centre too, with number counts dN/dm ~ 10^(0.33 m) for 20 < i < 25
(Poisson; ~30 per arcmin^2 to i 25 in deep i-band counts). Both classes get them.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Cosmology", "cosmology", "einstein_radius", "draw_lens", "draw_los",
           "source_size_arcsec", "source_colours", "ARCSEC_PER_RAD"]

ARCSEC_PER_RAD = 180 / math.pi * 3600
C_KMS = 299_792.458
H0, OMEGA_M = 70.0, 0.3

# Choi, Park & Vogeley (2007): early-type velocity-dispersion function
VDF_SIGMA_STAR, VDF_ALPHA, VDF_BETA = 161.0, 2.32, 2.67
SIGMA_RANGE = (120.0, 420.0)
ZD_RANGE = (0.1, 1.0)
ZS_MAX, ZS_Z0 = 4.0, 1.0
# Faber-Jackson and size-luminosity of early types (module docstring)
FJ_M200, FJ_SLOPE, FJ_SCATTER = -21.7, 10.0, 0.4
RE_KPC, RE_SLOPE, RE_SCATTER_DEX = 4.5, 0.6, 0.15
# early-type K + evolution term, rest r -> observed i, and the LRG colour track (observed)
_KE_Z = (0.0, 0.2, 0.5, 0.8, 1.0)
_KE = (-0.4, -0.05, 0.6, 0.9, 1.1)
_TRACK_Z = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
_GR = (0.75, 0.9, 1.2, 1.5, 1.75, 1.85, 1.88, 1.9, 1.9, 1.9)
_RI = (0.4, 0.42, 0.45, 0.5, 0.6, 0.8, 0.95, 1.1, 1.2, 1.25)
COLOUR_SCATTER = 0.08


class Cosmology:
    """Flat LCDM distances (Mpc) by trapezoid integration on a fine grid; no astropy needed."""

    def __init__(self, h0: float = H0, om: float = OMEGA_M, zmax: float = 6.0, n: int = 6001):
        z = np.linspace(0.0, zmax, n)
        inv_e = 1.0 / np.sqrt(om * (1 + z) ** 3 + 1 - om)
        dc = np.concatenate([[0.0], np.cumsum((inv_e[1:] + inv_e[:-1]) / 2 * np.diff(z))])
        self.z, self.dc, self.inv_e = z, dc * C_KMS / h0, inv_e

    def comoving(self, z):
        return np.interp(z, self.z, self.dc)

    def angular(self, z1, z2=None):
        """D_A to ``z1`` or, with ``z2``, from ``z1`` to ``z2`` (flat universe)."""
        if z2 is None:
            return self.comoving(z1) / (1 + np.asarray(z1))
        return (self.comoving(z2) - self.comoving(z1)) / (1 + np.asarray(z2))

    def distance_modulus(self, z):
        dl = self.comoving(z) * (1 + np.asarray(z))
        return 5 * np.log10(dl * 1e6 / 10)

    def kpc_per_arcsec(self, z):
        return self.angular(z) * 1e3 / ARCSEC_PER_RAD

    def volume_weight(self, z):
        """dV_c/dz per steradian, up to a constant."""
        return self.comoving(z) ** 2 * np.interp(z, self.z, self.inv_e)


_COSMO: Cosmology | None = None


def cosmology() -> Cosmology:
    global _COSMO
    if _COSMO is None:
        _COSMO = Cosmology()
    return _COSMO


def _cdf(x: np.ndarray, pdf: np.ndarray) -> np.ndarray:
    """The normalised cumulative distribution of ``pdf`` on ``x`` (trapezoids)."""
    cdf = np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(x))])
    return cdf / cdf[-1]


def _inverse_cdf(x: np.ndarray, pdf: np.ndarray):
    cdf = _cdf(x, pdf)
    return lambda u: np.interp(u, cdf, x)


_SAMPLERS: dict = {}


def _samplers():
    if not _SAMPLERS:
        c = cosmology()
        s = np.linspace(*SIGMA_RANGE, 2001)
        t = s / VDF_SIGMA_STAR
        _SAMPLERS["sigma"] = _inverse_cdf(s, t ** VDF_ALPHA * np.exp(-t ** VDF_BETA) / s)
        z = np.linspace(*ZD_RANGE, 2001)
        _SAMPLERS["zd"] = _inverse_cdf(z, c.volume_weight(z))
        zs = np.linspace(0.0, ZS_MAX, 4001)
        _SAMPLERS["zs_cdf"] = (zs, _cdf(zs, zs ** 2 * np.exp(-(zs / ZS_Z0) ** 1.5)))
    return _SAMPLERS


def _draw_zs(rng, zd: np.ndarray) -> np.ndarray:
    """Source redshifts above each deflector's (by inverse CDF of the truncated p(z))."""
    zs, cdf = _samplers()["zs_cdf"]
    lo = np.interp(zd + 0.1, zs, cdf)
    return np.interp(lo + rng.random(len(zd)) * (1 - lo), cdf, zs)


def einstein_radius(sigma, zd, zs) -> np.ndarray:
    """SIS Einstein radius (arcsec) of velocity dispersion ``sigma`` (km/s)."""
    c = cosmology()
    return 4 * np.pi * (np.asarray(sigma) / C_KMS) ** 2 * c.angular(zd, zs) / c.angular(zs) \
        * ARCSEC_PER_RAD


def draw_lens(rng, theta_e_range=(0.75, 2.5), batch: int = 512,
              max_mag_i: float | None = None) -> dict:
    """One lens of the population: sigma (km/s), z_d, z_s, theta_E (arcsec), the deflector's
    i magnitude, g-r and r-i colours and half-light radius (arcsec). ``max_mag_i``: only
    deflectors at least that bright (a lens search starts from a catalogue of galaxies)."""
    smp = _samplers()
    lo, hi = theta_e_range
    c = cosmology()
    while True:
        sigma = smp["sigma"](rng.random(batch))
        zd = smp["zd"](rng.random(batch))
        zs = _draw_zs(rng, zd)
        te = einstein_radius(sigma, zd, zs)
        ok = (te >= lo) & (te <= hi) & (rng.random(batch) < (te / hi) ** 2)
        if not ok.any():
            continue
        i = int(np.flatnonzero(ok)[0])
        m_r = FJ_M200 - FJ_SLOPE * math.log10(sigma[i] / 200) + rng.normal(0, FJ_SCATTER)
        mag_i = m_r + float(c.distance_modulus(zd[i])) + float(np.interp(zd[i], _KE_Z, _KE))
        if max_mag_i is None or mag_i <= max_mag_i:
            break
    sigma, zd, zs, te = float(sigma[i]), float(zd[i]), float(zs[i]), float(te[i])
    gr = float(np.interp(zd, _TRACK_Z, _GR)) + rng.normal(0, COLOUR_SCATTER)
    ri = float(np.interp(zd, _TRACK_Z, _RI)) + rng.normal(0, COLOUR_SCATTER)
    re_kpc = RE_KPC * 10 ** (-0.4 * RE_SLOPE * (m_r - FJ_M200)) * 10 ** rng.normal(0, RE_SCATTER_DEX)
    r_eff = re_kpc / float(c.kpc_per_arcsec(zd))
    return {"sigma": sigma, "z_d": zd, "z_s": zs, "theta_e": te, "mag_i": float(mag_i),
            "g_r": gr, "r_i": ri, "r_eff": float(np.clip(r_eff, 0.2, 4.0))}


def source_size_arcsec(rng, zs: float) -> float:
    """Half-light radius (arcsec) of a star-forming source at ``zs``."""
    kpc = 1.5 * ((1 + zs) / 3) ** -1 * 10 ** rng.normal(0, 0.2)
    return float(np.clip(kpc / float(cosmology().kpc_per_arcsec(zs)), 0.04, 0.6))


def source_colours(zs: float) -> tuple:
    """(g-r, r-i) ranges of a star-forming source at ``zs``: bluer as g moves into the rest UV."""
    gr = float(np.interp(zs, (0.5, 1.0, 2.0, 3.0), (0.55, 0.4, 0.15, 0.3)))
    ri = float(np.interp(zs, (0.5, 1.0, 2.0, 3.0), (0.3, 0.35, 0.1, 0.05)))
    return ((gr - 0.15, gr + 0.15), (ri - 0.1, ri + 0.1))


def draw_los(rng, per_arcmin2: float, half_arcsec: float, mag_range=(20.0, 25.0)) -> list:
    """Line-of-sight galaxies over a square field of side ``2 * half_arcsec``: a list of
    (x, y, i magnitude, half-light radius in arcsec) with Poisson numbers and
    dN/dm ~ 10^(0.33 m)."""
    area = (2 * half_arcsec / 60) ** 2
    n = int(rng.poisson(per_arcmin2 * area))
    if n == 0:
        return []
    a, (m0, m1) = 0.33 * math.log(10), mag_range
    u = rng.random(n)
    mags = np.log(np.exp(a * m0) + u * (np.exp(a * m1) - np.exp(a * m0))) / a
    xy = rng.uniform(-half_arcsec, half_arcsec, (n, 2))
    r = np.clip(0.6 * 10 ** (-0.15 * (mags - 21)) * rng.lognormal(0, 0.3, n), 0.08, 1.5)
    return [(float(x), float(y), float(m), float(rr)) for (x, y), m, rr in zip(xy, mags, r)]
