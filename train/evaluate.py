"""Evaluation on the run's test split: lensscore's metrics, rotation stability, a Markdown report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from lensscore.config import DEFAULT_THRESHOLD
from lensscore.metrics import classification_summary, rotation_stability
from lensscore.preprocess import PreprocessSpec
from lensscore.scorer import rotate

from .data import Dataset, load_dataset, load_split
from .fit import RunDir, load_config, read_config
from .presets import read_options

__all__ = ["evaluate", "rotation_scores", "completeness"]

log = logging.getLogger(__name__)


def rotation_scores(model, ds: Dataset, idx, batch: int = 256) -> np.ndarray:
    """Keras scores of each cutout rotated by 0/90/180/270°: shape ``(n, 4)``."""
    out = np.empty((len(idx), 4), np.float32)
    for i in range(0, len(idx), batch):
        x = ds.nhwc(idx[i:i + batch])
        for k in range(4):
            xr = np.ascontiguousarray(rotate(x, k, channels_last=True))
            out[i:i + len(x), k] = np.asarray(model(xr, training=False)).reshape(-1)
    return out


def completeness(truth, ids, labels, scores, threshold: float, column: str, bins) -> list[dict]:
    """Fraction of test lenses scored ``>= threshold`` in bins of a truth-catalog column."""
    rows = {str(r["id"]): r for r in truth}
    vals, hits = [], []
    for i, lab, s in zip(ids, labels, scores):
        r = rows.get(i) or rows.get(i.rsplit("/", 1)[-1])
        if lab == 1 and r is not None and column in r.colnames:
            vals.append(float(r[column]))
            hits.append(s >= threshold)
    vals, hits = np.asarray(vals), np.asarray(hits)
    out = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        m = (vals >= lo) & (vals < hi)
        out.append({"lo": float(lo), "hi": float(hi), "n": int(m.sum()),
                    "completeness": float(hits[m].mean()) if m.any() else float("nan")})
    return out


def evaluate(run_dir, data_dir=None, *, threshold: float = DEFAULT_THRESHOLD,
             dataset: Dataset | None = None,
             truth=None, plots: bool = True) -> dict:
    """Score the test split of a run; write ``metrics.json``, ``test_scores.csv``, ``report.md``
    and ``plots/*.png`` (training curve, ROC, score histograms, rotation std, completeness).

    Parameters
    ----------
    run_dir : path
        A finished (or checkpointed) run of :func:`train.fit.fit`.
    data_dir : path, optional
        The data set; default the one recorded in the run's ``config.json``.
    truth : path, optional
        Truth catalog (simulations): completeness in Einstein radius / source magnitude bins.
    plots : bool
        Also draw the figures (matplotlib).

    Raises
    ------
    train.data.SplitError
        If the data are not the ones the run was split on.
    """
    import keras

    run = RunDir(run_dir)
    cfg = load_config(run)
    conf = read_config(run)
    data_dir = data_dir or conf["data_dir"]
    ds = dataset or load_dataset(data_dir, bands=cfg.bands, size=cfg.size,
                                 spec=PreprocessSpec.from_json(cfg.preprocess),
                                 options=read_options(cfg.survey, cfg.bands, cfg.size))
    split = load_split(run.split, ds)
    path = run.model if run.model.exists() else run.ckpt
    if not path.exists():
        raise FileNotFoundError(f"{run.path}: no model.keras or checkpoint.keras to evaluate")
    from . import models  # noqa: F401  (registers RotationalConv2D for load_model)

    model = keras.saving.load_model(path, compile=False)
    te = split["test"]
    rot = rotation_scores(model, ds, te)
    y = ds.y[te].astype(int)
    m = classification_summary(y, rot[:, 0], threshold)
    stab = rotation_stability(rot, threshold)
    result = {"arch": cfg.arch, "model": path.name, "split": "test", "metrics": m,
              "rotation_stability": stab, "data_dir": str(data_dir)}
    if truth is None:
        cand = Path(data_dir) / "truth.ecsv"
        truth = cand if cand.exists() else None
    if truth is not None:
        from astropy.table import Table

        t = Table.read(truth)
        ids = [ds.ids[i] for i in te]
        result["completeness"] = {
            col: completeness(t, ids, y, rot[:, 0], threshold, col, bins)
            for col, bins in (("theta_e", [0.75, 1.0, 1.25, 1.5, 2.0, 2.5]),
                              ("src_mag_i", [20, 22, 23, 24, 25, 27]))
            if col in t.colnames
        }
    from .plots import write_test_scores

    write_test_scores(run.path / "test_scores.csv", [ds.ids[i] for i in te], y, rot)
    if run.metrics.exists():  # a fine-tuned run's cross-validated real-data numbers stay
        kept = json.loads(run.metrics.read_text()).get("real_data")
        if kept:
            result["real_data"] = kept
    run.metrics.write_text(json.dumps(result, indent=1))
    if plots:
        try:
            from .plots import plot_runs

            result["plots"] = [p.name for p in plot_runs([run.path], run.path / "plots",
                                                         threshold=threshold)]
        except ImportError as exc:  # matplotlib is in the [train] extra, but be forgiving
            log.warning("no plots: %s", exc)
    run.report.write_text(_report(result))
    return result


def _report(r: dict) -> str:
    m, s = r["metrics"], r["rotation_stability"]
    lines = [
        f"# Evaluation of `{r['arch']}` ({r['model']}) on the test split",
        "",
        f"{m['n']} test cutouts ({m['n_lens']} lenses, {m['n_nonlens']} non-lenses), threshold "
        f"{m['threshold']:g}.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| accuracy | {m['accuracy']:.4f} |",
        f"| ROC AUC | {m['roc_auc']:.4f} |",
        f"| TPR at FPR 1% | {m['tpr_at_fpr_1pct']:.4f} |",
        f"| TPR at FPR 0.1% | {m['tpr_at_fpr_0.1pct']:.4f} |",
        f"| TPR0 | {m['tpr0']:.4f} |",
        f"| confusion (tp, fp, tn, fn) | {m['tp']}, {m['fp']}, {m['tn']}, {m['fn']} |",
        f"| rotation std mean / median / p99 / max | {s['std_mean']:.4g} / {s['std_median']:.4g}"
        f" / {s['std_p99']:.4g} / {s['std_max']:.4g} |",
        f"| class flips under rotation | {s['flip_fraction']:.4f} |",
    ]
    if r.get("plots"):
        lines += [""] + [f"![{p[:-4]}](plots/{p})" for p in r["plots"]]
    for col, rows in r.get("completeness", {}).items():
        lines += ["", f"Completeness against `{col}`:", "", "| bin | n | completeness |",
                  "|---|---|---|"]
        lines += [f"| {x['lo']:g}–{x['hi']:g} | {x['n']} | {x['completeness']:.3f} |"
                  for x in rows]
    return "\n".join(lines) + "\n"
