"""ONNX scoring: one onnxruntime session, metadata-driven preprocessing, batch-independent scores."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import numpy as np

from . import _session
from ._session import default_model_path
from ._lazy import LazyModule

from .config import DEFAULT_BATCH_SIZE, LOGIT_OUTPUT, TRANSFORM_NAMES, TRANSFORMS
from .grid import MAX_BAD_FRACTION, Grid, ReadOptions, parse_zeropoints
from .errors import ModelError
from .geometry import rotate, transform
from .modelmeta import ModelMeta
from .preprocess import DEFAULT_SPEC, PreprocessSpec, preprocess

ort = LazyModule("onnxruntime")  # imported on first use (see lensscore.cli.scan)

__all__ = ["Scorer", "default_model_path", "read_model_metadata", "rotate", "rotations", "transform",
           "logit_of", "mean_logit",
           "dihedral", "check_tta", "TTA_MODES", "TRANSFORMS", "TRANSFORM_NAMES"]

log = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda", "auto")


def logit_of(scores) -> np.ndarray:
    """``log(p / (1 - p))`` of scores, in float64.

    Parameters
    ----------
    scores : array_like of float
        Probabilities in [0, 1].

    Returns
    -------
    ndarray of float64
        ``+inf`` where a score is 1.0 (a float32 score above logit ~17), ``-inf`` at 0.
    """
    p = np.asarray(scores, np.float64)
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)


def mean_logit(logits, axis: int = -1) -> np.ndarray:
    """The logit of the mean of ``sigmoid(logits)`` along ``axis``, computed without forming
    the probabilities (exact where they round to 1.0): ``logsumexp(log s(l)) -
    logsumexp(log s(-l))``, with ``log s(l) = -softplus(-l)``.

    Parameters
    ----------
    logits : array_like of float
    axis : int

    Returns
    -------
    ndarray of float64
        ``logits`` reduced along ``axis``.
    """
    lg = np.asarray(logits, np.float64)
    return (np.logaddexp.reduce(-np.logaddexp(0.0, -lg), axis=axis)
            - np.logaddexp.reduce(-np.logaddexp(0.0, lg), axis=axis))


def dihedral(images: np.ndarray) -> np.ndarray:
    """The 8 transforms of ``(N, bands, y, x)`` images, in :data:`TRANSFORMS` order: shape
    ``(8, N, bands, y, x)``; index 0 is the image as given."""
    return np.stack([transform(images, k, m) for k, m in TRANSFORMS])


def _nhwc(x: np.ndarray) -> np.ndarray:
    """``(N, bands, y, x)`` as a C-contiguous float32 ``(N, y, x, bands)``, band by band: numpy's
    4-d transposing copy is 4-5x slower (5 ms a batch of 32 in the scan's main thread)."""
    x = np.asarray(x)
    out = np.empty((x.shape[0], x.shape[2], x.shape[3], x.shape[1]), np.float32)
    for b in range(x.shape[1]):
        out[..., b] = x[:, b]
    return out


def rotations(images: np.ndarray) -> np.ndarray:
    """The four 90° rotations of ``(N, bands, y, x)`` images: shape ``(4, N, bands, y, x)``;
    ``k = 0`` is the image as given (:func:`rotate`)."""
    return np.stack([rotate(images, k) for k in range(4)])


TTA_MODES = ("none", "rot4", "d8")


def check_tta(tta: str) -> str:
    """``tta`` if it is one of :data:`TTA_MODES`; ModelError otherwise."""
    if tta not in TTA_MODES:
        raise ModelError(f"--tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")
    return tta


def read_model_metadata(path) -> dict[str, str]:
    """All ``metadata_props`` of an ONNX file (as onnxruntime reads them)."""
    sess = _session.load(_check_path(path), ["CPUExecutionProvider"], 1, trunk_batch=0)
    return dict(sess.get_modelmeta().custom_metadata_map)


def _check_path(path) -> str:
    p = os.fspath(_session.resolve_model(path))
    if os.path.isdir(p):
        raise ModelError(f"{p}: is a directory, not an ONNX file")
    return p


def _providers(device: str) -> list[str]:
    if device not in DEVICES:
        raise ModelError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ModelError(
            "--device cuda: this onnxruntime has no CUDA provider "
            f"(available: {', '.join(available)}); install the [gpu] extra "
            "(onnxruntime-gpu) or use --device cpu/auto"
        )
    return ["CPUExecutionProvider"]


class Scorer:
    """Score cutouts with an ONNX lens finder.

    Parameters
    ----------
    model : str or Path, optional
        ONNX file, or a shipped model's name (``d4``, ``ps1``, ``rot``, ``baseline``); defaults
        to the shipped ``models/d4.onnx`` (:func:`default_model_path`).
    device : {"cpu", "cuda", "auto"}
        ``cuda`` fails loudly if CUDA cannot be used; ``auto`` takes CUDA when it works.
    threads : int, optional
        onnxruntime intra-op threads (default: onnxruntime's choice, all physical cores).
    batch_size : int
        Images per run (a run takes up to half a batch more rather than leave a short tail of
        its own); scores do not depend on it. On the CPU a model is run as its convolutional
        trunk, :data:`~lensscore.config.TRUNK_BATCH_SIZE` images at a time, and its dense head
        on the whole run (:mod:`lensscore._split`; ``$LENSSCORE_TRUNK_BATCH=0`` runs it whole).
    bands, size, preprocess : optional
        Override or supply what the model's metadata says (needed for models without it).

    Attributes
    ----------
    bands : tuple of str
    size : int
    spec : PreprocessSpec
    metadata : dict of str
        Every ``metadata_props`` entry of the model, as text.
    meta : ModelMeta
        The same, parsed and checked (:mod:`lensscore.modelmeta`).
    providers : list of str
        The execution providers the session really uses.

    Raises
    ------
    ModelError
        Missing or corrupt file, unusable input shape, missing metadata, unavailable device.
    """

    def __init__(
        self,
        model=None,
        *,
        device: str = "cpu",
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        bands: Sequence[str] | None = None,
        size: int | None = None,
        preprocess: PreprocessSpec | str | None = None,
    ):
        if int(batch_size) < 1:
            raise ModelError(f"batch size must be >= 1, got {batch_size}")
        if threads is not None and int(threads) < 0:
            raise ModelError(f"threads must be >= 0, got {threads}")
        self.path = _check_path(default_model_path() if model is None else model)
        self.batch_size = int(batch_size)
        self.device = device
        self._sha256: str | None = None
        self._session = _session.load(self.path, _providers(device), threads)
        self.providers = list(self._session.get_providers())
        if device == "cuda" and "CUDAExecutionProvider" not in self.providers:
            raise ModelError(
                f"--device cuda: onnxruntime fell back to {self.providers} (CUDA libraries "
                "missing or no GPU visible); refusing to run a GPU scan on the CPU"
            )
        if device == "auto":
            log.info("execution providers: %s", self.providers)
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self.meta = ModelMeta.from_props(self.metadata, self.path)
        self._configure(bands, size, preprocess)

    def _configure(self, bands, size, spec):
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: expected one input, the model has {len(inputs)}")
        inp = inputs[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ModelError(f"{self.path}: input {inp.name!r} has shape {shape}; expected "
                             "[N, size, size, bands] (NHWC)")
        if inp.type != "tensor(float)":
            raise ModelError(f"{self.path}: input must be float32, is {inp.type}")
        static = [d if isinstance(d, int) else None for d in shape[1:]]

        bands = bands if bands is not None else self.meta.bands
        if bands is None:
            raise ModelError(f"{self.path}: model has no lensscore.bands metadata; "
                             "give the bands (--bands g,r,i)")
        self.bands = tuple(str(b).strip() for b in bands)
        size = size if size is not None else self.meta.size
        if size is None and static[0] is not None and static[0] == static[1]:
            size = static[0]
        if size is None:
            raise ModelError(f"{self.path}: model has no lensscore.size metadata and a dynamic "
                             "input size; give the size (--size 72)")
        self.size = int(size)
        if static[0] not in (None, self.size) or static[1] not in (None, self.size):
            raise ModelError(f"{self.path}: input is {static[0]}x{static[1]} px but size "
                             f"{self.size} was asked for")
        if static[2] not in (None, len(self.bands)):
            raise ModelError(f"{self.path}: input has {static[2]} bands, but bands are "
                             f"{','.join(self.bands)}")
        spec = spec if spec is not None else self.meta.preprocess
        if spec is None:
            log.warning("%s: no lensscore.preprocess metadata; using the default", self.path)
            spec = DEFAULT_SPEC
        try:
            self.spec = spec if isinstance(spec, PreprocessSpec) else PreprocessSpec.from_json(spec)
        except ValueError as exc:
            raise ModelError(f"{self.path}: {exc}") from None
        outs = self._session.get_outputs()
        out = outs[0]
        #: the output with the score's logit (``export.logit``), or None: then logits are
        #: derived from the float32 scores, which saturate at 1.0
        self.logit_name = LOGIT_OUTPUT if any(o.name == LOGIT_OUTPUT for o in outs[1:]) else None
        per_image = [d for d in list(out.shape)[1:] if d != 1]
        if not out.shape or per_image or out.type not in ("tensor(float)", "tensor(double)"):
            raise ModelError(f"{self.path}: output {out.name!r} is {out.type} of shape "
                             f"{list(out.shape)}; expected one float score per image ([N] or "
                             "[N, 1])")
        self.output_name = out.name

    @property
    def grid(self) -> Grid:
        """The model's grid: bands, size, pixel scale and zero point of its training images.

        A model without ``lensscore.pixel_scale``/``zeropoint`` is read as HSC (0.168"/px, 27).
        """
        m = self.meta
        return Grid(bands=self.bands, size=self.size, pixel_scale=m.pixel_scale,
                    zeropoint=m.zeropoint, survey=m.survey)

    def read_options(self, pixel_scale: float | None = None, zeropoints=None,
                     max_bad_fraction: float = MAX_BAD_FRACTION) -> ReadOptions:
        """How to read inputs for this model (:func:`lensscore.io.load_cutout` ``options``).

        Parameters
        ----------
        pixel_scale : float, optional
            Input pixel scale (arcsec/px) for files whose header states none.
        zeropoints : str or mapping, optional
            ``"g=27,r=27"``: zero points overriding the headers'.
        max_bad_fraction : float
            Above this fraction of bad pixels in the model's field a cutout is an error.
        """
        if pixel_scale is not None and not float(pixel_scale) > 0:
            raise ModelError(f"--pixel-scale must be positive, got {pixel_scale}")
        if not 0 <= float(max_bad_fraction) <= 1:
            raise ModelError(f"--max-bad-fraction must be in [0, 1], got {max_bad_fraction}")
        try:
            zps = parse_zeropoints(zeropoints)
        except ValueError as exc:
            raise ModelError(str(exc)) from None
        unknown = [b for b, _ in zps if b not in self.bands]
        if unknown:
            raise ModelError(f"--zeropoint names band(s) {','.join(unknown)} that the model does "
                             f"not use ({','.join(self.bands)})")
        return ReadOptions(self.grid, None if pixel_scale is None else float(pixel_scale), zps,
                           float(max_bad_fraction))

    def recipe(self) -> tuple:
        """A picklable description to build the same scorer elsewhere (Dask workers):
        :func:`lensscore.committee.from_recipe`."""
        return ("scorer", self.path, (("batch_size", self.batch_size),
                                      ("bands", tuple(self.bands)), ("device", self.device),
                                      ("preprocess", self.spec.to_json()), ("size", self.size)))

    @property
    def sha256(self) -> str:
        """SHA-256 of the model file (what a catalog records, so a resume cannot mix models)."""
        if self._sha256 is None:
            import hashlib

            h = hashlib.sha256()
            with open(self.path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
            self._sha256 = h.hexdigest()
        return self._sha256

    @property
    def arch(self) -> str:
        return self.meta.arch

    @property
    def rotation_invariant(self) -> bool:
        return self.meta.rotation_invariant

    @property
    def invariance(self) -> str:
        """The symmetry group the model says it is exactly invariant to: none, C4 or D4."""
        return self.meta.invariance

    @property
    def trained_digests(self) -> frozenset[str]:
        """Digests of the cutouts the model was trained on (:mod:`lensscore.trained`); empty
        when its metadata records none (models trained on simulations only)."""
        if not hasattr(self, "_trained"):
            from .trained import trained_digests

            self._trained = trained_digests(self.meta.extra)
        return self._trained

    @property
    def trained_positions(self):
        """The sky positions of the cutouts the model was trained on
        (:class:`lensscore.trained.TrainedPositions`); None when its metadata records none, or
        a malformed record (said once, as a warning: its cutouts are then known by pixels)."""
        if not hasattr(self, "_trained_pos"):
            from .trained import trained_positions

            try:
                self._trained_pos = trained_positions(self.meta.extra)
            except ValueError as exc:
                log.warning("%s: %s; the cutouts it was trained on are recognised by their "
                            "pixels only", self.path, exc)
                self._trained_pos = None
        return self._trained_pos

    def trained_near(self, ra, dec) -> bool:
        """Whether a cutout centred at (ra, dec) (degrees; None or NaN: unknown) is centred on
        one the model was trained on (:attr:`trained_positions`); False when none recorded."""
        pos = self.trained_positions
        return pos is not None and pos.near(ra, dec)

    def info(self) -> dict:
        """Everything the model says about itself, JSON values decoded."""
        g = self.grid
        out = {"path": self.path, "input": self.input_name, "bands": list(self.bands),
               "size": self.size, "survey": g.survey, "pixel_scale": g.pixel_scale,
               "zeropoint": g.zeropoint, "preprocess": json.loads(self.spec.to_json()),
               "providers": self.providers}
        rest = self.meta.as_dict()
        out.update((k, v) for k, v in sorted(rest.items()) if k not in out)
        return out

    # ------------------------------------------------------------------ scoring
    def prepare(self, images) -> np.ndarray:
        """Preprocess raw ``(N, bands, size, size)`` (or one ``(bands, size, size)``) cutouts."""
        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        want = (len(self.bands), self.size, self.size)
        if x.ndim != 4 or x.shape[1:] != want:
            raise ValueError(f"images must have shape (N, {want[0]}, {want[1]}, {want[2]}) in "
                             f"FITS order (N, bands, y, x), got {np.shape(images)}")
        return preprocess(x, self.spec) if len(x) else x  # no cutouts: no scores

    def run(self, prepared: np.ndarray, *, logits: bool = False):
        """Run the network on preprocessed ``(N, bands, y, x)`` arrays; return scores ``(N,)``
        float32, and with ``logits`` also their logits ``(N,)`` float64 (the model's ``logit``
        output where it has one, else derived from the scores: :func:`logit_of`)."""
        x = _nhwc(prepared)
        out = np.empty(len(x), dtype=np.float32)
        lg = np.empty(len(x), dtype=np.float64)
        names = [self.output_name] + ([self.logit_name] if logits and self.logit_name else [])
        b = self.batch_size
        starts = list(range(0, len(x), b))
        # A short tail (a batch plus a sampled cutout's three rotations) rides with the run
        # before it: a run of 3 images costs far more per image than 3 more in a run of 32.
        if len(starts) > 1 and len(x) - starts[-1] <= b // 2:
            starts.pop()
        for i, j in zip(starts, starts[1:] + [len(x)]):
            res = self._session.run(names, {self.input_name: x[i:j]})
            out[i:j] = np.asarray(res[0], dtype=np.float32).reshape(-1)
            if len(res) > 1:
                lg[i:j] = np.asarray(res[1], dtype=np.float64).reshape(-1)
        if not logits:
            return out
        return out, (lg if self.logit_name else logit_of(out))

    def _batch(self, images, preprocessed: bool) -> tuple[np.ndarray, bool]:
        """``(N, bands, y, x)`` float32 and whether one cutout ``(bands, y, x)`` was given."""
        one = np.ndim(images) == 3
        x = np.asarray(images, np.float32) if preprocessed else self.prepare(images)
        return (x[None] if x.ndim == 3 else x), one

    def score(self, images, *, preprocessed: bool = False, tta: str = "none"):
        """Lens scores in [0, 1] of cutouts given in FITS order.

        Parameters
        ----------
        images : array_like, shape ``(N, bands, size, size)`` or ``(bands, size, size)``
            Raw pixels (any flux unit), bands in ``self.bands`` order.
        preprocessed : bool
            True if ``images`` already went through :meth:`prepare`.
        tta : {"none", "rot4", "d8"}
            Test-time augmentation: ``rot4`` the mean of the scores of the four 90° rotations
            (exactly rotation-invariant whatever the model, four times the cost), ``d8`` the
            mean over the rotations and their mirror images (exactly invariant to both, eight
            times the cost).

        Returns
        -------
        ndarray of float32, shape ``(N,)``, or a float for one cutout ``(bands, size, size)``
        """
        check_tta(tta)
        if tta != "none":
            r = self.score_transforms(images, preprocessed=preprocessed)
            r = r[..., :4] if tta == "rot4" else r
            return float(r.mean()) if r.ndim == 1 else r.mean(axis=1, dtype=np.float32)
        x, one = self._batch(images, preprocessed)
        s = self.run(x)
        return float(s[0]) if one else s

    def score_sampled_transforms(self, images, sample, *, preprocessed: bool = False,
                                 logits: bool = False):
        """Scores of every cutout, and the scores of the 8 transforms (:data:`TRANSFORMS`) of
        those where ``sample`` is true (NaN rows elsewhere), the copies run with the batch.

        Returns
        -------
        scores : ndarray of float32, shape ``(N,)``
        transform_scores : ndarray of float32, shape ``(N, 8)``; column 0 equals ``scores``
        logits : ndarray of float64, shape ``(N,)``
            Only with ``logits``: the scores' logits.
        """
        x, _ = self._batch(images, preprocessed)
        sel = np.asarray(sample, bool)
        k = int(sel.sum())
        tr = dihedral(x[sel])[1:].reshape(-1, *x.shape[1:])  # transforms 1..7, transform-major
        out = self.run(np.concatenate([x, tr]) if k else x, logits=logits)
        out, lg = out if logits else (out, None)
        s = out[:len(x)].copy()
        r = np.full((len(x), len(TRANSFORMS)), np.nan, np.float32)
        if k:
            r[sel, 0] = s[sel]
            r[sel, 1:] = out[len(x):].reshape(len(TRANSFORMS) - 1, k).T
        return (s, r, lg[:len(x)].copy()) if logits else (s, r)

    def score_transforms(self, images, *, preprocessed: bool = False, logits: bool = False):
        """Scores of each cutout under the 8 transforms of :data:`TRANSFORMS` (the rotations,
        then the rotations of the mirror image): shape ``(N, 8)`` (``(8,)`` for one cutout).
        Column 0 is the score of the cutout as given (equal to :meth:`score`). With ``logits``,
        also their logits (float64, the same shape)."""
        x, one = self._batch(images, preprocessed)
        tr = dihedral(x)  # (8, N, b, y, x); preprocessing commutes with each transform
        res = self.run(tr.reshape(-1, *x.shape[1:]), logits=logits)
        s, lg = res if logits else (res, None)
        s = s.reshape(len(TRANSFORMS), len(x)).T.copy()
        if not logits:
            return s[0] if one else s
        lg = lg.reshape(len(TRANSFORMS), len(x)).T.copy()
        return (s[0], lg[0]) if one else (s, lg)

    def score_rotations(self, images, *, preprocessed: bool = False) -> np.ndarray:
        """Scores of each cutout rotated by 0, 90, 180 and 270°: shape ``(N, 4)`` (``(4,)`` for
        one cutout).

        Column 0 is the score of the cutout as given (equal to :meth:`score`).
        """
        x, one = self._batch(images, preprocessed)
        rot = rotations(x)  # (4, N, b, y, x); preprocessing commutes with rotation
        s = self.run(rot.reshape(-1, *x.shape[1:])).reshape(4, len(x)).T.copy()
        return s[0] if one else s
