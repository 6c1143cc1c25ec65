"""Evaluation plots of one or more runs: training curves, ROC, score histograms, rotation
stability, completeness (matplotlib, the [train] extra)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from lensscore.config import DEFAULT_THRESHOLD
from lensscore.metrics import roc_curve

__all__ = ["plot_runs", "read_test_scores", "write_test_scores"]

#: Floor of the rotation-std axis: the rotational model's spread is 0 or ~1e-8.
STD_FLOOR = 1e-9
_COLORS = {"baseline": "tab:orange", "rot": "tab:blue"}


def write_test_scores(path, ids, labels, rot: np.ndarray) -> None:
    """``id,label,score,score_r0..score_r3`` of the test split (``rot``: ``(n, 4)``)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "label", "score", "score_r0", "score_r1", "score_r2", "score_r3"])
        for i, lab, r in zip(ids, labels, rot):
            w.writerow([i, int(lab), f"{r[0]:.9g}", *(f"{v:.9g}" for v in r)])


def read_test_scores(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """ids, labels ``(n,)`` and rotation scores ``(n, 4)`` written by :func:`write_test_scores`."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = [r["id"] for r in rows]
    labels = np.array([int(r["label"]) for r in rows], int)
    rot = np.array([[float(r[f"score_r{k}"]) for k in range(4)] for r in rows], np.float64)
    return ids, labels, rot


def _name(run: Path) -> tuple[str, str]:
    from .fit import read_config

    conf = read_config(run)
    return conf.get("arch", run.name), run.name


def _history(run: Path) -> dict[str, np.ndarray]:
    with open(run / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]} if rows else {}


def _run_data(run: Path) -> dict:
    """What the figures need of one run, read once: its name, colour, history, test scores and
    metrics (each only where the run wrote it)."""
    arch, label = _name(run)
    d = {"arch": arch, "label": label, "color": _COLORS.get(arch), "history": _history(run)}
    if (run / "test_scores.csv").exists():
        d["ids"], d["y"], d["rot"] = read_test_scores(run / "test_scores.csv")
    if (run / "metrics.json").exists():
        d["metrics"] = json.loads((run / "metrics.json").read_text())
    return d


def _plot_training(plt, data: list[dict]):
    """Loss (train and validation) and validation accuracy per epoch, one colour per run."""
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    for d in data:
        h = d["history"]
        if not h:
            continue
        ax[0].plot(h["epoch"], h["loss"], "--", color=d["color"], label=f"{d['label']} train")
        ax[0].plot(h["epoch"], h["val_loss"], "-", color=d["color"], label=f"{d['label']} val")
        ax[1].plot(h["epoch"], h["val_accuracy"], "-o", ms=3, color=d["color"], label=d["label"])
    ax[0].set(xlabel="epoch", ylabel="binary cross-entropy", title="loss")
    ax[1].set(xlabel="epoch", ylabel="accuracy", title="validation accuracy")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    return fig


def _plot_roc(plt, scored: list[dict]):
    """ROC on a log FPR axis (zero FPR drawn at half a negative), TPR at FPR 1% and 0.1% marked."""
    fig, ax = plt.subplots(figsize=(5, 4))
    for d in scored:
        fpr, tpr, _ = roc_curve(d["y"], d["rot"][:, 0])
        n_neg = int((d["y"] == 0).sum())
        fpr = np.maximum(fpr, 1 / max(n_neg, 1) / 2)
        auc = d.get("metrics", {}).get("metrics", {}).get("roc_auc", float("nan"))
        ax.plot(fpr, tpr, color=d["color"], label=f"{d['label']} (AUC {auc:.3f})")
        m = d.get("metrics", {}).get("metrics", {})
        for key, f in (("tpr_at_fpr_1pct", 1e-2), ("tpr_at_fpr_0.1pct", 1e-3)):
            if key in m and np.isfinite(m[key]):
                ax.plot([f], [m[key]], "o", color=d["color"], ms=5)
                ax.annotate(f"{m[key]:.2f}", (f, m[key]), textcoords="offset points",
                            xytext=(4, -10), fontsize=7, color=d["color"])
    for f in (1e-3, 1e-2):
        ax.axvline(f, color="grey", lw=0.6, ls=":")
    ax.set(xscale="log", xlabel="false-positive rate", ylabel="true-positive rate",
           title="ROC on the test split", ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _plot_scores(plt, scored: list[dict], threshold: float):
    """Score histograms per class, one panel per run, the threshold drawn."""
    fig, axes = plt.subplots(1, len(scored), figsize=(4.2 * len(scored), 3.3), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for a, d in zip(axes[0], scored):
        s = d["rot"][:, 0]
        a.hist(s[d["y"] == 0], bins, color="grey", alpha=0.7, label="non-lenses")
        a.hist(s[d["y"] == 1], bins, color=d["color"] or "tab:blue", alpha=0.7, label="lenses")
        a.axvline(threshold, color="k", lw=0.8, ls="--")
        a.set(yscale="log", xlabel="score", ylabel="cutouts", title=d["label"])
        a.legend(fontsize=8)
    return fig


def _plot_rotation_std(plt, scored: list[dict]):
    """Histogram of the std of the four rotation scores per cutout, floored at ``STD_FLOOR`` so
    that an invariant model's zeros show on the log axis."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    edges = np.logspace(np.log10(STD_FLOOR), 0, 46)
    for d in scored:
        std = np.maximum(d["rot"].std(axis=1), STD_FLOOR)
        ax.hist(std, edges, histtype="step", lw=1.5, color=d["color"],
                label=f"{d['label']} (max {d['rot'].std(axis=1).max():.2g})")
    ax.set(xscale="log", yscale="log", xlabel=f"std of the 4 rotation scores (floor {STD_FLOOR:g})",
           ylabel="test cutouts", title="rotation stability")
    ax.set_ylim(bottom=0.7)  # single cutouts stay visible on the log axis
    ax.legend(fontsize=8)
    return fig


def _plot_completeness(plt, comp: list[dict], threshold: float):
    """Completeness against each binned truth column (Einstein radius, source magnitude) with
    binomial errors; the first run's bin counts are written under its points."""
    cols = list(comp[0]["metrics"]["completeness"])
    fig, axes = plt.subplots(1, len(cols), figsize=(4.3 * len(cols), 3.3), squeeze=False)
    names = {"theta_e": "Einstein radius θE (arcsec)", "src_mag_i": "source i magnitude"}
    for a, col in zip(axes[0], cols):
        for d in comp:
            rows = [r for r in d["metrics"]["completeness"].get(col, []) if r["n"]]
            x = np.array([(r["lo"] + r["hi"]) / 2 for r in rows])
            c = np.array([r["completeness"] for r in rows])
            n = np.array([r["n"] for r in rows])
            err = np.sqrt(np.clip(c * (1 - c), 1 / n, None) / n)  # binomial, >0 at 0 and 1
            a.errorbar(x, c, yerr=err, fmt="-o", ms=3, capsize=2, color=d["color"],
                       label=d["label"])
            if d is comp[0]:
                for xi, ni in zip(x, n):
                    a.annotate(f"{ni}", (xi, 0.02), ha="center", fontsize=6, color="grey")
        a.set(xlabel=names.get(col, col), ylabel=f"completeness (score ≥ {threshold:g})",
              ylim=(0, 1.02))
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    return fig


def plot_runs(runs, out_dir, *, threshold: float = DEFAULT_THRESHOLD, dpi: int = 110
              ) -> list[Path]:
    """Write PNG figures comparing ``runs`` (run directories that were evaluated).

    ``training.png`` (loss and validation accuracy per epoch), ``roc.png`` (log FPR, TPR at
    FPR 1% and 0.1% marked), ``scores.png`` (score histograms per class),
    ``rotation_std.png`` (std of the four rotation scores) and, for simulated data with a truth
    catalog, ``completeness.png`` (against Einstein radius and source magnitude).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # keyed by path: a run named twice is drawn once
    data = list({str(Path(r)): _run_data(Path(r)) for r in runs}.values())
    written = []

    def save(fig, name):
        p = out / name
        fig.tight_layout()
        fig.savefig(p, dpi=dpi)
        plt.close(fig)
        written.append(p)

    save(_plot_training(plt, data), "training.png")
    scored = [d for d in data if "rot" in d]
    if not scored:
        return written
    save(_plot_roc(plt, scored), "roc.png")
    save(_plot_scores(plt, scored, threshold), "scores.png")
    save(_plot_rotation_std(plt, scored), "rotation_std.png")
    comp = [d for d in scored if d.get("metrics", {}).get("completeness")]
    if comp:
        save(_plot_completeness(plt, comp, threshold), "completeness.png")
    return written
