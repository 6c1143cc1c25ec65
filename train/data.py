"""Labelled data sets from FITS directories, an on-disk array cache, and the 56/14/30 split.

Pixels come from :func:`lensscore.io.load_source` and :func:`lensscore.preprocess.preprocess`:
the network is trained on exactly what the scorer will feed it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lensscore.files import atomic_path, atomic_write
from lensscore.config import DEFAULT_BANDS, DEFAULT_SIZE
from lensscore.errors import CutoutError
from lensscore.grid import Grid, ReadOptions
from lensscore.io import find_sources, load_source
from lensscore.preprocess import DEFAULT_SPEC, PreprocessSpec, preprocess

__all__ = ["Dataset", "load_dataset", "labelled_sources", "make_split", "load_split", "save_split",
           "SplitError", "fingerprint"]

log = logging.getLogger(__name__)

CACHE_VERSION = 1


class SplitError(ValueError):
    """A run directory's split does not match the data set."""


@dataclass
class Dataset:
    """Preprocessed cutouts and labels.

    Attributes
    ----------
    x : ndarray, float32, shape ``(N, bands, size, size)`` (FITS order; may be a memmap)
    y : ndarray, int8, shape ``(N,)``
    ids : list of str
    fingerprint : str
        Hash of the ids and labels: identifies the data set in ``split.json``.
    skipped : list of (path, reason)
        Files that could not be loaded.
    """

    x: np.ndarray
    y: np.ndarray
    ids: list[str]
    fingerprint: str
    skipped: list[tuple[str, str]]

    def nhwc(self, idx) -> np.ndarray:
        """Images ``idx`` in the Keras layout ``(n, size, size, bands)``."""
        return np.ascontiguousarray(np.transpose(self.x[idx], (0, 2, 3, 1)))


def fingerprint(ids, y) -> str:
    """A data set's identity in ``split.json``: a hash of its ids and labels, in order."""
    h = hashlib.sha256()
    for i, lab in zip(ids, y):
        h.update(f"{i}\t{int(lab)}\n".encode())
    return h.hexdigest()[:16]


def _listing_key(sources, bands, size, spec: PreprocessSpec, options: ReadOptions) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{','.join(bands)}|{size}|{spec.to_json()}|"
                       f"{options}".encode())
    for s in sources:
        files = [f for _, f in s.files] if isinstance(s.files, tuple) else [s.files]
        for f in files:
            st = os.stat(f)
            h.update(f"{s.id}|{s.label}|{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _is_table(p: Path) -> bool:
    """A catalog file (CSV, ECSV, Parquet, or FITS whose first extension is a table), not a
    cutout."""
    from lensscore.sources import split_fits_suffix

    if not split_fits_suffix(p.name):
        return True
    from astropy.io import fits

    try:
        with fits.open(p) as hd:
            return len(hd) > 1 and isinstance(hd[1], (fits.BinTableHDU, fits.TableHDU))
    except OSError:
        return False


def labelled_sources(data, bands, labels=None) -> list:
    """Labelled sources of a directory or of a scan catalog (its ``ok`` rows: ``files`` or
    ``path`` say what to read, its ``label`` column or ``labels`` what it is).

    Parameters
    ----------
    data : path
        A directory (labels from ``lenses/``/``nonlenses/`` or ``labels``), a FITS cutout, or
        a catalog written by ``lensscore scan`` (CSV, ECSV, FITS table, Parquet).
    bands : sequence of str
        The model's bands (per-band files are grouped by them).
    labels : mapping id -> 0/1, optional
        Labels that override the directory names or the catalog's ``label`` column.

    Returns
    -------
    list of lensscore.sources.Source
        Only those with a label.

    Raises
    ------
    ValueError
        A file that is not a table lensscore can read, or not a scan catalog.
    """
    from dataclasses import replace

    from lensscore.sources import Source

    p = Path(data)
    if p.is_dir() or not _is_table(p):
        return [s for s in find_sources(p, bands, labels=labels) if s.label is not None]
    from lensscore.catalog import read_table

    try:
        t = read_table(p)
    except Exception as exc:  # astropy's many reader errors: one line for a user
        raise ValueError(f"{p}: not a directory, and not a table lensscore can read "
                         f"({type(exc).__name__})") from None
    if "id" not in t.colnames or not {"path", "files"} & set(t.colnames):
        raise ValueError(f"{p}: not a scan catalog (it needs 'id' and 'path' or 'files' "
                         f"columns; has {', '.join(t.colnames[:8])})")
    out = []
    for row in t:
        r = {c: row[c] for c in t.colnames}
        if str(r.get("status", "ok")) != "ok":
            continue
        s = Source.from_row(r, base=p.parent)
        lab = (labels or {}).get(s.id, s.label)
        if lab is not None:
            out.append(replace(s, label=int(lab)))
    return out


def load_dataset(
    data_dir,
    *,
    bands=DEFAULT_BANDS,
    size: int = DEFAULT_SIZE,
    spec: PreprocessSpec = DEFAULT_SPEC,
    labels: dict | None = None,
    cache_dir=None,
    progress: Callable[[int, int], None] | None = None,
    options: ReadOptions | None = None,
) -> Dataset:
    """Load every labelled cutout under ``data_dir`` (``lenses/``/``nonlenses/`` or a catalog).

    Parameters
    ----------
    data_dir : path
    labels : dict id -> 0/1, optional
        Overrides labels from directory names.
    cache_dir : path, optional
        Where the array cache lives (default ``DATA/.lensscore_cache``); keyed by the file
        listing (names, sizes, mtimes), bands, size and preprocessing, so a changed data set is
        re-read, never served stale.
    progress : callable(done, total), optional
    options : lensscore.grid.ReadOptions, optional
        The grid the cutouts are put on (the survey preset's; default HSC), as the scorer does.

    Raises
    ------
    ValueError
        If no labelled cutouts are found, or only one class.
    """
    sources = labelled_sources(data_dir, bands, labels)
    if not sources:
        raise ValueError(f"{data_dir}: no labelled FITS cutouts (need lenses/ and nonlenses/ "
                         "directories, lens_*/nonlens_*, or a labels file)")
    options = options or ReadOptions(Grid(bands=tuple(bands), size=size))
    key = _listing_key(sources, bands, size, spec, options)
    cache = Path(cache_dir) if cache_dir else Path(data_dir) / ".lensscore_cache"
    xf, mf = cache / f"{key}.x.npy", cache / f"{key}.json"
    if xf.exists() and mf.exists():
        meta = json.loads(mf.read_text())
        x = np.load(xf, mmap_mode="r", allow_pickle=False)
        y = np.asarray(meta["y"], dtype=np.int8)
        log.info("array cache hit: %s (%d cutouts)", xf, len(y))
        return Dataset(x, y, meta["ids"], meta["fingerprint"],
                       [tuple(s) for s in meta["skipped"]])

    xs, ys, ids, skipped = [], [], [], []
    for k, s in enumerate(sources):
        try:
            xs.append(preprocess(load_source(s, bands, size, options).data, spec))
            ys.append(s.label)
            ids.append(s.id)
        except (CutoutError, ValueError) as exc:
            skipped.append((s.path, str(exc)))
        if progress is not None:
            progress(k + 1, len(sources))
    if skipped:
        log.warning("%d of %d files could not be loaded (first: %s)", len(skipped),
                    len(sources), skipped[0][1])
    y = np.asarray(ys, dtype=np.int8)
    if len(set(y.tolist())) < 2:
        raise ValueError(f"{data_dir}: need both lenses and non-lenses, found only label "
                         f"{sorted(set(y.tolist()))}")
    x = np.stack(xs).astype(np.float32)
    fp = fingerprint(ids, y)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        # unique temporary names, then os.replace: two fits filling one cache at once each
        # write whole files, and a reader never sees half of one
        with atomic_path(xf, suffix=".npy") as tmp:
            np.save(tmp, x)
        atomic_write(mf, json.dumps({"y": y.tolist(), "ids": ids, "fingerprint": fp,
                                     "skipped": skipped, "data_dir": str(data_dir)}))
    except OSError as exc:
        log.warning("cannot write the array cache in %s (%s); continuing without", cache, exc)
    return Dataset(x, y, ids, fp, skipped)


def make_split(y, seed: int = 0, test: float = 0.30, val: float = 0.20) -> dict[str, np.ndarray]:
    """Stratified split: ``test`` kept aside, the rest ``1-val``/``val`` train/validation.

    The defaults give the seed's 56/14/30. Returns sorted index arrays ``train``, ``val``,
    ``test``; the same ``y`` and ``seed`` always give the same split.
    """
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    parts = {"train": [], "val": [], "test": []}
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_test = int(round(test * len(idx)))
        n_val = int(round(val * (len(idx) - n_test)))
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def save_split(path, ds: Dataset, split: dict, seed: int) -> None:
    """Write ``split.json``: the ids of each part and the data set's fingerprint."""
    doc = {"fingerprint": ds.fingerprint, "seed": seed, "n": len(ds.ids),
           **{k: [ds.ids[i] for i in v] for k, v in split.items()}}
    atomic_write(path, json.dumps(doc, indent=0))


def load_split(path, ds: Dataset, seed: int | None = None) -> dict[str, np.ndarray]:
    """Read ``split.json`` and map its ids onto ``ds``.

    Parameters
    ----------
    path : path
    ds : Dataset
    seed : int, optional
        The seed the run asks for: a split made with another is refused (a run directory
        left by an attempt with other options must not lend its split to a new run).

    Raises
    ------
    SplitError
        If the data set is not the one the split was made for, or the seed another.
    """
    doc = json.loads(Path(path).read_text())
    if seed is not None and doc.get("seed") is not None and int(doc["seed"]) != int(seed):
        raise SplitError(f"{path}: this split was made with seed {doc['seed']}, the run asks for "
                         f"seed {seed}; give another --out, or remove {Path(path).name}")
    if doc["fingerprint"] != ds.fingerprint:
        raise SplitError(
            f"{path}: this run was split on another data set (fingerprint {doc['fingerprint']}, "
            f"{doc['n']} cutouts; the data given has {ds.fingerprint}, {len(ds.ids)} cutouts)")
    pos = {i: k for k, i in enumerate(ds.ids)}
    return {k: np.sort(np.array([pos[i] for i in doc[k]], dtype=int))
            for k in ("train", "val", "test")}
