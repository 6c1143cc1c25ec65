"""Cutting one object out of survey coadd tiles: the reading half of catalog mode.

An object of an object catalog (:func:`lensscore.tiles.catalog_sources` placed it) is cut, per
band, from the tile that holds it with :class:`astropy.nddata.Cutout2D`, from a memory-mapped
section of the tile, and put into the standard orientation by that tile's WCS. From there it
takes the same path as a file (:func:`lensscore.cutout.cutout_from_planes`: zero points, pixel
scale, masks). Each loader keeps only the few tiles it is cutting from open
(:data:`OPEN_TILES`); objects come tile by tile, so that is enough whatever the catalog's size.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .cutout import Cutout, cutout_from_planes
from .errors import CutoutError
from .geometry import cd_matrix, check_band_grids, old_from_new, standard_transform, transform, \
    transform_name
from .grid import RESAMPLE_TOLERANCE, ReadOptions
from .readers import Plane, apply_mask, celestial, linear_pixels
from .sources import Source
from .survey import hdu_kind, normalize_band, pixel_scale_from_header
from .tanwcs import WCS_KEY

__all__ = ["Tile", "cut_size", "load_tile_cutout", "close_tiles", "OPEN_TILES",
           "RESAMPLE_BORDER"]

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


def cut_size(tile: Tile, options: ReadOptions) -> int:
    """Input pixels cut from ``tile``: the model's size on its own grid, more on another.

    Parameters
    ----------
    tile : Tile
    options : ReadOptions
        The model's grid; ``options.pixel_scale`` stands in for a tile that states no scale.

    Returns
    -------
    int
        The side of the square cut (the model's size, or enough for the resampling plus
        :data:`RESAMPLE_BORDER` on each side).
    """
    g = options.grid
    scale = tile.pixel_scale or options.pixel_scale or g.pixel_scale
    if abs(scale / g.pixel_scale - 1) <= RESAMPLE_TOLERANCE:
        return g.size
    return math.ceil(g.size * g.pixel_scale / scale) + 2 * RESAMPLE_BORDER


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
            wcs = celestial(hdu.header, self.path)
            scale = pixel_scale_from_header(hdu.header, wcs)
            # the tile's keywords (zero point, units, filter) without its WCS: a cutout's
            # scale is the tile's (PIXSCALE), its position the catalog's
            hdr = fits.Header([c for c in hdu.header.cards if not WCS_KEY.match(c.keyword)])
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
                     wcs: bool = True) -> Cutout:
    """Cut ``source`` out of its tiles and put it on the model's grid.

    Parameters
    ----------
    source : Source
        An object placed on tiles (:func:`lensscore.tiles.catalog_sources`): its ``position``
        and, per band, ``(band, "path[hdu]")``.
    bands : sequence of str
        The model's bands, in its order.
    size : int or None
        The model's cutout side.
    options : ReadOptions or None
        The model's grid and the overrides.
    wcs : bool
        Also give the cutout's own WCS (none for resampled or reoriented pixels).

    Returns
    -------
    Cutout
        RA/Dec are the catalog's position; ``band_source`` is ``"tile"``.

    Raises
    ------
    CutoutError
        The cutout does not fit on a tile, a tile cannot be read, or the bands' tiles differ
        in pixel scale or orientation.
    """
    want = [normalize_band(b) for b in bands]
    files = dict(source.files)
    planes, first, turned, scales, grids = [], None, [], [], []
    for b in want:
        path, k = _split_ref(files[b])
        tf = _TILES.acquire(path)
        try:  # the tile stays open while its pixels are read, whatever other threads do
            plane, twcs, slices, scale, cd = _cut_band(tf, k, source, b, path, size, options)
            # each band into the standard orientation by its own tile's WCS: tiles of one
            # object may be stored with other parities or turns, never stacked as stored
            t = standard_transform(cd)
            plane.data = np.ascontiguousarray(transform(plane.data, *t))
            turned.append(transform_name(*t))
            _check_like_first_band(source, want, b, scale, cd, t, scales, grids)
            planes.append(plane)
            first = first or (twcs, slices)
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


def _cut_band(tf, k: int, source: Source, band: str, path: str, size,
              options: ReadOptions | None):
    """One band's plane cut from its open tile ``tf`` (HDU ``k``) about the source's position,
    its pixels linear and its mask applied, as stored. Returns the plane, the tile's WCS, the
    cut's slices in the tile (for the cutout's own WCS), the tile's pixel scale and CD matrix.
    Every failure is a :class:`CutoutError` naming the tile: astropy raises many types."""
    from astropy.nddata import Cutout2D
    from astropy.nddata.utils import NoOverlapError, PartialOverlapError

    try:
        hdu, pixels, twcs, scale, headers, mask = tf.info(k)
        tile = Tile(path, k, band, tuple(hdu.shape), scale, twcs)
        n_in = cut_size(tile, options) if options is not None else size
        # the position on this tile from its WCS, then Cutout2D by pixel (no WCS copies)
        xy = tuple(float(v) for v in twcs.world_to_pixel_values(*source.position))
        cut = Cutout2D(pixels, xy, (n_in, n_in), mode="strict")
    except (NoOverlapError, PartialOverlapError):
        raise CutoutError(source.path, f"the {band} cutout does not fit on its tile") from None
    except CutoutError:
        raise
    except Exception as exc:  # astropy raises many types on unreadable data
        raise CutoutError(path, f"cannot cut from the tile ({exc})") from None
    data = np.asarray(cut.data)
    plane = Plane(linear_pixels(data, hdu.header, path), band, headers)
    if mask is not None:
        m = Cutout2D(_pixels(mask), xy, (n_in, n_in), mode="strict")
        apply_mask(plane, m.data, mask.header, path)
    return plane, twcs, cut.slices_original, scale, cd_matrix(twcs)


def _check_like_first_band(source: Source, want, band: str, scale, cd, t, scales: list,
                           grids: list) -> None:
    """Refuse a band whose tile differs from the first band's in pixel scale, or whose grid
    after its quarter turns ``t`` differs (as per-band files must agree): the bands of one
    object are stacked pixel by pixel. Appends this band's scale and grid to ``scales`` and
    ``grids``, the first band's being their first entries."""
    if scales and scale and scales[0] and abs(scale / scales[0] - 1) > RESAMPLE_TOLERANCE:
        raise CutoutError(source.path, f"band {band}'s tile has {scale:.4g}\"/px, band "
                                       f"{want[0]}'s {scales[0]:.4g}\"/px: the bands of "
                                       "one object must share a pixel scale")
    scales.append(scale)
    grids.append(None if cd is None else cd @ old_from_new(*t))
    why = check_band_grids([want[0], band], [grids[0], grids[-1]], (1, 1)) \
        if grids[0] is not None and grids[-1] is not None else ""
    if why:
        raise CutoutError(source.path, why + " (tiles)")


def _mask_after(hdul, k: int):
    """The MASK HDU that follows image HDU ``k`` in a survey MEF (None if there is none)."""
    if k + 1 < len(hdul) and hdul[k + 1].is_image and hdu_kind(hdul[k + 1].header) == "mask":
        return hdul[k + 1]
    return None
