"""Survey header conventions: which band a plane is, its zero point, its pixel scale, bad pixels.

One place for the keywords of real survey files (Pan-STARRS1 stacks, HSC and Rubin/LSST coadds,
DES, Legacy Survey, KiDS) so that the readers in :mod:`lensscore.io` stay layout-only.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np

__all__ = ["band_from_header", "zeropoint_from_header", "pixel_scale_from_header", "hdu_kind",
           "bad_pixel_bits", "BAD_MASK_PLANES", "normalize_band", "parse_band", "SURVEY_FILTERS"]

_BAND_ALIASES = {
    # survey filter names -> short names; anything unknown is kept lower-cased
    **{f"hsc-{b}": b for b in "grizy"},
    **{f"hsc-{b}2": b for b in "ri"},
    **{f"hsc_{b}": b for b in "grizy"},
    **{f"{b}_band": b for b in "ugrizy"},
    **{f"{b}band": b for b in "ugrizy"},
    **{f"{b}-band": b for b in "ugrizy"},
    **{f"decam-{b}": b for b in "grz"},
    **{f"sdss-{b}": b for b in "ugriz"},
    **{f"lsst-{b}": b for b in "ugrizy"},
    **{f"lsst_{b}": b for b in "ugrizy"},
}
#: PS1 ``FPA.FILTER = 'g.00000'``, DECam ``'g DECam SDSS c0001 4720.0 1520.0'``
_PS1_FILTER = re.compile(r"^([ugrizy])\.\d+$")
_DECAM_FILTER = re.compile(r"^([ugrizy]) decam\b")
#: Filter names as surveys write them (lower-cased), and the short band each means: the one
#: table :func:`parse_band` reads. Names that no rule here knows are kept as written and are
#: never taken for a contradiction of a file name (:func:`parse_band` gives None).
SURVEY_FILTERS: tuple[tuple[str, re.Pattern], ...] = (
    ("PS1 (FPA.FILTER)", _PS1_FILTER),                                     # g.00000
    ("DECam", _DECAM_FILTER),                                              # g DECam SDSS c0001 ..
    ("CFHT MegaCam", re.compile(r"^([ugriz])\.mp\d{4}$")),                 # g.MP9401, i.MP9702
    ("OmegaCAM / KiDS", re.compile(r"^(?:ocam_)?([ugriz])_sdss$")),         # OCAM_r_SDSS, r_SDSS
    ("Subaru Suprime-Cam", re.compile(r"^w-s-([griz])\+$")),               # W-S-G+, W-S-I+
    ("HSC", re.compile(r"^hsc[-_]([grizy])2?$")),                          # HSC-G, HSC-R2
    ("Rubin/LSST", re.compile(r"^(?:lsst[-_])?([ugrizy])(?:_\d+)?$")),     # g, lsst-g, g_6
    ("SDSS", re.compile(r"^(?:sdss[-_ ])?([ugriz])$")),                    # sdss-g, SDSS g
    ("generic", re.compile(r"^([ugrizy])[-_ ]?band$")),                    # r_band, r-band
)
#: Survey filters without an SDSS-like short name, kept under their own (lower-cased) name:
#: Euclid VIS and NISP Y/J/H, HST WFC3/ACS wide filters (F475W, F814W, ...), Suprime-Cam's
#: Cousins and Johnson filters (W-C-RC, W-J-V)
OWN_NAMES = re.compile(r"^(vis|nisp[-_ ]?[yjh]|f\d{3,4}[wmnlp]|w-[cj]-\w+)$")

#: keywords naming a plane's band, in the order they are trusted
BAND_KEYS = ("FILTER", "FILTNAM", "FILTNAME", "BAND", "FPA.FILTER", "FPA.FILTERID", "EXTNAME")
#: EXTNAME values that say what a plane holds, not which band it is
_PLANE_WORDS = {"PRIMARY", "IMAGE", "SCI", "SCIENCE", "MASK", "MSK", "DQ", "VARIANCE", "VAR",
                "WEIGHT", "WHT", "IVAR", "INVVAR", "ERR", "SIGMA", "RMS", "PSF", "COMPRESSED_IMAGE"}
_MASK_NAMES = {"MASK", "MSK", "DQ", "BADPIX"}
_VAR_NAMES = {"VARIANCE", "VAR", "WEIGHT", "WHT", "IVAR", "INVVAR", "ERR", "SIGMA", "RMS"}

#: mask planes whose pixels are unusable (LSST/HSC pipelines' names); DETECTED etc. are not bad
BAD_MASK_PLANES = ("BAD", "SAT", "CR", "EDGE", "NO_DATA", "UNMASKEDNAN")
#: the LSST/HSC pipelines' default bit of each plane, when the header has no ``MP_*`` keywords
_DEFAULT_BITS = {"BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "EDGE": 4, "DETECTED": 5,
                 "DETECTED_NEGATIVE": 6, "SUSPECT": 7, "NO_DATA": 8}


def normalize_band(name) -> str | None:
    """Map a filter name from a header or file name to a short band name.

    ``HSC-G`` -> ``g``, ``HSC-I2`` -> ``i``, ``r_band`` -> ``r``, ``G`` -> ``g``, PS1
    ``g.00000`` -> ``g``; unknown names are returned lower-cased and stripped; empty or missing
    names give ``None``.
    """
    if name is None:
        return None
    return _normalize_band(str(name))


@functools.lru_cache(maxsize=1024)
def _normalize_band(name: str) -> str | None:
    """:func:`normalize_band` of a str, cached: a scan asks for the same few filter names
    about 6 times a file."""
    s = name.strip().lower()
    if not s:
        return None
    return parse_band(s) or s


def parse_band(name) -> str | None:
    """The short band a filter name means by a known survey convention (:data:`SURVEY_FILTERS`:
    MegaCam ``g.MP9401`` -> ``g``, KiDS ``OCAM_r_SDSS`` -> ``r``, Suprime-Cam ``W-S-I+`` ->
    ``i``, ...), a name kept as is for filters with their own (:data:`OWN_NAMES`: Euclid
    ``VIS``, HST ``F814W``), or ``None`` if no convention here knows it."""
    if name is None:
        return None
    s = str(name).strip().lower()
    if s in _BAND_ALIASES:
        return _BAND_ALIASES[s]
    for _, pattern in SURVEY_FILTERS:
        m = pattern.match(s)
        if m:
            return m.group(1)
    if OWN_NAMES.match(s):
        return s.replace(" ", "").replace("_", "-")
    return None


def _get(headers, key):
    """The first header (extension, then primary) that has ``key``, its value; else None."""
    for h in headers:
        if h is None:
            continue
        try:
            if key in h:
                return h[key]
        except Exception:  # astropy raises on some malformed cards
            continue
    return None


def band_from_header(*headers) -> str | None:
    """Band named by a plane's header (``FILTER``, ``FILTNAM``, ``BAND``, ``FPA.FILTER``,
    ``EXTNAME``), looking at the given headers in order; ``None`` if none names one."""
    for h in headers:
        for key in BAND_KEYS:
            v = _get([h], key)
            if isinstance(v, str) and v.strip() and v.strip().upper() not in _PLANE_WORDS:
                return normalize_band(v)
    return None


def _finite(v) -> float | None:
    if v is None:  # the usual case (a keyword the header lacks): no exception to raise
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def zeropoint_from_header(*headers) -> float | None:
    """AB zero point (mag of one pixel unit) of a plane from its headers, or ``None``.

    PS1 stacks: ``FPA.ZP + 2.5 log10(EXPTIME)`` (counts); ``MAGZERO``, ``MAGZP``, ``PHOTZP``,
    ``ZP``, ``ZEROPT``; ``FLUXMAG0`` (HSC/LSST calexps: ``2.5 log10(FLUXMAG0)``); ``BUNIT`` of
    ``nanomaggy`` (22.5) or ``nJy`` (31.4).
    """
    hs = [h for h in headers if h is not None]
    zp = _finite(_get(hs, "FPA.ZP"))
    if zp is not None:
        t = _finite(_get(hs, "EXPTIME"))
        return zp + 2.5 * math.log10(t) if t and t > 0 else zp
    for key in ("MAGZERO", "MAGZP", "PHOTZP", "ZP", "ZEROPT", "MAG_ZP"):
        v = _finite(_get(hs, key))
        if v is not None:
            return v
    f0 = _finite(_get(hs, "FLUXMAG0"))
    if f0 is not None and f0 > 0:
        return 2.5 * math.log10(f0)
    unit = _get(hs, "BUNIT")
    if isinstance(unit, str):
        u = unit.strip().lower().replace(" ", "")
        if u in ("nanomaggy", "nanomaggies", "nmgy"):
            return 22.5
        if u in ("njy", "nanojansky"):
            return 31.4  # 2.5 log10(3631 Jy / 1 nJy)
    return None


def pixel_scale_from_header(header, wcs=None) -> float | None:
    """Pixel scale in arcsec/px: from the celestial WCS (``proj_plane_pixel_scales``, the mean of
    both axes), else ``PIXSCALE``/``PIXSCAL1``/``SECPIX`` keywords; ``None`` if unknown."""
    if wcs is not None:
        try:
            if hasattr(wcs, "pixel_scales"):  # a plain TAN (lensscore.tanwcs)
                s = wcs.pixel_scales()
            else:
                from astropy.wcs.utils import proj_plane_pixel_scales

                s = proj_plane_pixel_scales(wcs)
            v = float(np.mean(s)) * 3600.0
            if math.isfinite(v) and v > 0:
                return v
        except Exception:
            pass
    for key in ("PIXSCALE", "PIXSCAL1", "SECPIX", "PIXSCAL"):
        v = _finite(_get([header], key))
        if v is not None and v > 0:
            return v
    return None


def hdu_kind(header) -> str:
    """``"mask"``, ``"variance"`` or ``"image"`` from a HDU's ``EXTNAME``."""
    name = str(header.get("EXTNAME", "") or "").strip().upper()
    if name in _MASK_NAMES:
        return "mask"
    if name in _VAR_NAMES:
        return "variance"
    return "image"


def bad_pixel_bits(mask_header) -> int:
    """Bit mask of the bad planes (:data:`BAD_MASK_PLANES`) of a ``MASK`` HDU.

    From its ``MP_<PLANE> = bit`` keywords where present (HSC/LSST), else the pipelines' default
    bits. ``DETECTED`` and other informational planes never count.
    """
    planes = {}
    for key in mask_header:
        if key.startswith("MP_"):
            v = _finite(mask_header[key])
            if v is not None:
                planes[key[3:]] = int(v)
    planes = planes or _DEFAULT_BITS
    bits = 0
    for p in BAD_MASK_PLANES:
        if p in planes and 0 <= planes[p] < 63:
            bits |= 1 << planes[p]
    return bits
