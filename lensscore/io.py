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

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .config import DEFAULT_BANDS, DEFAULT_SIZE
from .cutout import Cutout, cutout_from_planes
from .errors import CutoutError
from .grid import ReadOptions
from .readers import match_bands, planes_from_file, read_per_band
from .sources import Source, find_sources, group_display, label_from_path, split_fits_suffix
from .survey import normalize_band
from .tilecut import load_tile_cutout

__all__ = [
    "Cutout",
    "Source",
    "load_cutout",
    "cutout_from_planes",
    "load_source",
    "find_sources",
    "normalize_band",
    "label_from_path",
    "split_fits_suffix",
]


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
        path_str = group_display(per_band)
        planes, header, band_source = read_per_band(per_band, want, path_str)
        default_id = split_fits_suffix(Path(per_band[want[0]]).name)
        default_id = default_id[0] if default_id else Path(per_band[want[0]]).stem
    else:
        path_str = os.fspath(path)
        planes, header = planes_from_file(path_str)
        planes, band_source = match_bands(path_str, planes, want)
        name = Path(path_str).name
        default_id = (split_fits_suffix(name) or (Path(name).stem, ""))[0]
    return cutout_from_planes(planes, header, want, size, options=options, wcs=wcs,
                              path=path_str, id=id or default_id, band_source=band_source)


def load_source(source: Source, bands: Sequence[str], size: int | None,
                options: ReadOptions | None = None, wcs: bool = True) -> Cutout:
    """Load a :class:`Source` found by :func:`find_sources` (or placed on survey tiles by
    :func:`lensscore.tiles.catalog_sources`) and put it on the model's grid: the one entry
    from a source to its pixels, for scans, galleries and training alike.

    Parameters
    ----------
    source : Source
        A file, per-band files, or an object on tiles (``position`` set); a source found with
        an ``error`` raises it.
    bands : sequence of str
        The model's bands, in its order.
    size : int or None
        The model's cutout side (``None``: as read, see :func:`load_cutout`).
    options : ReadOptions, optional
        The model's grid and the overrides.
    wcs : bool
        Also return the cutout's celestial WCS.

    Returns
    -------
    Cutout
        With ``path`` the source's (a per-band group's display string).

    Raises
    ------
    CutoutError
        As :func:`load_cutout` and :func:`lensscore.tilecut.load_tile_cutout`.
    """
    if source.error:
        raise CutoutError(source.path, source.error)
    if source.position is not None:
        return load_tile_cutout(source, bands, size, options, wcs=wcs)
    files = dict(source.files) if isinstance(source.files, tuple) else source.files
    c = load_cutout(files, bands=bands, size=size, id=source.id, options=options, wcs=wcs)
    c.path = source.path
    return c
