"""The plain gnomonic (TAN) celestial WCS of most cutouts, evaluated without building astropy's.

A scan needs two things from a cutout's WCS: its pixel scale and the RA/Dec of its centre.
``astropy.wcs.WCS(header)`` costs ~2.5 ms a file to build (it prints and re-parses the header);
for the common header -- ``RA---TAN``/``DEC--TAN`` with a ``CD`` matrix, or ``PC`` and
``CDELT``, in degrees, no distortion terms -- the FITS WCS paper II formulas give the same numbers
(tested against astropy to 1e-9 deg) in microseconds. Anything else (SIP, TPV, ``CROTA``,
alternate WCSs, other projections, a coupled third axis) is left to astropy: :func:`simple_tan`
returns ``None``.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np

__all__ = ["SimpleTan", "simple_tan", "WCS_KEY"]

#: the keywords a celestial WCS is made of (FITS WCS papers I-IV, SIP, TPV, PS1's PC00i00j), with
#: an optional alternate-WCS letter; astropy's parser is several times slower on a whole survey
#: header (PS1 stacks carry ~170 cards of provenance; bench/RESULTS.md)
WCS_KEY = re.compile(
    r"^(WCSAXES|NAXIS\d*|CTYPE\d+|CRVAL\d+|CRPIX\d+|CDELT\d+|CUNIT\d+|CROTA\d+|CD\d+_\d+|"
    r"PC\d+_\d+|PC\d{3}\d{3}|PV\d+_\d+|PS\d+_\d+|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|"
    r"EPOCH|MJD-OBS|MJDREF|DATE-OBS|A_ORDER|B_ORDER|AP_ORDER|BP_ORDER|A_\d+_\d+|B_\d+_\d+|"
    r"AP_\d+_\d+|BP_\d+_\d+|A_DMAX|B_DMAX)[A-Z]?$")

#: distortion and IRAF keywords beyond WCS_KEY: any of them means "not plain"
_OTHER_WCS = re.compile(r"^(CPDIS\d|CQDIS\d|DP\d|DQ\d|WAT\d_|LTM\d|LTV\d)")
#: the keywords a plain TAN header may carry besides its own axes' (time and frame keywords
#: do not change where a pixel lies: astropy does not convert frames either)
_NEUTRAL = {"WCSAXES", "RADESYS", "RADECSYS", "EQUINOX", "EPOCH", "MJD-OBS", "MJDREF",
            "DATE-OBS", "LATPOLE", "WCSNAME"}
_AXIS_KEYS = ("CTYPE", "CRVAL", "CRPIX", "CDELT", "CUNIT")
_CD = {f"CD{i}_{j}" for i in (1, 2) for j in (1, 2)}
_PC = {f"PC{i}_{j}" for i in (1, 2) for j in (1, 2)}
_OLD_PC = {f"PC00{i}00{j}" for i in (1, 2) for j in (1, 2)}  # PS1's spelling of PCi_j
#: every WCS keyword a plain TAN header may have
_ALLOWED = (_NEUTRAL | _CD | _PC | _OLD_PC | {"LONPOLE", "CD3_3", "PC3_3"}
            | {f"{k}{i}" for k in _AXIS_KEYS for i in (1, 2, 3)})


class SimpleTan:
    """A distortion-free TAN projection: ``CD`` (degrees per pixel), ``CRPIX`` (1-based) and
    ``CRVAL`` (RA, Dec in degrees)."""

    def __init__(self, cd: np.ndarray, crpix: tuple[float, float], crval: tuple[float, float]):
        self.cd = np.asarray(cd, np.float64)
        self.crpix = tuple(float(v) for v in crpix)
        self.crval = tuple(float(v) for v in crval)

    def pixel_scales(self) -> np.ndarray:
        """Degrees per pixel along each pixel axis (as ``proj_plane_pixel_scales``)."""
        return np.sqrt((self.cd ** 2).sum(axis=0))

    def pix2world(self, x: float, y: float) -> tuple[float, float]:
        """RA, Dec (degrees) of 0-based pixel ``(x, y)``. Scalar ``math``, not the array form
        below: a scan calls it once a file, and for one point the array form costs several times
        more (bench/RESULTS.md)."""
        d = np.array([x + 1 - self.crpix[0], y + 1 - self.crpix[1]])
        xi, eta = np.radians(self.cd @ d)
        ra0, dec0 = math.radians(self.crval[0]), math.radians(self.crval[1])
        # gnomonic deprojection about (ra0, dec0), native pole at LONPOLE = 180
        den = math.cos(dec0) - eta * math.sin(dec0)
        ra = ra0 + math.atan2(xi, den)
        dec = math.atan2(math.sin(dec0) + eta * math.cos(dec0), math.hypot(xi, den))
        return math.degrees(ra) % 360.0, math.degrees(dec)

    def pixel_to_world_values(self, x, y):
        """RA, Dec (degrees) of 0-based pixels ``(x, y)`` (arrays), as astropy's method:
        the gnomonic deprojection about CRVAL, native pole at LONPOLE = 180."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        d = np.stack([x + 1 - self.crpix[0], y + 1 - self.crpix[1]])
        xi, eta = np.radians(np.tensordot(self.cd, d, axes=1))
        ra0, dec0 = math.radians(self.crval[0]), math.radians(self.crval[1])
        den = math.cos(dec0) - eta * math.sin(dec0)
        ra = ra0 + np.arctan2(xi, den)
        dec = np.arctan2(math.sin(dec0) + eta * math.cos(dec0), np.hypot(xi, den))
        return np.degrees(ra) % 360.0, np.degrees(dec)

    def world_to_pixel_values(self, ra, dec):
        """0-based pixels ``(x, y)`` of RA, Dec in degrees (arrays), as astropy's method; NaN
        for positions 90° or more from the tangent point (they have no projection)."""
        ra, dec = np.radians(np.asarray(ra, np.float64)), np.radians(np.asarray(dec, np.float64))
        ra0, dec0 = math.radians(self.crval[0]), math.radians(self.crval[1])
        dra = ra - ra0
        cos_c = math.sin(dec0) * np.sin(dec) + math.cos(dec0) * np.cos(dec) * np.cos(dra)
        with np.errstate(divide="ignore", invalid="ignore"):
            xi = np.where(cos_c > 0, np.cos(dec) * np.sin(dra) / cos_c, np.nan)
            eta = np.where(cos_c > 0, (math.cos(dec0) * np.sin(dec)
                                       - math.sin(dec0) * np.cos(dec) * np.cos(dra)) / cos_c,
                           np.nan)
        d = np.tensordot(np.linalg.inv(self.cd), np.degrees(np.stack([xi, eta])), axes=1)
        return d[0] + self.crpix[0] - 1, d[1] + self.crpix[1] - 1


def simple_tan(header) -> SimpleTan | None:
    """A :class:`SimpleTan` for a header whose celestial WCS is a plain TAN one, else ``None``
    (then astropy's WCS is needed)."""
    try:
        if (str(header.get("CTYPE1", "")).strip() != "RA---TAN"
                or str(header.get("CTYPE2", "")).strip() != "DEC--TAN"):
            return None
        keys = set(header.keys())
        if _foreign_wcs(frozenset(keys - _ALLOWED)):
            return None
        if float(header.get("LONPOLE", 180.0)) != 180.0:
            return None
        for i in (1, 2):
            if str(header.get(f"CUNIT{i}", "deg")).strip().lower() not in ("deg", ""):
                return None
        crval = (float(header["CRVAL1"]), float(header["CRVAL2"]))
        crpix = (float(header.get("CRPIX1", 0.0)), float(header.get("CRPIX2", 0.0)))
        if keys & _CD:
            if keys & _PC:
                return None  # both: FITS says CD wins, astropy warns; not the plain case
            cd = np.array([[float(header.get(f"CD{i}_{j}", 0.0)) for j in (1, 2)]
                           for i in (1, 2)])
        else:
            # PCi_j, or the PC00i00j of older writers (PS1 stacks); where a file has both (a
            # later tool added PC1_1), only when they agree: then either reading is the same
            pc = _matrix(header, "PC{}_{}")
            if keys & _OLD_PC:
                old = _matrix(header, "PC00{}00{}")
                if keys & _PC and not np.array_equal(pc, old):
                    return None
                pc = old
            cdelt = np.array([float(header.get("CDELT1", 1.0)), float(header.get("CDELT2", 1.0))])
            cd = cdelt[:, None] * pc
    except (KeyError, TypeError, ValueError):
        return None
    if not (np.isfinite(cd).all() and all(map(math.isfinite, crval + crpix))):
        return None
    if abs(np.linalg.det(cd)) == 0 or abs(crval[1]) >= 90.0:
        return None
    return SimpleTan(cd, crpix, crval)


def _matrix(header, pattern: str) -> np.ndarray:
    """A 2x2 matrix from keywords ``pattern.format(i, j)``, absent ones the identity's."""
    return np.array([[float(header.get(pattern.format(i, j), float(i == j))) for j in (1, 2)]
                     for i in (1, 2)])


@functools.lru_cache(maxsize=256)
def _foreign_wcs(keys: frozenset) -> bool:
    """Whether any of ``keys`` is a WCS keyword a plain TAN may not have. Cached: a survey's
    files share their keywords, and on a PS1 stack's 153 keywords the regular expressions
    took 78 us a call against 14 us cached, the key set included (timeit, one process)."""
    return any(_is_wcs_key(k) for k in keys)


def _is_wcs_key(k: str) -> bool:
    """Whether a keyword belongs to a WCS (of any axis or alternate): what could make the plain
    formulas wrong if it were ignored."""
    return not k.startswith("NAXIS") and bool(WCS_KEY.match(k) or _OTHER_WCS.match(k))
