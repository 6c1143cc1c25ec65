"""Catalogs written row by row, so a crash or Ctrl-C never loses a row already scored.

``.csv`` and ``.ecsv`` are appended to and flushed after every batch. ``.fits`` and ``.parquet``
cannot be appended to safely, so rows stream into a journal (``OUT.journal.ecsv``) that becomes
the final file when the scan ends; ``--resume`` reads both.

The scan's identity (model sha256, bands, grid, preprocessing, input options) is stored with the
rows -- in the ECSV/FITS/Parquet header, beside a ``.csv`` in ``OUT.meta.json`` -- and a resume
with another model or other options is refused. One process writes a catalog at a time
(``OUT.lock``, released by the kernel if the process dies).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import DEFAULT_ZEROPOINT, PIXEL_SCALE_ARCSEC, TRANSFORM_NAMES
from .errors import LensscoreError
from .files import FileLock, atomic_path, atomic_write
from .grid import Grid, ReadOptions, parse_zeropoints

__all__ = ["CatalogWriter", "CatalogMeta", "catalog_columns", "read_catalog", "load_catalog",
           "catalog_meta", "check_output", "identity_diff", "read_table", "remove_catalog",
           "rows_path", "FORMATS", "IDENTITY", "BOOL_COLUMNS"]

log = logging.getLogger(__name__)

FORMATS = (".csv", ".ecsv", ".fits", ".parquet")
#: The keys of :class:`CatalogMeta` that decide a catalog's scores: a resume, or a merge of
#: shards, must agree on them
IDENTITY = ("model_sha256", "bands", "size", "pixel_scale", "zeropoint", "preprocess",
            "input_pixel_scale", "zeropoint_override", "tta", "max_bad_fraction")
_STREAMED = (".csv", ".ecsv")
#: units of the catalog's physical columns (written into ECSV and FITS headers)
UNITS = {"ra": "deg", "dec": "deg", "pixscale_in": "arcsec / pix"}
#: boolean columns: ``True``/``False`` on disk (ECSV's bool), empty on error rows; catalogs of
#: an older lensscore wrote them as the strings ``true``/``false``, read as booleans too
BOOL_COLUMNS = ("resampled", "in_training")


@dataclass(frozen=True)
class CatalogMeta:
    """A catalog's header: the model(s), the grid and every option that decides a score.

    A scan writes it (:meth:`to_dict`, into the ECSV/FITS/Parquet header or beside a ``.csv``
    in ``OUT.meta.json``); a resume and a merge compare its :data:`IDENTITY` keys; a gallery
    reads it back (:meth:`from_dict`, :meth:`read_options`) to show what was scored.

    Attributes
    ----------
    model : str
        The model file's name (``a.onnx + b.onnx`` for a committee).
    model_arch : str
    pixel_scale, zeropoint : float
        The model's grid (arcsec/px; AB zero point).
    bands : tuple of str
        The model's bands, in its order.
    size : int or None
        The model's cutout side.
    lensscore_version : str
    row_order : {"input", "tile"}
        Files in the listing's order; objects of an object catalog tile by tile.
    threshold : float or None
    model_sha256 : str
    preprocess : str
        The preprocessing spec, JSON.
    input_pixel_scale : float or None
        ``--pixel-scale``: the inputs' scale where headers state none.
    zeropoint_override : tuple of (band, zp)
        ``--zeropoint``.
    max_bad_fraction : float or None
    tta : {"none", "rot4", "d8"}
    shard : str or None
        ``"K/N"`` for the catalog of one shard.
    """

    model: str = ""
    model_arch: str = ""
    pixel_scale: float = PIXEL_SCALE_ARCSEC
    zeropoint: float = DEFAULT_ZEROPOINT
    bands: tuple[str, ...] = ()
    size: int | None = None
    lensscore_version: str = ""
    row_order: str = "input"
    threshold: float | None = None
    model_sha256: str = ""
    preprocess: str = ""
    input_pixel_scale: float | None = None
    zeropoint_override: tuple[tuple[str, float], ...] = ()
    max_bad_fraction: float | None = None
    tta: str = "none"
    shard: str | None = None

    def to_dict(self) -> dict:
        """The header as written: keys in this order, values as text where the format needs
        one (``bands`` ``"g,r,i"``, ``zeropoint_override`` ``"g=27,r=27.1"``,
        ``input_pixel_scale`` ``""`` when not given)."""
        meta = {"model": self.model, "model_arch": self.model_arch,
                "pixel_scale": self.pixel_scale, "zeropoint": self.zeropoint,
                "bands": ",".join(self.bands), "size": self.size,
                "lensscore_version": self.lensscore_version, "row_order": self.row_order,
                "threshold": self.threshold, "model_sha256": self.model_sha256,
                "preprocess": self.preprocess,
                "input_pixel_scale": "" if self.input_pixel_scale is None
                else self.input_pixel_scale,
                "zeropoint_override": ",".join(f"{b}={z:g}" for b, z in self.zeropoint_override),
                "max_bad_fraction": self.max_bad_fraction, "tta": self.tta}
        if self.shard is not None:
            meta["shard"] = self.shard
        return meta

    @classmethod
    def from_dict(cls, meta: Mapping) -> CatalogMeta:
        """A catalog's header as read back (:func:`catalog_meta`): keys in any case, values as
        the format stored them (a FITS header holds text). What is missing or unreadable (an
        older catalog, a table from elsewhere) takes the default: the HSC grid, no overrides.
        Keys this version does not know are left out (the header itself is untouched)."""
        m = {str(k).lower(): v for k, v in meta.items()}

        def num(key, default):
            try:
                v = float(m.get(key, ""))
            except (TypeError, ValueError):
                return default
            return v if math.isfinite(v) else default

        def text(key, default=""):
            v = m.get(key)
            return default if v is None else str(v)

        try:
            zps = parse_zeropoints(m.get("zeropoint_override") or None)
        except ValueError:
            zps = ()
        size = num("size", None)
        shard = m.get("shard")
        return cls(model=text("model"), model_arch=text("model_arch"),
                   pixel_scale=num("pixel_scale", PIXEL_SCALE_ARCSEC),
                   zeropoint=num("zeropoint", DEFAULT_ZEROPOINT),
                   bands=tuple(b for b in text("bands").split(",") if b),
                   size=int(size) if size else None,
                   lensscore_version=text("lensscore_version"),
                   row_order=text("row_order", "input"), threshold=num("threshold", None),
                   model_sha256=text("model_sha256"), preprocess=text("preprocess"),
                   input_pixel_scale=num("input_pixel_scale", None), zeropoint_override=zps,
                   max_bad_fraction=num("max_bad_fraction", None), tta=text("tta", "none"),
                   shard=str(shard) if shard else None)

    def read_options(self, bands=None, size: int | None = None):
        """How the scan read its inputs: the model's grid, the input pixel scale and the zero
        points given (so that a thumbnail shows what was scored).

        Parameters
        ----------
        bands : sequence of str, optional
            Default: :attr:`bands`.
        size : int, optional
            Default: :attr:`size`.

        Returns
        -------
        ReadOptions
        """
        grid = Grid(tuple(self.bands if bands is None else bands),
                    self.size if size is None else size, self.pixel_scale, self.zeropoint)
        return ReadOptions(grid, self.input_pixel_scale, self.zeropoint_override)


def catalog_columns(rotations: bool, labels: bool, members=(), kept=(),
                    trained: bool = False) -> list[tuple[str, str]]:
    """The catalog schema: ``(name, numpy dtype)`` pairs, in column order (DESIGN.md);
    columns kept from an input object catalog come after ``path``, a committee's members add
    ``score_<name>`` after ``score``. ``files`` says what was read, so that a catalog row
    leads back to its pixels (JSON: :meth:`lensscore.sources.Source.files_field`)."""
    # the logit ranks where float32 scores have saturated at 1.0 (export.logit)
    cols = [("id", "str"), ("path", "str")] + list(kept) + [("score", "float64"),
                                                          ("logit", "float64")]
    cols += [(f"score_{m}", "float64") for m in members]
    if rotations:  # the dihedral check: 4 rotations, then the 4 rotations of the mirror image
        cols += [("score_std", "float64"), ("mirror_delta", "float64")]
        cols += [(f"score_{t}", "float64") for t in TRANSFORM_NAMES]
    cols += [("ra", "float64"), ("dec", "float64")]
    if labels:
        cols += [("label", "int16")]
    if trained:  # the model records its training cutouts: was this one of them?
        cols += [("in_training", "bool")]
    cols += [("n_nonfinite", "int64"), ("bad_fraction", "float64"), ("pixscale_in", "float64"),
             ("resampled", "bool"), ("reoriented", "str"), ("zp_source", "str"),
             ("band_source", "str"), ("files", "str"), ("status", "str"), ("error", "str")]
    return cols


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "True" if v else "False"  # as astropy's ECSV bool reads it
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else repr(float(v))
    return str(v)


_TRUTH = {"true": True, "1": True, "false": False, "0": False}


def _as_bool(v) -> bool | None:
    """A boolean column's value as written now or by an older lensscore (``"true"``); None
    for empty (an error row)."""
    if v is None or v is np.ma.masked:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    return _TRUTH.get(str(v).strip().lower())


def _suffix(path: Path) -> str:
    suf = path.suffix.lower()
    if suf not in FORMATS:
        raise LensscoreError(
            f"{path}: unknown catalog format {suf or '(none)'!r}; use one of {', '.join(FORMATS)}"
        )
    return suf


def _journal(path: Path) -> Path:
    return path.with_name(path.name + ".journal.ecsv")


def _sidecar(path: Path) -> Path:
    """Where a ``.csv`` catalog keeps its metadata (a CSV file has no header to hold it)."""
    return path.with_name(path.name + ".meta.json")


def rows_path(path) -> Path:
    """Where a scan's rows are while it runs: the catalog itself (``.csv``, ``.ecsv``), or the
    journal a ``.fits``/``.parquet`` catalog is written from when the scan ends."""
    path = Path(path)
    return path if path.suffix.lower() in _STREAMED else _journal(path)


def remove_catalog(path) -> None:
    """Remove a catalog and what belongs to it (journal, ``.meta.json``): a scan that found no
    input leaves nothing that would block its rerun."""
    path = Path(path)
    for p in (path, _journal(path), _sidecar(path)):
        p.unlink(missing_ok=True)


def _lock(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def check_output(path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Refuse, before any work, a catalog that could not be written at the end: an unknown
    format, a missing directory, ``.parquet`` without pyarrow, an existing catalog without
    ``resume``/``overwrite``."""
    p = Path(path)
    suf = _suffix(p)
    if not p.parent.is_dir():
        raise LensscoreError(f"{p}: directory {p.parent} does not exist (a typo?); create it "
                             "first")
    if suf == ".parquet":
        from ._optional import require

        require("HAS_PYARROW", "writing .parquet")
    if not (resume or overwrite) and (p.exists() or _journal(p).exists()):
        raise LensscoreError(f"{p} exists; use --resume to continue that scan or --overwrite "
                             "to replace it")
    return p


def _ecsv_meta(path: Path) -> dict:
    """The ``meta`` of an ECSV file, from its commented YAML header only (not its rows)."""
    return dict(_ecsv_header(path).get("meta") or {})


def _ecsv_header(path: Path) -> dict:
    """An ECSV file's YAML header (``datatype``, ``meta``), from its comment lines only."""
    from astropy.table.meta import get_header_from_yaml

    lines = []
    with open(path, encoding="utf-8") as fh:
        for ln in fh:
            if not ln.startswith("#"):
                break
            body = ln[2:].rstrip("\n") if ln.startswith("# ") else ""
            if body and not body.startswith("%"):
                lines.append(body)
    try:
        return dict(get_header_from_yaml(lines) or {})
    except Exception:  # a damaged header: nothing to compare against
        return {}


def _header_text(columns, meta: dict, ecsv: bool) -> str:
    if not ecsv:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([c for c, _ in columns])
        return buf.getvalue()
    from astropy.table import Table

    t = Table(names=[c for c, _ in columns], dtype=[d for _, d in columns])
    for name, unit in UNITS.items():  # ECSV (and the FITS written from it) carry them
        if name in t.colnames:
            t[name].unit = unit
    t.meta.update(meta)
    buf = io.StringIO()
    t.write(buf, format="ascii.ecsv", delimiter=",")
    return buf.getvalue()


def _repair_tail(path: Path) -> int:
    """Cut a partial last line (the process died mid-write); return bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        # find the last newline
        pos, step = size, 4096
        while pos > 0:
            start = max(0, pos - step)
            fh.seek(start)
            chunk = fh.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                cut = start + nl + 1
                fh.truncate(cut)
                return size - cut
            pos = start
        fh.truncate(0)
        return size


def _read_streamed(path: Path) -> tuple[list[str], list[list[str]]]:
    """Column names and raw rows of a csv/ecsv file written by :class:`CatalogWriter`."""
    with open(path, newline="", encoding="utf-8") as fh:
        lines = (ln for ln in fh if not ln.startswith("#"))
        reader = csv.reader(lines)
        try:
            names = next(reader)
        except StopIteration:
            return [], []
        return names, [r for r in reader if r]


class CatalogWriter:
    """Append catalog rows to ``path`` batch by batch.

    Parameters
    ----------
    path : str or Path
        ``.csv``, ``.ecsv``, ``.fits`` or ``.parquet``.
    columns : list of (name, dtype)
        From :func:`catalog_columns`.
    meta : dict
        Written into the ECSV/FITS header (model, version, row order).
    resume : bool
        Keep rows already in ``path`` (and its journal) and skip their inputs; without it an
        existing file is an error, never silently overwritten.
    overwrite : bool
        Replace an existing catalog.
    retry_errors : bool
        With ``resume``: drop the existing error rows (a transient read failure need not be
        permanent), so that their inputs are scored again; their new rows are appended.

    Attributes
    ----------
    done : set of str
        ``id`` values of rows already in the catalog (on resume): ids are relative to the scan
        root, so ``./cutouts`` resumes a scan of ``cutouts`` (or of ``/abs/cutouts``).
    existing : list of dict
        Those rows, values as the strings on disk.
    """

    def __init__(self, path, columns, meta: dict | None = None, *, resume=False,
                 overwrite=False, identity: tuple[str, ...] = (), retry_errors: bool = False):
        self.path = Path(path)
        self.format = _suffix(self.path)
        self.columns = list(columns)
        self.names = [c for c, _ in self.columns]
        self._bools = {c for c, d in self.columns if d == "bool"}
        self.meta = dict(meta or {})
        self.identity = tuple(identity)
        self.streamed = self.format in _STREAMED
        self.target = self.path if self.streamed else _journal(self.path)
        self.done: set[str] = set()
        self.existing: list[dict[str, str]] = []
        self.n_retried = 0
        self._retry = bool(retry_errors)
        self._lock = FileLock(_lock(self.path), str(self.path)).acquire()
        try:
            self._open(resume, overwrite)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, resume, overwrite):
        exists = self.path.exists() or self.target.exists()
        if exists and not (resume or overwrite):
            raise LensscoreError(f"{self.path} exists; use --resume to continue that scan or "
                                 "--overwrite to replace it")
        if exists and resume:
            self._check_identity()
            self._load_existing()
        else:
            for old in (self.path, self.target, _sidecar(self.path)):
                if old.exists():
                    old.unlink()
            self._start_file()
        if self.format == ".csv" and not _sidecar(self.path).exists():
            atomic_write(_sidecar(self.path), json.dumps(self.meta, indent=1, default=str))
        self._fh = open(self.target, "a", encoding="utf-8", newline="")
        self._csv = csv.writer(self._fh, lineterminator="\n")

    def _start_file(self):
        with open(self.target, "w", encoding="utf-8", newline="") as fh:
            fh.write(_header_text(self.columns, self.meta, ecsv=self.format != ".csv"))

    def _existing_meta(self) -> dict:
        """The metadata the catalog was written with ({} when there is none to read)."""
        if self.format == ".csv":
            side = _sidecar(self.path)
            try:
                return json.loads(side.read_text()) if side.exists() else {}
            except (OSError, ValueError):
                return {}
        if self.target.exists():
            return _ecsv_meta(self.target)
        from astropy.table import Table

        return catalog_meta(Table.read(self.path))

    def _check_identity(self):
        """Refuse to resume a catalog written with another model or other options."""
        if not self.identity:
            return
        old = {str(k).lower(): v for k, v in self._existing_meta().items()}
        if self.format == ".csv" and not _sidecar(self.path).exists():
            raise LensscoreError(f"{self.path}: its {_sidecar(self.path).name} (the model and "
                                 "options it was written with) is missing, so a resume cannot "
                                 "be checked; restore it, or --overwrite")
        if not any(k in old for k in self.identity):
            log.warning("%s: the catalog does not say which model and options wrote it (an "
                        "older lensscore); resuming without checking", self.path)
            return
        # keys an older catalog does not record cannot be checked
        what = identity_diff(old, self.meta, [k for k in self.identity if k in old])
        if what:
            raise LensscoreError(f"{self.path} was written with another model or other options "
                                 f"({what}); resume with the same ones, or --overwrite")

    def _load_existing(self):
        if not self.streamed and self.path.exists():
            # a finished .fits/.parquet: move its rows back into a journal and append
            from astropy.table import Table

            t = Table.read(self.path)
            _with_logit(t)
            self._check_names(list(t.colnames), self.path)
            if not self.target.exists():
                with atomic_path(self.target) as tmp, open(tmp, "w", encoding="utf-8",
                                                          newline="") as fh:
                    fh.write(_header_text(self.columns, self.meta, ecsv=True))
                    w = csv.writer(fh, lineterminator="\n")
                    for row in t:
                        w.writerow(self._text({c: None if np.ma.is_masked(row[c]) else row[c]
                                               for c in self.names}))
            self.path.unlink()
        if self.target.exists():
            cut = _repair_tail(self.target)
            if cut:
                log.warning("%s: removed a partial last line (%d bytes) left by an interrupted "
                            "scan", self.target, cut)
            names, rows = _read_streamed(self.target)
            if not names:  # header lost: start the file again
                self._start_file()
                return
            no_logit = "logit" not in names and "logit" in self.names
            self._check_names(names + ["logit"] if no_logit else names, self.target,
                              older=no_logit)
            key = names.index("id")
            good = [r for r in rows if len(r) == len(names)]
            if len(good) != len(rows):
                raise LensscoreError(f"{self.target}: {len(rows) - len(good)} malformed rows; "
                                     "not a catalog this tool can resume")
            kept = good
            if self._retry and "status" in names:
                st = names.index("status")
                kept = [r for r in good if r[st] != "error"]
                self.n_retried = len(good) - len(kept)
            old = self._old_bools(names, kept)
            if no_logit:  # an older lensscore's catalog: the logit column derived, as read
                kept = [self._text(_derived_logit(dict(zip(names, r)))) for r in kept]
                names = list(self.names)
                log.info("%s: a logit column derived from the scores added", self.target)
            elif old:  # an older lensscore's "true"/"false": the file becomes typed
                kept = [self._text(dict(zip(names, r))) for r in kept]
                log.info("%s: boolean columns (%s) rewritten as True/False", self.target,
                         ", ".join(old))
            if self.n_retried or old or no_logit:  # the file rewritten, new rows appended
                with atomic_path(self.target) as tmp, open(tmp, "w", encoding="utf-8",
                                                          newline="") as fh:
                    fh.write(_header_text(self.columns, self.meta, ecsv=self.format != ".csv"))
                    csv.writer(fh, lineterminator="\n").writerows(kept)
            good = kept
            self.existing = [dict(zip(names, r)) for r in good]
            self.done = {r[key] for r in good}

    def _old_bools(self, names, rows) -> list[str]:
        """The boolean columns an older lensscore wrote as text (``"true"``; an ECSV header's
        ``string``), which a typed file would not read back."""
        cols = [c for c in names if c in self._bools]
        if not cols:
            return []
        if self.target.suffix == ".ecsv":  # the catalog, or a .fits/.parquet's journal
            types = {d.get("name"): d.get("datatype")
                     for d in _ecsv_header(self.target).get("datatype") or ()}
            return [c for c in cols if types.get(c, "bool") != "bool"]
        at = [names.index(c) for c in cols]
        return [c for c, k in zip(cols, at) if any(r[k] in ("true", "false") for r in rows)]

    def _text(self, row: Mapping) -> list[str]:
        """One row's fields as written: booleans ``True``/``False`` whatever they came as."""
        out = []
        for c in self.names:
            v = row.get(c)
            if c in self._bools:
                v = _as_bool(v)
            out.append(_fmt(v))
        return out

    def _check_names(self, names, where, older: bool = False):
        """Refuse another scan's columns; ``older``: ``names`` had no logit column (an older
        lensscore's catalog, which gets one), compared as if it had."""
        if older:
            names = [c for c in names if c != "logit"]
            names.insert(names.index("score") + 1 if "score" in names else 0, "logit")
        if names != self.names:
            raise LensscoreError(
                f"{where}: existing catalog has columns {','.join(names)}, this scan writes "
                f"{','.join(self.names)} (same --rotations/labels options needed to resume)")

    def write(self, rows: Iterable[dict]) -> None:
        """Append rows (dicts keyed by column name) and flush them to disk."""
        for r in rows:
            self._csv.writerow(self._text(r))
        self._fh.flush()

    def close(self, finalize: bool = True) -> None:
        """Flush and close; for ``.fits``/``.parquet`` write the final file from the journal.

        With ``finalize=False`` (an interrupted scan) the journal stays for ``--resume``.
        """
        if self._fh.closed:
            return
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            if finalize and not self.streamed:
                self._finalize()
        finally:
            self._lock.release()

    def _finalize(self):
        from astropy.table import Table

        t = Table.read(self.target, format="ascii.ecsv")
        with atomic_path(self.path, suffix=self.format) as tmp:
            if self.format == ".fits":
                _write_fits(t, self.meta, tmp)
            else:
                try:
                    t.write(tmp, format="parquet", overwrite=True)
                except ImportError:
                    raise LensscoreError(
                        "writing .parquet needs pyarrow: pip install 'lensscore[parquet]'; the "
                        f"rows are kept in {self.target}") from None
        self.target.unlink()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(finalize=exc_type is None)


def _write_fits(table, meta: dict, path: Path) -> None:
    """A FITS binary table with ``meta`` as HIERARCH cards (full key names, long values
    continued), read back by :func:`catalog_meta` under the same lower-case keys."""
    from astropy.io import fits

    t = table.copy(copy_data=False)
    t.meta = {}
    for c in BOOL_COLUMNS:  # a FITS logical has no empty astropy reads back (masked: True)
        if c in t.colnames and t[c].dtype == bool and np.ma.getmaskarray(t[c]).any():
            t[c] = t[c].filled(False)
    try:
        hdu = fits.table_to_hdu(t)
    except UnicodeEncodeError:  # a backstop: scan refuses such inputs before any work
        raise LensscoreError(f"{path}: a FITS table holds ASCII text only, and a row does not; "
                             f"the rows are in {_journal(path).name}: write .ecsv instead") from None
    for k, v in meta.items():
        hdu.header[f"HIERARCH {k}"] = str(v)
    hdu.writeto(path, overwrite=True)


def _same(v) -> str:
    return "" if v is None else str(v)


def identity_diff(a: dict, b: dict, keys=IDENTITY, names=("there", "now")) -> str:
    """``""`` if two catalogs' metadata agree on ``keys`` (absent counts as empty), else what
    differs, e.g. ``"model_sha256 3f9a0c0d1e2f… there, 81b2e4a5b6c7… now"``."""
    diff = [k for k in keys if _same(a.get(k)) != _same(b.get(k))]
    return "; ".join(f"{k} {_short(a.get(k))} {names[0]}, {_short(b.get(k))} {names[1]}"
                     for k in diff)


def _short(v) -> str:
    v = _same(v)
    return (v[:12] + "…") if len(v) > 16 else (v or "(none)")


def read_table(path):
    """Any table lensscore reads (catalogs, labels, object catalogs): ``.csv``/``.ecsv`` as
    those formats, anything else as astropy guesses (``.fits``, ``.parquet``)."""
    from astropy.table import Table

    p = Path(path)
    fmt = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv"}.get(p.suffix.lower())
    return Table.read(p, format=fmt) if fmt else Table.read(p)


def read_catalog(path):
    """Read a catalog written by lensscore (any format) as an astropy Table."""

    p = Path(path)
    t = read_table(p)
    side = _sidecar(p)
    if p.suffix.lower() == ".csv" and side.exists():
        try:
            t.meta.update(json.loads(side.read_text()))
        except ValueError:
            log.warning("%s: unreadable metadata file %s, ignored", p, side)
    _typed_bools(t)
    _with_logit(t)
    return t


def _derived_logit(row: dict) -> dict:
    """A resumed text row of an older catalog with its ``logit`` derived from its score."""
    from .scorer import logit_of

    try:
        score = float(row.get("score") or "nan")
    except ValueError:
        score = float("nan")
    return {**row, "logit": float(logit_of(score))}


def _with_logit(table) -> None:
    """A catalog of a lensscore before the logit column gets one, derived from its scores
    (``+inf`` at 1.0: their ties stay ties), beside ``score``: merge, gallery and resume then
    treat it as a catalog of today's."""
    if "score" not in table.colnames or "logit" in table.colnames:
        return
    from .scorer import logit_of

    score = np.ma.filled(np.ma.asarray(table["score"], dtype=np.float64), np.nan)
    table.add_column(logit_of(score), name="logit", index=table.colnames.index("score") + 1)


def _typed_bools(table) -> None:
    """:data:`BOOL_COLUMNS` as booleans (masked where empty: error rows) whatever the file
    holds: a CSV's text, or an older lensscore's ``"true"``/``"false"`` in any format. A
    column with other values (not a lensscore catalog's) is left as it is."""
    from astropy.table import MaskedColumn

    for c in BOOL_COLUMNS:
        if c not in table.colnames or table[c].dtype == bool:
            continue
        col = table[c]
        masked = np.ma.getmaskarray(col) if hasattr(col, "mask") else np.zeros(len(col), bool)
        vals = [None if m else _as_bool(v) for v, m in zip(col.tolist(), masked)]
        blank = [v is None for v in vals]
        if any(b and not m and str(v).strip() for b, m, v in zip(blank, masked, col.tolist())):
            continue
        table[c] = MaskedColumn([bool(v) for v in vals], mask=blank, dtype=bool, name=c)



def catalog_meta(table) -> dict:
    """A catalog's metadata with lower-case keys (a FITS header upper-cases them)."""
    return {str(k).lower(): v for k, v in table.meta.items()}


def load_catalog(path):
    """Read a lensscore catalog for gallery/merge: a one-line LensscoreError if it is missing,
    unreadable or lacks the ``id``, ``path`` and ``score`` columns."""
    p = Path(path)
    if not p.exists():
        raise LensscoreError(f"{p}: catalog not found")
    try:
        t = read_catalog(p)
    except Exception as exc:  # astropy raises many types for unreadable tables
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise LensscoreError(f"{p}: cannot read the catalog ({first[:160]})") from None
    if not {"id", "path", "score"} <= set(t.colnames):
        raise LensscoreError(f"{p}: not a lensscore catalog: needs columns id, path, score "
                             f"(has {', '.join(t.colnames)})")
    return t
