"""The preprocessing contract: one function, described by JSON stored in each model.

Training, export checks and scoring all call :func:`preprocess` with the spec read from the
model's metadata, so the pixels a network was trained on and the pixels it scores are made by the
same code.

The default spec (``sky-scale/1``):

1. per band, subtract the median pixel (removes any per-band sky offset; a 72x72 cutout is mostly
   sky, so the median is a robust sky level);
2. divide all bands by one common scale, the ``percentile``-th percentile of the absolute
   sky-subtracted pixels over all bands (so colours are kept, and a cutout multiplied by any
   positive constant -- HSC zp 27, CFHT zp 30, KiDS ~1e-11 -- gives the same array);
3. optionally ``asinh`` stretch, then clip to ``[-clip, clip]``.

Medians and percentiles do not depend on pixel order, so every step commutes exactly with 90°
rotations and flips.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["PreprocessSpec", "preprocess", "DEFAULT_SPEC"]

_NAME = "sky-scale"
_VERSION = 1


@dataclass(frozen=True)
class PreprocessSpec:
    """Parameters of :func:`preprocess`; serialised to JSON in the model metadata.

    Parameters
    ----------
    sky : {"median", "none"}
        Per-band sky estimate to subtract.
    percentile : float
        Percentile of the absolute sky-subtracted pixels (all bands pooled) used as the scale.
    stretch : {"linear", "asinh"}
        Applied after scaling.
    clip : float or None
        Clip the result to ``[-clip, clip]``; ``None`` for no clipping.
    """

    sky: str = "median"
    percentile: float = 99.5
    stretch: str = "linear"
    clip: float | None = 20.0

    def __post_init__(self):
        if self.sky not in ("median", "none"):
            raise ValueError(f"preprocess: unknown sky {self.sky!r} (median|none)")
        if self.stretch not in ("linear", "asinh"):
            raise ValueError(f"preprocess: unknown stretch {self.stretch!r} (linear|asinh)")
        if not 0 < float(self.percentile) <= 100:
            raise ValueError(f"preprocess: percentile must be in (0, 100], got {self.percentile}")
        if self.clip is not None and not float(self.clip) > 0:
            raise ValueError(f"preprocess: clip must be positive or null, got {self.clip}")

    def to_json(self) -> str:
        """Return the JSON string stored as ``lensscore.preprocess`` in a model."""
        return json.dumps({"name": _NAME, "version": _VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | dict) -> PreprocessSpec:
        """Parse a spec written by :meth:`to_json`.

        Raises
        ------
        ValueError
            If the text is not JSON, names another preprocessing, or has unknown fields.
        """
        try:
            d = dict(json.loads(text)) if isinstance(text, str) else dict(text)
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise ValueError(f"preprocess spec is not a JSON object: {exc}") from None
        name, version = d.pop("name", _NAME), d.pop("version", _VERSION)
        if name != _NAME or int(version) > _VERSION:
            raise ValueError(
                f"preprocess spec {name!r} v{version} is not known to this lensscore "
                f"(knows {_NAME!r} v{_VERSION}); upgrade lensscore"
            )
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"preprocess spec has unknown fields: {sorted(unknown)}")
        return cls(**d)


DEFAULT_SPEC = PreprocessSpec()


def preprocess(images: np.ndarray, spec: PreprocessSpec = DEFAULT_SPEC) -> np.ndarray:
    """Normalise cutouts for the network.

    Parameters
    ----------
    images : ndarray, shape ``(bands, y, x)`` or ``(N, bands, y, x)``
        Finite pixel values in any flux unit (FITS order).
    spec : PreprocessSpec
        Usually ``Scorer.spec``, read from the model.

    Returns
    -------
    ndarray of float32, same shape
        Each cutout is processed independently of the others in the batch.

    Raises
    ------
    ValueError
        If the shape is wrong, or a cutout has no signal at all (every pixel equal to the
        sky), which no scale can normalise.
    """
    x = np.asarray(images, dtype=np.float32)
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"preprocess expects (bands, y, x) or (N, bands, y, x), got {x.shape}")
    # float64 statistics: exact for any float32 input and cheap on 72x72 cutouts
    finite = bool(np.isfinite(x).all())
    if spec.sky == "median":
        # order statistics of the float32 pixels are those of their float64 copies: the
        # partition runs on half the bytes, the mean of the middle two in float64 as numpy's
        med = _median_last(x.reshape(*x.shape[:2], -1))[..., None, None] if finite else \
            np.median(x.astype(np.float64), axis=(2, 3), keepdims=True)
        x = x.astype(np.float64) - med
    else:
        x = x.astype(np.float64)
    a = np.abs(x).reshape(len(x), -1)
    scale = _percentile_last(a, spec.percentile) if finite else \
        np.percentile(a, spec.percentile, axis=1)
    if np.any(~(scale > 0)):
        bad = np.flatnonzero(~(scale > 0)).tolist()
        nan = [j for j in bad if not np.isfinite(x[j]).all()]
        if nan:  # NaN scale: the pixels, not the signal, are the problem
            raise ValueError(f"cutout(s) {nan} hold NaN or inf pixels: replace them first "
                             "(load_cutout does, and counts them)")
        raise ValueError(f"cutout(s) {bad} have no signal: every pixel equals the sky level")
    x = x / scale[:, None, None, None]
    if spec.stretch == "asinh":
        x = np.arcsinh(x)
    if spec.clip is not None:
        np.clip(x, -spec.clip, spec.clip, out=x)
    x = x.astype(np.float32)
    return x[0] if single else x


# np.median and np.percentile (method "linear") over the last axis, bit for bit (tested), by
# one np.partition each: numpy's general machinery cost most of a cutout's preprocessing.
# Each partition takes ONE kth: numpy's partition with a sequence of kth is several times slower
# than with one (bench/RESULTS.md); the neighbouring order statistic is then the max of
# the part below kth or the min of the part above it, which are the same values.
def _median_last(a: np.ndarray) -> np.ndarray:
    """np.median of ``a`` (float32 or float64) as numpy computes it on ``a`` in float64."""
    n = a.shape[-1]
    h = n // 2
    p = np.partition(a, h, axis=-1)
    if n % 2:
        return p[..., h].astype(np.float64)
    # np.mean of the two middle values; the lower one is the largest of the h below index h
    return (p[..., :h].max(axis=-1).astype(np.float64) + p[..., h].astype(np.float64)) / 2


def _percentile_last(a: np.ndarray, q: float) -> np.ndarray:
    m = a.shape[-1]
    v = (m - 1) * np.true_divide(q, 100)  # numpy's virtual index for "linear"
    if v >= m - 1:
        return np.max(a, axis=-1)
    lo_i = int(np.floor(v))
    g = float(v - lo_i)
    p = np.partition(a, lo_i, axis=-1)
    # the next order statistic is the smallest of those above index lo_i
    lo, hi = p[..., lo_i], p[..., lo_i + 1:].min(axis=-1)
    d = hi - lo
    return hi - d * (1 - g) if g >= 0.5 else lo + d * g  # numpy's _lerp
