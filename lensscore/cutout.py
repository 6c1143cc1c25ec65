"""A cutout on the model's grid: science planes (one per band) become the pixels a model scores.

:func:`cutout_from_planes` is the one path from pixels to a :class:`Cutout`, for files
(:func:`lensscore.io.load_cutout`) and for objects cut from survey tiles
(:func:`lensscore.tilecut.load_tile_cutout`): bad pixels filled and counted, each band scaled
to the model's zero point, the pixels put into the standard orientation, resampled onto the
model's pixel scale or centre-cropped, and the centre's RA/Dec from the WCS.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import DEFAULT_SIZE
from .errors import BadPixelsError, CutoutError, CutoutShapeError
from .geometry import BAND_SCALE_TOLERANCE, axis_scales, cd_matrix, check_band_grids, \
    old_from_new, standard_transform, transform, transform_name
from .grid import RESAMPLE_TOLERANCE, Grid, ReadOptions, covers, resample
from .readers import Plane, celestial
from .survey import pixel_scale_from_header, zeropoint_from_header
from .tanwcs import SimpleTan

__all__ = ["Cutout", "cutout_from_planes"]

log = logging.getLogger(__name__)


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
    bad_fraction : float
        The fraction of the model's field whose pixels were bad in any band (above
        ``ReadOptions.max_bad_fraction`` the cutout is refused).
    wcs : astropy.wcs.WCS or None
        Celestial WCS of the cropped cutout (None when resampled or reoriented).
    pixscale_in : float
        Input pixel scale (arcsec/px, the mean of both axes); NaN when neither header nor
        option states it.
    resampled : bool
        Whether the input was resampled onto the model's pixel scale (each axis by its own
        scale where the pixels are not square).
    reoriented : str
        ``""`` if the pixels are as stored; else what put them into the standard orientation
        (east left, north up as far as the grid allows: :func:`lensscore.geometry.
        standard_transform`), e.g. ``"mirror"`` for a file stored with the other parity.
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
    bad_fraction: float = 0.0
    wcs: object = field(default=None, repr=False)
    pixscale_in: float = float("nan")
    resampled: bool = False
    reoriented: str = ""
    zp_source: str = "assumed"
    band_source: str = "header"

def _zero_points(path, planes: list[Plane], want, options: ReadOptions):
    """Per-band factors onto the grid's zero point, and where the zero points came from."""
    given = options.zeropoint_map
    read: dict = {}  # a cube's planes share one header: read its zero point once

    def from_header(p):
        key = tuple(map(id, p.headers))
        if key not in read:
            read[key] = zeropoint_from_header(*p.headers)
        return read[key]

    zps = [given[b] if b in given else from_header(p) for b, p in zip(want, planes)]
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


def cutout_from_planes(planes: list[Plane], header, want: Sequence[str], size: int | None, *,
                       options: ReadOptions | None, wcs: bool, path: str, id: str,
                       band_source: str, check_bands: bool = True) -> Cutout:
    """Science planes (one per band, in ``want`` order; pixels, bad ones NaN, and headers) onto
    the model's grid: bad pixels filled, zero points scaled, resampled or cropped about the
    centre, in the standard orientation. The one path from pixels to a cutout, for files and for
    tiles (:mod:`lensscore.tiles`, which cuts each band by its own WCS and so passes
    ``check_bands=False``: its planes' headers are the whole tiles')."""
    path_str = path
    options = options or ReadOptions(Grid(bands=tuple(want), size=size or DEFAULT_SIZE))
    data, n_bad, bad_any = _stack_filled(planes, want, path_str)

    want_wcs = wcs
    # the scan needs no WCS object, only the scale and the centre: a plain TAN is computed
    wcs = celestial(header, path_str, fast=not want_wcs) if header is not None else None
    if check_bands:
        header, wcs = _check_band_grids(planes, want, path_str, data.shape[1:], header, wcs,
                                        fast=not want_wcs)
    scale_in = pixel_scale_from_header(header, wcs) if header is not None else None
    scale_in = scale_in or options.pixel_scale
    # the standard orientation (east left, north up): the same sky, however it was stored
    cd = cd_matrix(wcs)
    k, mirror = standard_transform(cd)
    stored_shape = data.shape[1:]
    to_old = np.eye(2)
    if k or mirror:
        data = np.ascontiguousarray(transform(data, k, mirror))
        bad_any = None if bad_any is None else transform(bad_any, k, mirror)
        to_old = old_from_new(k, mirror)
        cd = cd @ to_old
    scales = axis_scales(cd) if cd is not None else None  # (y, x): per axis if not square
    bad_fraction = 0.0
    if bad_any is not None and size is not None:
        bad_fraction = _check_bad_fraction(bad_any, scales, scale_in, options, size, path_str)
    zp_source, resampled = "assumed", False
    ny, nx = data.shape[1:]
    y0 = x0 = 0
    if size is not None:
        factors, zp_source = _zero_points(path_str, planes, want, options)
        if factors is not None:
            data *= np.asarray(factors, np.float32)[:, None, None]
        data, resampled, y0, x0 = _onto_grid(data, scale_in, scales, options.grid, size, path_str)
    _check_not_constant(data, want, path_str)

    ra = dec = float("nan")
    if wcs is not None:
        window = (y0, x0) + (data.shape[1:] if not resampled else (ny, nx))
        ra, dec, wcs = _centre_sky(wcs, window, (ny, nx), (k, mirror, to_old, stored_shape),
                                   want_wcs=want_wcs and not resampled, path=path_str)
    return Cutout(data=data, bands=tuple(want), id=id, path=path_str,
                  ra=ra, dec=dec, n_nonfinite=n_bad, bad_fraction=bad_fraction, wcs=wcs,
                  pixscale_in=float(scale_in) if scale_in else float("nan"),
                  resampled=resampled, reoriented=transform_name(k, mirror),
                  zp_source=zp_source, band_source=band_source)


def _centre_sky(wcs, window, shape, orient, *, want_wcs: bool, path: str):
    """RA/Dec of the centre of the model's field, and the WCS sliced to it. The stored WCS
    describes the stored pixels, so a centre found in reoriented pixels is mapped back first
    (``orient``: quarter turns, mirror, the new-to-old matrix and the stored shape); a
    reoriented or resampled cutout gets no WCS (``want_wcs`` False), as none describes it
    exactly. ``window``: ``(y0, x0, sy, sx)`` of the field in the (reoriented) input of
    ``shape``. A WCS that fails to evaluate gives NaN rather than losing the cutout."""
    (y0, x0, sy, sx), (ny, nx) = window, shape
    k, mirror, to_old, (sy0, sx0) = orient
    ra = dec = float("nan")
    try:
        cx, cy = x0 + (sx - 1) / 2, y0 + (sy - 1) / 2
        if k or mirror:  # the centre in the stored pixels, for the stored WCS
            d = to_old @ np.array([cx - (nx - 1) / 2, cy - (ny - 1) / 2])
            cx, cy = (sx0 - 1) / 2 + d[0], (sy0 - 1) / 2 + d[1]
        if isinstance(wcs, SimpleTan):
            ra, dec = wcs.pix2world(cx, cy)
        else:
            ra, dec = (float(v) for v in wcs.all_pix2world([[cx, cy]], 0)[0])
        wcs = None if not want_wcs or k or mirror else \
            wcs.slice((slice(y0, y0 + sy), slice(x0, x0 + sx)))
    except Exception as exc:
        log.debug("%s: WCS evaluation failed (%s)", path, exc)
        wcs = None
    return ra, dec, wcs


def _stack_filled(planes: list[Plane], want, path: str):
    """The planes stacked into one float32 ``(bands, y, x)`` array, each bad (NaN/inf or masked)
    pixel replaced by its band's median: the network never sees a NaN, and the count of what
    was replaced, and where (``bad_any``: bad in any band, None when nothing was), is kept for
    the catalog and for :func:`_check_bad_fraction`. A band with no good pixel is refused."""
    shapes = {p.data.shape for p in planes}
    if len(shapes) != 1:
        raise CutoutShapeError(path, f"bands differ in shape: {sorted(shapes)}")
    data = np.stack([p.data for p in planes]).astype(np.float32)
    bad = ~np.isfinite(data)
    n_bad = int(np.count_nonzero(bad))  # count_nonzero: a bool .sum() adds in int64, slower
    bad_any = bad.any(axis=0) if n_bad else None  # a pixel bad in any band
    for k, b in enumerate(want if n_bad else ()):
        if bad[k].all():
            reason = "masked or NaN/inf" if planes[k].n_masked else "NaN/inf"
            raise BadPixelsError(path, f"band {b} is entirely {reason}")
        if bad[k].any():
            data[k][bad[k]] = np.median(data[k][~bad[k]])
    return data, n_bad, bad_any


def _check_bad_fraction(bad_any, scales, scale_in, options: ReadOptions, size: int,
                        path: str) -> float:
    """The fraction of the model's field that was bad in any band; above
    ``options.max_bad_fraction`` the cutout is refused (a filled field is not a sky to score).
    Measured on the input's own pixels (``scales`` from the WCS, else ``scale_in``)."""
    s_yx = scales if scales is not None else (scale_in or options.grid.pixel_scale,) * 2
    bad_fraction = _field_fraction(bad_any, s_yx, options.grid.pixel_scale, size)
    if bad_fraction > options.max_bad_fraction:
        raise BadPixelsError(path, f"{bad_fraction:.0%} of the model's field is NaN, inf "
                                   f"or masked (more than --max-bad-fraction "
                                   f"{options.max_bad_fraction:g})")
    return bad_fraction


def _onto_grid(data, scale_in, scales, grid: Grid, size: int, path: str):
    """``data`` onto the model's pixel scale and size: resampled about the centre where the
    input's scale differs by more than ``RESAMPLE_TOLERANCE`` (or its pixels are not square),
    else centre-cropped. Returns the pixels, whether they were resampled, and the crop's corner
    ``(y0, x0)`` in the input (0, 0 when resampled) for the centre's sky position."""
    ny, nx = data.shape[1:]
    scale = scale_in or grid.pixel_scale
    if scales is not None and abs(scales[0] / scales[1] - 1) > RESAMPLE_TOLERANCE:
        scale = scales  # pixels not square: x and y each onto the model's scale
    if np.ndim(scale) or abs(scale / grid.pixel_scale - 1) > RESAMPLE_TOLERANCE:
        if not covers((ny, nx), scale, grid):
            sy, sx = (scale, scale) if np.ndim(scale) == 0 else scale
            raise CutoutShapeError(
                path, f"image is {ny}x{nx} px at {_fmt_scale(scale)}\"/px = "
                f"{ny * sy:.1f}x{nx * sx:.1f}\", smaller than the model's field of "
                f"{size * grid.pixel_scale:.1f}\" ({size} px at {grid.pixel_scale:g}\"/px)")
        return np.stack([resample(p, scale, grid.pixel_scale, size) for p in data]), True, 0, 0
    if ny < size or nx < size:
        raise CutoutShapeError(path, f"image is {ny}x{nx} px, smaller than the "
                                     f"model's {size}x{size}")
    y0, x0 = (ny - size) // 2, (nx - size) // 2
    return np.ascontiguousarray(data[:, y0:y0 + size, x0:x0 + size]), False, y0, x0


def _check_not_constant(data, want, path: str) -> None:
    """Refuse a band whose every pixel on the model's field has one value: no preprocessing can
    scale it, and it is an empty or broken plane rather than sky."""
    flat = data.reshape(len(data), -1)
    for b, lo, hi in zip(want, flat.min(axis=1).tolist(), flat.max(axis=1).tolist()):
        if lo == hi:
            raise BadPixelsError(path, f"band {b} is constant (every pixel {lo:g})")


def _field_fraction(bad, scales, scale_out: float, size: int) -> float:
    """The fraction of ``bad`` pixels in the central window that becomes the model's field
    (``size`` pixels of ``scale_out``; input pixels of ``scales`` = (y, x) arcsec)."""
    ny, nx = bad.shape
    hy = min(ny, max(1, round(size * scale_out / scales[0])))
    hx = min(nx, max(1, round(size * scale_out / scales[1])))
    y0, x0 = (ny - hy) // 2, (nx - hx) // 2
    return float(np.count_nonzero(bad[y0:y0 + hy, x0:x0 + hx])) / (hy * hx)


def _fmt_scale(scale) -> str:
    return f"{scale:.4g}" if np.ndim(scale) == 0 else "{:.4g}x{:.4g}".format(*scale)


def _stated_scales_differ(want, heads, wcss) -> str:
    """A band without a celestial WCS whose scale keyword (``PIXSCALE``...) differs from
    another band's scale (WCS or keyword) by more than :data:`BAND_SCALE_TOLERANCE`: a
    one-line reason, else ``""``."""
    known = [(b, s) for b, h, w in zip(want, heads, wcss)
             if (s := pixel_scale_from_header(h, w))]
    for b, s in known[1:]:
        b0, s0 = known[0]
        if abs(s / s0 - 1) > BAND_SCALE_TOLERANCE:
            return (f"band {b}'s pixel scale ({s:.4g}\") differs from band {b0}'s ({s0:.4g}\") "
                    f"by more than {100 * BAND_SCALE_TOLERANCE:g} % (a scale keyword, no WCS)")
    return ""


def _check_band_grids(planes, want, path: str, shape, header, wcs, *, fast: bool):
    """Refuse per-band planes from different headers whose WCS put them on different grids
    (:func:`lensscore.geometry.check_band_grids`): never stacked as stored.

    Returns the cutout's ``(header, wcs)``: the given ones (``wcs`` is ``celestial(header,
    path, fast=fast)``, not read again), unless that header has no celestial WCS and another
    band's has: then the first such band's. A band without one is taken to lie on the grid of
    those with one, whichever band it is (g's header alone once decided, and a mirrored cutout
    whose g file lacked a WCS was stacked as stored).
    """
    heads = [p.headers[0] if p.headers else None for p in planes]
    if len({id(h) for h in heads}) < 2 or any(h is None for h in heads):
        return header, wcs  # one header for all planes (a cube, one MEF's shared WCS): one grid
    wcss = [wcs if fast and h is header else celestial(h, path, fast=True) for h in heads]
    why = check_band_grids(want, wcss, shape)
    if not why and any(w is None for w in wcss):
        why = _stated_scales_differ(want, heads, wcss)
    if why:
        raise CutoutShapeError(path, why + "; align the bands (e.g. reproject) before scoring")
    if wcs is None:
        k = next((k for k, w in enumerate(wcss) if w is not None), None)
        if k is not None:
            header = heads[k]
            wcs = wcss[k] if fast else celestial(header, path)
    return header, wcs
