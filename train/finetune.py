"""Fine-tune a simulation-trained model on real survey cutouts, measured by cross-validation.

HOLISMOKES trains on real survey galaxies and real non-lenses; we have no such set at scale, but a
few hundred real confirmed lenses and field sources (``realdata/*``). :func:`finetune` continues
training a run's model on them mixed with the run's own simulations (so the simulated lenses are
not forgotten), and reports what it is worth honestly: every real cutout is scored by a model
that never saw it (k-fold, grouped by sky position: objects within ``group_radius`` of each other,
friends of friends, are always in the same fold -- a lens, the field sources and sky positions cut
around it, and the arcs painted onto them). The model it returns for shipping is then trained on
all real cutouts with the same recipe; its real-data numbers are the cross-validated ones, never
its own training-set scores.

Real data comes as a directory (``lenses/``, ``nonlenses/``) or a scan catalog, labelled by
directory names, a labels file, or the gallery's grades (:func:`read_labels`). Optionally
(HOLISMOKES, :mod:`train.paint`): simulated arcs painted onto the real non-lenses of the training
folds as extra positives, and the sources detected around each lens stamp as extra real
negatives.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lensscore.config import DEFAULT_THRESHOLD
from lensscore.metrics import classification_summary
from lensscore.preprocess import PreprocessSpec

from .fit import RunDir, augment, load_config, read_config
from .simconfig import HOST_MAX_MAG

__all__ = ["FinetuneConfig", "RealSet", "finetune", "load_real", "kind_of",
           "real_data_record", "run_sims", "sample_weights", "sim_indices", "position_groups",
           "read_labels", "grade_label", "GRADE_RULE", "save_real", "read_real", "paint_real"]

log = logging.getLogger(__name__)

def kind_of(obj_id: str) -> str:
    """What a labelled real cutout is: ``lenses``, or its non-lens folder (``nonlenses/src/ID``
    -> ``src``, ``nonlenses/sky/ID`` -> ``sky``; ``nonlenses/ID`` -> ``nonlenses``)."""
    parts = obj_id.strip("/").split("/")
    return parts[1] if parts[0] == "nonlenses" and len(parts) > 2 else parts[0]


def sample_weights(ids, y) -> np.ndarray:
    """Per-cutout training weights (``balance_nonlenses``): lenses 1, and each kind of non-lens
    (field sources, sky positions) an equal share of the non-lenses' total weight, which stays
    what it was (so lenses against non-lenses are weighted as before)."""
    w = np.ones(len(y))
    neg = np.asarray(y) == 0
    kinds = np.array([kind_of(i) for i in ids])
    uniq = sorted(set(kinds[neg]))
    for k in uniq:
        sel = neg & (kinds == k)
        w[sel] = neg.sum() / (len(uniq) * sel.sum())
    return w


@dataclass
class FinetuneConfig:
    """Recipe: Adam at ``lr`` for ``epochs`` over the real training folds (each real cutout
    ``oversample`` times, randomly flipped) plus ``n_sim`` simulated cutouts of the run.

    ``balance_nonlenses``: weight each kind of real non-lens (``nonlenses/src``,
    ``nonlenses/sky``) equally in total, however many of each there are. A lens search scans
    catalog sources, not blank sky; a development set with five sky positions for every field
    source otherwise teaches mostly "sky is not a lens"."""

    folds: int = 5
    epochs: int = 8
    lr: float = 1e-4
    batch_size: int = 64
    n_sim: int = 6000
    oversample: int = 4
    seed: int = 0
    balance_nonlenses: bool = False
    #: the folds' seed, apart from ``seed`` (initial shuffles and augmentation): runs that differ
    #: only in ``seed`` share their folds, so their CV scores differ by training noise alone
    fold_seed: int = 0
    #: arcsec: cutouts closer than this to each other (friends of friends) share a fold
    group_radius: float = 30.0
    #: simulated arcs painted onto the real non-lenses (:mod:`train.paint`), mixed into each
    #: training with only the paintings of its own folds' hosts; 0 for none
    n_paint: int = 0
    paint_seed: int = 0
    #: the faintest host painted onto (i, :class:`train.paint.PaintConfig`)
    paint_max_mag: float = HOST_MAX_MAG
    #: each painting's host beside it unpainted (HOLISMOKES' pairs): a host is as often a
    #: negative as a positive, so that its looks tell nothing of the class
    paint_pairs: bool = True
    #: add the sources detected around each lens stamp as real non-lenses (``nonlenses/det``)
    detections: bool = False
    #: cut each lens read from per-band stamps again, centred on its detection's flux-weighted
    #: centre (as the non-lenses were cut: train.paint.recentre), not at its catalogued position
    recentre_lenses: bool = False


#: how the gallery's SuGOHI grades (0-3) become labels (:func:`grade_label`)
GRADE_RULE = ("grade 2 or 3 (probably or definitely a lens) -> 1; grade 0 (not a lens) -> 0; "
              "grade 1 (possibly a lens) and ungraded -> left out")


def grade_label(grade) -> int | None:
    """A SuGOHI grade (0-3) as a label, by :data:`GRADE_RULE`; None where it gives none."""
    if _blank(grade):
        return None
    try:
        g = int(float(grade))
    except (TypeError, ValueError):
        return None
    return 1 if g >= 2 else 0 if g == 0 else None


def read_labels(path) -> dict[str, int]:
    """Labels by id from a table (CSV, ECSV, FITS, Parquet) with an ``id`` column and a
    ``label`` (0/1) and/or a ``grade`` column (the gallery's CSV export: :data:`GRADE_RULE`).
    Where a row has a grade, the grade decides (a person looked; a grade 1 leaves the row
    out); a row without one keeps its ``label``.

    Raises
    ------
    ValueError
        Without an ``id`` column, or with neither ``label`` nor ``grade``, or labels not 0/1.
    """
    from lensscore.catalog import read_table

    t = read_table(path)
    if "id" not in t.colnames:
        raise ValueError(f"{path}: needs an 'id' column (has {', '.join(t.colnames)})")
    out: dict[str, int] = {}
    has_label, has_grade = "label" in t.colnames, "grade" in t.colnames
    if not (has_label or has_grade):
        raise ValueError(f"{path}: needs a 'label' (0/1) or a 'grade' (0-3) column")
    overruled = 0
    for row in t:
        i = str(row["id"])
        g = row["grade"] if has_grade else None
        v = row["label"] if has_label else None
        if has_grade and not _blank(g):  # a grade decides: it is what a person saw
            lab = grade_label(g)
            if lab is not None:
                overruled += bool(v is not None and not _blank(v) and _label(v, i, path) != lab)
                out[i] = lab
        elif v is not None and not _blank(v):  # ungraded: the catalog's own label
            out[i] = _label(v, i, path)
    if overruled:
        log.warning("%s: %d grade(s) overrule the row's label", path, overruled)
    return out


def _label(v, i, path) -> int:
    if str(v).strip() not in ("0", "1", "0.0", "1.0", "True", "False", "true", "false"):
        raise ValueError(f"{path}: label of {i} is {v!r}, not 0 or 1")
    return int(str(v).strip().lower() in ("1", "1.0", "true"))


def _blank(v) -> bool:
    return v is None or np.ma.is_masked(v) or str(v).strip() in ("", "--", "nan")


@dataclass
class RealSet:
    """Labelled real cutouts, preprocessed as in scoring.

    Attributes
    ----------
    x : ndarray, float32, shape ``(N, bands, size, size)``
    y : ndarray of int, shape ``(N,)``
    ids : list of str
    ra, dec : ndarray, shape ``(N,)``
        Positions (degrees; NaN where unknown: such a cutout is a group of its own).
    digests : list of str
        :func:`lensscore.trained.cutout_digest` of each cutout as a scan reads it.
    hosts : list of train.paint.Host
        The non-lenses as read (before preprocessing), for painting; empty unless asked.
    also_seen : list of str
        Digests of the same objects as read elsewhere: a recentred lens as a scan of its
        stamp reads it, at its catalogued centre (a scan must know the model saw it).
    also_seen_radec : list of (ra, dec)
        Their centres (degrees; NaN where unknown), in the order of ``also_seen``.
    """

    x: np.ndarray
    y: np.ndarray
    ids: list
    ra: np.ndarray | None = None
    dec: np.ndarray | None = None
    digests: list = field(default_factory=list)
    hosts: list = field(default_factory=list)
    also_seen: list = field(default_factory=list)
    also_seen_radec: list = field(default_factory=list)

    def __post_init__(self):
        self.y = np.asarray(self.y, int)
        self.ids = [str(i) for i in self.ids]
        n = len(self.ids)
        self.ra = np.full(n, np.nan) if self.ra is None else np.asarray(self.ra, float)
        self.dec = np.full(n, np.nan) if self.dec is None else np.asarray(self.dec, float)

    @classmethod
    def of(cls, real) -> RealSet:
        """A RealSet, or one from a tuple ``(x, y, ids[, ra, dec])``."""
        return real if isinstance(real, RealSet) else cls(*real)


def load_real(data_dir, cfg, *, labels=None, detections: bool = False, hosts: bool = False,
              recentre: bool = False, progress=None) -> RealSet:
    """Labelled real cutouts on the run's grid (its survey preset), preprocessed as in scoring
    (:func:`_load_real`); the stamps it cut detections from are closed when it is done."""
    from lensscore.tilecut import close_tiles

    try:
        return _load_real(data_dir, cfg, labels=labels, detections=detections, hosts=hosts,
                          recentre=recentre, progress=progress)
    finally:
        close_tiles()


def _load_real(data_dir, cfg, *, labels=None, detections: bool = False, hosts: bool = False,
               recentre: bool = False, progress=None) -> RealSet:
    """Labelled real cutouts on the run's grid (its survey preset), preprocessed as in scoring.

    Parameters
    ----------
    data_dir : path
        A directory (``lenses/``, ``nonlenses/``, or labelled by ``labels``) or a scan catalog
        (its ``ok`` rows, labelled by its ``label`` column or ``labels``).
    cfg : FitConfig
        The base run's configuration (bands, size, survey, preprocessing).
    labels : mapping id -> 0/1, optional
        Labels that override the directory names (:func:`read_labels`).
    detections : bool
        Add the sources detected around each lens (per-band stamps, :mod:`train.paint`) as
        real non-lenses ``nonlenses/det/<lens>/det<k>``.
    hosts : bool
        Keep the non-lenses as read (for painting).
    recentre : bool
        Cut each lens read from per-band stamps at its detection's centre, as the non-lenses
        of a development set cut on detections are (:func:`train.paint.recentre`).
    """

    from lensscore.errors import CutoutError
    from lensscore.io import load_source
    from lensscore.preprocess import preprocess
    from lensscore.trained import cutout_digest

    from .data import labelled_sources
    from .paint import Host, PaintConfig, detections_around, host_photometry
    from .paint import recentre as recentre_sources
    from .presets import read_options
    from .simulate import SimConfig

    options = read_options(cfg.survey, cfg.bands, cfg.size)
    spec = PreprocessSpec.from_json(cfg.preprocess)
    sources = labelled_sources(data_dir, cfg.bands, labels)
    if detections:
        sources += detections_around(sources, cfg.bands, options)
    also_seen, also_radec = [], []
    if recentre:
        before = {s.id: s for s in sources}
        sources, shifts = recentre_sources(sources, cfg.bands, options)
        for i in shifts:
            c = load_source(before[i], cfg.bands, cfg.size, options)
            also_seen.append(cutout_digest(c.data))
            also_radec.append((float(c.ra), float(c.dec)))  # NaN without a WCS
        log.info("%d lenses re-centred on their detection (median shift %.2f arcsec)",
                 len(shifts), float(np.median(list(shifts.values()))) if shifts else 0.0)
    if not sources:
        raise ValueError(f"{data_dir}: no labelled cutouts")
    sim_cfg = SimConfig.for_survey(cfg.survey, bands=tuple(cfg.bands), size=cfg.size)
    xs, ys, ids, ra, dec, digests, kept = [], [], [], [], [], [], []
    skipped = 0
    for k, s in enumerate(sources):
        try:
            c = load_source(s, cfg.bands, cfg.size, options)
        except (CutoutError, ValueError) as exc:
            skipped += 1
            log.warning("%s: %s", s.id, exc)
            continue
        xs.append(preprocess(c.data, spec))
        ys.append(int(s.label))
        ids.append(s.id)
        ra.append(float(c.ra))
        dec.append(float(c.dec))
        digests.append(cutout_digest(c.data))
        if hosts and s.label == 0:
            kept.append(Host(s.id, np.asarray(c.data, np.float32), float(c.ra), float(c.dec),
                             *host_photometry(c.data, sim_cfg, PaintConfig().aperture_arcsec)))
        if progress:
            progress(k + 1, len(sources))
    if skipped:
        log.warning("%d of %d real cutouts could not be read", skipped, len(sources))
    return RealSet(np.stack(xs).astype(np.float32), np.asarray(ys), ids, np.asarray(ra),
                   np.asarray(dec), digests, kept, also_seen, also_radec)


def save_real(path, real: RealSet) -> None:
    """Write a :class:`RealSet` to one ``.npz`` (for a machine without the files: a GPU
    machine has no ``../shared``), hosts included."""
    h = real.hosts
    np.savez_compressed(
        path, x=real.x, y=real.y, ids=np.array(real.ids), ra=real.ra, dec=real.dec,
        digests=np.array(real.digests), also_seen=np.array(real.also_seen, dtype=str),
        also_seen_radec=np.array(real.also_seen_radec, float).reshape(-1, 2),
        host_ids=np.array([o.id for o in h]),
        host_data=np.stack([o.data for o in h]) if h else np.zeros((0,) + real.x.shape[1:]),
        host_ra=np.array([o.ra for o in h]), host_dec=np.array([o.dec for o in h]),
        host_mags=np.array([json.dumps(o.mag) for o in h]),
        host_extent=np.array([o.extent for o in h]), host_offset=np.array([o.offset for o in h]),
        host_noise=np.stack([o.noise for o in h]) if h else np.zeros((0, real.x.shape[1])))


def read_real(path) -> RealSet:
    """A :class:`RealSet` written by :func:`save_real`."""
    from .paint import Host

    d = np.load(path, allow_pickle=False)

    def get(k, default):
        return d[k] if k in d.files else default

    n = len(d["y"])
    hosts = [Host(str(i), np.asarray(data, np.float32), float(ra), float(dec), json.loads(str(m)),
                  float(e), np.asarray(nz, float), float(o))
             for i, data, ra, dec, m, e, nz, o in zip(
                 get("host_ids", []), get("host_data", []), get("host_ra", []),
                 get("host_dec", []), get("host_mags", []), get("host_extent", []),
                 get("host_noise", []), get("host_offset", []))]
    return RealSet(np.asarray(d["x"], np.float32), d["y"].astype(int), [str(i) for i in d["ids"]],
                   get("ra", np.full(n, np.nan)), get("dec", np.full(n, np.nan)),
                   [str(v) for v in get("digests", [])], hosts,
                   [str(v) for v in get("also_seen", [])],
                   [tuple(map(float, v)) for v in get("also_seen_radec", [])])


def position_groups(ra, dec, radius_arcsec: float) -> np.ndarray:
    """Group of each position: friends of friends within ``radius_arcsec`` (a KD-tree on the
    unit sphere); a position that is not finite is a group of its own.

    Parameters
    ----------
    ra, dec : array_like of float
        Degrees.
    radius_arcsec : float
        Two positions closer than this are in one group (and so, in a chain, are all
        positions linked by such steps).

    Returns
    -------
    ndarray of int
        The group of each position, numbered from 0 in order of first appearance.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    n = len(ra)
    ok = np.isfinite(ra) & np.isfinite(dec)
    r, d = np.radians(ra[ok]), np.radians(dec[ok])
    xyz = np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], -1)
    chord = 2 * np.sin(np.radians(radius_arcsec / 3600) / 2)
    pairs = cKDTree(xyz).query_pairs(chord, output_type="ndarray") if ok.sum() > 1 \
        else np.zeros((0, 2), int)
    idx = np.flatnonzero(ok)
    a, b = idx[pairs[:, 0]], idx[pairs[:, 1]]
    g = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    first: dict[int, int] = {}
    return np.array([first.setdefault(v, len(first)) for v in lab])


def _folds(groups, y, k: int, seed: int) -> np.ndarray:
    """Fold of each cutout: groups shuffled and dealt to folds in turn, those holding a lens
    first (so each fold gets its share of lenses), then the rest."""
    groups, y = np.asarray(groups), np.asarray(y)
    rng = np.random.default_rng(seed)
    with_lens = sorted(set(groups[y == 1].tolist()))
    rest = sorted(set(groups.tolist()) - set(with_lens))
    order = [with_lens[j] for j in rng.permutation(len(with_lens))] + \
        [rest[j] for j in rng.permutation(len(rest))]
    fold_of = {g: n % k for n, g in enumerate(order)}
    return np.array([fold_of[g] for g in groups.tolist()])


def sim_indices(run: RunDir, n: int) -> list[int]:
    """The first ``n`` simulated cutouts of a run that are not in its test split."""
    test_idx = set()
    dev_scores = run.path / "test_scores_device.csv"
    if dev_scores.exists():
        test_idx = {int(r.split(",")[0]) for r in dev_scores.read_text().split()[1:]}
    return [i for i in range(n * 2 + len(test_idx)) if i not in test_idx][:n]


def run_sims(run: RunDir, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` simulated cutouts of the run's own training split, to mix into fine-tuning.

    A run fitted on this machine has its data directory and ``split.json``: a seeded sample of
    its training ids, read from there (never its validation or test cutouts). A run trained on
    a GPU machine has neither: the cutouts are simulated again (pure in ``(seed, index)``), with
    the simulator options it was made with (``sim.json``, :func:`train.device.import_run`).
    """
    from .device import recorded_sim, regenerate
    from .fit import data_and_split

    cfg = load_config(run)
    if n <= 0:  # nothing of the simulations mixed in
        return (np.zeros((0, len(cfg.bands), cfg.size, cfg.size), np.float32),
                np.zeros(0, int))
    data_dir = Path(read_config(run).get("data_dir", ""))
    if run.split.exists() and data_dir.is_dir():
        ds, split = data_and_split(run, cfg, data_dir, None, write_config=False)
        idx = np.sort(np.random.default_rng(cfg.seed).choice(
            split["train"], min(n, len(split["train"])), replace=False))
        return np.asarray(ds.x[idx], np.float32), np.asarray(ds.y[idx], int)
    sim_json = run.path / "sim.json"
    sim = recorded_sim(json.loads(sim_json.read_text()) if sim_json.exists() else None)
    return regenerate(cfg.survey, cfg.seed, sim_indices(run, n),
                      PreprocessSpec.from_json(cfg.preprocess), sim=sim)


def real_data_record(res: dict, real_dir) -> dict:
    """The ``real_data`` entry of a fine-tuned run's ``metrics.json``: the cross-validated
    metrics that ``python -m export`` stamps into the model (``lensscore.real_metrics``)."""
    name = "/".join(Path(real_dir).resolve().parts[-3:]) if real_dir else "given"
    return {"data": f"{name} ({res['cv']['n_lens']} lenses, {res['cv']['n_nonlens']} non-lenses)",
            "method": f"{res['config']['folds']}-fold cross-validation grouped by sky position "
                      f"(objects within {res['config'].get('group_radius', 30.0):g} arcsec share "
                      "a fold): each cutout scored by a model fine-tuned without it"
                      + (f"; {res['n_painted']} arcs painted onto the training folds' real "
                         "non-lenses mixed in" if res.get("n_painted") else "")
                      + ("; lenses cut centred on their detections, as the non-lenses were"
                         if res["config"].get("recentre_lenses") else ""),
            "cv": res["cv"], "before_finetune": res["before"],
            **({"cv_mirror_averaged": res["cv_mirror_averaged"]}
               if "cv_mirror_averaged" in res else {})}


def _nhwc(x):
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def _train(model_path, x_real, y_real, x_sim, y_sim, fc: FinetuneConfig, seed: int,
           w_real=None):
    """The base model trained further on the real cutouts (``oversample`` times, each randomly
    turned and mirrored) and the simulated or painted ones (``x_sim``, as they are)."""
    import keras

    from . import models  # noqa: F401  (registers RotationalConv2D)

    keras.utils.set_random_seed(seed)
    model = keras.saving.load_model(model_path)
    model.compile(optimizer=keras.optimizers.Adam(fc.lr), loss="binary_crossentropy")
    rng = np.random.default_rng(seed)
    xr = np.concatenate([x_real] * fc.oversample)
    yr = np.concatenate([y_real] * fc.oversample)
    flip = rng.random(len(xr)) < 0.5
    k = rng.integers(0, 4, len(xr))
    # mirrored, then rotated by k: the same as rotated by -k, then mirrored (as augment does)
    xr = augment(xr, np.where(flip, -k % 4, k), flip, channels_last=False)
    x = np.concatenate([xr, x_sim])
    y = np.concatenate([yr, y_sim]).astype(np.float32)
    w = None if w_real is None else np.concatenate(
        [w_real] * fc.oversample + [np.ones(len(y_sim))]).astype(np.float32)
    model.fit(_nhwc(x), y.reshape(-1, 1), sample_weight=w, batch_size=fc.batch_size,
              epochs=fc.epochs, shuffle=True, verbose=0)
    return model


def paint_real(real: RealSet, cfg, fc: FinetuneConfig, workers: int = 1, progress=None):
    """``fc.n_paint`` paintings over the paintable hosts of ``real`` (:mod:`train.paint`),
    preprocessed as in scoring.

    Parameters
    ----------
    real : RealSet
        Its ``hosts`` are painted onto (:func:`load_real` with ``hosts=True``).
    cfg : FitConfig
        The base run's configuration: survey preset, bands, size, preprocessing.
    fc : FinetuneConfig
        ``n_paint``, ``paint_seed`` and ``paint_max_mag``.
    workers : int
        Processes.
    progress : callable(done, total), optional

    Returns
    -------
    x : ndarray, float32, shape ``(n, bands, size, size)``
        The paintings that passed the cuts, preprocessed.
    hosts : list of str
        The host id of each.
    """
    from lensscore.preprocess import preprocess

    from .paint import PaintConfig, paint
    from .simulate import SimConfig

    sim_cfg = SimConfig.for_survey(cfg.survey, bands=tuple(cfg.bands), size=cfg.size)
    rows = paint(real.hosts, fc.n_paint, fc.paint_seed, sim_cfg,
                 PaintConfig(max_mag=fc.paint_max_mag), workers=workers, progress=progress)
    spec = PreprocessSpec.from_json(cfg.preprocess)
    done = [(hid, img) for hid, _, img, _ in rows if img is not None]
    log.info("%d of %d paintings passed the cuts, over %d hosts", len(done), len(rows),
             len({h for h, _ in done}))
    x = np.stack([preprocess(img, spec) for _, img in done]).astype(np.float32) if done else \
        np.zeros((0, len(cfg.bands), cfg.size, cfg.size), np.float32)
    return x, [h for h, _ in done]


def _predict(model, x):
    return np.asarray(model.predict(_nhwc(x), batch_size=256, verbose=0)).reshape(-1)


def finetune(run_dir, real_dir, out_dir, fc: FinetuneConfig | None = None,
             progress=None, *, real=None, sim=None, save=None, painted=None, labels=None,
             workers: int = 1) -> dict:
    """Cross-validate fine-tuning on ``real_dir``, then train the final model into ``out_dir``.

    Parameters
    ----------
    run_dir : path
        A finished run (``model.keras``, ``config.json``) trained on simulations.
    real_dir : path
        Labelled real cutouts: a directory (``lenses/``, ``nonlenses/``) in any layout the
        scorer reads, or a scan catalog (:func:`load_real`).
    out_dir : path
        New run directory: ``model.keras``, ``config.json`` (with the fine-tuning recipe),
        ``cv_scores.csv`` (every real cutout scored by the fold model that did not see it),
        ``metrics.json`` (cross-validated real-data metrics), ``trained_on.json`` (digests of
        the real cutouts the final model saw: ``python -m export`` stamps them).

    real : RealSet or (x, y, ids[, ra, dec]), optional
        The real cutouts already read (a GPU machine without the files).
    sim : (x, y), optional
        The simulated cutouts to mix in, already made (default: regenerated here).
    save : callable(model, out_dir), optional
        How to store the final model (default ``model.keras``).
    painted : (x, host ids), optional
        Paintings already made (preprocessed); default with ``fc.n_paint``: painted here onto
        ``real``'s hosts.
    labels : mapping id -> 0/1, optional
        Labels overriding directory names (:func:`read_labels`).
    workers : int
        Processes for painting.

    Returns
    -------
    dict
        ``cv`` (metrics over all out-of-fold scores), ``before`` (the run's model on the same
        cutouts, for comparison), ``n_real``, ``config``, ``n_painted``, ``n_groups``.
    """
    fc = fc or FinetuneConfig()
    run, out = RunDir(run_dir), RunDir(out_dir)
    if out.model.exists():
        raise FileExistsError(f"{out.path} holds a model already")
    cfg = load_config(run)
    real = RealSet.of(real) if real is not None else load_real(
        real_dir, cfg, labels=labels, detections=fc.detections, hosts=fc.n_paint > 0,
        recentre=fc.recentre_lenses)
    x, y, ids = real.x, real.y, real.ids
    log.info("%d real cutouts (%d lenses)", len(y), int(y.sum()))
    _check_real(real, fc, real_dir)
    xs, ys = sim if sim is not None else run_sims(run, fc.n_sim)
    if fc.n_paint and painted is None:
        painted = paint_real(real, cfg, fc, workers)
    xp, hp = painted if painted is not None else (np.zeros((0, *x.shape[1:]), np.float32), [])

    import keras

    from . import models  # noqa: F401

    before = _predict(keras.saving.load_model(run.model), x)
    groups = position_groups(real.ra, real.dec, fc.group_radius)
    fold = _folds(groups, y, fc.folds, fc.fold_seed)
    cv, cv_mirror, final = _cross_validate(run.model, real, fold, (xs, ys), (xp, hp), fc,
                                           progress)
    _write_finetuned(out, run, final, save, real, real_dir, fc, n_painted=len(hp))
    with open(out.path / "cv_scores.csv", "w") as fh:
        # score_cv_mirror: the same fold model's score of the mirrored cutout; the mean of the
        # two is the cross-validated score of the model averaged over the mirror
        # (python -m export.symmetrise)
        fh.write("id,label,fold,group,score_cv,score_before,score_cv_mirror\n")
        for i, lab, f, g, sc, b, sm in zip(ids, y, fold, groups, cv, before, cv_mirror):
            fh.write(f"{i},{lab},{f},{g},{sc:.6g},{b:.6g},{sm:.6g}\n")
    res = {"n_real": int(len(y)), "config": asdict(fc), "n_painted": int(len(hp)),
           "n_groups": int(len(set(groups.tolist()))),
           "cv": classification_summary(y, cv), "before": classification_summary(y, before),
           # the same folds' models averaged over the mirror (python -m export.symmetrise)
           "cv_mirror_averaged": classification_summary(y, (cv + cv_mirror) / 2)}
    src = np.array([kind_of(i) == "src" for i in ids])
    res["cv"]["field_sources_above_threshold"] = (
        float(np.mean(cv[src] >= DEFAULT_THRESHOLD)) if src.any() else None)
    out.metrics.write_text(json.dumps({"real_data": real_data_record(res, real_dir)}, indent=1))
    return res


def _check_real(real: RealSet, fc: FinetuneConfig, where) -> None:
    """Refuse, before any training, real data that cross-validation cannot judge: one class
    only, or fewer sky-position groups than folds."""
    n_lens, n = int(real.y.sum()), len(real.y)
    if n_lens == 0 or n_lens == n:
        raise ValueError(f"{where or 'the real data'}: {n} cutouts, all "
                         f"{'lenses' if n_lens else 'non-lenses'}: fine-tuning needs both "
                         "(check the labels or grades)")
    n_groups = len(set(position_groups(real.ra, real.dec, fc.group_radius).tolist()))
    if n_groups < fc.folds:
        raise ValueError(f"{where or 'the real data'}: {n_groups} sky-position group(s) "
                         f"(within {fc.group_radius:g}\") for {fc.folds} folds: use fewer "
                         "--folds or more data")


def _cross_validate(model_path, real: RealSet, fold, sims, painted, fc: FinetuneConfig,
                    progress=None):
    """One fine-tune per fold, each scoring the real cutouts it did not see, then the final
    fine-tune on all of them. Returns the out-of-fold scores, the out-of-fold scores of the
    mirrored cutouts (for a model averaged over the mirror) and the final model.

    Simulations are mixed into every training set; a painting (``painted``: cutouts and host
    ids) trains only the folds its host is not tested in, so no test cutout is seen painted
    (with ``fc.paint_pairs`` its unpainted host joins as a negative beside it)."""
    x, y, ids = real.x, real.y, real.ids
    xs, ys = sims
    xp, hp = painted
    fold_of_id = dict(zip(ids, fold.tolist()))
    # a painting belongs to its host's fold; a host outside the real set is in no test fold
    paint_fold = np.array([fold_of_id.get(h, -1) for h in hp], int)
    cv, cv_mirror = np.full(len(y), np.nan), np.full(len(y), np.nan)
    ids_a = np.asarray(ids, dtype=object)

    def weights(sel):
        return sample_weights(ids_a[sel], y[sel]) if fc.balance_nonlenses else None

    row_of = {i: r for r, i in enumerate(ids)}

    def extra(k):
        keep = paint_fold != k
        parts, labels = [xs, xp[keep]], [ys, np.ones(int(keep.sum()), int)]
        if fc.paint_pairs:
            rows = [row_of[h] for h, kept in zip(hp, keep) if kept and h in row_of]
            parts.append(x[rows])
            labels.append(np.zeros(len(rows), int))
        return np.concatenate(parts), np.concatenate(labels)

    for k in range(fc.folds):
        tr, te = fold != k, fold == k
        m = _train(model_path, x[tr], y[tr], *extra(k), fc, fc.seed + k, weights(tr))
        cv[te] = _predict(m, x[te])
        cv_mirror[te] = _predict(m, x[te][..., ::-1])
        if progress:
            progress(k + 1, fc.folds + 1)
    final = _train(model_path, x, y, *extra(-2), fc, fc.seed + fc.folds, weights(slice(None)))
    if progress:
        progress(fc.folds + 1, fc.folds + 1)
    return cv, cv_mirror, final


def _write_finetuned(out: RunDir, run: RunDir, final, save, real: RealSet, real_dir,
                     fc: FinetuneConfig, *, n_painted: int) -> None:
    """The fine-tuned run directory: the model, the base run's config with the recipe added,
    the base run's test split (so `python -m train evaluate OUT` stays honest) and, where the
    real cutouts have digests, ``trained_on.json`` for the export to stamp."""
    y = real.y
    out.path.mkdir(parents=True, exist_ok=True)
    (save or (lambda m, d: m.save(RunDir(d).model)))(final, out.path)
    conf = read_config(run)
    conf["finetune"] = {**asdict(fc), "real_data": Path(real_dir).name if real_dir else "given",
                        "n_real": int(len(y)), "n_real_lenses": int(y.sum()),
                        "n_painted": int(n_painted), "base_run": run.path.name}
    out.config.write_text(json.dumps(conf, indent=1))
    if run.split.exists():
        shutil.copyfile(run.split, out.split)
    if real.digests:
        from lensscore.trained import trained_on_record

        name = Path(real_dir).name if real_dir else "given"
        also = real.also_seen_radec or [(math.nan, math.nan)] * len(real.also_seen)
        (out.path / "trained_on.json").write_text(json.dumps(trained_on_record(
            real.digests + real.also_seen, f"{name} ({len(y)} real cutouts, fine-tuned on"
            + (f"; {len(real.also_seen)} lenses recentred, also as catalogued" if
               real.also_seen else "") + ")", list(zip(real.ra, real.dec)) + list(also))))
