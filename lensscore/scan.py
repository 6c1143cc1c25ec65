"""Scan directories of cutouts: find, load in parallel, score, and stream the catalog to disk."""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ._version import __version__
from .catalog import IDENTITY, CatalogMeta, CatalogWriter, catalog_columns, check_output, read_table
from .config import DEFAULT_THRESHOLD, SCAN_INVARIANCE_TOLERANCE, TRANSFORM_NAMES, TRANSFORMS
from .errors import LensscoreError
from .files import check_outputs
from .grid import MAX_BAD_FRACTION, ReadOptions
from .pipeline import score_stream
from .sources import Source, find_sources, id_suffixes
from .trained import placed
from .metrics import StabilityAccumulator, classification_summary, mirror_stability, \
    rotation_stability
from .committee import COMBINE, make_scorer
from .scorer import DEVICES, Scorer, check_tta, logit_of

__all__ = ["scan", "scan_catalog", "ScanResult", "read_labels", "shard_of", "parse_shard",
           "rotation_mode", "check_scan_options"]

log = logging.getLogger(__name__)

#: ``rotations="auto"`` on a model that claims D4 invariance: the cutouts whose id hashes to 0
#: mod this (fewer for small scans, so that about :data:`ROTATION_SAMPLE_MIN` are sampled) get
#: their 8 transforms (rotations and mirror images) scored. The check guards against a runtime
#: or a model file that breaks the claim (the export proved it on every export), which shows on
#: any cutout, so it is sized by its cost: 7 extra passes per 256 cutouts, 2.7 % of a large
#: scan's work (1 in 64 cost 11 %: bench/RESULTS.md). Small scans check about 8 cutouts (56
#: passes); the sample is chosen by id hash, so it can hold fewer, and a small scan or one shard
#: of it can hold none (the summary then says so)
ROTATION_SAMPLE_EVERY = 256
ROTATION_SAMPLE_MIN = 8
#: spread above which a claimed invariance counts as violated (:mod:`lensscore.config`)
ROTATION_TOLERANCE = SCAN_INVARIANCE_TOLERANCE
ROTATION_MODES = ("auto", "all", "sample", "none")
#: ``keep_rows=None`` (the default): scans of more inputs than this that write a catalog
#: stream (keep summary statistics, not rows)
STREAM_ABOVE = 1_000_000
#: the highest-scoring rows a streaming scan keeps (its top table, a gallery of the result)
STREAM_TOP = 100
#: the error rows a streaming scan keeps for its summary (the catalog has them all)
STREAM_ERRORS = 100


def rotation_mode(rotations, scorer: Scorer) -> str:
    """``"all"``, ``"sample"`` or ``"none"`` from ``True``/``False``/``"auto"``/a mode name.

    ``auto``: a sample for models whose metadata says they are invariant to rotations and
    mirror images (D4: the check), all 8 transforms of every cutout for the others (the
    seed's measurement, extended to the mirror).
    """
    if rotations is True:
        return "all"
    if rotations is False or rotations is None:
        return "none"
    if rotations not in ROTATION_MODES:
        raise LensscoreError(f"rotations must be one of {', '.join(ROTATION_MODES)}, got "
                             f"{rotations!r}")
    if rotations == "auto":
        return "sample" if scorer.invariance == "D4" else "all"
    return rotations


def _sampled(sources, mode: str, n_all: int) -> list[bool]:
    """Which sources get their rotations scored. The sample depends only on each id and on the
    size of the whole input listing (``n_all``, before shards and resume), so sharded, resumed
    and Dask scans sample the same cutouts as one process: ids whose hash is 0 mod ``k``, with
    ``k`` up to :data:`ROTATION_SAMPLE_EVERY` and small enough that about
    :data:`ROTATION_SAMPLE_MIN` are sampled in small scans."""
    if mode == "all":
        return [True] * len(sources)
    if mode == "none":
        return [False] * len(sources)
    k = max(1, min(ROTATION_SAMPLE_EVERY, n_all // ROTATION_SAMPLE_MIN))
    return [shard_of(s.id, k) == 1 for s in sources]


@dataclass
class ScanResult:
    """What a scan found: one entry per input, in input order (rows resumed from disk first).

    Attributes
    ----------
    ids, paths : list of str
    files : list of str
        What each input was read from (the catalog's ``files``: :meth:`Source.files_field`).
    scores : ndarray
        NaN for inputs that failed.
    logits : ndarray
        The scores' logits (float64; the model's own where it has a ``logit`` output): they
        rank where float32 scores have saturated at 1.0 (:meth:`top`).
    transform_scores : ndarray (N, 8) or None
        The scores of the 4 rotations, then of the 4 rotations of the mirror image
        (:data:`lensscore.config.TRANSFORMS`); NaN rows for cutouts not checked.
    labels : ndarray of int
        -1 where unknown.
    errors : list of (path, message)
    n_skipped : int
        Inputs already in the catalog when resuming.
    seconds : float
    output : Path or None
    """

    ids: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.empty(0))
    logits: np.ndarray = field(default_factory=lambda: np.empty(0))
    transform_scores: np.ndarray | None = None
    labels: np.ndarray = field(default_factory=lambda: np.empty(0, int))
    errors: list[tuple[str, str]] = field(default_factory=list)
    n_skipped: int = 0
    #: inputs found before ``shard`` chose its part (a shard may hold none of them)
    n_listed: int = 0
    n_scale_assumed: int = 0
    #: inputs whose zero points no header stated (used as read), and bands matched by position
    n_zp_assumed: int = 0
    n_band_position: int = 0
    #: resampled inputs, by their pixel scale (rounded to 0.001"): what grid the inputs came on
    resampled_scales: dict = field(default_factory=dict)
    #: ids of a labels file that match no input (a typo'd or foreign labels file otherwise
    #: just leaves the metrics out)
    labels_unmatched: list[str] = field(default_factory=list)
    seconds: float = 0.0
    output: Path | None = None
    threshold: float = DEFAULT_THRESHOLD
    #: "all" (every cutout's 8 transforms), "sample" (a deterministic sample: the check of a
    #: model that claims D4 invariance) or "none"
    rotation_mode: str = "none"
    #: the symmetry the model claims (none, C4, D4): a violation of it is reported loudly
    invariance_claimed: str = "none"
    #: "rot4" / "d8": each score is the mean over the four rotations / all 8 transforms
    #: (test-time augmentation); ``transform_scores`` then hold the model's own scores
    tta: str = "none"
    #: "input" (files: the listing's order) or "tile" (an object catalog: tile by tile)
    row_order: str = "input"
    #: a committee's member names and their scores (N, members); empty for one model
    members: list[str] = field(default_factory=list)
    member_scores: np.ndarray | None = None
    #: how the inputs were read (the model's grid and the overrides): a gallery shows the same
    read_options: ReadOptions | None = None
    #: False: a streaming scan (rows go to the catalog; :attr:`ids`, :attr:`scores`... hold
    #: only the :data:`STREAM_TOP` highest scores, :attr:`errors` the first
    #: :data:`STREAM_ERRORS`; counts, metrics and stability come from accumulators)
    keep_rows: bool = True
    #: error rows of this run (resumed ones not counted), whether or not :attr:`errors` keeps them
    n_errors: int = 0
    #: what the model records of its training cutouts: "none", "pixels" (digests only: the same
    #: objects from other files are not recognised) or "positions" (digests and sky positions)
    training_record: str = "none"
    #: labelled inputs counted as test data (not in_training) that have no sky position, with a
    #: model that records its training cutouts: such an input is recognised by its pixels only
    n_unplaced: int = 0

    # rows as they come (resumed from the catalog first, then scored), made arrays by _finish
    _scores: list = field(default_factory=list, repr=False, init=False)
    _logits: list = field(default_factory=list, repr=False, init=False)
    _labels: list = field(default_factory=list, repr=False, init=False)
    _rots: list = field(default_factory=list, repr=False, init=False)
    _mscores: list = field(default_factory=list, repr=False, init=False)
    _seen: list = field(default_factory=list, repr=False, init=False)
    #: per input: True where the model was trained on that cutout (its metadata's digests)
    in_training: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    _stream: _Stream | None = field(default=None, repr=False, init=False)

    def __post_init__(self):
        if not self.keep_rows:
            self._stream = _Stream(len(self.members), self.threshold)

    def _add(self, row: Mapping, score: float, rotation_scores=None, *, new: bool = True):
        """One catalog row: as written by this scan (``new``), or read back on resume (text
        values, ``""`` for empty)."""
        seen = row.get("in_training") in (True, "true", "True")
        lg = row.get("logit")
        logit = float("nan") if lg is None or lg == "" else float(lg)
        label = row.get("label")
        label = -1 if label is None or label == "" else int(label)
        mscores = [_float(row.get(f"score_{m}", "")) for m in self.members]
        if self._stream is not None:
            self._stream.add((row["id"], row["path"], row.get("files", "")), score, logit, label,
                             seen, mscores, rotation_scores)
        else:
            self.ids.append(row["id"])
            self.paths.append(row["path"])
            self.files.append(row.get("files", ""))
            self._scores.append(score)
            self._logits.append(logit)
            self._seen.append(seen)
            self._labels.append(label)
            if self.members:
                self._mscores.append(mscores)
            if rotation_scores is not None:
                self._rots.append(rotation_scores)
        if ("in_training" in row and not seen and label >= 0 and row.get("status") == "ok"
                and not placed(row.get("ra"), row.get("dec"))):  # resumed rows too
            self.n_unplaced += 1
        if not new:
            return
        if row["status"] == "error":
            self.n_errors += 1
            if self.keep_rows or len(self.errors) < STREAM_ERRORS:
                self.errors.append((row["path"], row["error"]))
            return
        if math.isnan(row["pixscale_in"]):  # no scale stated: the model's assumed
            self.n_scale_assumed += 1
        self.n_zp_assumed += row.get("zp_source") == "assumed"
        self.n_band_position += row.get("band_source") == "position"
        if row.get("resampled") and not math.isnan(row["pixscale_in"]):
            key = round(row["pixscale_in"], 3)
            self.resampled_scales[key] = self.resampled_scales.get(key, 0) + 1

    def _finish(self, t0: float) -> ScanResult:
        if self._stream is not None:  # the rows kept: the highest scores, in input order
            kept = sorted(self._stream.top, key=lambda t: -t[2])
            for _, score, _, (i, p, f), logit, label, seen, mscores, rot in kept:
                self.ids.append(i)
                self.paths.append(p)
                self.files.append(f)
                self._scores.append(score)
                self._logits.append(logit)
                self._labels.append(label)
                self._seen.append(seen)
                self._mscores.append(mscores)
                self._rots.append([math.nan] * len(TRANSFORMS) if rot is None else rot)
        self.scores = np.asarray(self._scores, dtype=np.float64)
        lg = np.asarray(self._logits, dtype=np.float64)
        self.logits = np.where(np.isnan(lg), logit_of(self.scores), lg)  # old rows: from scores
        self.labels = np.asarray(self._labels, dtype=int)
        self.in_training = np.asarray(self._seen, dtype=bool)
        if self.rotation_mode != "none":
            self.transform_scores = np.asarray(self._rots, dtype=np.float64).reshape(
                -1, len(TRANSFORMS))
        if self.members:
            self.member_scores = np.asarray(self._mscores, dtype=np.float64).reshape(
                -1, len(self.members))
        self._scores, self._labels, self._rots, self._mscores, self._seen = [], [], [], [], []
        self.seconds = time.perf_counter() - t0
        return self

    @property
    def n_inputs(self) -> int:
        return self._stream.n if self._stream is not None else len(self.ids)

    @property
    def n_failed(self) -> int:
        if self._stream is not None:
            return self._stream.n_failed
        return int(np.isnan(self.scores).sum())

    @property
    def n_scored(self) -> int:
        return self.n_inputs - self.n_failed

    @property
    def exit_code(self) -> int:
        """0 every input scored, 3 some failed (each has an error row), 1 nothing scored (no
        input at all, or none readable)."""
        if self.n_scored == 0:
            return 1
        return 3 if self.n_failed else 0

    def metrics(self, in_training: bool = False) -> dict | None:
        """Classification metrics over scored inputs with known labels (None without labels).

        Inputs the model was trained on (``in_training``, from its metadata) are left out: a
        model's scores of its own training cutouts are no test. ``in_training=True`` gives the
        metrics over those alone (in sample). With a model that records its training cutouts,
        ``n_unverified`` counts the inputs here that could not be checked against that record
        beyond their pixels (all of them if it records no sky positions; else those without
        one): the same objects read from other files would be among them unrecognised."""
        if self._stream is not None:
            m = self._stream.metrics(in_training, self.threshold)
        else:
            ok = ~np.isnan(self.scores) & (self.labels >= 0) & (self._seen_mask() == in_training)
            m = classification_summary(self.labels[ok], self.scores[ok], self.threshold,
                                       ranking=self.logits[ok]) if ok.any() else None
        if m is not None and not in_training and self.training_record != "none":
            m["n_unverified"] = m["n"] if self.training_record == "pixels" else self.n_unplaced
        return m

    def _seen_mask(self) -> np.ndarray:
        if len(self.in_training) == len(self.scores):
            return self.in_training
        return np.zeros(len(self.scores), bool)

    @property
    def n_in_training(self) -> int:
        """Scored inputs that the model was trained on."""
        if self._stream is not None:
            return self._stream.n_seen
        return int((self._seen_mask() & ~np.isnan(self.scores)).sum())

    def member_metrics(self) -> dict[str, dict]:
        """A committee's members, each on its own: metrics as :meth:`metrics` ({} otherwise)."""
        if not self.members or self.member_scores is None:
            return {}
        if self._stream is not None:
            return self._stream.member_metrics(self.members, self.threshold)
        ok = ~np.isnan(self.scores) & (self.labels >= 0) & ~self._seen_mask()  # as metrics()
        if not ok.any():
            return {}
        return {m: classification_summary(self.labels[ok], self.member_scores[ok, k],
                                          self.threshold) for k, m in enumerate(self.members)}

    @property
    def rotation_scores(self) -> np.ndarray | None:
        """The scores of the four 90° rotations, ``(N, 4)`` (None when not scored)."""
        return None if self.transform_scores is None else self.transform_scores[:, :4]

    @property
    def rotation_claimed(self) -> bool:
        return self.invariance_claimed != "none"

    def _checked(self) -> np.ndarray:
        return ~np.isnan(self.scores) & np.isfinite(self.transform_scores).all(axis=1)

    def stability(self) -> dict | None:
        """Rotation stability over scored inputs (None when transforms were not scored)."""
        if self.transform_scores is None:
            return None
        if self._stream is not None:
            return self._stream.stability.rotation()
        return rotation_stability(self.rotation_scores[self._checked()], self.threshold)

    def mirror(self) -> dict | None:
        """Mirror stability over scored inputs (:func:`lensscore.metrics.mirror_stability`;
        None when transforms were not scored)."""
        if self.transform_scores is None:
            return None
        if self._stream is not None:
            return self._stream.stability.mirror()
        return mirror_stability(self.transform_scores[self._checked()], self.threshold)

    @property
    def invariance_violated(self) -> bool:
        """A model that claims invariance gave different scores to the transforms it claims:
        rotations (C4, D4) or mirror images (D4)."""
        s, m = self.stability(), self.mirror()
        if not self.rotation_claimed or not s or not s["n"]:
            return False
        bad = s["std_max"] > ROTATION_TOLERANCE
        return bool(bad or (self.invariance_claimed == "D4" and m["delta_max"] > ROTATION_TOLERANCE))

    def top(self, k: int) -> list[int]:
        """Indices of the ``k`` highest scores, ranked by their logits (which stay apart where
        float32 scores are all 1.0); failed inputs never included."""
        ok = np.flatnonzero(~np.isnan(self.scores))
        order = ok[np.lexsort((-self.scores[ok], -self.logits[ok]))]
        return order[:k].tolist()


class _Stream:
    """What a streaming scan keeps of its rows: counts; the :data:`STREAM_TOP` highest scores
    (a heap); per labelled, scored row its score and logit as float32 in one of four pairs of
    arrays (in the model's training data or not, lens or not: 8 bytes, a committee's members 4
    more each);
    per row whose transforms were checked 8 bytes (:class:`StabilityAccumulator`)."""

    def __init__(self, n_members: int, threshold: float):
        self.n = self.n_failed = self.n_seen = 0
        self.top: list = []
        self.scores = {(seen, y): array("f") for seen in (False, True) for y in (0, 1)}
        self.logits = {k: array("f") for k in self.scores}  # what the rank metrics order by
        self.members = {k: [array("f") for _ in range(n_members)] for k in self.scores}
        self.stability = StabilityAccumulator(threshold)

    def add(self, names, score, logit, label, seen, mscores, rot) -> None:
        seq, self.n = self.n, self.n + 1
        if math.isnan(score):
            self.n_failed += 1
            return
        self.n_seen += seen
        if math.isnan(logit):  # a row of an older catalog, resumed
            logit = float(logit_of(score))
        if label >= 0:
            self.scores[seen, label].append(score)
            self.logits[seen, label].append(logit)
            for a, v in zip(self.members[seen, label], mscores):
                a.append(v)
        if rot is not None and all(math.isfinite(v) for v in rot):
            self.stability.add(rot)
        # (logit, score, -seq): the lowest first, of equal ones the later (as ScanResult.top)
        item = (logit, score, -seq, names, logit, label, seen, mscores, rot)
        if len(self.top) < STREAM_TOP:
            heapq.heappush(self.top, item)
        elif item[:3] > self.top[0][:3]:
            heapq.heapreplace(self.top, item)

    def _summary(self, arrays, threshold, ranking=None):
        lens, non = arrays
        if not len(lens) + len(non):
            return None
        y = np.r_[np.ones(len(lens), int), np.zeros(len(non), int)]
        s = np.r_[np.frombuffer(lens, np.float32), np.frombuffer(non, np.float32)]
        r = None if ranking is None else np.r_[np.frombuffer(ranking[0], np.float32),
                                               np.frombuffer(ranking[1], np.float32)]
        return classification_summary(y, s.astype(np.float64), threshold,
                                      ranking=None if r is None else r.astype(np.float64))

    def metrics(self, seen: bool, threshold: float) -> dict | None:
        return self._summary((self.scores[seen, 1], self.scores[seen, 0]), threshold,
                             (self.logits[seen, 1], self.logits[seen, 0]))

    def member_metrics(self, names, threshold: float) -> dict[str, dict]:
        if self.metrics(False, threshold) is None:
            return {}
        return {m: self._summary((self.members[False, 1][k], self.members[False, 0][k]),
                                 threshold) for k, m in enumerate(names)}


def check_scan_options(*, paths=None, catalog=None, images=None, output=None,
                       resume: bool = False, overwrite: bool = False, shard=None,
                       tta: str = "none", combine: str = "mean", gallery=None,
                       device: str = "cpu") -> None:
    """Refuse, before any work, options that cannot work together (one-line LensscoreError);
    the CLI calls it first, :func:`scan` checks what it needs itself."""
    check_tta(tta)
    if catalog is None and not paths:
        raise LensscoreError("give FITS files or directories to scan, or --catalog FILE "
                             "--images TILES")
    if catalog is not None and paths:
        raise LensscoreError("give either PATHS or --catalog, not both")
    if catalog is not None and not images:
        raise LensscoreError("--catalog needs --images: the tiles to cut the objects from "
                             "(e.g. 'tiles/*_{band}.fits')")
    if images and catalog is None:
        raise LensscoreError("--images is for --catalog")
    if combine not in COMBINE:
        raise LensscoreError(f"--combine must be one of {', '.join(COMBINE)}, got {combine!r}")
    if device not in DEVICES:
        raise LensscoreError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if shard is not None:
        parse_shard(shard)
    if resume and output is None:
        raise LensscoreError("--resume needs the catalog to resume: give -o/--output")
    if output is not None:
        check_output(output, resume=resume, overwrite=overwrite)
    if gallery is not None:
        check_outputs(gallery, overwrite=overwrite or resume)


def read_labels(path) -> dict[str, int]:
    """Read ``id,label`` from a csv/ecsv/fits table; labels 0/1 (or true/false, lens/nonlens).

    Raises
    ------
    LensscoreError
        If the file cannot be read or lacks the columns.
    """
    p = Path(path)
    try:
        t = read_table(p)
    except Exception as exc:
        raise LensscoreError(f"{p}: cannot read labels ({exc})") from None
    if "id" not in t.colnames or "label" not in t.colnames:
        raise LensscoreError(f"{p}: labels file needs columns id,label (has "
                             f"{','.join(t.colnames)})")
    words = {"1": 1, "0": 0, "true": 1, "false": 0, "lens": 1, "nonlens": 0}
    out = {}
    for i, lab in zip(t["id"], t["label"]):
        key = str(lab).strip().lower()
        if key not in words:
            raise LensscoreError(f"{p}: label {lab!r} of {i} is not 0/1")
        out[str(i)] = words[key]
    return out


# --------------------------------------------------------------------------- shards


def parse_shard(shard) -> tuple[int, int]:
    """``"K/N"`` or ``(K, N)`` -> ``(K, N)`` with ``1 <= K <= N``.

    Parameters
    ----------
    shard : str or (int, int)

    Returns
    -------
    (int, int)

    Raises
    ------
    LensscoreError
        Not two integers, or K outside 1..N.
    """
    try:
        k, n = (int(v) for v in (shard.split("/") if isinstance(shard, str) else shard))
    except (TypeError, ValueError):
        raise LensscoreError(f"--shard must be K/N (e.g. 3/8), got {shard!r}") from None
    if not 1 <= k <= n:
        raise LensscoreError(f"--shard {k}/{n}: K must be between 1 and N")
    return k, n


def shard_of(obj_id: str, n: int) -> int:
    """The shard (1..n) of an object id: a stable hash (BLAKE2b of the id), not listing order.

    Parameters
    ----------
    obj_id : str
        The id as the catalog writes it.
    n : int
        The number of shards.

    Returns
    -------
    int
        1..n, the same on every machine and Python version.
    """
    h = hashlib.blake2b(obj_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "big") % n + 1


# --------------------------------------------------------------------------- the scan


def _float(v: str) -> float:
    return float(v) if v not in ("", None) else float("nan")


def scan(
    paths: Sequence | str,
    model=None,
    *,
    output=None,
    scorer: Scorer | None = None,
    rotations: bool | str = "auto",
    labels: Mapping[str, int] | str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    sources: Sequence[Source] | None = None,
    progress: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] | str | None = None,
    client=None,
    pixel_scale: float | None = None,
    zeropoints=None,
    max_bad_fraction: float = MAX_BAD_FRACTION,
    retry_errors: bool = False,
    tta: str = "none",
    combine: str = "mean",
    extra_columns: Sequence[tuple[str, str]] = (),
    keep_rows: bool | None = None,
    **scorer_kwargs,
) -> ScanResult:
    """Score every cutout under ``paths`` and stream one catalog row per input.

    Parameters
    ----------
    paths : path or sequence of paths
        FITS files and directories (searched recursively).
    model : str or Path, or a sequence of them, optional
        ONNX model; two or more make a committee (:class:`lensscore.committee.Committee`,
        scores combined by ``combine``, each member's in ``score_<name>``); ignored when
        ``scorer`` is given; default the shipped ``models/d4.onnx``.
    output : str or Path, optional
        Catalog file (``.csv``, ``.ecsv``, ``.fits``, ``.parquet``), rows in input order,
        flushed after every batch.
    scorer : Scorer or Committee, optional
        A ready scorer (pipelines that scan many directories with one model).
    rotations : {"auto", "all", "sample", "none"} or bool
        Score the 0/90/180/270° rotations of each cutout and of its mirror image too
        (``score_r0..3``, ``score_m0..3``, ``score_std`` over the rotations, ``mirror_delta``
        the largest change under the mirror): ``auto`` (default) does every cutout for models
        that are not invariant to both (D4) and a deterministic sample
        (ids hashing to 0 mod :data:`ROTATION_SAMPLE_EVERY`, or mod fewer in small scans so
        that about :data:`ROTATION_SAMPLE_MIN` are sampled, and a shard or a small scan may
        draw none; the same whatever the shards, resume or Dask) for models whose metadata says
        they are -- the check of that claim; ``True``/``"all"`` every cutout,
        ``False``/``"none"`` none. Rows not measured leave those columns empty.
    labels : mapping or path, optional
        ``id -> 0/1`` or an ``id,label`` table; otherwise labels come from directory names.
    threshold : float
        Lens if ``score >= threshold`` (accuracy, class flips).
    workers : int
        FITS loaders running beside inference: 1 is a thread, more are processes.
    resume : bool
        Skip inputs already in ``output`` and append the rest.
    overwrite : bool
        Replace an existing ``output``.
    sources : sequence of Source, optional
        Inputs already found (skips the directory walk).
    progress : callable(done, total), optional
        Called after every batch.
    shard : (K, N) or "K/N", optional
        Score only shard ``K`` (1..N) of the inputs: those whose id hashes to it
        (:func:`shard_of`), independent of listing order -- N independent processes (a Slurm
        array) cover every input once; ``lensscore merge`` joins their catalogs.
    client : dask.distributed.Client, optional
        Score on a Dask cluster: one ONNX session per worker process, files read where the
        worker runs (a shared file system), results streamed back into the same catalog in
        input order; a lost worker's chunks are recomputed, never written twice.
    pixel_scale : float, optional
        Input pixel scale (arcsec/px) for files whose header states none; without it such files
        are assumed to be on the model's scale.
    zeropoints : str or mapping, optional
        Zero points overriding the headers' (``"g=27,r=27,i=27"``).
    retry_errors : bool
        With ``resume``: score again the inputs whose rows are errors (their new rows are
        appended), instead of keeping the errors.
    max_bad_fraction : float
        A cutout whose field holds a larger fraction of NaN, inf or masked pixels (in any band)
        gets an error row instead of a score (default 0.3; ``bad_fraction`` in the catalog).
    tta : {"none", "rot4", "d8"}
        ``rot4``: the score is the mean over the four 90° rotations (test-time augmentation),
        exactly rotation-invariant whatever the model; ``d8``: the mean over the rotations and
        their mirror images, exactly invariant to both. All 8 transform scores are written too,
        whatever ``rotations`` says (8 times the cost).
    combine : {"mean", "median", "min"}
        How a committee's members' scores make its score.
    extra_columns : sequence of (name, dtype)
        Columns each source carries in ``Source.extra`` (an object catalog's kept columns,
        :func:`scan_catalog`), written after ``path``.
    keep_rows : bool, optional
        True: the result holds every row (``ids``, ``paths``, ``files``, ``scores``, ...;
        about 300 bytes per row of memory). False: stream -- rows go to the catalog only, and
        the result keeps counts, the :data:`STREAM_TOP` highest (by logit), the first
        :data:`STREAM_ERRORS` errors, and for its metrics 8 bytes per labelled row (float32
        scores and logits; ROC AUC and TPR at FPR need them all) and 8 per row whose transforms were
        checked (the stability's median and p99); accuracy, means, maxima and flip fractions
        are exact. Default (None): stream scans of more than :data:`STREAM_ABOVE` inputs that
        write a catalog.
    **scorer_kwargs
        Passed to :class:`Scorer` (``device``, ``threads``, ``batch_size``, ``bands``, ``size``).

    Returns
    -------
    ScanResult

    Raises
    ------
    ModelError, LensscoreError, FileNotFoundError
        For a bad model, options or paths -- never for a bad input file, which gets an error row.
    """
    t0 = time.perf_counter()
    _check_call(workers, resume, output, overwrite, progress, tta)
    scorer = scorer or make_scorer(model, combine=combine, **scorer_kwargs)
    options = scorer.read_options(pixel_scale, zeropoints, max_bad_fraction)
    trained = bool(scorer.trained_digests)
    if trained:  # mark the rows the model was trained on: their metrics are not a test
        options = replace(options, digests=True)
    if isinstance(labels, (str, Path)):
        labels = read_labels(labels)
    if sources is None:
        sources = find_sources(paths, scorer.bands, labels=labels)
    n_all = len(sources)
    unmatched = unmatched_labels(labels, sources)
    # from all inputs, not the shard's: every shard's catalog has the same columns (mergeable)
    has_labels = any(s.label is not None for s in sources)
    if shard is not None:
        k, n = parse_shard(shard)
        sources = [s for s in sources if shard_of(s.id, n) == k]
    if output is not None and Path(output).suffix.lower() == ".fits":
        _check_ascii(output, sources)
    mode = "all" if tta != "none" else rotation_mode(rotations, scorer)
    rotations = mode != "none"
    members = getattr(scorer, "names", ())
    columns = catalog_columns(rotations, has_labels, members, extra_columns, trained=trained)
    meta = _catalog_meta(scorer, options, threshold, tta, shard, sources)
    if keep_rows is None:
        keep_rows = output is None or len(sources) <= STREAM_ABOVE
    res = ScanResult(threshold=threshold, output=Path(output) if output else None,
                     keep_rows=bool(keep_rows),
                     rotation_mode=mode, invariance_claimed=scorer.invariance, tta=tta,
                     members=list(members), row_order=meta.row_order,
                     read_options=options, labels_unmatched=unmatched, n_listed=n_all,
                     training_record="positions" if scorer.trained_positions is not None
                     else "pixels" if trained else "none")
    writer = None
    if output is not None:
        writer = CatalogWriter(output, columns, meta.to_dict(), resume=resume, overwrite=overwrite,
                               retry_errors=retry_errors,
                               identity=IDENTITY)
        sources = _resumed(writer, res, sources, rotations)
    if client is None:
        stream = score_stream(sources, scorer, _sampled(sources, mode, n_all), workers,
                              options, tta)
    else:
        from .distributed import score_stream as dask_stream

        stream = dask_stream(sources, scorer, _sampled(sources, mode, n_all), client, options,
                             tta)
    _consume(stream, res, writer, progress, len(sources), rotations, has_labels,
             tiles=bool(sources) and sources[0].position is not None)
    return res._finish(t0)


def _check_call(workers, resume, output, overwrite, progress, tta) -> None:
    """Refuse a scan call whose arguments cannot work, before any input is listed."""
    if int(workers) < 1:
        raise LensscoreError(f"workers must be >= 1, got {workers}")
    if resume and output is None:
        raise LensscoreError("--resume needs the catalog to resume: give -o/--output")
    if progress is not None and not callable(progress):
        raise LensscoreError(f"progress must be a function progress(done, total) or None, got "
                             f"{progress!r}")
    if output is not None:
        check_output(output, resume=resume, overwrite=overwrite)
    check_tta(tta)


def _resumed(writer, res: ScanResult, sources, rotations: bool) -> list:
    """Count the rows a resumed catalog holds already into ``res``; the sources left to do
    (by id: ids do not depend on the order of the paths, :func:`lensscore.sources.find_sources`)."""
    for r in writer.existing if writer.done else ():
        rot = ([_float(r.get(f"score_{t}", "")) for t in TRANSFORM_NAMES] if rotations
               else None)
        res._add(r, _float(r["score"]), rot, new=False)
    res.n_skipped = len(writer.done)
    left = [s for s in sources if s.id not in writer.done]
    other = len(writer.done) - (len(sources) - len(left))
    if other > 0:  # said, not refused: a file scanned then under another id gets a second row
        log.warning("%s: %d of its rows have ids that none of these inputs has (other paths than "
                    "the scan it resumes?); they are kept", writer.target, other)
    return left


def _consume(stream, res: ScanResult, writer, progress, total: int, rotations: bool,
             has_labels: bool, tiles: bool) -> None:
    """Add the scored rows to ``res`` and the catalog as they come. On any exception (Ctrl-C
    too) the catalog keeps the rows written so far; open tiles are closed either way."""
    try:
        for rows, s_chunk, r_chunk in stream:
            for r, s, rr in zip(rows, s_chunk, r_chunk):
                res._add(r, s, rr if rotations else None)
                if not has_labels:
                    r.pop("label", None)
            if writer is not None:
                writer.write(rows)
            if progress is not None:
                progress(res.n_inputs - res.n_skipped, total)
    except BaseException:
        if writer is not None:
            writer.close(finalize=False)
        raise
    finally:
        if tiles:
            from .tilecut import close_tiles

            close_tiles()
    if writer is not None:
        writer.close()


def _check_ascii(output, sources: Sequence[Source]) -> None:
    """Refuse, before any work, a FITS catalog that could not hold some input's text (a FITS
    table is ASCII only): its id, path, files or a kept column."""
    for s in sources:
        fields = [("id", s.id), ("path", s.path), ("files", s.files_field())]
        fields += [(k, v) for k, v in s.extra if isinstance(v, str)]
        for name, v in fields:
            if not v.isascii():
                raise LensscoreError(f"{output}: a FITS table holds ASCII text only, and the "
                                     f"{name} of input {s.id!r} is {v!r}; write .ecsv, .csv or "
                                     ".parquet")


def _catalog_meta(scorer, options: ReadOptions, threshold: float, tta: str, shard,
                  sources: Sequence[Source]) -> CatalogMeta:
    """The catalog header: the model(s), the grid and every option that decides a score (a
    resume or merge must match them: :data:`lensscore.catalog.IDENTITY`)."""
    return CatalogMeta(
        model=" + ".join(Path(p).name for p in scorer.path.split(" + ")),
        model_arch=scorer.arch, pixel_scale=options.grid.pixel_scale,
        zeropoint=options.grid.zeropoint, bands=tuple(scorer.bands), size=scorer.size,
        lensscore_version=__version__,
        # an object catalog over tiles: rows tile by tile
        row_order="tile" if sources and sources[0].position is not None else "input",
        threshold=float(threshold), model_sha256=scorer.sha256,
        preprocess=scorer.spec.to_json(), input_pixel_scale=options.pixel_scale,
        zeropoint_override=tuple(options.zeropoints),
        max_bad_fraction=options.max_bad_fraction, tta=tta,
        shard=None if shard is None else "{}/{}".format(*parse_shard(shard)))


def unmatched_labels(labels: Mapping[str, int] | None, sources: Sequence[Source]) -> list[str]:
    """The ids of ``labels`` that no source takes (a source takes its id or any end of it after
    a ``/``: :func:`lensscore.sources.label_of`)."""
    if not labels:
        return []
    taken = {t for s in sources for t in id_suffixes(s.id)}
    return [i for i in labels if i not in taken]


def scan_catalog(catalog, images, model=None, *, scorer=None, id_column: str | None = None,
                 keep_columns: Sequence[str] | None = None,
                 labels: Mapping[str, int] | str | None = None, pixel_scale=None,
                 zeropoints=None, combine: str = "mean", **kwargs) -> ScanResult:
    """Score the objects of a catalog (RA/Dec) cut out of coadd image tiles.

    Catalog in, catalog out (as Zoobot's ``predict_on_catalog``): each object is cut from the
    tile of each band that holds it farthest from an edge (:mod:`lensscore.tiles`), then read
    like a file (zero points, pixel scale, masks). Objects off every tile or on an edge get an
    error row with the reason. Rows come tile by tile; the id column becomes ``id``; the
    input's other columns are kept (or ``keep_columns``).

    Parameters
    ----------
    catalog : path
        ``.csv``, ``.ecsv``, ``.fits`` or ``.parquet`` with an id column and ``ra``, ``dec``
        in degrees.
    images : str, Path or sequence
        ``"tiles/*_{band}.fits"`` (the band from the name), a directory of tiles (the band from
        each header), a glob, or files.
    model, scorer, combine
        As for :func:`scan` (a sequence of models makes a committee).
    id_column : str, optional
        Default: the first of ``objectId, object_id, id, ID, name``.
    keep_columns : sequence of str, optional
        Input columns to keep [default: all]; a name the catalog already uses gets ``in_``.
    labels : mapping or path, optional
        ``id -> 0/1`` (or an ``id,label`` table) for accuracy and ROC numbers.
    **kwargs
        Everything else :func:`scan` takes (``output``, ``resume``, ``shard``, ``client``,
        ``rotations``, ``tta``, ``workers``, ...).

    Returns
    -------
    ScanResult
    """
    from .tiles import catalog_sources

    if scorer is None:
        kw = {k: kwargs.pop(k) for k in ("device", "threads", "batch_size", "bands", "size")
              if k in kwargs}
        scorer = make_scorer(model, combine=combine, **kw)
    if isinstance(labels, (str, Path)):
        labels = read_labels(labels)
    options = scorer.read_options(pixel_scale, zeropoints, kwargs.get("max_bad_fraction",
                                                                      MAX_BAD_FRACTION))
    sources, kept = catalog_sources(catalog, images, options, id_column=id_column,
                                    keep_columns=keep_columns, labels=labels)
    res = scan(None, scorer=scorer, sources=sources, extra_columns=kept,
               pixel_scale=pixel_scale, zeropoints=zeropoints, **kwargs)
    res.labels_unmatched = unmatched_labels(labels, sources)
    return res
