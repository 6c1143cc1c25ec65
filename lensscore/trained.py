"""What a model was trained on, in a form a scan can check: a digest of each training cutout.

A model fine-tuned on real cutouts scores them far better than it would score new ones; a scan
of those cutouts that printed its accuracy as a test would mislead. Such a model carries, in its
metadata (``lensscore.trained_on``), an 8-byte BLAKE2b digest of each training cutout as the
scanner reads it -- float32 pixels on the model's grid, before preprocessing -- so that a scan
can mark the rows it has seen (``in_training``) and print their metrics apart. The digests name
no file and cannot be turned back into pixels.

A digest matches identical pixels only: the same object read from another file, crop or
resampling has other pixels. So the record also keeps the sky position of each training
cutout's centre that has one, and a scanned cutout centred within ``radius_arcsec`` of one
(:data:`SAME_OBJECT_ARCSEC`: a cutout that close shares over two thirds of a 12" field with the
training cutout) is marked too (:class:`TrainedPositions`). A cutout without a sky position (no
WCS) can be recognised by its pixels only. A position that two different training cutouts share
is left out of the record: a placeholder WCS, one centre for many files, cannot tell them apart.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["DIGEST_HEX", "MAX_RADIUS_ARCSEC", "SAME_OBJECT_ARCSEC", "TRAINED_ON",
           "TrainedPositions", "cutout_digest", "placed", "trained_digests", "trained_on_record",
           "trained_positions", "unit_vectors"]

#: hex characters of one digest (8 bytes)
DIGEST_HEX = 16
#: the record's key in a model's metadata, after ``lensscore.``
TRAINED_ON = "trained_on"
#: a scanned cutout centred this close to a training cutout's centre is taken for the same
#: object: 8 PS1 or 12 HSC pixels, a sixth of the 12" field (the lenses the fine-tuning
#: recentres on their detections move by at most 2")
SAME_OBJECT_ARCSEC = 2.0
#: the largest radius a record may state (a minute of arc is several cutouts' width)
MAX_RADIUS_ARCSEC = 60.0


def cutout_digest(data: np.ndarray) -> str:
    """The digest of one cutout on the model's grid (``Cutout.data``, float32)."""
    a = np.ascontiguousarray(data, dtype=np.float32)
    h = hashlib.blake2b(a.tobytes(), digest_size=DIGEST_HEX // 2)
    h.update(repr(a.shape).encode())
    return h.hexdigest()


def placed(ra, dec) -> bool:
    """Whether (ra, dec) in degrees is a place on the sky: finite numbers, |dec| <= 90."""
    try:
        ra, dec = float(ra), float(dec)
    except (TypeError, ValueError):
        return False
    return math.isfinite(ra) and math.isfinite(dec) and abs(dec) <= 90.0


def unit_vectors(ra, dec) -> np.ndarray:
    """Unit vectors ``(..., 3)`` of RA/Dec in degrees (scalars give one ``(3,)``)."""
    r, d = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


def _key(ra, dec) -> tuple[float, float]:
    return round(float(ra) % 360.0, 6), round(float(dec), 6)


def trained_on_record(digests, data: str, positions: Iterable | None = None,
                      radius_arcsec: float = SAME_OBJECT_ARCSEC, *, kept: Iterable = ()) -> dict:
    """The ``lensscore.trained_on`` metadata value for ``digests`` of the data set ``data``.

    ``positions``: the (ra, dec) in degrees of each cutout's centre, in the order of
    ``digests`` (NaN where unknown). A position that cutouts of different digests share is left
    out (``n_positions_shared`` counts them): a placeholder WCS would mark every cutout there.
    ``kept``: positions of an earlier record, kept as they are (``export.stamp --update``).
    """
    digests = list(digests)
    ds = sorted(set(digests))
    rec = {"data": data, "n": len(ds), "hash": "blake2b-64 of the float32 cutout on the model's "
           "grid as lensscore reads it (lensscore.trained.cutout_digest)", "digests": "".join(ds)}
    positions = list(positions or ())
    if positions and len(positions) != len(digests):
        raise ValueError(f"{len(positions)} positions for {len(digests)} digests")
    owners: dict = {}
    for dg, (ra, dec) in zip(digests, positions):
        if placed(ra, dec):
            owners.setdefault(_key(ra, dec), set()).add(dg)
    pos = {p for p, o in owners.items() if len(o) == 1} | {_key(*p) for p in kept}
    if pos or owners:
        rec.update(n_positions=len(pos),
                   n_positions_shared=sum(len(o) > 1 for o in owners.values()),
                   radius_arcsec=float(radius_arcsec),
                   positions=";".join(f"{ra:.6f},{dec:.6f}" for ra, dec in sorted(pos)))
    return rec


def trained_digests(extra: Mapping) -> frozenset[str]:
    """The digests a model's metadata records (``ModelMeta.extra``); empty if none."""
    rec = extra.get(TRAINED_ON)
    if not isinstance(rec, Mapping) or not isinstance(rec.get("digests"), str):
        return frozenset()
    s = rec["digests"]
    return frozenset(s[i:i + DIGEST_HEX] for i in range(0, len(s) - DIGEST_HEX + 1, DIGEST_HEX))


class TrainedPositions:
    """The centres of a model's training cutouts on the sky, and the radius within which a
    scanned cutout's centre counts as the same object."""

    def __init__(self, ra, dec, radius_arcsec: float):
        self._radec = list(zip(map(float, ra), map(float, dec)))
        self._xyz = unit_vectors(ra, dec).reshape(-1, 3)
        self.radius_arcsec = float(radius_arcsec)
        self._cos = math.cos(math.radians(self.radius_arcsec / 3600.0))

    def __len__(self) -> int:
        return len(self._xyz)

    def radec(self) -> list[tuple[float, float]]:
        """The centres, (ra, dec) in degrees, as recorded."""
        return list(self._radec)

    def near(self, ra, dec) -> bool:
        """Whether (ra, dec) in degrees lies within the radius of a training cutout's centre;
        False for an unknown position (None, NaN)."""
        if not placed(ra, dec) or not len(self._xyz):
            return False
        r, d = math.radians(float(ra)), math.radians(float(dec))  # scalars: 3x unit_vectors' speed
        v = np.array([math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d)])
        return bool((self._xyz @ v >= self._cos).any())


def trained_positions(extra: Mapping) -> TrainedPositions | None:
    """The positions a model's metadata records (``ModelMeta.extra``); None if it records none.

    Raises
    ------
    ValueError
        A malformed record: a position that is no place on the sky, or a radius not in
        (0, :data:`MAX_RADIUS_ARCSEC`].
    """
    rec = extra.get(TRAINED_ON)
    if not isinstance(rec, Mapping) or rec.get("positions") in (None, ""):
        return None
    try:
        pairs = [tuple(map(float, p.split(","))) for p in str(rec["positions"]).split(";") if p]
    except ValueError:
        pairs = [(math.nan,)]
    try:
        radius = float(rec.get("radius_arcsec", SAME_OBJECT_ARCSEC))
    except (TypeError, ValueError):
        radius = math.nan
    bad = next((p for p in pairs if len(p) != 2 or not placed(*p)), None)
    if bad is not None:
        raise ValueError(f"its trained_on record holds a position that is no place on the sky "
                         f"({', '.join(f'{v:g}' for v in bad)})")
    if not 0 < radius <= MAX_RADIUS_ARCSEC:
        raise ValueError(f"its trained_on record's radius_arcsec is "
                         f"{rec.get('radius_arcsec')!r}, not in (0, {MAX_RADIUS_ARCSEC:g}]")
    if not pairs:
        return None
    ra, dec = zip(*pairs)
    return TrainedPositions(ra, dec, radius)
