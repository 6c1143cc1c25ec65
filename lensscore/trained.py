"""What a model was trained on, in a form a scan can check: a digest of each training cutout.

A model fine-tuned on real cutouts scores them far better than it would score new ones; a scan
of those cutouts that printed its accuracy as a test would mislead. Such a model carries, in its
metadata (``lensscore.trained_on``), an 8-byte BLAKE2b digest of each training cutout as the
scanner reads it -- float32 pixels on the model's grid, before preprocessing -- so that a scan
can mark the rows it has seen (``in_training``) and print their metrics apart. The digests name
no file and cannot be turned back into pixels; a cutout read differently (another file, another
crop) is another cutout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np

__all__ = ["DIGEST_HEX", "TRAINED_ON", "cutout_digest", "trained_digests", "trained_on_record"]

#: hex characters of one digest (8 bytes)
DIGEST_HEX = 16
#: the record's key in a model's metadata, after ``lensscore.``
TRAINED_ON = "trained_on"


def cutout_digest(data: np.ndarray) -> str:
    """The digest of one cutout on the model's grid (``Cutout.data``, float32)."""
    a = np.ascontiguousarray(data, dtype=np.float32)
    h = hashlib.blake2b(a.tobytes(), digest_size=DIGEST_HEX // 2)
    h.update(repr(a.shape).encode())
    return h.hexdigest()


def trained_on_record(digests, data: str) -> dict:
    """The ``lensscore.trained_on`` metadata value for ``digests`` of the data set ``data``."""
    ds = sorted(set(digests))
    return {"data": data, "n": len(ds), "hash": "blake2b-64 of the float32 cutout on the model's "
            "grid as lensscore reads it (lensscore.trained.cutout_digest)", "digests": "".join(ds)}


def trained_digests(extra: Mapping) -> frozenset[str]:
    """The digests a model's metadata records (``ModelMeta.extra``); empty if none."""
    rec = extra.get(TRAINED_ON)
    if not isinstance(rec, Mapping) or not isinstance(rec.get("digests"), str):
        return frozenset()
    s = rec["digests"]
    return frozenset(s[i:i + DIGEST_HEX] for i in range(0, len(s) - DIGEST_HEX + 1, DIGEST_HEX))
