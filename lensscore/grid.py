"""The model's grid -- bands, size, pixel scale, zero point -- and putting a cutout on it.

Resampling uses :func:`scipy.ndimage.map_coordinates` with cubic splines about the cutout
centre (the interpolator the independent ``realdata/*/cal`` reference used; reproject would bring
dask and more for the same result on small cutouts). Flux is conserved: values are surface
brightness interpolated, times the pixel-area ratio. When the input pixels are smaller than the
model's, the image is first smoothed by a Gaussian of the width that turns an input pixel into
an output pixel (anti-aliasing), so noise is averaged as a coarser detector would.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .config import DEFAULT_BANDS, DEFAULT_SIZE, DEFAULT_ZEROPOINT, PIXEL_SCALE_ARCSEC

__all__ = ["Grid", "ReadOptions", "resample", "covers", "parse_zeropoints", "RESAMPLE_TOLERANCE",
           "MAX_BAD_FRACTION"]

#: inputs whose pixel scale differs from the model's by more than this are resampled
RESAMPLE_TOLERANCE = 0.01
#: the default largest fraction of bad (NaN, inf, masked) pixels in the model's field: above it
#: a cutout is an error row (its median-filled pixels would be scored as if they were sky)
MAX_BAD_FRACTION = 0.3


@dataclass(frozen=True)
class Grid:
    """What a model expects: bands, cutout side, pixel scale (arcsec/px), common zero point."""

    bands: tuple[str, ...] = DEFAULT_BANDS
    size: int = DEFAULT_SIZE
    pixel_scale: float = PIXEL_SCALE_ARCSEC
    zeropoint: float = DEFAULT_ZEROPOINT
    survey: str = "hsc"


@dataclass(frozen=True)
class ReadOptions:
    """How inputs are read onto a :class:`Grid` (picklable: sent to loader processes).

    Attributes
    ----------
    grid : Grid
    pixel_scale : float or None
        Input pixel scale (arcsec/px) for files whose header states none (``--pixel-scale``).
    zeropoints : tuple of (band, zp)
        Zero points that override the headers' (``--zeropoint g=..,r=..``).
    max_bad_fraction : float
        A cutout with a larger fraction of NaN, inf or masked pixels in the model's field (in
        any band) is an error, not a score (``--max-bad-fraction``; a tile edge).
    """

    grid: Grid = field(default_factory=Grid)
    pixel_scale: float | None = None
    zeropoints: tuple[tuple[str, float], ...] = ()
    max_bad_fraction: float = MAX_BAD_FRACTION
    #: also give each cutout's digest (:mod:`lensscore.trained`): set by a scan whose model
    #: records the cutouts it was trained on
    digests: bool = False

    @property
    def zeropoint_map(self) -> dict[str, float]:
        return dict(self.zeropoints)


def parse_zeropoints(text: str | Mapping | None) -> tuple[tuple[str, float], ...]:
    """``"g=27,r=27.1"`` or a mapping -> ``(("g", 27.0), ("r", 27.1))``.

    Raises
    ------
    ValueError
        On a malformed item.
    """
    from .survey import normalize_band

    if not text:
        return ()
    items = text.items() if isinstance(text, Mapping) else (
        p.split("=", 1) if "=" in p else (p, None) for p in str(text).split(","))
    out = []
    for band, v in items:
        try:
            zp = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"--zeropoint: expected BAND=ZP items like g=27.0, got "
                             f"{band if v is None else f'{band}={v}'!r}") from None
        if not math.isfinite(zp) or not str(band).strip():
            raise ValueError(f"--zeropoint: bad item {band}={v}")
        out.append((normalize_band(band), zp))
    return tuple(out)


def _pair(scale) -> tuple[float, float]:
    """``(scale_y, scale_x)`` from one scale or a pair."""
    if np.ndim(scale) == 0:
        return float(scale), float(scale)
    sy, sx = scale
    return float(sy), float(sx)


def covers(shape: tuple[int, int], scale_in, grid: Grid) -> bool:
    """Whether an input of ``shape`` at ``scale_in`` (one scale, or ``(scale_y, scale_x)``)
    covers the grid's field about its centre."""
    half_out = grid.size * grid.pixel_scale / 2
    return all(n * s / 2 >= half_out - 1e-6 * half_out for n, s in zip(shape, _pair(scale_in)))


def resample(plane: np.ndarray, scale_in, scale_out: float, size: int) -> np.ndarray:
    """``size x size`` pixels of ``scale_out`` about the centre of ``plane`` (pixels ``scale_in``:
    one scale, or ``(scale_y, scale_x)`` for pixels that are not square -- each axis then is
    resampled by its own ratio).

    Cubic-spline interpolation of surface brightness times ``(scale_out / scale_in)**2``
    (flux-conserving). The caller checks coverage (:func:`covers`).

    What :func:`scipy.ndimage.map_coordinates` (``order=3``, ``mode="nearest"``, prefiltered)
    computes on the output grid, after :func:`scipy.ndimage.gaussian_filter` when the input
    pixels are smaller, is separable: every step acts on rows and columns independently. So
    each axis is one ``(size, n)`` matrix, built once per input length (:func:`_axis_operator`)
    and applied as ``Ly @ plane @ Lx.T``: an order of magnitude faster than the 2-D calls
    (bench/RESULTS.md), equal to them to rounding (tested).

    Parameters
    ----------
    plane : ndarray, shape ``(ny, nx)``
        One band's pixels.
    scale_in : float or (float, float)
        Its pixel scale (arcsec/px), or ``(scale_y, scale_x)``.
    scale_out : float
        The model's pixel scale.
    size : int
        The model's cutout side.

    Returns
    -------
    ndarray, float32, shape ``(size, size)``
    """
    img = np.asarray(plane, np.float64)
    if img.ndim != 2:
        raise ValueError(f"resample expects one 2-D plane, got shape {img.shape}")
    sy, sx = _pair(scale_in)
    ry, rx = scale_out / sy, scale_out / sx  # output pixel in input pixels, per axis
    ly = _axis_operator(img.shape[0], ry, size)
    lx = ly if (img.shape[1], rx) == (img.shape[0], ry) else _axis_operator(img.shape[1], rx, size)
    out = ly @ img @ lx.T
    return (out * (ry * rx)).astype(np.float32)


@lru_cache(maxsize=32)
def _axis_operator(n: int, ratio: float, size: int) -> np.ndarray:
    """``(size, n)``: one axis of :func:`resample` as a matrix -- column ``j`` is the 1-D
    smoothing (if ``ratio > 1``) and spline interpolation of the unit vector ``e_j`` at the
    output pixels' centres, with scipy's own 1-D calls."""
    from scipy import ndimage

    cols = np.eye(n)
    if ratio > 1:
        sigma = 0.5 * math.sqrt(ratio * ratio - 1)  # pixel-to-pixel smoothing (anti-aliasing)
        cols = ndimage.gaussian_filter1d(cols, sigma, axis=0, mode="nearest")
    at = (n - 1) / 2 + (np.arange(size) - (size - 1) / 2) * ratio
    op = np.stack([ndimage.map_coordinates(cols[:, j], [at], order=3, mode="nearest",
                                           prefilter=True) for j in range(n)], axis=1)
    op.setflags(write=False)  # shared by every call with this geometry
    return op
