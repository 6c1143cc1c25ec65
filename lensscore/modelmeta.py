"""What a model says about itself: its ``lensscore.*`` ONNX metadata as one typed object.

Export writes it (:meth:`ModelMeta.to_props`), the scorer reads it (:meth:`ModelMeta.from_props`),
``lensscore info`` prints it: the keys, their types and their defaults live here only
(DESIGN.md, *Model contract*). A model without the grid keys is read as HSC: 0.168"/px, zero
point 27.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from .config import DEFAULT_ZEROPOINT, META_PREFIX, PIXEL_SCALE_ARCSEC, SYMMETRIES
from .errors import ModelError
from .preprocess import PreprocessSpec
from .trained import DIGEST_HEX, TRAINED_ON, trained_positions

__all__ = ["ModelMeta", "meta_key", "TRAINING", "TEST_METRICS", "REAL_METRICS", "EXPORT",
           "TRAINED_ON", "SYMMETRISED"]

#: The records a model keeps in :attr:`ModelMeta.extra` (JSON objects), by their key after
#: ``lensscore.``: how it was trained (data name and hash, config; ``finetune`` for real data)
TRAINING = "training"
#: metrics on the simulated test split
TEST_METRICS = "test_metrics"
#: metrics on real cutouts (cross-validated where the model was trained on them)
REAL_METRICS = "real_metrics"
#: how it was exported (opset, weights, parity)
EXPORT = "export"
#: a model averaged over the mirror: how, and its source's measured records
SYMMETRISED = "symmetrised"


def meta_key(name: str) -> str:
    """The ``metadata_props`` key of a record, e.g. ``meta_key(REAL_METRICS)``."""
    return META_PREFIX + name

#: the keys with a field of their own; every other ``lensscore.*`` key is kept in ``extra``
_FIELDS = ("bands", "size", "preprocess", "arch", "rotation_invariant", "invariance",
           "pixel_scale", "zeropoint", "survey", "version")


# Parsers of metadata values for ModelMeta.from_props: each raises ValueError with what is
# wrong, which from_props turns into a ModelError naming the key and the model.
def _positive(text):
    """A positive finite number (a pixel scale)."""
    v = float(text)
    if not v > 0 or v == float("inf"):
        raise ValueError("not a positive number")
    return v


def _finite(text):
    """A finite number (a zero point)."""
    v = float(text)
    if v != v or abs(v) == float("inf"):
        raise ValueError("not finite")
    return v


def _boolean(text):
    """``true`` or ``false``, any case: the metadata is text."""
    low = text.strip().lower()
    if low not in ("true", "false"):
        raise ValueError("not true/false")
    return low == "true"


def _symmetry(text):
    """One of :data:`SYMMETRIES`."""
    if text not in SYMMETRIES:
        raise ValueError(f"not one of {', '.join(SYMMETRIES)}")
    return text


def _extra_records(ours: Mapping[str, str]) -> dict:
    """The ``lensscore.*`` keys that are no field of :class:`ModelMeta` (training, metrics,
    ...), JSON decoded where they are JSON, else kept as text: a model written by a newer
    version still loads."""
    extra = {}
    for k, v in ours.items():
        if k not in _FIELDS:
            try:
                extra[k] = json.loads(v)
            except (json.JSONDecodeError, TypeError):
                extra[k] = v
    return extra

@dataclass(frozen=True)
class ModelMeta:
    """A model's metadata, parsed and checked once.

    ``bands``, ``size`` and ``preprocess`` are ``None`` where the model does not say (the
    scorer then needs them given); the grid keys default to HSC. ``extra`` holds the other
    ``lensscore.*`` keys (training data, test and real-data metrics, export details), JSON
    values decoded; ``other`` the keys of other producers, as text.
    """

    bands: tuple[str, ...] | None = None
    size: int | None = None
    preprocess: PreprocessSpec | None = None
    arch: str = "unknown"
    rotation_invariant: bool = False
    #: the symmetry group the model is exactly invariant to (:data:`config.SYMMETRIES`); a
    #: model without the key is C4 if it says ``rotation_invariant``, else none
    invariance: str = "none"
    pixel_scale: float = PIXEL_SCALE_ARCSEC
    zeropoint: float = DEFAULT_ZEROPOINT
    survey: str = "hsc"
    version: str = ""
    extra: dict = field(default_factory=dict)
    other: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.invariance not in SYMMETRIES:
            raise ModelError(f"invariance must be one of {', '.join(SYMMETRIES)}, "
                             f"got {self.invariance!r}")
        # either field implies the other: rotation_invariant alone means C4
        if self.rotation_invariant and self.invariance == "none":
            object.__setattr__(self, "invariance", "C4")
        object.__setattr__(self, "rotation_invariant", self.invariance != "none")

    @classmethod
    def from_props(cls, props: Mapping[str, str], where: str = "model") -> ModelMeta:
        """Parse ONNX ``metadata_props`` (as onnxruntime's ``custom_metadata_map`` gives them).

        Raises
        ------
        ModelError
            A ``lensscore.*`` value that is not of its type (``where`` names the model).
        """
        ours = {k[len(META_PREFIX):]: v for k, v in props.items() if k.startswith(META_PREFIX)}
        other = {k: v for k, v in props.items() if not k.startswith(META_PREFIX)}

        def get(key, parse, default):
            text = ours.get(key)
            if text is None or text == "":
                return default
            try:
                return parse(text)
            except (TypeError, ValueError) as exc:
                raise ModelError(f"{where}: {META_PREFIX}{key} is not valid: {text[:80]!r} "
                                 f"({exc})") from None

        extra = _extra_records(ours)
        rot = get("rotation_invariant", _boolean, False)
        inv = get("invariance", _symmetry, "C4" if rot else "none")
        if "rotation_invariant" not in ours:
            rot = inv != "none"
        if rot != (inv != "none"):
            raise ModelError(f"{where}: {META_PREFIX}rotation_invariant says {rot} but "
                             f"{META_PREFIX}invariance says {inv}")
        return cls(
            bands=get("bands", lambda t: tuple(b.strip() for b in t.split(",") if b.strip())
                      or None, None),
            size=get("size", int, None),
            preprocess=get("preprocess", PreprocessSpec.from_json, None),
            arch=ours.get("arch") or "unknown",
            rotation_invariant=rot, invariance=inv,
            pixel_scale=get("pixel_scale", _positive, PIXEL_SCALE_ARCSEC),
            zeropoint=get("zeropoint", _finite, DEFAULT_ZEROPOINT),
            survey=ours.get("survey") or "hsc",
            version=ours.get("version") or "",
            extra=extra, other=other)

    def record(self, name: str) -> dict:
        """The JSON record ``name`` (:data:`TRAINING`, :data:`REAL_METRICS`, ...); ``{}`` when
        the model has none."""
        v = self.extra.get(name)
        return v if isinstance(v, dict) else {}

    @property
    def training(self) -> dict:
        """The :data:`TRAINING` record (``{}`` if none)."""
        return self.record(TRAINING)

    @property
    def real_metrics(self) -> dict:
        """The :data:`REAL_METRICS` record (``{}`` if none)."""
        return self.record(REAL_METRICS)

    @property
    def export_info(self) -> dict:
        """The :data:`EXPORT` record (``{}`` if none)."""
        return self.record(EXPORT)

    def to_props(self) -> dict[str, str]:
        """The ``lensscore.*`` entries for ``metadata_props`` (export merges them in)."""
        out = {"arch": self.arch, "rotation_invariant": "true" if self.rotation_invariant
               else "false", "invariance": self.invariance, "pixel_scale": repr(float(self.pixel_scale)),
               "zeropoint": repr(float(self.zeropoint)), "survey": self.survey}
        if self.bands is not None:
            out["bands"] = ",".join(self.bands)
        if self.size is not None:
            out["size"] = str(int(self.size))
        if self.preprocess is not None:
            out["preprocess"] = self.preprocess.to_json()
        if self.version:
            out["version"] = self.version
        for k, v in self.extra.items():
            out[k] = v if isinstance(v, str) else json.dumps(v)
        return {META_PREFIX + k: v for k, v in out.items()}

    def as_dict(self) -> dict:
        """Every field, JSON-ready (``lensscore info``)."""
        out = {"bands": list(self.bands) if self.bands else None, "size": self.size,
               "survey": self.survey, "pixel_scale": self.pixel_scale,
               "zeropoint": self.zeropoint, "arch": self.arch,
               "rotation_invariant": self.rotation_invariant, "invariance": self.invariance,
               "preprocess": json.loads(self.preprocess.to_json()) if self.preprocess else None,
               "version": self.version}
        extra = dict(self.extra)
        rec = extra.get(TRAINED_ON)
        if isinstance(rec, dict) and isinstance(rec.get("digests"), str):
            n = len(rec["digests"]) // DIGEST_HEX
            extra[TRAINED_ON] = {**rec, "digests": f"{n} digests"}
            if isinstance(rec.get("positions"), str):  # ra,dec;ra,dec;...: as a count
                try:
                    where = trained_positions({TRAINED_ON: rec})
                    shown = f"{len(where) if where else 0} sky positions"
                except ValueError as exc:
                    shown = f"malformed: {exc}"
                extra[TRAINED_ON]["positions"] = shown
        return {**out, **extra, **{k: v for k, v in self.other.items() if k not in out}}
