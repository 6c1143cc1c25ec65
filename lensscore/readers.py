"""Reading FITS files into science planes, one reader per layout: a cube ``(bands, y, x)``, one
image HDU per band (survey MEFs with ``IMAGE``/``MASK``/``VARIANCE``), one file per band.

Every plane keeps its headers (zero points, pixel scale, WCS are read from them later,
:func:`lensscore.cutout.cutout_from_planes`). Bad files raise a :class:`CutoutError` subclass
naming the file and the problem; nothing is left open.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._lazy import LazyModule
from .config import MAX_CUTOUT_PIXELS
from .errors import (
    BandError,
    CutoutError,
    CutoutShapeError,
    NoImageError,
    NotFITSError,
    TruncatedFITSError,
)
from .survey import band_from_header, bad_pixel_bits, hdu_kind, normalize_band, parse_band
from .fastfits import FastHeader, read_simple_cube
from .tanwcs import WCS_KEY, simple_tan

# astropy is imported on first use: `lensscore scan` builds the ONNX session meanwhile
fits = LazyModule("astropy.io.fits")
_exceptions = LazyModule("astropy.utils.exceptions")
_wcs = LazyModule("astropy.wcs")

__all__ = ["Plane", "planes_from_file", "match_bands", "read_per_band", "apply_mask",
           "celestial", "linear_pixels"]

log = logging.getLogger(__name__)


@dataclass
class Plane:
    """One science image read from a file: pixels (bad ones NaN), band, headers for its
    zero point (extension first, then primary)."""

    data: np.ndarray
    band: str | None
    headers: tuple
    n_masked: int = 0

def _check_magic(path: str) -> None:
    """Refuse files that are not FITS before astropy sees them (fast, one clear message)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(9)
            if head[:2] == b"\x1f\x8b":
                fh.seek(0)
                try:
                    with gzip.GzipFile(fileobj=fh) as gz:
                        head = gz.read(9)
                except (OSError, EOFError) as exc:
                    raise NotFITSError(path, f"corrupt gzip stream ({exc})") from None
    except FileNotFoundError:
        raise CutoutError(path, "no such file") from None
    except IsADirectoryError:
        raise CutoutError(path, "is a directory, not a FITS file") from None
    except PermissionError:
        raise CutoutError(path, "permission denied") from None
    except OSError as exc:
        raise CutoutError(path, f"cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise NotFITSError(path, "empty file (0 bytes)")
    if head[:6] != b"SIMPLE":
        raise NotFITSError(path, "not a FITS file (does not start with SIMPLE)")


def _image_hdus(hdul, path: str):
    """Yield ``(hdu, shape)`` for each HDU with image data, checking sizes before reading."""
    for hdu in hdul:
        if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            continue
        try:
            shape = tuple(int(n) for n in hdu.shape)
        except Exception as exc:  # malformed NAXISn
            raise CutoutShapeError(path, f"bad image dimensions in header ({exc})") from None
        if not shape or 0 in shape:
            continue
        npix = int(np.prod(shape, dtype=np.float64))
        if npix > MAX_CUTOUT_PIXELS:
            raise CutoutShapeError(
                path, f"image HDU of shape {shape} is far too large for a cutout "
                f"(> {MAX_CUTOUT_PIXELS} pixels)"
            )
        yield hdu, shape


def linear_pixels(data: np.ndarray, header, path: str) -> np.ndarray:
    """Pixels as stored, made linear float32: integer ``BLANK`` values become NaN, and PS1's
    asinh-compressed images (``BSOFTEN``, ``BOFFSET``: DR2 skycell stacks as the archive
    serves them) are expanded, ``flux = BOFFSET + BSOFTEN * 2 sinh(v / (2.5 log10 e))``. The
    one place both happen, for files and for tiles.

    Raises
    ------
    CutoutError
        ``BSOFTEN`` without a usable ``BOFFSET`` (or the reverse): not linear, not readable.
    """
    data = np.asarray(data)
    blank = header.get("BLANK")
    if data.dtype.kind in "iu" and blank is not None:
        data = np.where(data == blank, np.nan, data.astype(np.float64))
    soft, off = header.get("BSOFTEN"), header.get("BOFFSET")
    if soft is not None or off is not None:
        try:
            soft, off = float(soft), float(off)
        except (TypeError, ValueError):
            raise CutoutError(path, f"asinh-compressed pixels (PS1) need BSOFTEN and BOFFSET, "
                                    f"got {soft!r} and {off!r}") from None
        if not (np.isfinite(soft) and np.isfinite(off)):
            raise CutoutError(path, "BSOFTEN/BOFFSET are not finite")
        data = off + soft * 2.0 * np.sinh(data.astype(np.float64) / (2.5 * np.log10(np.e)))
    return data.astype(np.float32)


def _read_hdu_data(hdu, path: str) -> np.ndarray:
    data = hdu.data
    if data is None:
        raise NoImageError(path, "image HDU has no data")
    return linear_pixels(data, hdu.header, path)


def _header_bands(header, n: int) -> list[str | None] | None:
    """Band names of a cube's planes from BANDk / BANDS / FILTERk keywords, else ``None``."""
    for key in ("BAND", "FILTER"):
        for start in (0, 1):
            names = [header.get(f"{key}{k + start}") for k in range(n)]
            if all(isinstance(v, str) and v.strip() for v in names):
                return [normalize_band(v) for v in names]
    bands = header.get("BANDS")
    if isinstance(bands, str) and bands.strip():
        parts = [p for p in re.split(r"[\s,;]+", bands.strip()) if p]
        if len(parts) == 1 and len(parts[0]) == n:  # 'grz' style
            parts = list(parts[0])
        if len(parts) == n:
            return [normalize_band(p) for p in parts]
    return None


def _open_fits(path: str):
    """``(hdul, fh)``: the HDUs and the file they come from; the caller closes both.

    The file is opened here, not by astropy, so that it is closed on every path: astropy left
    it open when it raised on some corrupt headers (found by the hypothesis test), and a scan
    of millions of files must not leak descriptors until the garbage collector runs.
    """
    _check_magic(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise CutoutError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(fh, memmap=False, lazy_load_hdus=False)
    except (OSError, ValueError, TypeError, KeyError, IndexError, EOFError) as exc:
        fh.close()
        raise NotFITSError(path, f"unreadable FITS ({_short(exc)})") from None
    except BaseException:
        fh.close()
        raise
    try:
        _raise_if_truncated(caught, path, hdul)
    except CutoutError:
        fh.close()
        raise
    return hdul, fh


def _raise_if_truncated(caught, path, hdul=None):
    for w in caught:
        if issubclass(w.category, _exceptions.AstropyUserWarning) and "truncated" in str(w.message):
            if hdul is not None:
                hdul.close()
            raise TruncatedFITSError(path, "file is truncated (shorter than its header says)")


def _short(exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return msg if len(msg) <= 160 else msg[:157] + "..."


def apply_mask(plane: Plane, mask, header, path: str) -> None:
    """Bad planes of a ``MASK`` HDU (its pixels and header) become NaN pixels of ``plane``
    (replaced and counted later).

    Parameters
    ----------
    plane : Plane
        The science plane the mask belongs to; its ``data`` (copied first) and ``n_masked``
        are updated in place.
    mask : array of int
        The mask's pixels, the shape of ``plane.data``; anything else is ignored (logged).
    header : FITS header
        The mask's header: its ``MP_*`` keywords say which bits are bad
        (:func:`lensscore.survey.bad_pixel_bits`).
    path : str
        The file, for the log.
    """
    m = np.asarray(mask)
    if m.shape != plane.data.shape or m.dtype.kind not in "iu":
        log.debug("%s: mask HDU of shape %s/%s ignored", path, m.shape, m.dtype)
        return
    bad = (m.astype(np.int64) & bad_pixel_bits(header)) != 0
    plane.n_masked = int(bad.sum())
    if plane.n_masked:
        plane.data = plane.data.copy()
        plane.data[bad] = np.nan


def planes_from_file(path: str) -> tuple[list[Plane], object]:
    """Read one file: its science planes (band ``None`` if unnamed) and a header for the WCS.

    Survey MEFs (``IMAGE``/``MASK``/``VARIANCE`` HDUs, as HSC and Rubin write them): the science
    planes are read, each ``MASK`` applies its bad planes to the science plane before it, and
    variance planes are ignored.

    Parameters
    ----------
    path : str
        A FITS file (also ``.fits.gz``, ``.fits.fz``).

    Returns
    -------
    planes : list of Plane
        In file order.
    header : FITS header
        The header of the first science image (its WCS is the cutout's).

    Raises
    ------
    CutoutError
        A subclass naming the file and the problem (not FITS, truncated, no image, bad shape).
    """
    fast = read_simple_cube(path)
    if fast is not None and hdu_kind(fast[1]) == "image":
        data, header = fast
        if data.ndim == 2:  # one image (a per-band file): as the loop below reads it
            return [Plane(data, band_from_header(header), (header, header))], header
        names = _header_bands(header, len(data)) or [None] * len(data)
        return [Plane(p, n, (header, header)) for p, n in zip(data, names)], header
    hdul, fh = _open_fits(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdus = list(_image_hdus(hdul, path))
            if not hdus:
                raise NoImageError(path, "no image HDU with data (empty primary HDU, tables only?)")
            primary = hdul[0].header
            sci = [(h, shp) for h, shp in hdus if hdu_kind(h.header) == "image"]
            if not sci:
                raise NoImageError(path, "no science image HDU (only MASK/VARIANCE planes)")
            first, shape = sci[0]
            if len(shape) == 1:
                raise CutoutShapeError(path, f"image is 1-D (shape {shape}), not an image")
            if len(shape) >= 3:
                squeezed = tuple(n for n in shape[:-3] if n != 1)
                if squeezed:
                    raise CutoutShapeError(path, f"image has {len(shape)} axes {shape}; "
                                                 "expected (bands, y, x)")
                cube = _read_hdu_data(first, path).reshape(shape[-3:])
                names = _header_bands(first.header, shape[-3]) or _header_bands(primary, shape[-3])
                names = names or [None] * len(cube)
                hdrs = (first.header, primary)
                return [Plane(p, n, hdrs) for p, n in zip(cube, names)], first.header
            planes: list[Plane] = []
            single = len(sci) == 1
            for hdu, shp in hdus:
                kind = hdu_kind(hdu.header)
                if kind == "mask" and planes:
                    apply_mask(planes[-1], hdu.data, hdu.header, path)
                if kind != "image" or len(shp) != 2:
                    continue  # variance planes; a cube after 2-D images is ambiguous
                band = band_from_header(hdu.header) or (band_from_header(primary) if single
                                                        else None)
                planes.append(Plane(_read_hdu_data(hdu, path), band, (hdu.header, primary)))
            return planes, first.header
    except CutoutError:
        raise
    except MemoryError:
        raise CutoutShapeError(path, "image data too large to read") from None
    except Exception as exc:  # astropy raises many types on corrupt data
        _raise_if_truncated(caught, path)
        raise NotFITSError(path, f"corrupt FITS data ({_short(exc)})") from None
    finally:
        try:
            _raise_if_truncated(caught, path)
        finally:
            hdul.close()
            fh.close()


def match_bands(path: str, planes: list[Plane], want: Sequence[str]) -> tuple[list[Plane], str]:
    """The planes of the model's bands, in its order, and how they were matched.

    By name whenever any plane names a band (unnamed planes are then ignored, never guessed);
    by position only when no plane names one and the count is exactly the model's.

    Parameters
    ----------
    path : str
        The file, for messages.
    planes : list of Plane
        As :func:`planes_from_file` read them.
    want : sequence of str
        The model's bands (normalised names), in its order.

    Returns
    -------
    planes : list of Plane
        One per band of ``want``, in its order.
    band_source : {"header", "position"}

    Raises
    ------
    BandError
        A band missing, or unnamed planes whose count is not the model's.
    """
    named = [p for p in planes if p.band is not None]
    if named:
        have: dict[str, Plane] = {}
        for p in named:
            have.setdefault(p.band, p)
        missing = [b for b in want if b not in have]
        if missing:
            n_unnamed = len(planes) - len(named)
            extra = f" and {n_unnamed} unnamed plane(s)" if n_unnamed else ""
            raise BandError(path, f"missing band(s) {','.join(missing)}: file names "
                                  f"{','.join(p.band for p in named)}{extra}; model needs "
                                  f"{','.join(want)}")
        return [have[b] for b in want], "header"
    if len(planes) == len(want):
        log.debug("%s: no band names, assuming the model's order %s", path, want)
        return list(planes), "position"
    kind = "one 2-D image" if len(planes) == 1 else f"{len(planes)} images/planes"
    raise BandError(path, f"{kind} without band names; model needs {len(want)} bands "
                          f"({','.join(want)})")


def _wcs_cards(header):
    """Only the WCS keywords of a header (a copy), so that parsing it is fast."""
    out = fits.Header()
    if isinstance(header, FastHeader):
        out.update((k, header[k]) for k in header.keys() if WCS_KEY.match(k))  # parse those only
        return out
    for card in header.cards:
        if WCS_KEY.match(card.keyword):
            out.append(card)
    return out


def celestial(header, path, fast: bool = False):
    """The header's celestial WCS (astropy's), or ``None``. With ``fast``, a plain TAN one is a
    :class:`lensscore.tanwcs.SimpleTan` instead: pixel scale and centre only, no slicing.

    Parameters
    ----------
    header : FITS header or FastHeader
    path : str
        The file, for the log (a broken WCS is logged and read as none).
    fast : bool
        Allow a :class:`~lensscore.tanwcs.SimpleTan` for a plain TAN header.

    Returns
    -------
    astropy.wcs.WCS, SimpleTan or None
    """
    if not any(k in header for k in ("CTYPE1", "CTYPE2")):
        return None
    if fast:
        tan = simple_tan(header)
        if tan is not None:
            return tan
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = _wcs.WCS(_wcs_cards(header))
            if w.naxis != 2 or not w.is_celestial:
                w = w.celestial  # another WCS object: only when there is more than sky
        return w if w.has_celestial and w.naxis == 2 else None
    except Exception as exc:  # a broken WCS is no reason to drop the cutout
        log.debug("%s: unusable WCS (%s)", path, exc)
        return None


def read_per_band(per_band: Mapping[str, str], want, shown) -> tuple[list[Plane], object, str]:
    """One plane per band from per-band files; the header must not contradict the file name.

    Parameters
    ----------
    per_band : mapping band -> path
        One file per band.
    want : sequence of str
        The model's bands, in its order.
    shown : str
        How the group is shown in messages (``dir/obj_{g,r,i}.fits``).

    Returns
    -------
    planes : list of Plane
        One per band of ``want``.
    header : FITS header
        The first band's. Its WCS is the cutout's where it has one; else the first band's
        that has one is (``lensscore.cutout._check_band_grids``).
    band_source : {"header", "filename"}

    Raises
    ------
    BandError
        A band without a file, a file of several images, a header that names another band.
    """
    missing = [b for b in want if b not in per_band]
    if missing:
        raise BandError(shown, f"no file for band(s) {','.join(missing)}")
    planes, header, source = [], None, "header"
    for b in want:
        p, hdr = planes_from_file(per_band[b])
        if len(p) != 1:
            # a per-band file that holds several images: pick the named band if it can
            named = [q for q in p if q.band == b]
            if len(named) != 1:
                raise BandError(per_band[b], f"per-band file for {b} holds {len(p)} images")
            p = named
        if p[0].band is not None and p[0].band != b and parse_band(p[0].band) is not None:
            raise BandError(per_band[b], f"file name says band {b}, its header says {p[0].band}")
        if p[0].band != b:  # no band in the header, or one no convention here can read
            source = "filename"
        planes.append(p[0])
        header = header if header is not None else hdr
    return planes, header, source
