"""Markdown rows of the cross-validated real-data metrics of GPU fine-tunes (device_finetune.py).

    python scripts/ft_table.py RESULTS.json|CV.csv [...] [--boot 1000] [--committee A,B,...]
        [--paired A,B] [--agree A,B,...]

Each job of each ``results.json`` is one row: its out-of-fold scores (``cv_scores.csv``, kept in
the file) over the development half's 550 cutouts (the ``nonlenses/det/`` detections are reported
apart: they are extra non-lenses of the fine-tune, not of the development set). ``--committee``
rows average the out-of-fold scores of the named jobs: with the same folds, each member's score of
a cutout comes from a model that never saw it, so the mean is a cross-validated committee score.
``--paired A,B`` prints A's AUC minus B's on the 550 (over all non-lenses, and against the
field sources alone) with the 95 % interval of ``--boot``
paired bootstrap resamplings (:func:`lensscore.metrics.paired_bootstrap`): both jobs scored
on the same resampled cutouts. ``--agree A,B,...`` counts, for each kind of cutout, how many of
the named jobs score each one >= 0.5: whether the same field sources pass in every fine-tune
(what the data show) or different ones in each (training noise).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lensscore.metrics import classification_summary, paired_bootstrap

HEAD = ("| fine-tune | AUC, all (550) | 95 % interval | vs field sources | vs sky | vs detections "
        "| TPR at FPR 1 % | lenses ≥ 0.5 | field sources ≥ 0.5 | sky ≥ 0.5 | detections ≥ 0.5 |\n"
        "| --- " + "| ---: " * 10 + "|")


def read_jobs(paths) -> dict[str, dict[str, tuple[int, float]]]:
    """Job name -> {id: (label, out-of-fold score)}; a name seen twice gets its file's index.
    A ``.csv`` is the wide table kept in the repository (``models/cv/``: id, label, fold,
    group, then one column of out-of-fold scores per job), or a fine-tuned run's own
    ``cv_scores.csv``: two jobs, named after its directory, as it is and averaged over the
    mirror (``score_cv_mirror``)."""
    jobs = {}
    for k, p in enumerate(paths):
        if str(p).endswith(".csv"):
            lines = [r.split(",") for r in Path(p).read_text().split("\n") if r]
            for c, name in enumerate(lines[0][4:], start=4):
                jobs[name] = {r[0]: (int(r[1]), float(r[c])) for r in lines[1:]}
            if {"score_cv", "score_cv_mirror"} <= set(jobs):  # a run's cv_scores.csv
                a, b = jobs.pop("score_cv"), jobs.pop("score_cv_mirror")
                stem = Path(p).parent.name or Path(p).stem
                jobs[stem] = a
                jobs[f"{stem} (mirror-averaged)"] = {
                    i: (lab, (v + b[i][1]) / 2) for i, (lab, v) in a.items()}
                jobs.pop("score_before", None)
            continue
        for name, j in json.load(open(p))["jobs"].items():
            rows = [r.split(",") for r in j["cv_scores.csv"].split("\n")[1:] if r]
            key = name if name not in jobs else f"{name}#{k}"
            jobs[key] = {r[0]: (int(r[1]), float(r[4])) for r in rows}
    return jobs


def _kind(i: str) -> str:
    return "lens" if i.startswith("lenses/") else i.split("/")[1]


def _auc(y, s) -> float:
    return classification_summary(y, s)["roc_auc"]


def row(name: str, scores: dict, boot: int = 0, seed: int = 0) -> str:
    ids = sorted(scores)
    y = np.array([scores[i][0] for i in ids])
    s = np.array([scores[i][1] for i in ids])
    kind = np.array([_kind(i) for i in ids])
    dev = kind != "det"
    auc = _auc(y[dev], s[dev])
    ci = "–"
    if boot:
        rng = np.random.default_rng(seed)
        yd, sd = y[dev], s[dev]
        b = [_auc(yd[j], sd[j]) for j in (rng.integers(0, len(yd), len(yd)) for _ in range(boot))]
        ci = f"[{np.percentile(b, 2.5):.3f}, {np.percentile(b, 97.5):.3f}]"
    vs = {}
    for k in ("src", "sky", "det"):
        m = (kind == "lens") | (kind == k)
        vs[k] = f"{_auc(y[m], s[m]):.3f}" if (kind == k).any() else "–"
    above = {k: f"{int((s[kind == k] >= 0.5).sum())}/{int((kind == k).sum())}"
             for k in ("lens", "src", "sky", "det")}
    tpr = classification_summary(y[dev], s[dev])["tpr_at_fpr_1pct"]
    return (f"| {name} | {auc:.3f} | {ci} | {vs['src']} | {vs['sky']} | {vs['det']} | {tpr:.3f} | "
            f"{above['lens']} | {above['src']} | {above['sky']} | {above['det']} |")


def paired(jobs: dict, a: str, b: str, boot: int) -> str:
    """A's AUC minus B's, over all non-lenses of the 550 and against the field sources."""
    ids = sorted(i for i in set(jobs[a]) & set(jobs[b]) if _kind(i) != "det")
    out = []
    for group, keep in (("all non-lenses", lambda i: True),
                        ("field sources", lambda i: _kind(i) in ("lens", "src"))):
        sel = [i for i in ids if keep(i)]
        y = np.array([jobs[a][i][0] for i in sel])
        d = paired_bootstrap(y, [jobs[a][i][1] for i in sel], [jobs[b][i][1] for i in sel],
                             boot or 1000)["roc_auc"]
        out.append(f"{group} ({len(sel)}): {d['a_minus_b']:+.3f} [{d['lo95']:+.3f}, "
                   f"{d['hi95']:+.3f}]")
    return f"AUC, {a} - {b}: " + "; ".join(out)


def agree(jobs: dict, names: list[str]) -> str:
    """Per kind of cutout: how many are scored >= 0.5 by exactly k of the ``names``."""
    common = sorted(set.intersection(*(set(jobs[n]) for n in names)))
    hits = {i: sum(jobs[n][i][1] >= 0.5 for n in names) for i in common}
    head = (f"| >= 0.5 in k of {len(names)} ({', '.join(names)}) | "
            + " | ".join(f"k = {k}" for k in range(len(names) + 1)) + " |\n| --- "
            + "| ---: " * (len(names) + 1) + "|")
    rows = []
    for kind in ("lens", "src", "sky", "det"):
        ks = [h for i, h in hits.items() if _kind(i) == kind]
        if ks:
            rows.append(f"| {kind} ({len(ks)}) | "
                        + " | ".join(str(ks.count(k)) for k in range(len(names) + 1)) + " |")
    return "\n".join([head, *rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--boot", type=int, default=0, help="bootstrap resamplings of the 550")
    ap.add_argument("--committee", action="append", default=[],
                    help="comma-separated job names whose out-of-fold scores are averaged")
    ap.add_argument("--paired", action="append", default=[], metavar="A,B",
                    help="A's AUC minus B's with a paired bootstrap interval (--boot, or 1000)")
    ap.add_argument("--agree", action="append", default=[], metavar="A,B,...",
                    help="for each kind of cutout, how many score >= 0.5 in k of these jobs")
    a = ap.parse_args(argv)
    jobs = read_jobs(a.results)
    print(HEAD)
    for name, sc in jobs.items():
        print(row(name, sc, a.boot))
    for c in a.committee:
        names = c.split(",")
        common = set.intersection(*(set(jobs[n]) for n in names))
        mean = {i: (jobs[names[0]][i][0], float(np.mean([jobs[n][i][1] for n in names])))
                for i in common}
        name = f"committee of {len(names)}: {' + '.join(names)}"
        jobs[name] = mean
        print(row(name, mean, a.boot))
    for pair in a.paired:
        x, _, y = pair.partition(",")
        for n in (x, y):
            if n not in jobs:
                raise SystemExit(f"--paired {pair}: no job {n!r} (jobs: {', '.join(jobs)})")
        print(paired(jobs, x, y, a.boot))
    for names in a.agree:
        missing = [n for n in names.split(",") if n not in jobs]
        if missing:
            raise SystemExit(f"--agree {names}: no job {missing[0]!r} (jobs: {', '.join(jobs)})")
        print(agree(jobs, names.split(",")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
