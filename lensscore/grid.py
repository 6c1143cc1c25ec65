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

import numpy as np

from .config import DEFAULT_BANDS, DEFAULT_SIZE, DEFAULT_ZEROPOINT, PIXEL_SCALE_ARCSEC

__all__ = ["Grid", "ReadOptions", "resample", "covers", "parse_zeropoints", "RESAMPLE_TOLERANCE"]

#: inputs whose pixel scale differs from the model's by more than this are resampled
RESAMPLE_TOLERANCE = 0.01


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
    """

    grid: Grid = field(default_factory=Grid)
    pixel_scale: float | None = None
    zeropoints: tuple[tuple[str, float], ...] = ()

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
                             f"{band}={v}") from None
        if not math.isfinite(zp) or not str(band).strip():
            raise ValueError(f"--zeropoint: bad item {band}={v}")
        out.append((normalize_band(band), zp))
    return tuple(out)


def covers(shape: tuple[int, int], scale_in: float, grid: Grid) -> bool:
    """Whether an input of ``shape`` at ``scale_in`` covers the grid's field about its centre."""
    half_out = grid.size * grid.pixel_scale / 2
    return all(n * scale_in / 2 >= half_out - 1e-6 * half_out for n in shape)


def resample(plane: np.ndarray, scale_in: float, scale_out: float, size: int) -> np.ndarray:
    """``size x size`` pixels of ``scale_out`` about the centre of ``plane`` (pixels ``scale_in``).

    Cubic-spline interpolation of surface brightness times ``(scale_out / scale_in)**2``
    (flux-conserving). The caller checks coverage (:func:`covers`).
    """
    from scipy import ndimage

    img = np.asarray(plane, np.float64)
    ratio = scale_out / scale_in  # output pixel in input pixels
    if ratio > 1:
        sigma = 0.5 * math.sqrt(ratio * ratio - 1)  # pixel-to-pixel smoothing (anti-aliasing)
        img = ndimage.gaussian_filter(img, sigma, mode="nearest")
    cy, cx = (img.shape[0] - 1) / 2, (img.shape[1] - 1) / 2
    off = (np.arange(size) - (size - 1) / 2) * ratio
    yy, xx = np.meshgrid(cy + off, cx + off, indexing="ij")
    out = ndimage.map_coordinates(img, [yy, xx], order=3, mode="nearest", prefilter=True)
    return (out * ratio * ratio).astype(np.float32)
