"""Survey-scale input: an object catalog (RA/Dec) over coadd image tiles.

Survey pipelines hold coadd tiles (HSC patches, Rubin ``deepCoadd``, Legacy Survey bricks, PS1
skycells) and an object catalog, not a file per object. For each object and band this module
finds the tile that holds it farthest from an edge (from the tiles' WCS, read once from their
headers) and makes it a :class:`~lensscore.sources.Source`; a scan's loaders cut it out
(:mod:`lensscore.tilecut`). Objects are ordered tile by tile, so each loader keeps only the few
tiles it is cutting from open (:data:`lensscore.tilecut.OPEN_TILES`), whatever the catalog's
size.
"""

from __future__ import annotations

import glob
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .errors import LensscoreError
from .grid import ReadOptions
from .readers import celestial
from .sources import Source, band_token, group_display, split_fits_suffix
from .survey import band_from_header, hdu_kind, normalize_band, pixel_scale_from_header
from .tilecut import Tile, close_tiles, cut_size, load_tile_cutout
from .trained import placed, unit_vectors

__all__ = ["Tile", "find_tiles", "read_objects", "catalog_sources", "load_tile_cutout",
           "close_tiles", "ID_COLUMNS"]

log = logging.getLogger(__name__)

#: ``--id-column`` default: the first of these the catalog has
ID_COLUMNS = ("objectId", "object_id", "id", "ID", "name")
_RA = ("ra", "RA", "coord_ra", "ra_deg", "RAJ2000", "ALPHA_J2000")
_DEC = ("dec", "DEC", "Dec", "coord_dec", "dec_deg", "DEJ2000", "DELTA_J2000")


def _tile_from_file(path: str, band: str | None, bands: set[str]) -> Tile | None:
    """The science image of a tile file, from its headers only (no pixels read)."""
    from astropy.io import fits

    with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
        primary = hdul[0].header
        for k, hdu in enumerate(hdul):
            if not hdu.is_image or hdu_kind(hdu.header) != "image":
                continue
            shape = tuple(int(n) for n in (hdu.shape or ()))
            if len(shape) != 2 or 0 in shape:
                continue
            # placing objects needs two projections: a plain TAN's in microseconds
            # (lensscore.tanwcs), astropy's otherwise (cutting builds astropy's either way)
            wcs = celestial(hdu.header, path, fast=True)
            if wcs is None:
                raise LensscoreError(f"{path}: tile has no celestial WCS; objects cannot be "
                                     "placed on it")
            b = band or band_from_header(hdu.header) or band_from_header(primary)
            if b is None:
                tok = band_token((split_fits_suffix(Path(path).name) or (Path(path).stem,))[0],
                                  bands)
                b = tok[1] if tok else None
            if b is None:
                raise LensscoreError(f"{path}: cannot tell the tile's band (no FILTER/BAND "
                                     "keyword, none in the file name); use --images "
                                     "'tiles/*_{band}.fits'")
            return Tile(path, k, normalize_band(b), shape,
                        pixel_scale_from_header(hdu.header, wcs), wcs)
    return None


def find_tiles(images, bands: Sequence[str]) -> dict[str, list[Tile]]:
    """Tiles per band.

    Parameters
    ----------
    images : str, Path or sequence
        A pattern with ``{band}`` (``tiles/*_{band}.fits``: one glob per band, the band known
        from the name), a directory (every FITS file under it; the band from the header or the
        file name), a glob, or a list of files.
    bands : sequence of str
        The model's bands; each needs at least one tile.

    Raises
    ------
    LensscoreError
        No tiles for a band, a tile without a celestial WCS or without a band.
    """
    want = [normalize_band(b) for b in bands]
    found: list[tuple[str, str | None]] = []
    items = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    for item in items:
        item = os.fspath(item)
        if "{band}" in item:
            for b in want:
                found += [(f, b) for f in sorted(glob.glob(item.replace("{band}", b)))]
        elif os.path.isdir(item):
            for root, _, names in sorted(os.walk(item)):
                found += [(os.path.join(root, n), None) for n in sorted(names)
                          if split_fits_suffix(n)]
        elif glob.has_magic(item):
            found += [(f, None) for f in sorted(glob.glob(item))]
        elif os.path.exists(item):
            found.append((item, None))
        else:
            raise LensscoreError(f"--images {item}: no such file or directory")
    tiles: dict[str, list[Tile]] = {b: [] for b in want}
    band_set = set(want)
    for path, b in found:
        try:
            t = _tile_from_file(path, b, band_set)
        except LensscoreError:
            raise
        except Exception as exc:  # astropy raises many types on unreadable files
            raise LensscoreError(f"{path}: cannot read the tile ({exc})") from None
        if t is not None and t.band in tiles:
            tiles[t.band].append(t)
    empty = [b for b, ts in tiles.items() if not ts]
    if empty:
        raise LensscoreError(f"no tiles for band(s) {','.join(empty)} in {images} "
                             f"({len(found)} files looked at)")
    return tiles


def read_objects(path, id_column: str | None = None, keep_columns=None):
    """The object catalog: an astropy Table, and the names of its id, RA and Dec columns and
    of the columns to keep.

    Raises
    ------
    LensscoreError
        Unreadable, no id/RA/Dec column, repeated ids, RA/Dec that are not numbers.
    """
    from .catalog import read_table

    p = Path(path)
    try:
        t = read_table(p)
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise LensscoreError(f"{p}: cannot read the object catalog ({first[:160]})") from None
    cols = list(t.colnames)
    idc = id_column or next((c for c in ID_COLUMNS if c in cols), None)
    if id_column is not None and id_column not in cols:
        raise LensscoreError(f"--id-column {id_column}: not in {p} (has {', '.join(cols)})")
    if idc is None:
        raise LensscoreError(f"{p}: no id column ({' / '.join(ID_COLUMNS)}); has "
                             f"{', '.join(cols)}; give --id-column")
    ra = next((c for c in _RA if c in cols), None)
    dec = next((c for c in _DEC if c in cols), None)
    if ra is None or dec is None:
        raise LensscoreError(f"{p}: needs RA and Dec columns in degrees (ra, dec); has "
                             f"{', '.join(cols)}")
    ids = [str(v) for v in t[idc]]
    if len(set(ids)) != len(ids):
        seen, dup = set(), []
        for i in ids:
            if i in seen:
                dup.append(i)
            seen.add(i)
        raise LensscoreError(f"{p}: ids repeat in column {idc} ({', '.join(dup[:5])}); ids "
                             "key the catalog, resume and shards")
    if keep_columns is None:
        keep = [c for c in cols if c not in (idc, ra, dec)]
    else:
        keep = [c for c in keep_columns if c]
        unknown = [c for c in keep if c not in cols]
        if unknown:
            raise LensscoreError(f"--keep-columns {','.join(unknown)}: not in {p} (has "
                                 f"{', '.join(cols)})")
    return t, idc, ra, dec, keep


def _kept_dtype(col) -> str:
    kind = np.asarray(col).dtype.kind
    return {"f": "float64", "i": "int64", "u": "int64", "b": "bool"}.get(kind, "str")


def _plain(v):
    if np.ma.is_masked(v):
        return None
    return v.item() if hasattr(v, "item") else v


def catalog_sources(catalog, images, options: ReadOptions, *, id_column=None,
                    keep_columns=None, labels: Mapping[str, int] | None = None):
    """One :class:`Source` per catalog row, ordered tile by tile, and the kept columns.

    Each object gets, per band, the tile on which it lies farthest from an edge (with room
    for its cutout); objects off every tile of a band, or too near an edge on all, get a
    Source with ``error`` (an error row).

    Parameters
    ----------
    catalog : path
        The object catalog (:func:`read_objects`).
    images : str, Path or sequence
        The tiles (:func:`find_tiles`).
    options : ReadOptions
        The model's grid: its bands, and the cutout's size on each tile.
    id_column : str, optional
        Default: the first of :data:`ID_COLUMNS` the catalog has.
    keep_columns : sequence of str, optional
        Input columns to carry into the output [default: all but id, RA and Dec].
    labels : mapping id -> 0/1, optional

    Returns
    -------
    sources : list of Source
        Tile by tile.
    kept : list of (column, dtype)
        The kept columns as the output catalog names them (``in_`` before a name the scan
        writes itself).

    Raises
    ------
    LensscoreError
        As :func:`read_objects` and :func:`find_tiles`; RA/Dec that are not numbers.
    """
    t, idc, rac, decc, keep = read_objects(catalog, id_column, keep_columns)
    tiles = find_tiles(images, options.grid.bands)
    try:
        ra = np.asarray(t[rac], np.float64)
        dec = np.asarray(t[decc], np.float64)
    except (TypeError, ValueError):
        raise LensscoreError(f"{catalog}: {rac}/{decc} must be numbers (degrees)") from None
    n = len(t)
    xyz = unit_vectors(ra, dec)
    chosen: dict[str, np.ndarray] = {}
    reasons: list = [None if placed(a, d) else f"RA/Dec ({a:g}, {d:g}) is no place on the sky"
                     for a, d in zip(ra, dec)]
    for b, ts in tiles.items():
        best, best_room, inside = _best_tiles(ts, ra, dec, xyz, options)
        for i in np.flatnonzero(best_room < 0):
            if reasons[i] is None:
                reasons[i] = (f"on the edge of every {b} tile that holds it (the cutout does "
                              "not fit)" if inside[i] else f"off every {b} tile")
        chosen[b] = best
    bands = list(tiles)
    order = sorted(range(n), key=lambda i: (tuple(int(chosen[b][i]) for b in bands), i))
    sources = []
    names = _kept_names(keep)
    ids = [str(v) for v in t[idc]]
    cols = [list(t[c]) for c in keep]  # one conversion a column, not one a cell
    shown_of: dict = {}  # objects on the same tiles share one display string
    for i in order:
        oid = ids[i]
        extra = tuple((name, _plain(col[i])) for col, name in zip(cols, names))
        lab = labels.get(oid) if labels else None
        lab = None if lab is None else int(lab)
        if reasons[i] is not None:
            why = reasons[i]
            sources.append(Source(oid, f"{Path(catalog).name}#{oid}", (), lab, why,
                                  (float(ra[i]), float(dec[i])), extra))
            continue
        key = tuple(int(chosen[b][i]) for b in bands)
        if key not in shown_of:
            files = tuple((b, tiles[b][k].ref) for b, k in zip(bands, key))
            shown_of[key] = (files, _display(files))
        files, shown = shown_of[key]
        sources.append(Source(oid, shown, files, lab, None, (float(ra[i]), float(dec[i])),
                              extra))
    return sources, [(name, _kept_dtype(t[c])) for c, name in zip(keep, names)]


def _best_tiles(ts: Sequence[Tile], ra, dec, xyz, options: ReadOptions):
    """For each object, the index in ``ts`` (one band's tiles) of the tile on which its cutout
    has the most room from an edge, and that room in tile pixels (negative: the cutout does
    not fit on any; -inf: on no tile at all), and whether it lies inside any tile (to tell an
    edge from off the survey in the error). Tiles overlap at their edges, so the farthest
    from an edge is the cutout least likely to be clipped."""
    n = len(ra)
    best = np.full(n, -1)
    best_room = np.full(n, -np.inf)
    inside = np.zeros(n, bool)
    for k, (tile, idx) in enumerate(zip(ts, _near_tiles(ts, xyz))):
        if not len(idx):
            continue
        half = cut_size(tile, options) / 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x, y = tile.wcs.world_to_pixel_values(ra[idx], dec[idx])
        x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
        ny, nx = tile.shape
        ok = np.isfinite(x) & np.isfinite(y)
        room = np.where(ok, np.minimum.reduce([x + 0.5, nx - 0.5 - x, y + 0.5,
                                               ny - 0.5 - y]) - half, -np.inf)
        inside[idx] |= ok & (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
        better = room > best_room[idx]
        best[idx[better]], best_room[idx[better]] = k, room[better]
    return best, best_room, inside


def _kept_names(keep) -> list[str]:
    """The output names of the kept input columns: they are written beside the scan's own
    columns, so a name the scan writes (or any ``score_*``) gets ``in_`` before it."""
    from .catalog import catalog_columns

    ours = {c for c, _ in catalog_columns(True, True)}
    return [f"in_{c}" if c in ours or c.startswith("score_") else c for c in keep]

def _near_tiles(ts: Sequence[Tile], xyz: np.ndarray) -> list[np.ndarray]:
    """For each tile, the indices of the objects (unit vectors ``xyz``) that may lie on it: the
    objects within the tile's circumscribed circle (centre to its farthest corner, plus a
    margin), found with a KD-tree of the tile centres on the unit sphere. Cost ~ objects x the
    few tiles near each, not objects x tiles; the exact test (``world_to_pixel``) is then made
    on these alone."""
    from scipy.spatial import cKDTree

    centres, radii = [], []
    for tile in ts:
        ny, nx = tile.shape
        px = np.array([(nx - 1) / 2, -0.5, nx - 0.5, -0.5, nx - 0.5])
        py = np.array([(ny - 1) / 2, -0.5, -0.5, ny - 0.5, ny - 0.5])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = unit_vectors(*tile.wcs.pixel_to_world_values(px, py))
        if not np.isfinite(v).all():  # a WCS that cannot place its corners: test every object
            centres.append(None)
            radii.append(np.pi)
            continue
        centres.append(v[0])
        radii.append(float(np.arccos(np.clip(v[1:] @ v[0], -1, 1)).max()))
    out = [np.empty(0, int)] * len(ts)
    known = [k for k, c in enumerate(centres) if c is not None]
    for k in set(range(len(ts))) - set(known):
        out[k] = np.arange(len(xyz))
    if not known or not len(xyz):
        return out
    tree = cKDTree(np.stack([centres[k] for k in known]))
    # 1 % and 1e-6 rad more than the largest radius: rounding never drops an object
    ang = min(np.pi, max(radii[k] for k in known) * 1.01 + 1e-6)
    good = np.flatnonzero(np.isfinite(xyz).all(axis=1))  # no position: on no tile
    hits = tree.query_ball_point(xyz[good], 2 * np.sin(ang / 2))
    per_tile: list[list[int]] = [[] for _ in known]
    for i, ks in zip(good.tolist(), hits):
        for j in ks:
            per_tile[j].append(i)
    for j, k in enumerate(known):
        out[k] = np.asarray(per_tile[j], int)
    return out


def _display(files) -> str:
    refs = [r for _, r in files]
    return refs[0] if len(set(refs)) == 1 else group_display(dict(files))
