"""The pipeline: sources in, catalog rows out -- loading, batching and scoring, used alike by one
process (:func:`score_stream`, with loader threads or processes), by shards (each a one-process
scan of its part) and by Dask workers (:mod:`lensscore.distributed`, which loads and scores
chunks with :func:`load_one` and :func:`score_pending` where the worker runs).

Loading never raises for a bad input: each source becomes ``(True, (pixels, row fields))`` or
``(False, reason)``, and a failed one an error row.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np

from .config import TRANSFORM_NAMES, TRANSFORMS
from .errors import CutoutError
from .grid import ReadOptions
from .io import load_source
from .preprocess import PreprocessSpec, preprocess
from .scorer import Scorer, mean_logit
from .sources import Source
from .trained import cutout_digest

__all__ = ["read_one", "load_one", "load_chunk", "score_pending", "score_stream", "CHUNK",
           "PREFETCH"]

#: Sources handed to a loader at once: big enough to amortise the hand-over, small enough to
#: keep memory bounded (:func:`_in_flight` chunks of cutouts in flight).
CHUNK = 16
#: Chunks in flight per loader worker, beyond the next batch's (:func:`_in_flight`).
PREFETCH = 4
#: The most chunks of the next batch read ahead (256 cutouts, 16 MB at 3x72x72 float32): a big
#: ``--batch-size`` does not hold a third batch of cutouts in memory.
AHEAD_CHUNKS = 16


def read_one(src: Source, options: ReadOptions):
    """Read one source onto the model's grid; never raises for a bad file.

    Parameters
    ----------
    src : Source
    options : ReadOptions
        The model's grid and the overrides; with ``options.digests`` the row fields carry the
        cutout's digest (``_digest``) for the model's training record.

    Returns
    -------
    (True, (pixels, row fields)) or (False, reason)
        ``pixels`` float32 ``(bands, size, size)`` as read (not preprocessed); ``row fields``
        the catalog columns a cutout decides (``ra``, ``dec``, ``n_nonfinite``, ...).
    """
    try:
        c = load_source(src, options.grid.bands, options.grid.size, options, wcs=False)
        return True, (c.data, {"ra": c.ra, "dec": c.dec, "n_nonfinite": c.n_nonfinite,
                               "bad_fraction": round(c.bad_fraction, 6),
                               "pixscale_in": float(f"{c.pixscale_in:.6g}"), "resampled": c.resampled,
                               "reoriented": c.reoriented,
                               "zp_source": c.zp_source, "band_source": c.band_source,
                               **({"_digest": cutout_digest(c.data)} if options.digests else {})})
    except CutoutError as exc:
        return False, exc.reason
    except Exception as exc:  # never let one odd file stop a scan
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())
        return False, f"unexpected error reading file ({msg[:200]})"


def _preprocess_one(src: Source, item, spec: PreprocessSpec):
    ok, payload = item
    if not ok:
        return item
    try:
        return True, (preprocess(payload[0], spec), payload[1])
    except ValueError as exc:
        return False, CutoutError(src.path, str(exc)).reason


def load_one(src: Source, options: ReadOptions, spec: PreprocessSpec):
    """Read and preprocess one source; never raises for a bad file.

    Parameters
    ----------
    src : Source
    options : ReadOptions
    spec : PreprocessSpec
        The model's preprocessing.

    Returns
    -------
    (True, (preprocessed cutout, row fields)) or (False, reason)
        As :func:`read_one`, the pixels preprocessed; a cutout that preprocessing refuses
        (no signal) fails with the reason.
    """
    return _preprocess_one(src, read_one(src, options), spec)


def load_chunk(chunk: list[Source], options: ReadOptions, spec: PreprocessSpec):
    """:func:`load_one` of each source, the cutouts preprocessed together: ``preprocess`` treats
    each cutout of a batch on its own (the same float32 values, tested), and one call for a
    chunk of 16 cost ~0.09 ms a cutout less than one call a cutout here (0.11 against 0.20 ms)
    -- CPU that a 2-core scan takes from onnxruntime.

    Parameters
    ----------
    chunk : list of Source
    options : ReadOptions
    spec : PreprocessSpec

    Returns
    -------
    list
        One :func:`load_one` result per source, in order.
    """
    items = [read_one(s, options) for s in chunk]
    good = [i for i, (ok, _) in enumerate(items) if ok]
    if len(good) > 1:
        try:
            x = preprocess(np.stack([items[i][1][0] for i in good]), spec)
        except ValueError:  # a cutout without signal: each alone, so that only it fails
            pass
        else:
            for i, xi in zip(good, x):
                items[i] = True, (xi, items[i][1][1])
            return items
    return [_preprocess_one(s, it, spec) for s, it in zip(chunk, items)]


def _in_flight(workers: int, batch_size: int) -> int:
    """How many chunks :func:`score_stream` hands to its loaders at once.

    Parameters
    ----------
    workers : int
        Loader threads or processes (>= 1).
    batch_size : int
        The scorer's batch size (>= 1).

    Returns
    -------
    int
        The next batch's chunks (at most :data:`AHEAD_CHUNKS`), so that the loaders read it
        while onnxruntime scores one, and :data:`PREFETCH` more per worker. With only
        ``workers x PREFETCH`` (64 cutouts), a scan at batch 128 waited for half of each
        batch's cutouts after each run (bench/RESULTS.md, "The loader a batch ahead").
    """
    return min(-(-batch_size // CHUNK), AHEAD_CHUNKS) + workers * PREFETCH


def _make_executor(workers: int) -> Executor:
    if workers == 1:
        # one loader thread: onnxruntime releases the GIL, so parsing overlaps inference
        return ThreadPoolExecutor(1, thread_name_prefix="lensscore-load")
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(workers, mp_context=ctx)


def score_stream(sources, scorer: Scorer, rotations: list[bool], workers: int,
                 options: ReadOptions, tta: str = "none"):
    """Load (in ``workers`` loader threads or processes, :data:`CHUNK` sources at a time) and
    score in batches of the scorer's ``batch_size``, in input order.

    Parameters
    ----------
    sources : sequence of Source
    scorer : Scorer or Committee
    rotations : list of bool
        Per source: score its 8 transforms too.
    workers : int
        1: one loader thread (parsing overlaps inference); more: loader processes.
    options : ReadOptions
        How inputs are read (the model's grid and the overrides).
    tta : {"none", "rot4", "d8"}

    Yields
    ------
    rows, scores, transform_scores
        Per batch, as :func:`score_pending`.
    """
    if not sources:
        return
    chunks = [(list(sources[i:i + CHUNK]), rotations[i:i + CHUNK])
              for i in range(0, len(sources), CHUNK)]
    pending: list[tuple[Source, tuple, bool]] = []
    n_ok = 0
    with _make_executor(workers) as ex:
        inflight: deque = deque()
        it = iter(chunks)
        limit = _in_flight(workers, scorer.batch_size)

        def fill():
            for chunk, flags in it:
                inflight.append((chunk, flags, ex.submit(load_chunk, chunk, options,
                                                         scorer.spec)))
                if len(inflight) >= limit:
                    break

        fill()
        try:
            while inflight:
                chunk, flags, fut = inflight.popleft()
                loaded = fut.result()
                fill()
                for src, item, rotate in zip(chunk, loaded, flags):
                    pending.append((src, item, rotate))
                    n_ok += item[0]
                if n_ok >= scorer.batch_size or not inflight:
                    yield score_pending(pending, scorer, tta)
                    pending, n_ok = [], 0
        finally:
            for *_, fut in inflight:
                fut.cancel()


def _score_committee(scorer, x, sel, tta: str, used):
    """A committee's scores of a batch: ``(s, logits, transform scores, member scores)``.
    Flagged cutouts (``sel``) get all 8 transforms of every member; the others one pass."""
    nt = len(TRANSFORMS)
    s = np.empty(len(x), np.float32)
    lg = np.empty(len(x), np.float64)
    r = np.full((len(x), nt), np.nan)
    ms = np.full((len(x), len(scorer.names)), np.nan)
    if sel.any():  # transform 0 is the cutout as given: its score is the score
        rm, lm = scorer.member_transform_scores(x[sel], preprocessed=True,
                                                logits=True)  # (k, M, 8) each
        r[sel] = np.stack([scorer.combine_scores(rm[:, :, k]) for k in range(nt)], 1)
        ms[sel] = rm[:, :, used].mean(-1, dtype=np.float32) if tta != "none" else rm[:, :, 0]
        # float32 mean, as Scorer.score(tta=...) computes it
        s[sel] = (r[sel, used].astype(np.float32).mean(axis=1, dtype=np.float32)
                  if tta != "none" else r[sel, 0])
        lt = np.stack([scorer.combine_logits(lm[:, :, k]) for k in range(nt)], 1)
        lg[sel] = mean_logit(lt[:, used], axis=1) if tta != "none" else lt[:, 0]
    if not sel.all():
        ms[~sel], lu = scorer.member_scores(x[~sel], preprocessed=True, logits=True)
        s[~sel] = scorer.combine_scores(ms[~sel])
        lg[~sel] = scorer.combine_logits(lu)
    return s, lg, r, ms


def _score_batch(scorer, x, sel, tta: str):
    """Scores, logits, transform scores ``(N, 8)`` (NaN where not scored) and a committee's
    member scores ``(N, members)`` of a stacked batch; ``sel`` flags the cutouts whose 8
    transforms are scored (all of them with ``tta``, whose score is their mean)."""
    nt = len(TRANSFORMS)
    used = slice(0, 4) if tta == "rot4" else slice(0, nt)  # what the tta score averages
    if getattr(scorer, "names", None):
        return _score_committee(scorer, x, sel, tta, used)
    r = np.full((len(x), nt), np.nan)
    ms = np.full((len(x), 0), np.nan)
    if tta != "none":  # every cutout is flagged
        r[:], lt = scorer.score_transforms(x, preprocessed=True, logits=True)
        s = r[:, used].astype(np.float32).mean(axis=1, dtype=np.float32)
        return s, mean_logit(lt[:, used], axis=1), r, ms
    # the flagged cutouts' transformed copies run with the batch
    s, rs, lg = scorer.score_sampled_transforms(x, sel, preprocessed=True, logits=True)
    r[sel] = rs[sel]
    return s, lg, r, ms


def score_pending(pending, scorer: Scorer, tta: str = "none"):
    """Score loaded ``(source, (ok, payload), check)`` items: every ok cutout once, and the 8
    transforms (rotations and mirror images) of those flagged (with ``tta`` all are, and the
    score is the mean over the rotations, ``rot4``, or all 8, ``d8``).

    Parameters
    ----------
    pending : list of (Source, load result, bool)
        Each source, what :func:`load_one` gave for it, and whether its transforms are scored.
    scorer : Scorer or Committee
    tta : {"none", "rot4", "d8"}

    Returns
    -------
    rows : list of dict
        One catalog row per source (error rows for failed loads).
    scores : list of float
        NaN for failed loads.
    transform_scores : list of list of float
        The 8 transform scores per source (NaN where not measured).
    """
    nt = len(TRANSFORMS)
    ok = [item[1][0] for _, item, _ in pending if item[0]]
    if ok:
        sel = np.asarray([f for _, item, f in pending if item[0]], bool)
        s, lg, r, ms = _score_batch(scorer, np.stack(ok), sel, tta)
    names = getattr(scorer, "names", None)  # a committee's members
    rows, out_s, out_r = [], [], []
    seen = scorer.trained_digests  # a committee builds its union on each call: once a batch
    j = 0
    for src, (good, payload), check in pending:
        row = {"id": src.id, "path": src.path, "files": src.files_field(), "label": src.label,
               **dict(src.extra)}
        if good:
            fields = dict(payload[1])
            digest = fields.pop("_digest", None)
            if digest is not None:  # its pixels, or its centre on the sky (another file of it)
                near = scorer.trained_near
                fields["in_training"] = digest in seen or near(fields.get("ra"), fields.get("dec"))
            row.update(score=float(s[j]), logit=float(lg[j]), **fields, status="ok", error="")
            if names:
                row.update({f"score_{m}": float(ms[j, k]) for k, m in enumerate(names)})
            rr = r[j].astype(np.float64)
            if check:
                row.update(score_std=float(rr[:4].std()),
                           mirror_delta=float(np.abs(rr[4:] - rr[:4]).max()),
                           **{f"score_{t}": float(rr[k]) for k, t in enumerate(TRANSFORM_NAMES)})
            out_r.append(rr.tolist())
            out_s.append(float(s[j]))
            j += 1
        else:
            row.update(status="error", error=payload)
            out_s.append(float("nan"))
            out_r.append([float("nan")] * nt)
        rows.append(row)
    return rows, out_s, out_r
