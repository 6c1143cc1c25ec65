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

#: band tokens recognised at the end of a per-band file name, ``<id>_g.fits``
_SUFFIX_BANDS = ("u", "g", "r", "i", "z", "y")
_SUFFIX_RE = re.compile(r"^(?P<id>.+?)[_.\-](?P<band>[A-Za-z0-9]+)$")
_HSC_RE = re.compile(r"^(?P<pre>.*?)[_.\-]?HSC-(?P<band>[GRIZY])2?(?P<post>.*)$", re.IGNORECASE)
_POS_LABEL = re.compile(r"^(lens|lenses|lens_.*)$", re.IGNORECASE)
_NEG_LABEL = re.compile(r"^(nonlens|nonlenses|nonlens_.*)$", re.IGNORECASE)


def normalize_band(name) -> str | None:
    """Map a filter name from a header or file name to a short band name.

    ``HSC-G`` -> ``g``, ``HSC-I2`` -> ``i``, ``r_band`` -> ``r``, ``G`` -> ``g``; unknown names
    are returned lower-cased and stripped; empty or missing names give ``None``.
    """
    if name is None:
        return None
    s = str(name).strip().lower()
    if not s:
        return None
    return _BAND_ALIASES.get(s, s)


def split_fits_suffix(name: str) -> tuple[str, str] | None:
    """Split ``obj.fits.gz`` into ``("obj", ".fits.gz")``; ``None`` if not a FITS file name."""
    low = name.lower()
    for suf in FITS_SUFFIXES:
        if low.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)], name[-len(suf):]
    return None


def label_from_path(path) -> int | None:
    """Label from the innermost directory named ``lens*``/``nonlens*`` (1, 0), else ``None``.

    A directory named ``lens``, ``lenses`` or ``lens_…`` is positive; ``nonlens``,
    ``nonlenses`` or ``nonlens_…`` negative (the seed's ``lens_1..4``/``nonlens_1..4``).
    """
    for part in reversed(Path(os.path.abspath(path)).parent.parts):
        if _NEG_LABEL.match(part):
            return 0
        if _POS_LABEL.match(part):
            return 1
    return None


@dataclass
class Cutout:
    """One multi-band cutout, pixels in FITS order.

    Attributes
    ----------
    data : ndarray, float32, shape ``(bands, size, size)``
        Centre-cropped to the model size; non-finite pixels replaced by the band's median.
    bands : tuple of str
        Band of each plane, in the model's order.
    id : str
    path : str
        The file, or for per-band files a ``dir/obj_{g,r,i}.fits``-style pattern.
    ra, dec : float
        Sky position of the cutout centre (degrees) from the celestial WCS; NaN without one.
    n_nonfinite : int
        Number of NaN/inf pixels that were replaced.
    wcs : astropy.wcs.WCS or None
        Celestial WCS of the cropped cutout.
    """

    data: np.ndarray
    bands: tuple[str, ...]
    id: str
    path: str
    ra: float = float("nan")
    dec: float = float("nan")
    n_nonfinite: int = 0
    wcs: object = field(default=None, repr=False)


@dataclass(frozen=True)
class Source:
    """One object to score, as found by :func:`find_sources`.

    ``files`` is a single path, or ``((band, path), …)`` for per-band files.
    """

    id: str
    path: str
    files: str | tuple[tuple[str, str], ...]
    label: int | None = None


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


def _hdu_band(header) -> str | None:
    for key in ("FILTER", "BAND", "EXTNAME", "FILTNAME"):
        v = header.get(key)
        if isinstance(v, str) and v.strip() and v.strip().upper() not in ("PRIMARY", "IMAGE", "SCI"):
            return normalize_band(v)
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


def _planes_from_file(path: str) -> tuple[list[np.ndarray], list[str | None], object]:
    """Read one file: its image planes, their band names (``None`` if unknown), a header for WCS."""
    hdul, fh = _open_fits(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdus = list(_image_hdus(hdul, path))
            if not hdus:
                raise NoImageError(path, "no image HDU with data (empty primary HDU, tables only?)")
            first, shape = hdus[0]
            primary = hdul[0].header
            if len(shape) == 1:
                raise CutoutShapeError(path, f"image is 1-D (shape {shape}), not an image")
            if len(shape) >= 3:
                squeezed = tuple(n for n in shape[:-3] if n != 1)
                if squeezed:
                    raise CutoutShapeError(path, f"image has {len(shape)} axes {shape}; "
                                                 "expected (bands, y, x)")
                cube = _read_hdu_data(first, path).reshape(shape[-3:])
                names = _header_bands(first.header, shape[-3]) or _header_bands(primary, shape[-3])
                planes = list(cube)
                names = names or [None] * len(planes)
                return planes, names, first.header
            planes, names = [], []
            for hdu, shp in hdus:
                if len(shp) != 2:
                    continue  # a cube after 2-D images: ambiguous, ignore it
                planes.append(_read_hdu_data(hdu, path))
                names.append(_hdu_band(hdu.header) or
                             (_hdu_band(primary) if len(hdus) == 1 else None))
            return planes, names, first.header
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


def _match_bands(path: str, planes, names, bands: Sequence[str]) -> list[np.ndarray]:
    want = [normalize_band(b) for b in bands]
    if all(n is not None for n in names):
        have = {}
        for n, p in zip(names, planes):
            have.setdefault(n, p)
        missing = [b for b in want if b not in have]
        if missing:
            raise BandError(path, f"missing band(s) {','.join(missing)}: file has "
                                  f"{','.join(names)}; model needs {','.join(want)}")
        return [have[b] for b in want]
    if len(planes) == len(want):
        log.debug("%s: no band names, assuming the model's order %s", path, want)
        return list(planes)
    kind = "one 2-D image" if len(planes) == 1 else f"{len(planes)} images/planes"
    raise BandError(path, f"{kind} without band names; model needs {len(want)} bands "
                          f"({','.join(want)})")


def _celestial(header, path):
    if not any(k in header for k in ("CTYPE1", "CTYPE2")):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = _wcs.WCS(header).celestial
        return w if w.has_celestial and w.naxis == 2 else None
    except Exception as exc:  # a broken WCS is no reason to drop the cutout
        log.debug("%s: unusable WCS (%s)", path, exc)
        return None


def load_cutout(
    path,
    bands: Sequence[str] = DEFAULT_BANDS,
    size: int | None = DEFAULT_SIZE,
    id: str | None = None,
) -> Cutout:
    """Load one cutout in any supported layout.

    Parameters
    ----------
    path : str, Path, or mapping of band -> path
        A FITS file (cube, or one HDU per band), or per-band files ``{"g": …, "r": …}``.
    bands : sequence of str
        Bands the model needs, in the model's order (``Scorer.bands``).
    size : int or None
        Centre-crop to ``size x size`` pixels; ``None`` keeps the full image.
    id : str, optional
        Object id; defaults to the file name without its FITS suffix.

    Returns
    -------
    Cutout

    Raises
    ------
    CutoutError
        A subclass naming the file and the problem: :class:`NotFITSError`,
        :class:`TruncatedFITSError`, :class:`NoImageError`, :class:`BandError`,
        :class:`CutoutShapeError`, :class:`BadPixelsError`.
    """
    want = [normalize_band(b) for b in bands]
    if isinstance(path, Mapping):
        shown = _group_display({normalize_band(k): str(v) for k, v in path.items()})
        planes, header = [], None
        per_band = {normalize_band(k): str(v) for k, v in path.items()}
        missing = [b for b in want if b not in per_band]
        if missing:
            raise BandError(shown, f"no file for band(s) {','.join(missing)}")
        for b in want:
            p, names, hdr = _planes_from_file(per_band[b])
            if len(p) != 1:
                # a per-band file that holds several images: pick the named band if it can
                p = _match_bands(per_band[b], p, names, [b]) if b in names else p
                if len(p) != 1:
                    raise BandError(per_band[b], f"per-band file for {b} holds {len(p)} images")
            planes.append(p[0])
            header = header if header is not None else hdr
        path_str = shown
        default_id = split_fits_suffix(Path(per_band[want[0]]).name)
        default_id = default_id[0] if default_id else Path(per_band[want[0]]).stem
    else:
        path_str = os.fspath(path)
        planes, names, header = _planes_from_file(path_str)
        planes = _match_bands(path_str, planes, names, want)
        name = Path(path_str).name
        default_id = (split_fits_suffix(name) or (Path(name).stem, ""))[0]

    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise CutoutShapeError(path_str, f"bands differ in shape: {sorted(shapes)}")
    ny, nx = planes[0].shape
    if size is not None and (ny < size or nx < size):
        raise CutoutShapeError(path_str, f"image is {ny}x{nx} px, smaller than the model's "
                                         f"{size}x{size}")
    sy, sx = (ny, nx) if size is None else (size, size)
    y0, x0 = (ny - sy) // 2, (nx - sx) // 2
    data = np.stack([p[y0:y0 + sy, x0:x0 + sx] for p in planes]).astype(np.float32)

    bad = ~np.isfinite(data)
    n_bad = int(bad.sum())
    if n_bad:
        for k, b in enumerate(want):
            if bad[k].all():
                raise BadPixelsError(path_str, f"band {b} is entirely NaN/inf")
            if bad[k].any():
                data[k][bad[k]] = np.median(data[k][~bad[k]])
    for k, b in enumerate(want):
        lo, hi = float(data[k].min()), float(data[k].max())
        if lo == hi:
            raise BadPixelsError(path_str, f"band {b} is constant (every pixel {lo:g})")

    ra = dec = float("nan")
    wcs = _celestial(header, path_str) if header is not None else None
    if wcs is not None:
        try:
            c = wcs.all_pix2world([[x0 + (sx - 1) / 2, y0 + (sy - 1) / 2]], 0)[0]
            ra, dec = float(c[0]), float(c[1])
            wcs = wcs.slice((slice(y0, y0 + sy), slice(x0, x0 + sx)))
        except Exception as exc:
            log.debug("%s: WCS evaluation failed (%s)", path_str, exc)
            wcs = None
    return Cutout(data=data, bands=tuple(want), id=id or default_id, path=path_str,
                  ra=ra, dec=dec, n_nonfinite=n_bad, wcs=wcs)


def load_source(source: Source, bands: Sequence[str], size: int | None) -> Cutout:
    """Load a :class:`Source` found by :func:`find_sources`."""
    files = dict(source.files) if isinstance(source.files, tuple) else source.files
    c = load_cutout(files, bands=bands, size=size, id=source.id)
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


def _walk(root: str, seen: set) -> Iterable[str]:
    """Files under ``root``, sorted, following directory links once (no symlink loops)."""
    try:
        st = os.stat(root)
    except OSError as exc:
        log.warning("cannot read %s: %s", root, exc.strerror or exc)
        return
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return
    seen.add(key)
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        log.warning("cannot list %s: %s", root, exc.strerror or exc)
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
            order.append(("file", f, os.path.join(rel_dir, stem)))
            continue
        gid, band = tok
        key = (os.path.dirname(f), gid)
        if key not in groups:
            groups[key] = {}
            order.append(("group", key, os.path.join(rel_dir, gid)))
        groups[key].setdefault(band, f)

    sources = []
    for kind, ref, sid in order:
        sid = Path(sid).as_posix()
        if kind == "file":
            src = Source(id=sid, path=ref, files=ref, label=label_from_path(ref))
        else:
            per_band = groups[ref]
            if len(per_band) == 1:  # a lone obj_g.fits is just a file
                (f,) = per_band.values()
                stem = split_fits_suffix(os.path.basename(f))[0]
                src = Source(id=str(Path(sid).with_name(stem).as_posix()), path=f, files=f,
                             label=label_from_path(f))
            else:
                rank = {b: k for k, b in enumerate(normalize_band(b) for b in bands)}
                items = sorted(per_band.items(), key=lambda kv: (rank.get(kv[0], 99), kv[0]))
                src = Source(id=sid, path=_group_display(dict(items)), files=tuple(items),
                             label=label_from_path(items[0][1]))
        if labels:
            lab = labels.get(src.id, labels.get(src.id.rsplit("/", 1)[-1]))
            if lab is not None:
                src = Source(src.id, src.path, src.files, int(lab))
        sources.append(src)
    return sources
