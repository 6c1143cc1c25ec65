"""Where the pixels lie on the sky: the dihedral transforms of a pixel grid, the standard
orientation (east left, north up), and the checks that per-band planes share one grid.

The sky has no handedness, but a FITS file does: the same field can be stored mirrored
(``CDELT1 > 0``, ``det CD > 0``) or turned by 90°. A cutout is put into the standard orientation
before scoring, as far as the pixel grid allows (one of the 8 transforms of the square), so that
a model sees the same pixels however the file was written. Bands whose WCS disagree are refused,
never stacked as stored.
"""

from __future__ import annotations

import math

import numpy as np

from .config import TRANSFORMS

__all__ = ["rotate", "transform", "transform_name", "old_from_new", "cd_matrix",
           "standard_transform",
           "axis_scales", "check_band_grids", "BAND_CENTRE_TOLERANCE_PX",
           "BAND_ANGLE_TOLERANCE_DEG", "BAND_SCALE_TOLERANCE"]

#: per-band planes whose centres differ by more than this many pixels on the sky are refused
BAND_CENTRE_TOLERANCE_PX = 0.5
#: ... or whose axes are turned against each other by more than this
BAND_ANGLE_TOLERANCE_DEG = 1.0
#: ... or whose pixel scales differ by more than this fraction
BAND_SCALE_TOLERANCE = 0.01


def rotate(images: np.ndarray, k: int, *, channels_last: bool = False) -> np.ndarray:
    """``images`` rotated by ``k`` x 90° in their ``(y, x)`` axes, the one definition of a
    rotation everywhere (scoring, training augmentation, evaluation; the Keras layer and the
    exported graph are tested against it): ``np.rot90``'s sense, on ``(..., y, x)`` or, with
    ``channels_last``, on ``(..., y, x, bands)``. A view, not a copy."""
    return np.rot90(images, k, axes=(-3, -2) if channels_last else (-2, -1))


def transform(images: np.ndarray, k: int, mirror: bool, *,
              channels_last: bool = False) -> np.ndarray:
    """The dihedral transform ``(k, mirror)``: mirrored in x (``[..., ::-1]``, east and west
    swapped) first if ``mirror``, then rotated by ``k`` x 90° (:func:`rotate`). A view."""
    if mirror:
        images = images[..., ::-1, :] if channels_last else images[..., ::-1]
    return rotate(images, k, channels_last=channels_last)


def transform_name(k: int, mirror: bool) -> str:
    """``""`` for the identity, else e.g. ``"mirror"``, ``"rot90"``, ``"mirror+rot270"``: what
    was done to the stored pixels (the catalog's ``reoriented``)."""
    parts = (["mirror"] if mirror else []) + ([f"rot{90 * (k % 4)}"] if k % 4 else [])
    return "+".join(parts)


def _old_from_new(k: int, mirror: bool) -> np.ndarray:
    """The 2x2 matrix ``B`` with ``d(old pixel) = B d(new pixel)`` (pixel offsets ``(dx, dy)``)
    for :func:`transform` ``(k, mirror)``, found by transforming a coordinate grid."""
    yy, xx = np.mgrid[0:3, 0:3].astype(float)
    tx, ty = transform(xx, k, mirror), transform(yy, k, mirror)
    # new pixel (x', y') holds old pixel (tx[y', x'], ty[y', x']): finite differences
    return np.array([[tx[1, 2] - tx[1, 1], tx[2, 1] - tx[1, 1]],
                     [ty[1, 2] - ty[1, 1], ty[2, 1] - ty[1, 1]]])


_B = {t: _old_from_new(*t) for t in TRANSFORMS}


def old_from_new(k: int, mirror: bool) -> np.ndarray:
    """``B`` with ``d(stored pixel) = B d(transformed pixel)`` for offsets ``(dx, dy)`` under
    :func:`transform` ``(k, mirror)``; a WCS's ``CD`` becomes ``CD @ B``."""
    return _B[(k % 4, bool(mirror))].copy()


def cd_matrix(wcs) -> np.ndarray | None:
    """The celestial WCS's linear part, degrees per pixel, ``[[dRA/dx, dRA/dy], [dDec/dx,
    dDec/dy]]`` (RA scaled by cos Dec: ``pixel_scale_matrix``); None if there is none.
    ``wcs`` may also be that 2x2 matrix itself."""
    if wcs is None:
        return None
    try:
        if isinstance(wcs, np.ndarray):
            cd = wcs
        else:
            cd = wcs.cd if hasattr(wcs, "pixel_scales") else wcs.pixel_scale_matrix
        cd = np.asarray(cd, np.float64)
    except Exception:  # a WCS without a usable linear part says nothing of the orientation
        return None
    if cd.shape != (2, 2) or not np.isfinite(cd).all() or np.linalg.det(cd) == 0:
        return None
    return cd


def standard_transform(cd: np.ndarray | None) -> tuple[int, bool]:
    """The transform ``(k, mirror)`` that puts a grid with linear part ``cd`` closest to the
    standard orientation: east to the left (``det CD < 0``), north as near to up (+y) as a
    quarter turn allows. ``(0, False)`` when there is no WCS or it is already standard; when
    north lies exactly between two axes, the first such transform in :data:`TRANSFORMS` order
    (the stored grid, if its parity is standard)."""
    if cd is None:
        return 0, False
    (a, b), (c, d) = cd
    # the usual case, in closed form (a scan asks once a file): standard parity, and north
    # (pixel direction (-b, a) / det) within 45 degrees of +y -- no other transform does better
    if a * d - b * c < 0 and -a / math.hypot(a, b) > math.sqrt(0.5) + 1e-9:
        return 0, False
    best, best_align = (0, False), -2.0
    for t in TRANSFORMS:
        new = cd @ _B[t]
        if np.linalg.det(new) >= 0:  # east to the right: the sky seen mirrored
            continue
        north = np.linalg.solve(new, [0.0, 1.0])  # pixel direction of north
        align = north[1] / math.hypot(*north)
        if align > best_align + 1e-9:
            best, best_align = t, align
    return best


def axis_scales(cd: np.ndarray) -> tuple[float, float]:
    """Pixel scales (arcsec/px) along the grid's y and x axes: ``(scale_y, scale_x)``."""
    s = np.sqrt((cd ** 2).sum(axis=0)) * 3600.0
    return float(s[1]), float(s[0])


def check_band_grids(bands, wcss, shape: tuple[int, int]) -> str:
    """Whether per-band planes of one ``shape`` lie on one grid: ``""`` if they do (or too little
    is known to tell), else a one-line reason naming the band that differs from the first.

    Compared with the first band's WCS: the sky position of the centre pixel (within
    :data:`BAND_CENTRE_TOLERANCE_PX` pixels), the parity, the orientation (within
    :data:`BAND_ANGLE_TOLERANCE_DEG`) and the pixel scale (within :data:`BAND_SCALE_TOLERANCE`).
    """
    ref = None
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    for band, w in zip(bands, wcss):
        cd = cd_matrix(w)
        if cd is None:
            continue
        centre = _centre(w, cx, cy)
        if ref is None:
            ref = (band, cd, centre)
            continue
        b0, cd0, c0 = ref
        if np.sign(np.linalg.det(cd)) != np.sign(np.linalg.det(cd0)):
            return f"band {band} is stored mirrored against band {b0} (WCS parity differs)"
        s0, s = np.sqrt((cd0 ** 2).sum(0)), np.sqrt((cd ** 2).sum(0))
        if np.abs(s / s0 - 1).max() > BAND_SCALE_TOLERANCE:
            return (f"band {band}'s pixel scale ({3600 * s.mean():.4g}\") differs from band "
                    f"{b0}'s ({3600 * s0.mean():.4g}\") by more than "
                    f"{100 * BAND_SCALE_TOLERANCE:g} %")
        ang = math.degrees(math.atan2(cd[0, 1], cd[1, 1]) - math.atan2(cd0[0, 1], cd0[1, 1]))
        ang = (ang + 180) % 360 - 180
        if abs(ang) > BAND_ANGLE_TOLERANCE_DEG:
            return f"band {band} is turned by {ang:.1f} deg against band {b0} (WCS orientation)"
        if centre is not None and c0 is not None:
            sep = _separation_deg(c0, centre) * 3600
            if sep > BAND_CENTRE_TOLERANCE_PX * 3600 * s0.mean():
                return (f"band {band}'s centre is {sep:.2f}\" from band {b0}'s (more than "
                        f"{BAND_CENTRE_TOLERANCE_PX:g} px): the planes are not one grid")
    return ""


def _centre(w, x: float, y: float):
    try:
        if hasattr(w, "pix2world"):
            return w.pix2world(x, y)
        return tuple(float(v) for v in w.all_pix2world([[x, y]], 0)[0])
    except Exception:
        return None


def _separation_deg(a, b) -> float:
    ra1, d1, ra2, d2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))
