"""Two models' test-split scores compared on the cutouts both test splits hold.

Runs trained on the same simulated data set with different 56/14/30 splits (e.g. the CPU run of
``scripts/hsc_cpu.sh`` and the shipped GPU run) each have a test split the other may have trained
on; only the cutouts in both test splits were seen by neither. Reads ``test_scores.csv``
(``id,label,score,...``, from ``python -m train evaluate``) or ``test_scores_device.csv``
(``index,score``, from ``train import-device``); ids ``…/sim_NNNNNN`` are matched by their
simulation index. Labels come from whichever file has them. ``scripts/compare_test_splits.py``
prints it.
"""

from __future__ import annotations

import csv
import re

import numpy as np

from lensscore.metrics import classification_summary, paired_bootstrap

__all__ = ["read_scores", "compare_test_splits"]

_INDEX = re.compile(r"sim_(\d+)$")


def read_scores(path) -> tuple[dict[int, float], dict[int, int]]:
    """The scores of a test-split file by simulation index.

    Parameters
    ----------
    path : str or Path
        ``test_scores.csv`` or ``test_scores_device.csv``.

    Returns
    -------
    tuple of dict
        ``({index: score}, {index: label})`` (labels empty when the file has none).

    Raises
    ------
    ValueError
        A row with neither an ``index`` nor an id ending ``sim_NNNNNN``.
    """
    scores, labels = {}, {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("index") not in (None, ""):
                i = int(row["index"])
            else:
                m = _INDEX.search(row.get("id", ""))
                if not m:
                    raise ValueError(f"{path}: row without an index or a sim_NNNNNN id: {row}")
                i = int(m.group(1))
            scores[i] = float(row["score"])
            if row.get("label") not in (None, ""):
                labels[i] = int(row["label"])
    return scores, labels


def compare_test_splits(a, b, names=("A", "B"), n_boot: int = 1000) -> dict:
    """Metrics of two test-split score files on the labelled cutouts both hold.

    Parameters
    ----------
    a, b : str or Path
        The two files (:func:`read_scores`).
    names : tuple of str
        Their names in the result.
    n_boot : int
        Paired bootstrap resamplings of the differences (:func:`lensscore.metrics.paired_bootstrap`);
        0 for none.

    Returns
    -------
    dict
        ``n_common``, ``n_lenses``, ``n_only`` (per name: cutouts only its file holds), per name
        its :func:`lensscore.metrics.classification_summary`, and with ``n_boot`` the
        ``difference`` A - B.

    Raises
    ------
    ValueError
        The files disagree on a label, or no labelled cutout is in both.
    """
    sa, la = read_scores(a)
    sb, lb = read_scores(b)
    labels = {**lb, **la}
    for i in set(la) & set(lb):
        if la[i] != lb[i]:
            raise ValueError(f"the files disagree on the label of index {i}")
    common = sorted(set(sa) & set(sb) & set(labels))
    if not common:
        raise ValueError("no labelled cutout is in both test splits")
    y = np.array([labels[i] for i in common])
    out = {"n_common": len(common), "n_lenses": int(y.sum()),
           "n_only": {names[0]: len(sa) - len(common), names[1]: len(sb) - len(common)}}
    scored = [np.array([s[i] for i in common]) for s in (sa, sb)]
    for name, s in zip(names, scored):
        out[name] = classification_summary(y, s)
    if n_boot:
        out["difference"] = paired_bootstrap(y, *scored, n_boot=n_boot)
    return out
