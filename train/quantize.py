"""int8 storage of weights: one rule wherever weights are stored so.

Used by the device's weight parts (:func:`train.device.pack_weights`, read back by
:func:`train.device.unpack_weights`) and by export's ``--weights int8`` ONNX
(:func:`export.graph.compress_weights`). The rule: a dense (2-D) kernel with at least
:data:`INT8_MIN_SIZE` values is stored as int8 with a symmetric scale per output column (the
last axis); convolution kernels, biases and small kernels stay float32. Compute stays float32:
only the stored weights change, never an activation, so a score does not depend on its batch
neighbours.
"""

from __future__ import annotations

import numpy as np

__all__ = ["INT8_MIN_SIZE", "int8_eligible", "quantize_int8", "dequantize_int8"]

#: the fewest values of a kernel worth storing compressed (smaller ones save next to nothing)
INT8_MIN_SIZE = 4096


def int8_eligible(w: np.ndarray, min_size: int = INT8_MIN_SIZE) -> bool:
    """Whether ``w`` is stored as int8: a dense (2-D) kernel of at least ``min_size`` values."""
    return w.ndim == 2 and w.size >= min_size


def quantize_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(q, scale)``: ``w ~ q * scale``, ``q`` int8 in [-127, 127] of ``w``'s shape, ``scale``
    float32 per last-axis channel (the largest magnitude of the channel over 127; 1 for an
    all-zero channel).

    Parameters
    ----------
    w : numpy.ndarray
        Float weights, at least 1-D; every axis but the last is folded into the rows.

    Returns
    -------
    tuple of numpy.ndarray
        The int8 values and the float32 scales.
    """
    w = np.asarray(w, np.float32)
    flat = w.reshape(-1, w.shape[-1])
    scale = np.abs(flat).max(axis=0) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(flat / scale), -127, 127).astype(np.int8)
    return q.reshape(w.shape), scale


def dequantize_int8(q: np.ndarray, scale: np.ndarray, shape=None) -> np.ndarray:
    """The float32 weights of :func:`quantize_int8`'s ``(q, scale)``, in ``shape`` (default:
    ``q``'s)."""
    scale = np.asarray(scale, np.float32)
    w = np.asarray(q).astype(np.float32).reshape(-1, scale.size) * scale
    return w.reshape(q.shape if shape is None else shape)
