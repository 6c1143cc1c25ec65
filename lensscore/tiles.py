"""Survey-scale input: an object catalog (RA/Dec) over coadd image tiles.

Survey pipelines hold coadd tiles (HSC patches, Rubin ``deepCoadd``, Legacy Survey bricks, PS1
skycells) and an object catalog, not a file per object. For each object and band this module
finds the tile that holds it farthest from an edge (from the tiles' WCS, read once from their
headers), and a scan cuts it out with :class:`astropy.nddata.Cutout2D` from a memory-mapped
section of the tile. From there a cutout takes the same path as a file
(:func:`lensscore.io.cutout_from_planes`: zero points, pixel scale, masks). Objects are ordered
tile by tile, so each loader keeps only the few tiles it is cutting from open
(:data:`OPEN_TILES`), whatever the catalog's size.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CutoutError, LensscoreError
from .geometry import cd_matrix, check_band_grids, old_from_new, standard_transform, transform, \
    transform_name
from .grid import RESAMPLE_TOLERANCE, ReadOptions
from .io import cutout_from_planes
from .readers import _WCS_KEY, _apply_mask, _celestial, _Plane, linear_pixels
from .sources import Source, _band_token, _group_display, split_fits_suffix
from .survey import band_from_header, hdu_kind, normalize_band, pixel_scale_from_header

__all__ = ["Tile", "find_tiles", "read_objects", "catalog_sources", "load_tile_cutout",
           "close_tiles", "ID_COLUMNS"]

log = logging.getLogger(__name__)

#: ``--id-column`` default: the first of these the catalog has
ID_COLUMNS = ("objectId", "object_id", "id", "ID", "name")
_RA = ("ra", "RA", "coord_ra", "ra_deg", "RAJ2000", "ALPHA_J2000")
_DEC = ("dec", "DEC", "Dec", "coord_dec", "dec_deg", "DEJ2000", "DELTA_J2000")
#: tiles a loader keeps open (memory-mapped): a few bands of the current and the next tile
OPEN_TILES = 8
#: extra input pixels cut around an object whose tile is on another pixel scale (the
#: resampling's spline needs a border)
RESAMPLE_BORDER = 4


@dataclass(frozen=True)
class Tile:
    """One band of one coadd tile: the file, its image HDU, shape, scale and WCS."""

    path: str
    hdu: int
    band: str
    shape: tuple[int, int]
    pixel_scale: float | None
    wcs: object

    @property
    def ref(self) -> str:
        return f"{self.path}[{self.hdu}]"


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
            wcs = _celestial(hdu.header, path, fast=True)
            if wcs is None:
                raise LensscoreError(f"{path}: tile has no celestial WCS; objects cannot be "
                                     "placed on it")
            b = band or band_from_header(hdu.header) or band_from_header(primary)
            if b is None:
                tok = _band_token((split_fits_suffix(Path(path).name) or (Path(path).stem,))[0],
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
    if idc is None or idc not in cols:
        raise LensscoreError(f"{p}: no id column ({id_column or ' / '.join(ID_COLUMNS)}); has "
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


def _cut_size(tile: Tile, options: ReadOptions) -> int:
    """Input pixels cut from ``tile``: the model's size on its own grid, more on another."""
    g = options.grid
    scale = tile.pixel_scale or options.pixel_scale or g.pixel_scale
    if abs(scale / g.pixel_scale - 1) <= RESAMPLE_TOLERANCE:
        return g.size
    return math.ceil(g.size * g.pixel_scale / scale) + 2 * RESAMPLE_BORDER


def catalog_sources(catalog, images, options: ReadOptions, *, id_column=None,
                    keep_columns=None, labels: Mapping[str, int] | None = None):
    """One :class:`Source` per catalog row, ordered tile by tile, and the kept columns.

    Each object gets, per band, the tile on which it lies farthest from an edge (with room
    for its cutout); objects off every tile of a band, or too near an edge on all, get a
    Source with ``error`` (an error row). Returns ``(sources, [(column, dtype), ...])``.
    """
    t, idc, rac, decc, keep = read_objects(catalog, id_column, keep_columns)
    tiles = find_tiles(images, options.grid.bands)
    try:
        ra = np.asarray(t[rac], np.float64)
        dec = np.asarray(t[decc], np.float64)
    except (TypeError, ValueError):
        raise LensscoreError(f"{catalog}: {rac}/{decc} must be numbers (degrees)") from None
    n = len(t)
    xyz = _unit_vectors(ra, dec)
    chosen: dict[str, np.ndarray] = {}
    reasons = [None] * n
    for b, ts in tiles.items():
        best = np.full(n, -1)
        best_room = np.full(n, -np.inf)
        inside = np.zeros(n, bool)
        for k, (tile, idx) in enumerate(zip(ts, _near_tiles(ts, xyz))):
            if not len(idx):
                continue
            half = _cut_size(tile, options) / 2
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
        for i in np.flatnonzero(best_room < 0):
            if reasons[i] is None:
                reasons[i] = (f"on the edge of every {b} tile that holds it (the cutout does "
                              "not fit)" if inside[i] else f"off every {b} tile")
        chosen[b] = best
    bands = list(tiles)
    order = sorted(range(n), key=lambda i: (tuple(int(chosen[b][i]) for b in bands), i))
    sources = []
    # kept columns are written beside the scan's own: a clash gets "in_"
    from .catalog import catalog_columns

    ours = {c for c, _ in catalog_columns(True, True)}
    names = [f"in_{c}" if c in ours or c.startswith("score_") else c for c in keep]
    ids = [str(v) for v in t[idc]]
    cols = [list(t[c]) for c in keep]  # one conversion a column, not one a cell
    shown_of: dict = {}  # objects on the same tiles share one display string
    for i in order:
        oid = ids[i]
        extra = tuple((name, _plain(col[i])) for col, name in zip(cols, names))
        lab = labels.get(oid) if labels else None
        lab = None if lab is None else int(lab)
        if reasons[i] is not None or not (np.isfinite(ra[i]) and np.isfinite(dec[i])):
            why = reasons[i] or "RA/Dec not finite"
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


def _unit_vectors(ra, dec) -> np.ndarray:
    """``(n, 3)`` unit vectors of RA/Dec in degrees."""
    r, d = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


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
            v = _unit_vectors(*tile.wcs.pixel_to_world_values(px, py))
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
    return refs[0] if len(set(refs)) == 1 else _group_display(dict(files))


# --------------------------------------------------------------------------- cutting

def _pixels(hdu):
    """What to cut from: the memory-mapped array of a plain image (slicing it reads only the
    cutout's pages), the HDU's ``section`` of a compressed or scaled one (decompressing or
    scaling only the tiles and rows it needs)."""
    from astropy.io import fits

    h = hdu.header
    plain = (not isinstance(hdu, fits.CompImageHDU) and h.get("BSCALE", 1) == 1
             and h.get("BZERO", 0) == 0 and h.get("BLANK") is None)
    return hdu.data if plain else hdu.section


class _TileFile:
    """An open tile file (memory-mapped) and, per image HDU, what every cutout from it needs:
    the WCS, the pixel scale and the headers (parsed once per tile, not once per object)."""

    def __init__(self, path: str):
        from astropy.io import fits

        self.path = path
        self.hdul = fits.open(path, memmap=True, lazy_load_hdus=True)
        self._info: dict = {}
        #: loaders cutting from it now (:meth:`_OpenTiles.acquire`), and whether the cache let
        #: it go (it is closed when the last of them is done)
        self.users = 0
        self.retired = False

    def info(self, k: int):
        if k not in self._info:
            from astropy.io import fits

            hdu = self.hdul[k]
            wcs = _celestial(hdu.header, self.path)
            scale = pixel_scale_from_header(hdu.header, wcs)
            # the tile's keywords (zero point, units, filter) without its WCS: a cutout's
            # scale is the tile's (PIXSCALE), its position the catalog's
            hdr = fits.Header([c for c in hdu.header.cards if not _WCS_KEY.match(c.keyword)])
            if scale:
                hdr["PIXSCALE"] = scale
            self._info[k] = (hdu, _pixels(hdu), wcs, scale, (hdr, self.hdul[0].header),
                             _mask_after(self.hdul, k))
        return self._info[k]

    def close(self):
        self.hdul.close()


class _OpenTiles:
    """The tiles a loader has open, least recently used closed first."""

    def __init__(self, limit: int = OPEN_TILES):
        self.limit = limit
        self._open: OrderedDict = OrderedDict()
        self._lock = threading.Lock()  # Dask workers load with several threads

    def acquire(self, path: str) -> _TileFile:
        """The open tile, counted as in use until :meth:`release`: a tile evicted (or closed
        by :meth:`close`) while another thread cuts from it is closed when that thread is done,
        never under it."""
        with self._lock:
            tf = self._open.pop(path, None)
            if tf is None:
                tf = _TileFile(path)
                while len(self._open) >= self.limit:
                    self._retire(self._open.popitem(last=False)[1])
            self._open[path] = tf
            tf.users += 1
            return tf

    def release(self, tf: _TileFile) -> None:
        with self._lock:
            tf.users -= 1
            if tf.retired and tf.users == 0:
                tf.close()

    @staticmethod
    def _retire(tf: _TileFile) -> None:  # under the lock
        tf.retired = True
        if tf.users == 0:
            tf.close()

    def close(self):
        with self._lock:
            while self._open:
                self._retire(self._open.popitem()[1])


def close_tiles() -> None:
    """Close the tiles this process has open (a scan calls it when it ends)."""
    _TILES.close()


#: per loader (thread or process): a cache, not shared state -- each process has its own
_TILES = _OpenTiles()


def _split_ref(ref: str) -> tuple[str, int]:
    path, _, hdu = ref.rpartition("[")
    return path, int(hdu.rstrip("]"))


def load_tile_cutout(source: Source, bands, size, options: ReadOptions | None, *,
                     wcs: bool = True):
    """Cut ``source`` out of its tiles and put it on the model's grid (a
    :class:`lensscore.io.Cutout`)."""
    from astropy.nddata import Cutout2D
    from astropy.nddata.utils import NoOverlapError, PartialOverlapError

    want = [normalize_band(b) for b in bands]
    files = dict(source.files)
    planes, first, turned, scales, grids = [], None, [], [], []
    for b in want:
        path, k = _split_ref(files[b])
        tf = _TILES.acquire(path)
        try:  # the tile stays open while its pixels are read, whatever other threads do
            try:
                hdu, pixels, twcs, scale, headers, mask = tf.info(k)
                tile = Tile(path, k, b, tuple(hdu.shape), scale, twcs)
                n_in = _cut_size(tile, options) if options is not None else size
                # the position on this tile from its WCS, then Cutout2D by pixel (no WCS copies)
                xy = tuple(float(v) for v in twcs.world_to_pixel_values(*source.position))
                cut = Cutout2D(pixels, xy, (n_in, n_in), mode="strict")
            except (NoOverlapError, PartialOverlapError):
                raise CutoutError(source.path, f"the {b} cutout does not fit on its tile") from None
            except CutoutError:
                raise
            except Exception as exc:  # astropy raises many types on unreadable data
                raise CutoutError(path, f"cannot cut from the tile ({exc})") from None
            data = np.asarray(cut.data)
            plane = _Plane(linear_pixels(data, hdu.header, path), b, headers)
            if mask is not None:
                m = Cutout2D(_pixels(mask), xy, (n_in, n_in), mode="strict")
                _apply_mask(plane, m.data, mask.header, path)
            # each band into the standard orientation by its own tile's WCS: tiles of one
            # object may be stored with other parities or turns, never stacked as stored
            cd = cd_matrix(twcs)
            t = standard_transform(cd)
            plane.data = np.ascontiguousarray(transform(plane.data, *t))
            turned.append(transform_name(*t))
            if scales and scale and scales[0] and abs(scale / scales[0] - 1) > RESAMPLE_TOLERANCE:
                raise CutoutError(source.path, f"band {b}'s tile has {scale:.4g}\"/px, band "
                                               f"{want[0]}'s {scales[0]:.4g}\"/px: the bands of "
                                               "one object must share a pixel scale")
            scales.append(scale)
            # after the quarter turns, the bands' grids must agree (as per-band files must)
            grids.append(None if cd is None else cd @ old_from_new(*t))
            why = check_band_grids([want[0], b], [grids[0], grids[-1]], (1, 1)) \
                if grids[0] is not None and grids[-1] is not None else ""
            if why:
                raise CutoutError(source.path, why + " (tiles)")
            planes.append(plane)
            first = first or (twcs, cut.slices_original)
        finally:
            _TILES.release(tf)
    c = cutout_from_planes(planes, planes[0].headers[0], want, size, options=options,
                           wcs=False, path=source.path, id=source.id, band_source="tile",
                           check_bands=False)
    c.ra, c.dec = source.position  # the catalog's position, not the nearest pixel's
    c.reoriented = turned[0] if len(set(turned)) == 1 else \
        ";".join(f"{b}:{t or 'as stored'}" for b, t in zip(want, turned))
    # the cutout's own WCS, if asked (none for resampled or reoriented pixels)
    if wcs and not c.resampled and not c.reoriented and first is not None:
        twcs, (sy, sx) = first
        off = (sy.stop - sy.start - c.data.shape[-1]) // 2
        c.wcs = twcs.slice((slice(sy.start + off, sy.start + off + c.data.shape[-2]),
                            slice(sx.start + off, sx.start + off + c.data.shape[-1])))
    return c


def _mask_after(hdul, k: int):
    """The MASK HDU that follows image HDU ``k`` in a survey MEF (None if there is none)."""
    if k + 1 < len(hdul) and hdul[k + 1].is_image and hdu_kind(hdul[k + 1].header) == "mask":
        return hdul[k + 1]
    return None
