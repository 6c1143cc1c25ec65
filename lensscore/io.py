"""FITS cutouts in, arrays in FITS order out.

Three layouts are read, also gzip (``.fits.gz``) and tile-compressed (``.fits.fz``) files:

1. one file, a 3-D cube ``(bands, y, x)`` in the first HDU with data; band names from the
   ``BAND0..n`` (or ``BAND1..n``), ``BANDS`` or ``FILTERn`` keywords;
2. one file, one 2-D image HDU per band, band from ``EXTNAME``/``FILTER``/``BAND``
   (HSC ``HSC-G`` means ``g``);
3. one file per band (``<id>_g.fits``, ``<id>_r.fits`` …, or HSC ``…HSC-G…`` names), grouped by
   :func:`find_sources`.

Bands are matched to the model's band list by name; by position only when a file names none
and has exactly as many as the model needs.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._lazy import LazyModule

from .config import DEFAULT_BANDS, DEFAULT_SIZE, FITS_SUFFIXES, MAX_CUTOUT_PIXELS
from .grid import RESAMPLE_TOLERANCE, Grid, ReadOptions, covers, resample
from .survey import (
    band_from_header,
    bad_pixel_bits,
    hdu_kind,
    normalize_band,
    pixel_scale_from_header,
    zeropoint_from_header,
)
from .errors import (
    BadPixelsError,
    BandError,
    CutoutError,
    CutoutShapeError,
    NoImageError,
    NotFITSError,
    TruncatedFITSError,
)

# astropy is imported on first use: `lensscore scan` builds the ONNX session meanwhile
fits = LazyModule("astropy.io.fits")
_exceptions = LazyModule("astropy.utils.exceptions")
_wcs = LazyModule("astropy.wcs")

__all__ = [
    "Cutout",
    "Source",
    "load_cutout",
    "find_sources",
    "normalize_band",
    "label_from_path",
    "split_fits_suffix",
]

log = logging.getLogger(__name__)

#: band tokens recognised at the end of a per-band file name, ``<id>_g.fits``
_SUFFIX_BANDS = ("u", "g", "r", "i", "z", "y")
_SUFFIX_RE = re.compile(r"^(?P<id>.+?)[_.\-](?P<band>[A-Za-z0-9]+)$")
_HSC_RE = re.compile(r"^(?P<pre>.*?)[_.\-]?HSC-(?P<band>[GRIZY])2?(?P<post>.*)$", re.IGNORECASE)
_POS_LABEL = re.compile(r"^(lens|lenses|lens_.*)$", re.IGNORECASE)
_NEG_LABEL = re.compile(r"^(nonlens|nonlenses|nonlens_.*)$", re.IGNORECASE)


def split_fits_suffix(name: str) -> tuple[str, str] | None:
    """Split ``obj.fits.gz`` into ``("obj", ".fits.gz")``; ``None`` if not a FITS file name."""
    low = name.lower()
    for suf in FITS_SUFFIXES:
        if low.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)], name[-len(suf):]
    return None


def label_from_path(path, root=None) -> int | None:
    """Label from the innermost directory named ``lens*``/``nonlens*`` (1, 0), else ``None``.

    A directory named ``lens``, ``lenses`` or ``lens_…`` is positive; ``nonlens``,
    ``nonlenses`` or ``nonlens_…`` negative (the seed's ``lens_1..4``/``nonlens_1..4``).
    With ``root`` (the directory given on the command line), only the root's own name and the
    directories below it count: scanning ``/home/lens_group/run1`` labels nothing a lens.
    Without it, the directories of ``path`` as given (relative paths stay relative).
    """
    if root is not None:
        r = Path(os.path.abspath(root))
        try:
            parts = (r.name,) + Path(os.path.abspath(path)).parent.relative_to(r).parts
        except ValueError:
            parts = ()
    else:
        parts = Path(os.fspath(path)).parent.parts
    for part in reversed(parts):
        if _NEG_LABEL.match(part):
            return 0
        if _POS_LABEL.match(part):
            return 1
    return None


@dataclass
class Cutout:
    """One multi-band cutout on the model's grid, pixels in FITS order.

    Attributes
    ----------
    data : ndarray, float32, shape ``(bands, size, size)``
        On the model's zero point and pixel scale, centre-cropped to its size; non-finite and
        masked pixels replaced by the band's median.
    bands : tuple of str
        Band of each plane, in the model's order.
    id : str
    path : str
        The file, or for per-band files a ``dir/obj_{g,r,i}.fits``-style pattern.
    ra, dec : float
        Sky position of the cutout centre (degrees) from the celestial WCS; NaN without one.
    n_nonfinite : int
        Number of NaN/inf and bad-mask pixels that were replaced.
    wcs : astropy.wcs.WCS or None
        Celestial WCS of the cropped cutout (None when resampled).
    pixscale_in : float
        Input pixel scale (arcsec/px); NaN when neither header nor option states it.
    resampled : bool
        Whether the input was resampled onto the model's pixel scale.
    zp_source : {"header", "option", "assumed"}
        Where the zero points came from (``assumed``: no band states one; used as read).
    band_source : {"header", "filename", "position"}
        How planes were matched to the model's bands.
    """

    data: np.ndarray
    bands: tuple[str, ...]
    id: str
    path: str
    ra: float = float("nan")
    dec: float = float("nan")
    n_nonfinite: int = 0
    wcs: object = field(default=None, repr=False)
    pixscale_in: float = float("nan")
    resampled: bool = False
    zp_source: str = "assumed"
    band_source: str = "header"


@dataclass(frozen=True)
class Source:
    """One object to score, as found by :func:`find_sources`.

    ``files`` is a single path, or ``((band, path), …)`` for per-band files. ``error`` is set
    for what was found but cannot be read at all (a directory that cannot be listed, an
    object off every tile): it becomes an error row. Objects of a catalog over image tiles
    (:mod:`lensscore.tiles`) have a ``position`` (RA, Dec in degrees), ``files`` naming each
    band's tile as ``(band, "path[hdu]")``, and ``extra``: the input columns kept.
    """

    id: str
    path: str
    files: str | tuple[tuple[str, str], ...]
    label: int | None = None
    error: str | None = None
    position: tuple[float, float] | None = None
    extra: tuple[tuple[str, object], ...] = ()


@dataclass
class _Plane:
    """One science image read from a file: pixels (bad ones NaN), band, headers for its
    zero point (extension first, then primary)."""

    data: np.ndarray
    band: str | None
    headers: tuple
    n_masked: int = 0


# --------------------------------------------------------------------------- reading


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


def _read_hdu_data(hdu, path: str) -> np.ndarray:
    data = hdu.data
    if data is None:
        raise NoImageError(path, "image HDU has no data")
    data = np.asarray(data)
    blank = hdu.header.get("BLANK")
    if data.dtype.kind in "iu" and blank is not None:
        data = np.where(data == blank, np.nan, data.astype(np.float64))
    return data.astype(np.float32)


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


def _apply_mask(plane: _Plane, mask, header, path: str) -> None:
    """Bad planes of a ``MASK`` HDU (its pixels and header) become NaN pixels of ``plane``
    (replaced and counted later)."""
    m = np.asarray(mask)
    if m.shape != plane.data.shape or m.dtype.kind not in "iu":
        log.debug("%s: mask HDU of shape %s/%s ignored", path, m.shape, m.dtype)
        return
    bad = (m.astype(np.int64) & bad_pixel_bits(header)) != 0
    plane.n_masked = int(bad.sum())
    if plane.n_masked:
        plane.data = plane.data.copy()
        plane.data[bad] = np.nan


def _planes_from_file(path: str) -> tuple[list[_Plane], object]:
    """Read one file: its science planes (band ``None`` if unnamed) and a header for the WCS.

    Survey MEFs (``IMAGE``/``MASK``/``VARIANCE`` HDUs, as HSC and Rubin write them): the science
    planes are read, each ``MASK`` applies its bad planes to the science plane before it, and
    variance planes are ignored.
    """
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
                return [_Plane(p, n, hdrs) for p, n in zip(cube, names)], first.header
            planes: list[_Plane] = []
            single = len(sci) == 1
            for hdu, shp in hdus:
                kind = hdu_kind(hdu.header)
                if kind == "mask" and planes:
                    _apply_mask(planes[-1], hdu.data, hdu.header, path)
                if kind != "image" or len(shp) != 2:
                    continue  # variance planes; a cube after 2-D images is ambiguous
                band = band_from_header(hdu.header) or (band_from_header(primary) if single
                                                        else None)
                planes.append(_Plane(_read_hdu_data(hdu, path), band, (hdu.header, primary)))
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


def _match_bands(path: str, planes: list[_Plane], want: Sequence[str]) -> tuple[list[_Plane], str]:
    """The planes of the model's bands, in its order, and how they were matched.

    By name whenever any plane names a band (unnamed planes are then ignored, never guessed);
    by position only when no plane names one and the count is exactly the model's.
    """
    named = [p for p in planes if p.band is not None]
    if named:
        have: dict[str, _Plane] = {}
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


#: the keywords a celestial WCS is made of (FITS WCS papers I-IV, SIP, TPV, PS1's PC00i00j), with
#: an optional alternate-WCS letter; astropy's parser is ~5x slower on a whole survey header
#: (PS1 stacks carry ~170 cards of provenance: 8.6 ms against 1.7 ms, measured)
_WCS_KEY = re.compile(
    r"^(WCSAXES|NAXIS\d*|CTYPE\d+|CRVAL\d+|CRPIX\d+|CDELT\d+|CUNIT\d+|CROTA\d+|CD\d+_\d+|"
    r"PC\d+_\d+|PC\d{3}\d{3}|PV\d+_\d+|PS\d+_\d+|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|"
    r"EPOCH|MJD-OBS|MJDREF|DATE-OBS|A_ORDER|B_ORDER|AP_ORDER|BP_ORDER|A_\d+_\d+|B_\d+_\d+|"
    r"AP_\d+_\d+|BP_\d+_\d+|A_DMAX|B_DMAX)[A-Z]?$")


def _wcs_cards(header):
    """Only the WCS keywords of a header (a copy), so that parsing it is fast."""
    out = fits.Header()
    for card in header.cards:
        if _WCS_KEY.match(card.keyword):
            out.append(card)
    return out


def _celestial(header, path):
    if not any(k in header for k in ("CTYPE1", "CTYPE2")):
        return None
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


def _read_per_band(per_band: Mapping[str, str], want, shown) -> tuple[list[_Plane], object, str]:
    """One plane per band from per-band files; the header must not contradict the file name."""
    missing = [b for b in want if b not in per_band]
    if missing:
        raise BandError(shown, f"no file for band(s) {','.join(missing)}")
    planes, header, source = [], None, "header"
    for b in want:
        p, hdr = _planes_from_file(per_band[b])
        if len(p) != 1:
            # a per-band file that holds several images: pick the named band if it can
            named = [q for q in p if q.band == b]
            if len(named) != 1:
                raise BandError(per_band[b], f"per-band file for {b} holds {len(p)} images")
            p = named
        if p[0].band is not None and p[0].band != b:
            raise BandError(per_band[b], f"file name says band {b}, its header says {p[0].band}")
        if p[0].band is None:
            source = "filename"
        planes.append(p[0])
        header = header if header is not None else hdr
    return planes, header, source


def _zero_points(path, planes: list[_Plane], want, options: ReadOptions):
    """Per-band factors onto the grid's zero point, and where the zero points came from."""
    given = options.zeropoint_map
    zps = [given.get(b, zeropoint_from_header(*p.headers)) for b, p in zip(want, planes)]
    from_option = any(b in given for b in want)
    if all(z is None for z in zps):
        return None, "assumed"
    if any(z is None for z in zps):
        lack = [b for b, z in zip(want, zps) if z is None]
        raise CutoutError(path, f"zero point stated for some bands but not for "
                                f"{','.join(lack)}; give them with --zeropoint "
                                f"{','.join(f'{b}=ZP' for b in lack)}")
    factors = [10 ** (0.4 * (options.grid.zeropoint - z)) for z in zps]
    return factors, "option" if from_option else "header"


def load_cutout(
    path,
    bands: Sequence[str] = DEFAULT_BANDS,
    size: int | None = DEFAULT_SIZE,
    id: str | None = None,
    *,
    options: ReadOptions | None = None,
    wcs: bool = True,
) -> Cutout:
    """Load one cutout in any supported layout and put it on the model's grid.

    Parameters
    ----------
    path : str, Path, or mapping of band -> path
        A FITS file (cube, or one HDU per band, or a survey MEF with MASK/VARIANCE), or
        per-band files ``{"g": …, "r": …}``.
    bands : sequence of str
        Bands the model needs, in the model's order (``Scorer.bands``).
    size : int or None
        Cutout side on the model's grid; ``None`` keeps the full image as read (no zero point
        scaling or resampling either).
    id : str, optional
        Object id; defaults to the file name without its FITS suffix.
    options : ReadOptions, optional
        The model's grid (pixel scale, zero point; ``Scorer.read_options()``) and overrides;
        default the HSC grid (0.168"/px, zero point 27).
    wcs : bool
        Also return the cropped cutout's celestial WCS (``Cutout.wcs``); a scan, which needs only
        the centre's RA/Dec, saves the cost of slicing it.

    Returns
    -------
    Cutout

    Raises
    ------
    CutoutError
        A subclass naming the file and the problem: :class:`NotFITSError`,
        :class:`TruncatedFITSError`, :class:`NoImageError`, :class:`BandError`,
        :class:`CutoutShapeError`, :class:`BadPixelsError`; or a zero point / coverage problem.
    """
    want = [normalize_band(b) for b in bands]
    if isinstance(path, Mapping):
        per_band = {normalize_band(k): str(v) for k, v in path.items()}
        path_str = _group_display(per_band)
        planes, header, band_source = _read_per_band(per_band, want, path_str)
        default_id = split_fits_suffix(Path(per_band[want[0]]).name)
        default_id = default_id[0] if default_id else Path(per_band[want[0]]).stem
    else:
        path_str = os.fspath(path)
        planes, header = _planes_from_file(path_str)
        planes, band_source = _match_bands(path_str, planes, want)
        name = Path(path_str).name
        default_id = (split_fits_suffix(name) or (Path(name).stem, ""))[0]
    return cutout_from_planes(planes, header, want, size, options=options, wcs=wcs,
                              path=path_str, id=id or default_id, band_source=band_source)


def cutout_from_planes(planes: list[_Plane], header, want: Sequence[str], size: int | None, *,
                       options: ReadOptions | None, wcs: bool, path: str, id: str,
                       band_source: str) -> Cutout:
    """Science planes (one per band, in ``want`` order; pixels, bad ones NaN, and headers) onto
    the model's grid: bad pixels filled, zero points scaled, resampled or cropped about the
    centre. The one path from pixels to a cutout, for files and for tiles
    (:mod:`lensscore.tiles`)."""
    path_str = path
    options = options or ReadOptions(Grid(bands=tuple(want), size=size or DEFAULT_SIZE))
    shapes = {p.data.shape for p in planes}
    if len(shapes) != 1:
        raise CutoutShapeError(path_str, f"bands differ in shape: {sorted(shapes)}")
    data = np.stack([p.data for p in planes]).astype(np.float32)

    bad = ~np.isfinite(data)
    n_bad = int(bad.sum())
    for k, b in enumerate(want):
        if bad[k].all():
            reason = "masked or NaN/inf" if planes[k].n_masked else "NaN/inf"
            raise BadPixelsError(path_str, f"band {b} is entirely {reason}")
        if bad[k].any():
            data[k][bad[k]] = np.median(data[k][~bad[k]])

    want_wcs = wcs
    wcs = _celestial(header, path_str) if header is not None else None
    scale_in = pixel_scale_from_header(header, wcs) if header is not None else None
    scale_in = scale_in or options.pixel_scale
    zp_source, resampled = "assumed", False
    ny, nx = data.shape[1:]
    y0 = x0 = 0
    if size is not None:
        grid = options.grid
        factors, zp_source = _zero_points(path_str, planes, want, options)
        if factors is not None:
            data *= np.asarray(factors, np.float32)[:, None, None]
        scale = scale_in or grid.pixel_scale
        if abs(scale / grid.pixel_scale - 1) > RESAMPLE_TOLERANCE:
            if not covers((ny, nx), scale, grid):
                raise CutoutShapeError(
                    path_str, f"image is {ny}x{nx} px at {scale:.4g}\"/px = "
                    f"{ny * scale:.1f}x{nx * scale:.1f}\", smaller than the model's field of "
                    f"{size * grid.pixel_scale:.1f}\" ({size} px at {grid.pixel_scale:g}\"/px)")
            data = np.stack([resample(p, scale, grid.pixel_scale, size) for p in data])
            resampled = True
        else:
            if ny < size or nx < size:
                raise CutoutShapeError(path_str, f"image is {ny}x{nx} px, smaller than the "
                                                 f"model's {size}x{size}")
            y0, x0 = (ny - size) // 2, (nx - size) // 2
            data = np.ascontiguousarray(data[:, y0:y0 + size, x0:x0 + size])
    for k, b in enumerate(want):
        lo, hi = float(data[k].min()), float(data[k].max())
        if lo == hi:
            raise BadPixelsError(path_str, f"band {b} is constant (every pixel {lo:g})")

    ra = dec = float("nan")
    if wcs is not None:
        sy, sx = data.shape[1:] if not resampled else (ny, nx)
        try:
            c = wcs.all_pix2world([[x0 + (sx - 1) / 2, y0 + (sy - 1) / 2]], 0)[0]
            ra, dec = float(c[0]), float(c[1])
            wcs = None if resampled or not want_wcs else \
                wcs.slice((slice(y0, y0 + sy), slice(x0, x0 + sx)))
        except Exception as exc:
            log.debug("%s: WCS evaluation failed (%s)", path_str, exc)
            wcs = None
    return Cutout(data=data, bands=tuple(want), id=id, path=path_str,
                  ra=ra, dec=dec, n_nonfinite=n_bad, wcs=wcs,
                  pixscale_in=float(scale_in) if scale_in else float("nan"),
                  resampled=resampled, zp_source=zp_source, band_source=band_source)


def load_source(source: Source, bands: Sequence[str], size: int | None,
                options: ReadOptions | None = None, wcs: bool = True) -> Cutout:
    """Load a :class:`Source` found by :func:`find_sources`."""
    if source.error:
        raise CutoutError(source.path, source.error)
    if source.position is not None:
        from .tiles import load_tile_cutout

        return load_tile_cutout(source, bands, size, options, wcs=wcs)
    files = dict(source.files) if isinstance(source.files, tuple) else source.files
    c = load_cutout(files, bands=bands, size=size, id=source.id, options=options, wcs=wcs)
    c.path = source.path
    return c



# --------------------------------------------------------------------------- finding


def _group_display(per_band: Mapping[str, str]) -> str:
    paths = list(per_band.values())
    if len(paths) == 1:
        return paths[0]
    prefix = os.path.commonprefix(paths)
    suffix = os.path.commonprefix([p[::-1] for p in paths])[::-1]
    mids = [p[len(prefix): len(p) - len(suffix)] for p in paths]
    return f"{prefix}{{{','.join(mids)}}}{suffix}"


def _band_token(stem: str, bands: set[str]) -> tuple[str, str] | None:
    """``("obj", "g")`` for ``obj_g`` / ``obj-HSC-G-…``; ``None`` if the stem names no band."""
    m = _HSC_RE.match(stem)
    if m:
        return (m["pre"] + m["post"]) or stem, m["band"].lower()
    m = _SUFFIX_RE.match(stem)
    if m:
        b = normalize_band(m["band"])
        if b in bands:
            return m["id"], b
    return None


@dataclass(frozen=True)
class _Unlistable:
    """A directory found while walking that cannot be listed."""

    path: str
    reason: str


def _walk(root: str, seen: set) -> Iterable[str | _Unlistable]:
    """Files under ``root``, sorted, following directory links once (no symlink loops); a
    directory that cannot be read is yielded as :class:`_Unlistable` (an error row, never a
    silent gap)."""
    try:
        st = os.stat(root)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return
        seen.add(key)
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        yield _Unlistable(root, f"cannot list directory ({exc.strerror or exc})")
        return
    for e in entries:
        try:
            is_dir = e.is_dir(follow_symlinks=True)
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk(e.path, seen)
        elif split_fits_suffix(e.name):
            yield e.path


def find_sources(
    paths: Sequence | str | os.PathLike,
    bands: Sequence[str] = DEFAULT_BANDS,
    labels: Mapping[str, int] | None = None,
) -> list[Source]:
    """Find the cutouts to score under files and directories, grouping per-band files.

    Parameters
    ----------
    paths : path or sequence of paths
        FITS files and/or directories (searched recursively, in sorted order, following
        directory links without looping).
    bands : sequence of str
        The model's bands; ``<id>_<band>.fits`` files in the same directory are grouped.
    labels : mapping id -> 0/1, optional
        Labels that override the ones taken from directory names.

    Returns
    -------
    list of Source
        In a deterministic order. Ids are paths relative to the directory given, without the
        FITS suffix (``lenses/obj001``), or the file name's stem for files given directly.

    Raises
    ------
    FileNotFoundError
        If a given path does not exist.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    band_set = {normalize_band(b) for b in bands} | set(_SUFFIX_BANDS)
    files: list[tuple[str, str]] = []  # (path, root for ids)
    seen_dirs: set = set()
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            files.extend((f, p) for f in _walk(p, seen_dirs))
        elif os.path.lexists(p):
            files.append((p, os.path.dirname(p)))
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")

    groups: dict[tuple[str, str], dict[str, str]] = {}
    order: list[tuple] = []
    seen_real: set[str] = set()
    for f, root in files:
        if isinstance(f, _Unlistable):
            rel = os.path.relpath(f.path, root) if root else f.path
            order.append(("unlistable", f, "" if rel == "." else rel, root))
            continue
        real = os.path.realpath(f)
        if real in seen_real:
            continue
        seen_real.add(real)
        name = os.path.basename(f)
        stem = split_fits_suffix(name)[0]
        rel_dir = os.path.relpath(os.path.dirname(f), root) if root else ""
        rel_dir = "" if rel_dir == "." else rel_dir
        tok = _band_token(stem, band_set)
        if tok is None:
            order.append(("file", f, os.path.join(rel_dir, stem), root))
            continue
        gid, band = tok
        key = (os.path.dirname(f), gid)
        if key not in groups:
            groups[key] = {}
            order.append(("group", key, os.path.join(rel_dir, gid), root))
        groups[key].setdefault(band, f)

    sources = []
    for kind, ref, sid, root in order:
        sid = Path(sid).as_posix()
        if kind == "unlistable":
            src = Source(id=Path(sid or os.path.basename(os.path.normpath(ref.path))).as_posix()
                         + "/", path=ref.path, files=ref.path, error=ref.reason)
        elif kind == "file":
            src = Source(id=sid, path=ref, files=ref, label=label_from_path(ref, root or None))
        else:
            per_band = groups[ref]
            if len(per_band) == 1:  # a lone obj_g.fits is just a file
                (f,) = per_band.values()
                stem = split_fits_suffix(os.path.basename(f))[0]
                src = Source(id=str(Path(sid).with_name(stem).as_posix()), path=f, files=f,
                             label=label_from_path(f, root or None))
            else:
                rank = {b: k for k, b in enumerate(normalize_band(b) for b in bands)}
                items = sorted(per_band.items(), key=lambda kv: (rank.get(kv[0], 99), kv[0]))
                src = Source(id=sid, path=_group_display(dict(items)), files=tuple(items),
                             label=label_from_path(items[0][1], root or None))
        if labels:
            lab = labels.get(src.id, labels.get(src.id.rsplit("/", 1)[-1]))
            if lab is not None:
                src = Source(src.id, src.path, src.files, int(lab))
        sources.append(src)
    return _unique_ids(sources, [root for *_, root in order])


def _unique_ids(sources: list[Source], roots: list[str]) -> list[Source]:
    """Ids key the catalog (resume, merge, labels): an id that two scanned roots both give
    (``a/c0.fits`` and ``b/c0.fits``) is prefixed with its root's name from the second on
    (``b/c0``), and numbered if that is taken too."""
    seen: set[str] = set()
    out = []
    for src, root in zip(sources, roots):
        sid = src.id
        if sid in seen:
            base = f"{os.path.basename(os.path.normpath(root or '.'))}/{sid}"
            sid, k = base, 2
            while sid in seen:
                sid, k = f"{base}#{k}", k + 1
            src = Source(sid, src.path, src.files, src.label)
        seen.add(sid)
        out.append(src)
    return out
