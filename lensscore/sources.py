"""Finding inputs: FITS files and directories become :class:`Source` objects, one per object
to score -- per-band files grouped (``<id>_g.fits``, HSC ``…HSC-G…`` names), labels from
``lens*``/``nonlens*`` directories, ids relative to the scanned root (they key catalogs)."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .config import DEFAULT_BANDS, FITS_SUFFIXES
from .survey import normalize_band

__all__ = ["Source", "find_sources", "label_from_path", "split_fits_suffix", "group_display",
           "band_token"]

#: band tokens recognised at the end of a per-band file name, ``<id>_g.fits``
_SUFFIX_BANDS = ("u", "g", "r", "i", "z", "y")
_SUFFIX_RE = re.compile(r"^(?P<id>.+?)[_.\-](?P<band>[A-Za-z0-9]+)$")
_HSC_RE = re.compile(r"^(?P<pre>.*?)[_.\-]?HSC-(?P<band>[GRIZY])2?(?P<post>.*)$", re.IGNORECASE)
_POS_LABEL = re.compile(r"^(lens|lenses|lens_.*)$", re.IGNORECASE)
_NEG_LABEL = re.compile(r"^(nonlens|nonlenses|nonlens_.*)$", re.IGNORECASE)

def split_fits_suffix(name: str) -> tuple[str, str] | None:
    """Split ``obj.fits.gz`` into ``("obj", ".fits.gz")``; ``None`` if not a FITS file name."""
    low = name.lower()
    for suf in FITS_SUFFIXES:
        if low.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)], name[-len(suf):]
    return None


def label_from_path(path, root=None) -> int | None:
    """Label from the innermost directory named ``lens*``/``nonlens*`` (1, 0), else ``None``.

    A directory named ``lens``, ``lenses`` or ``lens_…`` is positive; ``nonlens``,
    ``nonlenses`` or ``nonlens_…`` negative (the seed's ``lens_1..4``/``nonlens_1..4``).
    With ``root`` (the directory given on the command line), only the root's own name and the
    directories below it count: scanning ``/home/lens_group/run1`` labels nothing a lens.
    Without it, the directories of ``path`` as given (relative paths stay relative).
    """
    if root is not None:
        r = Path(os.path.abspath(root))
        try:
            parts = (r.name,) + Path(os.path.abspath(path)).parent.relative_to(r).parts
        except ValueError:
            parts = ()
    else:
        parts = Path(os.fspath(path)).parent.parts
    for part in reversed(parts):
        if _NEG_LABEL.match(part):
            return 0
        if _POS_LABEL.match(part):
            return 1
    return None

@dataclass(frozen=True)
class Source:
    """One object to score, as found by :func:`find_sources`.

    ``files`` is a single path, or ``((band, path), …)`` for per-band files. ``error`` is set
    for what was found but cannot be read at all (a directory that cannot be listed, an
    object off every tile): it becomes an error row. Objects of a catalog over image tiles
    (:mod:`lensscore.tiles`) have a ``position`` (RA, Dec in degrees), ``files`` naming each
    band's tile as ``(band, "path[hdu]")``, and ``extra``: the input columns kept.
    """

    id: str
    path: str
    files: str | tuple[tuple[str, str], ...]
    label: int | None = None
    error: str | None = None
    position: tuple[float, float] | None = None
    extra: tuple[tuple[str, object], ...] = ()

    def files_field(self) -> str:
        """``files`` as the catalog stores it, JSON: the path of one file, ``{band: path}`` for
        per-band files, ``{"tiles": {band: "path[hdu]"}, "radec": [ra, dec]}`` for an object cut
        from tiles; ``""`` where nothing was found to read."""
        if isinstance(self.files, str):
            return json.dumps(self.files)
        if not self.files:
            return ""
        files = dict(self.files)
        if self.position is None:
            return json.dumps(files)
        return json.dumps({"tiles": files, "radec": list(self.position)})

    @classmethod
    def from_row(cls, row: Mapping, base: str | os.PathLike | None = None) -> Source:
        """The source a catalog row was scored from: its ``files`` field (:meth:`files_field`),
        or ``path`` for a catalog that has none. Relative paths that do not resolve from here
        are looked up beside the catalog (``base``, its directory).

        Raises
        ------
        ValueError
            If ``files`` is not what :meth:`files_field` writes.
        """
        text = _text(row.get("files"))
        label = _text(row.get("label"))
        label = None if label in ("", "-1") else int(label)
        if "files" in row and not text:  # nothing was found to read: an error row
            return cls(str(row["id"]), str(row["path"]), (), label,
                       _text(row.get("error")) or "nothing to read")
        files = json.loads(text) if text else str(row["path"])
        if isinstance(files, str):
            return cls(str(row["id"]), str(row["path"]), _beside(files, base), label)
        if not isinstance(files, dict):
            raise ValueError(f"files field is not a path or a band mapping: {text[:80]}")
        tiles = isinstance(files.get("tiles"), dict)
        items = files["tiles"] if tiles else files
        out = tuple((str(b), _beside(str(f), base, tiles)) for b, f in items.items())
        position = None
        if tiles:
            ra, dec = files.get("radec") or (math.nan, math.nan)
            position = (float(ra), float(dec))
        return cls(str(row["id"]), str(row["path"]), out, label, None, position)


def _text(v) -> str:
    """A table cell as text; masked or missing is ``""``."""
    import numpy as np

    return "" if v is None or np.ma.is_masked(v) else str(v)


def _beside(path: str, base, tile_ref: bool = False) -> str:
    """``path``, or ``base/path`` where only that exists (a relative path in a catalog)."""
    if base is None or os.path.isabs(path):
        return path
    name = path.rpartition("[")[0] if tile_ref else path
    if os.path.exists(name):
        return path
    alt = os.path.join(os.fspath(base), path)
    return alt if os.path.exists(alt.rpartition("[")[0] if tile_ref else alt) else path


def group_display(per_band: Mapping[str, str]) -> str:
    """How a group of per-band files is shown (a catalog's ``path``): one file as it is, several
    as ``dir/obj_{g,r,i}.fits`` (the common prefix and suffix around the parts that differ).

    Parameters
    ----------
    per_band : mapping band -> path

    Returns
    -------
    str
    """
    paths = list(per_band.values())
    if len(paths) == 1:
        return paths[0]
    prefix = os.path.commonprefix(paths)
    suffix = os.path.commonprefix([p[::-1] for p in paths])[::-1]
    mids = [p[len(prefix): len(p) - len(suffix)] for p in paths]
    return f"{prefix}{{{','.join(mids)}}}{suffix}"


def band_token(stem: str, bands: set[str]) -> tuple[str, str] | None:
    """``("obj", "g")`` for ``obj_g`` / ``obj-HSC-G-…``; ``None`` if the stem names no band.

    Parameters
    ----------
    stem : str
        A file name without its FITS suffix.
    bands : set of str
        Bands a ``<id>_<band>`` suffix may name (HSC ``HSC-G`` names are always read).

    Returns
    -------
    (id, band) or None
    """
    m = _HSC_RE.match(stem)
    if m:
        return (m["pre"] + m["post"]) or stem, m["band"].lower()
    m = _SUFFIX_RE.match(stem)
    if m:
        b = normalize_band(m["band"])
        if b in bands:
            return m["id"], b
    return None


@dataclass(frozen=True)
class _Unlistable:
    """A directory found while walking that cannot be listed."""

    path: str
    reason: str


def _walk(root: str, seen: set) -> Iterable[str | _Unlistable]:
    """Files under ``root``, sorted, following directory links once (no symlink loops); a
    directory that cannot be read is yielded as :class:`_Unlistable` (an error row, never a
    silent gap)."""
    try:
        st = os.stat(root)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return
        seen.add(key)
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        yield _Unlistable(root, f"cannot list directory ({exc.strerror or exc})")
        return
    for e in entries:
        try:
            is_dir = e.is_dir(follow_symlinks=True)
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk(e.path, seen)
        elif split_fits_suffix(e.name):
            yield e.path


def find_sources(
    paths: Sequence | str | os.PathLike,
    bands: Sequence[str] = DEFAULT_BANDS,
    labels: Mapping[str, int] | None = None,
) -> list[Source]:
    """Find the cutouts to score under files and directories, grouping per-band files.

    Parameters
    ----------
    paths : path or sequence of paths
        FITS files and/or directories (searched recursively, in sorted order, following
        directory links without looping).
    bands : sequence of str
        The model's bands; ``<id>_<band>.fits`` files in the same directory are grouped.
    labels : mapping id -> 0/1, optional
        Labels that override the ones taken from directory names.

    Returns
    -------
    list of Source
        In a deterministic order. Ids are paths relative to the directory given, without the
        FITS suffix (``lenses/obj001``), or the file name's stem for files given directly.

    Raises
    ------
    FileNotFoundError
        If a given path does not exist.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    band_set = {normalize_band(b) for b in bands} | set(_SUFFIX_BANDS)
    groups, order = _group_files(_listed_files(paths), band_set)
    label = _dir_labeller()
    rank = {b: k for k, b in enumerate(normalize_band(b) for b in bands)}
    sources = [_make_source(kind, ref, Path(sid).as_posix(), root or None, groups, rank, label)
               for kind, ref, sid, root in order]
    sources = _unique_ids(sources, [root for *_, root in order])
    if labels:
        for k, src in enumerate(sources):
            lab = label_of(labels, src.id)
            if lab is not None:
                sources[k] = replace(src, label=int(lab))
    return sources


def id_suffixes(sid: str) -> list[str]:
    """An id and every end of it after a ``/``, longest first (``n1/lenses/c0``, ``lenses/c0``,
    ``c0``): the keys a labels file may give it by."""
    parts = sid.split("/")
    return ["/".join(parts[k:]) for k in range(len(parts)) if parts[k]]


def label_of(labels: Mapping[str, int], sid: str):
    """The label of id ``sid``: under the id itself, else under the longest end of it after a
    ``/`` (a labels file written before the id took its directory's name); None if none."""
    return next((labels[t] for t in id_suffixes(sid) if t in labels), None)


def _listed_files(paths) -> list[tuple]:
    """Every file under ``paths`` as ``(path, root for ids)``: directories walked in sorted
    order (unlistable ones kept as :class:`_Unlistable`, to become error rows), files given
    directly rooted at their own directory. A missing path is an error at once, before any
    scoring starts."""
    files: list[tuple] = []
    seen_dirs: set = set()
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            files.extend((f, p) for f in _walk(p, seen_dirs))
        elif os.path.lexists(p):
            files.append((p, os.path.dirname(p)))
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return files


def _group_files(files, band_set: set[str]):
    """Per-band files (``<id>_<band>.fits``) grouped by directory and id, each real file once
    (links and overlapping roots list some twice). Returns the groups (``band -> path`` per
    ``(directory, id)``) and the order of what becomes a source: ``(kind, ref, id, root)`` with
    kind ``"file"``, ``"group"`` (ref: the group's key) or ``"unlistable"``."""
    groups: dict[tuple[str, str], dict[str, str]] = {}
    order: list[tuple] = []
    seen_real: set[str] = set()
    real_dirs: dict[str, str] = {}
    for f, root in files:
        if isinstance(f, _Unlistable):
            rel = os.path.relpath(f.path, root) if root else f.path
            order.append(("unlistable", f, "" if rel == "." else rel, root))
            continue
        # realpath(f) with each directory resolved once, not once per file in it
        d = os.path.dirname(f)
        if d not in real_dirs:
            real_dirs[d] = os.path.realpath(d)
        real = os.path.realpath(f) if os.path.islink(f) else \
            os.path.join(real_dirs[d], os.path.basename(f))
        if real in seen_real:
            continue
        seen_real.add(real)
        parts = split_fits_suffix(os.path.basename(f))
        rel_dir = os.path.relpath(os.path.dirname(f), root) if root else ""
        rel_dir = "" if rel_dir == "." else rel_dir
        if parts is None:  # named directly, without a FITS suffix: read as named (an error
            # row if its bytes are no FITS), never grouped as a band
            order.append(("file", f, os.path.join(rel_dir, os.path.basename(f)), root))
            continue
        stem = parts[0]
        tok = band_token(stem, band_set)
        if tok is None:
            order.append(("file", f, os.path.join(rel_dir, stem), root))
            continue
        gid, band = tok
        key = (os.path.dirname(f), gid)
        if key not in groups:
            groups[key] = {}
            order.append(("group", key, os.path.join(rel_dir, gid), root))
        groups[key].setdefault(band, f)
    return groups, order


def _dir_labeller():
    """``label(path, root)`` from the path's directories (:func:`label_from_path`), computed
    once a directory: thousands of files share a handful of directories."""
    dir_labels: dict[tuple[str, str | None], int | None] = {}

    def label(path: str, root: str | None) -> int | None:
        key = (os.path.dirname(path), root)
        if key not in dir_labels:
            dir_labels[key] = label_from_path(path, root)
        return dir_labels[key]
    return label


def _make_source(kind: str, ref, sid: str, root: str | None, groups, rank, label) -> Source:
    """One entry of :func:`_group_files`'s order as a :class:`Source`: an unlistable directory
    as an error row (id ends in ``/``), a file as itself, a group's bands in the model's order
    (``rank``; others after, by name) — and a group of one band as the plain file it is."""
    if kind == "unlistable":
        return Source(id=Path(sid or os.path.basename(os.path.normpath(ref.path))).as_posix()
                      + "/", path=ref.path, files=ref.path, error=ref.reason)
    if kind == "file":
        return Source(id=sid, path=ref, files=ref, label=label(ref, root))
    per_band = groups[ref]
    if len(per_band) == 1:  # a lone obj_g.fits is just a file
        (f,) = per_band.values()
        stem = split_fits_suffix(os.path.basename(f))[0]
        return Source(id=str(Path(sid).with_name(stem).as_posix()), path=f, files=f,
                      label=label(f, root))
    items = sorted(per_band.items(), key=lambda kv: (rank.get(kv[0], 99), kv[0]))
    return Source(id=sid, path=group_display(dict(items)), files=tuple(items),
                  label=label(items[0][1], root))

def _unique_ids(sources: list[Source], roots: list[str]) -> list[Source]:
    """Ids key the catalog (resume, merge, labels), and do not depend on the order of the
    scanned roots (the first root's were once left bare, so a resume with the roots in another
    order matched ids to the other root's files and skipped them):

    * an id that several roots give (``a/c0.fits``, ``b/c0.fits``) is prefixed, in each, with
      as much of its root's path as tells the roots apart and meets no other id (``a/c0``,
      ``b/c0``; ``x/a/c0`` where both roots are named ``a``);
    * files that still share an id (one root's ``obj.fits`` and ``obj.fits.gz``) are numbered
      in the order of their paths (``obj``, ``obj#2``).
    """
    groups: dict[str, list[int]] = {}
    for k, src in enumerate(sources):
        groups.setdefault(src.id, []).append(k)
    if len(groups) == len(sources):
        return sources  # no id twice: the ids as they are
    split = {r: Path(os.path.abspath(r or ".")).parts[1:] for r in set(roots)}
    parts = [split[r] for r in roots]
    depth = {sid: _least_depth({parts[k] for k in ks}) for sid, ks in groups.items()
             if len({parts[k] for k in ks}) > 1}
    ids = _prefixed(sources, parts, depth)
    for _ in range(max((len(p) for p in parts), default=0)):  # deepen what meets another id
        owner: dict[str, set] = {}
        for k, i in enumerate(ids):
            owner.setdefault(i, set()).add((sources[k].id, parts[k]))
        grow = {sid for o in owner.values() if len(o) > 1 for sid, _ in o
                if sid in depth and depth[sid] < max(len(parts[k]) for k in groups[sid])}
        if not grow:
            break
        depth.update((sid, depth[sid] + 1) for sid in grow)
        ids = _prefixed(sources, parts, depth)
    out = list(sources)
    where: dict[str, list[int]] = {}
    for k, i in enumerate(ids):
        where.setdefault(i, []).append(k)
    for i, ks in where.items():  # still twice: numbered in the order of the paths
        ks = sorted(ks, key=lambda k: os.path.abspath(sources[k].path)) if len(ks) > 1 else ks
        for n, k in enumerate(ks, start=1):
            sid = i if n == 1 else f"{i}#{n}"
            if sid != sources[k].id:
                out[k] = replace(sources[k], id=sid)
    return out


def _least_depth(roots: set) -> int:
    """The fewest trailing parts of the roots' paths that tell them all apart."""
    longest = max(len(r) for r in roots)
    return next((d for d in range(1, longest + 1)
                 if len({r[-d:] for r in roots}) == len(roots)), longest)


def _prefixed(sources, parts, depth: dict) -> list[str]:
    return [("/".join(parts[k][-depth[s.id]:]) + "/" + s.id) if s.id in depth else s.id
            for k, s in enumerate(sources)]
