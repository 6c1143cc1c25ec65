"""Exceptions with one-line messages that name the file and what is wrong with it."""

from __future__ import annotations

__all__ = [
    "LensscoreError",
    "CutoutError",
    "NotFITSError",
    "TruncatedFITSError",
    "NoImageError",
    "BandError",
    "CutoutShapeError",
    "BadPixelsError",
    "ModelError",
]


class LensscoreError(Exception):
    """Base class of every error lensscore raises on purpose."""


class CutoutError(LensscoreError, ValueError):
    """A cutout could not be loaded or preprocessed; ``str(err)`` is one line."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # one line, always
        super().__init__(f"{self.path}: {self.reason}")


class NotFITSError(CutoutError):
    """The file is not FITS at all (text, random bytes, empty)."""


class TruncatedFITSError(CutoutError):
    """The file ends before the data its header announces."""


class NoImageError(CutoutError):
    """No HDU holds image data (empty primary HDU, tables only, header only)."""


class BandError(CutoutError):
    """Wrong number of bands, a band missing, or band names that cannot be matched."""


class CutoutShapeError(CutoutError):
    """Image too small for the model, not 2-D/3-D, or absurdly large."""


class BadPixelsError(CutoutError):
    """A band is entirely NaN/inf, or carries no signal."""


class ModelError(LensscoreError):
    """The ONNX model is missing, unreadable, or not usable by lensscore."""
