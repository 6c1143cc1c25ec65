"""Fine-tune a simulation-trained model on real survey cutouts, measured by cross-validation.

HOLISMOKES trains on real survey galaxies and real non-lenses; we have no such set at scale, but a
few hundred real confirmed lenses and field sources (``realdata/*``). :func:`finetune` continues
training a run's model on them mixed with the run's own simulations (so the simulated lenses are
not forgotten), and reports what it is worth honestly: every real cutout is scored by a model
that never saw it (k-fold, grouped by field: a lens and the sky positions cut from its field are
always in the same fold). The model it returns for shipping is then trained on all real cutouts
with the same recipe; its real-data numbers are the cross-validated ones, never its own
training-set scores.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lensscore.config import DEFAULT_THRESHOLD
from lensscore.metrics import classification_summary
from lensscore.preprocess import PreprocessSpec

from .fit import RunDir, augment, load_config, read_config

__all__ = ["FinetuneConfig", "finetune", "load_real", "field_of", "kind_of", "real_data_record",
           "run_sims", "sample_weights", "sim_indices"]

log = logging.getLogger(__name__)

_FIELD_SUFFIX = re.compile(r"-(s|\d+)$")


def field_of(obj_id: str) -> str:
    """The field an object was cut from: its lens name (``nonlenses/sky/NAME-s`` -> ``NAME``)."""
    name = obj_id.rstrip("/").split("/")[-1]
    return _FIELD_SUFFIX.sub("", name) if not obj_id.startswith("lenses/") else name


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
    n_sim: int = 4000
    oversample: int = 4
    seed: int = 0
    balance_nonlenses: bool = False
    #: the folds' seed, apart from ``seed`` (initial shuffles and augmentation): runs that differ
    #: only in ``seed`` share their folds, so their CV scores differ by training noise alone
    fold_seed: int = 0


def load_real(data_dir, cfg) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labelled real cutouts on the run's grid (its survey preset), preprocessed as in scoring
    (:func:`train.data.load_dataset`, as for training data)."""
    from .data import load_dataset
    from .presets import read_options

    ds = load_dataset(data_dir, bands=tuple(cfg.bands), size=cfg.size,
                      spec=PreprocessSpec.from_json(cfg.preprocess),
                      options=read_options(cfg.survey, cfg.bands, cfg.size))
    return np.asarray(ds.x, np.float32), np.asarray(ds.y, int), list(ds.ids)


def _folds(ids, y, k: int, seed: int) -> np.ndarray:
    """Fold of each cutout: fields shuffled and dealt to folds, lenses and others apart."""
    fields = [field_of(i) for i in ids]
    uniq = sorted(set(fields))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    fold_of = {uniq[j]: n % k for n, j in enumerate(order)}
    return np.array([fold_of[f] for f in fields])


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
    from .fit import _data_and_split

    cfg = load_config(run)
    data_dir = Path(read_config(run).get("data_dir", ""))
    if run.split.exists() and data_dir.is_dir():
        ds, split = _data_and_split(run, cfg, data_dir, None, write_config=False)
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
            "method": f"{res['config']['folds']}-fold cross-validation grouped by field: each "
                      "cutout scored by a model fine-tuned without it",
            "cv": res["cv"], "before_finetune": res["before"]}


def _nhwc(x):
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def _train(model_path, x_real, y_real, x_sim, y_sim, fc: FinetuneConfig, seed: int,
           w_real=None):
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


def _predict(model, x):
    return np.asarray(model.predict(_nhwc(x), batch_size=256, verbose=0)).reshape(-1)


def finetune(run_dir, real_dir, out_dir, fc: FinetuneConfig | None = None,
             progress=None, *, real=None, sim=None, save=None) -> dict:
    """Cross-validate fine-tuning on ``real_dir``, then train the final model into ``out_dir``.

    Parameters
    ----------
    run_dir : path
        A finished run (``model.keras``, ``config.json``) trained on simulations.
    real_dir : path
        Labelled real cutouts (``lenses/``, ``nonlenses/``) in any layout the scorer reads.
    out_dir : path
        New run directory: ``model.keras``, ``config.json`` (with the fine-tuning recipe),
        ``cv_scores.csv`` (every real cutout scored by the fold model that did not see it),
        ``metrics.json`` (cross-validated real-data metrics).

    real : (x, y, ids), optional
        The real cutouts already read (:func:`load_real`; a GPU machine without the files).
    sim : (x, y), optional
        The simulated cutouts to mix in, already made (default: regenerated here).
    save : callable(model, out_dir), optional
        How to store the final model (default ``model.keras``).

    Returns
    -------
    dict
        ``cv`` (metrics over all out-of-fold scores), ``before`` (the run's model on the same
        cutouts, for comparison), ``n_real``, ``config``.
    """
    fc = fc or FinetuneConfig()
    run, out = RunDir(run_dir), RunDir(out_dir)
    if out.model.exists():
        raise FileExistsError(f"{out.path} holds a model already")
    cfg = load_config(run)
    x, y, ids = real if real is not None else load_real(real_dir, cfg)
    y = np.asarray(y, int)
    log.info("%d real cutouts (%d lenses)", len(y), int(y.sum()))
    xs, ys = sim if sim is not None else run_sims(run, fc.n_sim)

    import keras

    from . import models  # noqa: F401

    before = _predict(keras.saving.load_model(run.model), x)
    fold = _folds(ids, y, fc.folds, fc.fold_seed)
    cv = np.full(len(y), np.nan)
    ids_a = np.asarray(ids, dtype=object)

    def weights(sel):
        return sample_weights(ids_a[sel], y[sel]) if fc.balance_nonlenses else None

    for k in range(fc.folds):
        tr, te = fold != k, fold == k
        m = _train(run.model, x[tr], y[tr], xs, ys, fc, fc.seed + k, weights(tr))
        cv[te] = _predict(m, x[te])
        if progress:
            progress(k + 1, fc.folds + 1)
    final = _train(run.model, x, y, xs, ys, fc, fc.seed + fc.folds, weights(slice(None)))
    if progress:
        progress(fc.folds + 1, fc.folds + 1)
    out.path.mkdir(parents=True, exist_ok=True)
    (save or (lambda m, d: m.save(RunDir(d).model)))(final, out.path)
    conf = read_config(run)
    conf["finetune"] = {**asdict(fc), "real_data": Path(real_dir).name if real_dir else "given",
                        "n_real": int(len(y)), "n_real_lenses": int(y.sum()),
                        "base_run": run.path.name}
    out.config.write_text(json.dumps(conf, indent=1))
    if run.split.exists():  # the same test split: `python -m train evaluate OUT` stays honest
        shutil.copyfile(run.split, out.split)
    with open(out.path / "cv_scores.csv", "w") as fh:
        fh.write("id,label,fold,score_cv,score_before\n")
        for i, lab, f, s, b in zip(ids, y, fold, cv, before):
            fh.write(f"{i},{lab},{f},{s:.6g},{b:.6g}\n")
    res = {"n_real": int(len(y)), "config": asdict(fc),
           "cv": classification_summary(y, cv), "before": classification_summary(y, before)}
    src = np.array(["/src/" in i for i in ids])
    res["cv"]["field_sources_above_threshold"] = (
        float(np.mean(cv[src] >= DEFAULT_THRESHOLD)) if src.any() else None)
    out.metrics.write_text(json.dumps({"real_data": real_data_record(res, real_dir)}, indent=1))
    return res
