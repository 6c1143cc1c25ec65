"""Join the catalogs of a sharded scan (``lensscore scan --shard K/N``) and check them.

A batch system runs N independent ``scan --shard K/N`` processes; :func:`merge` concatenates
their catalogs and reports what a survey pipeline must not miss: shards that are absent or
given twice, ids that occur more than once, and -- against the input list -- inputs no catalog
has (gaps) or rows for inputs that are not in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .catalog import CatalogMeta, CatalogWriter, catalog_columns, catalog_meta, identity_diff, \
    load_catalog
from .config import DEFAULT_BANDS
from .errors import LensscoreError

__all__ = ["merge", "MergeResult"]


@dataclass
class MergeResult:
    """What :func:`merge` found and wrote."""

    output: Path
    n_rows: int = 0
    n_catalogs: int = 0
    shards: int | None = None
    missing_shards: list[int] = field(default_factory=list)
    duplicate_shards: list[int] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)
    missing_ids: list[str] = field(default_factory=list)
    unexpected_ids: list[str] = field(default_factory=list)
    n_errors: int = 0

    @property
    def ok(self) -> bool:
        """No shard, id or input problem (error rows of bad files are not problems)."""
        return not (self.missing_shards or self.duplicate_shards or self.duplicate_ids
                    or self.missing_ids or self.unexpected_ids)


def _value(v):
    if np.ma.is_masked(v):
        return None
    return v.item() if hasattr(v, "item") else v


def _check_shards(res: MergeResult, paths, tables, metas, n: int | None) -> None:
    """Which shard each catalog is: N from ``--shards`` or the catalogs' metadata, K from the
    ids' hashes (a catalog without metadata -- .csv -- or a full scan among shards is caught)."""
    from .scan import parse_shard, shard_of

    tags = [parse_shard(t) if (t := CatalogMeta.from_dict(m).shard) else None for m in metas]
    ns = {t[1] for t in tags if t}
    if n is None and len(ns) > 1:
        raise LensscoreError(f"catalogs of different shardings: N = {sorted(ns)}")
    n = n or (ns.pop() if ns else None)
    if n is None:
        return
    ks = []
    for p, t, tag in zip(paths, tables, tags):
        have = {shard_of(str(i), n) for i in t["id"]}
        if len(have) > 1:
            raise LensscoreError(f"{p}: ids of {len(have)} different shards of {n}; not the "
                                 f"catalog of one `scan --shard K/{n}`")
        k = have.pop() if have else (tag[0] if tag else None)
        if tag and (tag[1] != n or tag[0] != k):
            raise LensscoreError(f"{p}: says shard {tag[0]}/{tag[1]} but its ids are shard "
                                 f"{k}/{n}")
        if k is not None:
            ks.append(k)
    res.shards = n
    res.missing_shards = sorted(set(range(1, n + 1)) - set(ks))
    res.duplicate_shards = sorted({k for k in ks if ks.count(k) > 1})


def merge(catalogs, output, *, inputs=None, bands=None, shards: int | None = None,
          overwrite: bool = False) -> MergeResult:
    """Concatenate shard catalogs into ``output``, checking shards, duplicates and gaps.

    Parameters
    ----------
    catalogs : sequence of paths
        Catalogs written by ``lensscore scan`` (any format; all with the same columns).
    output : path
        The merged catalog (format from its suffix). Rows follow the input order when
        ``inputs`` is given (as a one-process scan writes them), else they are sorted by id.
        Of an id that occurs twice only the first row is kept.
    inputs : path or sequence of paths, optional
        The FITS files/directories that were scanned: every input must have a row.
    bands : sequence of str, optional
        Bands to group per-band files when listing ``inputs`` [default: the catalogs'].
    shards : int, optional
        N of ``--shard K/N``, for catalogs that do not record it (``.csv``); each catalog's
        shard is then known from its ids.
    overwrite : bool
        Replace an existing ``output``.

    Returns
    -------
    MergeResult

    Raises
    ------
    LensscoreError
        No catalogs, catalogs of other columns, models or options, or of different shardings.
    """
    paths = [Path(c) for c in catalogs]
    if not paths:
        raise LensscoreError("merge needs at least one catalog")
    res = MergeResult(output=Path(output), n_catalogs=len(paths))
    tables, metas = _load_alike(paths)
    _check_shards(res, paths, tables, metas, shards)
    names = tables[0].colnames
    rows, seen, dups = _unique_rows(tables, names)
    res.duplicate_ids = sorted(set(dups))
    if inputs is not None:
        if bands is None:
            bands = list(CatalogMeta.from_dict(metas[0]).bands) or DEFAULT_BANDS
        _order_by_inputs(res, rows, seen, inputs, bands)
    else:
        rows.sort(key=lambda r: str(r["id"]))
    res.n_rows = len(rows)
    res.n_errors = sum(1 for r in rows if r.get("status") == "error")

    rotations = "score_std" in names
    has_labels = "label" in names
    columns = catalog_columns(rotations, has_labels)
    if [c for c, _ in columns] != list(names):
        columns = [(c, str(tables[0][c].dtype)) for c in names]
    meta = {k: v for k, v in metas[0].items() if k != "shard"}
    meta["merged_from"] = len(paths)
    with CatalogWriter(res.output, columns, meta, overwrite=overwrite) as w:
        w.write(rows)
    return res


def _load_alike(paths: list[Path]):
    """The catalogs and their headers; refused unless all have the same columns and were
    scanned with the same model and options (:data:`lensscore.catalog.IDENTITY`)."""
    tables, metas = [], []
    for p in paths:
        t = load_catalog(p)
        tables.append(t)
        metas.append(catalog_meta(t))
    names = tables[0].colnames
    for p, t in zip(paths[1:], tables[1:]):
        if t.colnames != names:
            raise LensscoreError(f"{p}: columns {','.join(t.colnames)} differ from "
                                 f"{paths[0]}'s ({','.join(names)}); scan every shard with the "
                                 "same options")

    for p, m in zip(paths[1:], metas[1:]):
        what = identity_diff(metas[0], m, names=(f"in {paths[0].name}", f"in {p.name}"))
        if what:
            raise LensscoreError(f"{p} was scanned with another model or other options than "
                                 f"{paths[0]} ({what}); merge the shards of one scan")
    return tables, metas


def _unique_rows(tables, names):
    """Every row as a dict, the first of each id only; the ids seen and those repeated."""
    rows, seen, dups = [], set(), []
    for t in tables:
        for r in t:
            i = str(r["id"])
            if i in seen:
                dups.append(i)
                continue
            seen.add(i)
            rows.append({c: _value(r[c]) for c in names})
    return rows, seen, dups


def _order_by_inputs(res: MergeResult, rows: list[dict], seen: set, inputs, bands) -> None:
    """Rows in the order a one-process scan of ``inputs`` writes them; the inputs no catalog
    has, and the rows of no input, into ``res``."""
    from .sources import find_sources

    srcs = find_sources([inputs] if isinstance(inputs, (str, Path)) else list(inputs), bands)
    order = {s.id: k for k, s in enumerate(srcs)}
    res.missing_ids = [s.id for s in srcs if s.id not in seen]
    res.unexpected_ids = sorted(seen - set(order))
    rows.sort(key=lambda r: (order.get(str(r["id"]), len(order)), str(r["id"])))
