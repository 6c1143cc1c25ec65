"""Classification and rotation-stability metrics in plain numpy (no scikit-learn), and the
real-data metrics of a scan catalog (labelled real cutouts, non-lenses in groups by their ids)."""

from __future__ import annotations

import numpy as np

from .config import DEFAULT_THRESHOLD

__all__ = [
    "accuracy",
    "roc_auc",
    "roc_curve",
    "tpr_at_fpr",
    "tpr0",
    "confusion",
    "classification_summary",
    "rotation_stability",
    "mirror_stability",
    "StabilityAccumulator",
    "paired_bootstrap",
    "NONLENS_GROUPS",
    "labelled_scores",
    "logit_breaks_ties",
    "real_metrics",
    "paired_auc",
]


def _check(labels, scores):
    y = np.asarray(labels).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y, s


def accuracy(labels, scores, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Fraction of cutouts classified right with ``score >= threshold`` meaning lens.

    Parameters
    ----------
    labels : array_like of int
        1 lens, 0 not.
    scores : array_like of float
        One per label.
    threshold : float
        ``score >= threshold`` means lens.

    Returns
    -------
    float
        NaN for no cutouts.

    Raises
    ------
    ValueError
        Labels and scores of different lengths, or labels other than 0/1.
    """
    y, s = _check(labels, scores)
    return float(np.mean((s >= threshold).astype(int) == y)) if y.size else float("nan")


def confusion(labels, scores, threshold: float = DEFAULT_THRESHOLD) -> dict[str, int]:
    """Counts ``tp, fp, tn, fn`` at ``threshold``.

    Parameters
    ----------
    labels : array_like of int
        1 lens, 0 not.
    scores : array_like of float
        One per label.
    threshold : float
        ``score >= threshold`` means lens.

    Returns
    -------
    dict of str to int

    Raises
    ------
    ValueError
        Labels and scores of different lengths, or labels other than 0/1.
    """
    y, s = _check(labels, scores)
    p = s >= threshold
    return {"tp": int(np.sum(p & (y == 1))), "fp": int(np.sum(p & (y == 0))),
            "tn": int(np.sum(~p & (y == 0))), "fn": int(np.sum(~p & (y == 1)))}


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half).

    Parameters
    ----------
    labels : array_like of int
        1 lens, 0 not.
    scores : array_like of float
        One per label.

    Returns
    -------
    float
        NaN with one class only.

    Raises
    ------
    ValueError
        Labels and scores of different lengths, or labels other than 0/1.
    """
    y, s = _check(labels, scores)
    n1, n0 = int(y.sum()), int((1 - y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[y == 1].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False- and true-positive rates at each distinct threshold, highest threshold first.

    Parameters
    ----------
    labels : array_like of int
        1 lens, 0 not.
    scores : array_like of float
        One per label.

    Returns
    -------
    fpr, tpr, thresholds : ndarray
        Starting at ``(0, 0, inf)``.
    """
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # threshold boundaries where the value changes (a comparison, not np.diff: ties at +inf,
    # a logit derived from scores of 1.0, would give inf - inf = NaN and split the tie)
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1] if s.size else np.array([], int)
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    n1, n0 = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    return (np.r_[0.0, fps / n0], np.r_[0.0, tps / n1], np.r_[np.inf, s[last]])


def tpr_at_fpr(labels, scores, fpr: float) -> float:
    """Highest true-positive rate at a threshold whose false-positive rate is ``<= fpr``.

    Parameters
    ----------
    labels : array_like of int
        1 lens, 0 not.
    scores : array_like of float
        One per label.
    fpr : float
        The largest false-positive rate allowed (0.01 for TPR at FPR 1 %).

    Returns
    -------
    float
        NaN with one class only.

    Raises
    ------
    ValueError
        Labels and scores of different lengths, or labels other than 0/1.
    """
    y, s = _check(labels, scores)
    if y.sum() == 0 or (1 - y).sum() == 0:
        return float("nan")
    f, t, _ = roc_curve(y, s)
    return float(t[f <= fpr + 1e-12].max())


def tpr0(labels, scores) -> float:
    """Recall before the first false positive: positives scoring above every negative (the
    Bologna lens challenge's TPR0).

    Parameters
    ----------
    labels : array_like of int
        1 lens, 0 not.
    scores : array_like of float
        One per label.

    Returns
    -------
    float
        NaN with one class only.

    Raises
    ------
    ValueError
        Labels and scores of different lengths, or labels other than 0/1.
    """
    y, s = _check(labels, scores)
    if y.sum() == 0 or (1 - y).sum() == 0:
        return float("nan")
    return float(np.mean(s[y == 1] > s[y == 0].max()))


def classification_summary(labels, scores, threshold: float = DEFAULT_THRESHOLD,
                           ranking=None) -> dict:
    """Accuracy, ROC AUC, TPR at FPR 1% and 0.1%, TPR0 and the confusion counts.

    Parameters
    ----------
    labels : array_like of int
        1 lens, 0 not.
    scores : array_like of float
        One per label.
    threshold : float
        ``score >= threshold`` means lens.
    ranking : array_like of float, optional
        What orders the cutouts for the rank metrics (ROC AUC, TPR at FPR, TPR0), if not the
        scores: their logits, which stay apart where float32 scores have all saturated at 1.0.

    Returns
    -------
    dict
        ``n``, ``n_lens``, ``n_nonlens``, ``threshold``, ``accuracy``, ``roc_auc``,
        ``tpr_at_fpr_1pct``, ``tpr_at_fpr_0.1pct``, ``tpr0`` and :func:`confusion`'s counts.

    Raises
    ------
    ValueError
        Labels and scores of different lengths, or labels other than 0/1.
    """
    y, s = _check(labels, scores)
    r = s if ranking is None else _check(labels, ranking)[1]
    return {
        "n": int(y.size), "n_lens": int(y.sum()), "n_nonlens": int((1 - y).sum()),
        "threshold": float(threshold),
        "accuracy": accuracy(y, s, threshold),
        "roc_auc": roc_auc(y, r),
        "tpr_at_fpr_1pct": tpr_at_fpr(y, r, 0.01),
        "tpr_at_fpr_0.1pct": tpr_at_fpr(y, r, 0.001),
        "tpr0": tpr0(y, r),
        **confusion(y, s, threshold),
    }


def rotation_stability(rotation_scores, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """The seed's measurement: spread of the scores of the four 90° rotations of each cutout.

    Parameters
    ----------
    rotation_scores : array_like, shape ``(N, 4)``
    threshold : float
        A cutout *flips* if its four rotations do not all fall on the same side of it.

    Returns
    -------
    dict
        ``n``, ``std_mean``, ``std_median``, ``std_p99``, ``std_max`` (population std of the
        four scores, per cutout) and ``flip_fraction``.
    """
    r = np.asarray(rotation_scores, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] != 4:
        raise ValueError(f"rotation scores must have shape (N, 4), got {r.shape}")
    if len(r) == 0:
        nan = float("nan")
        return {"n": 0, "std_mean": nan, "std_median": nan, "std_p99": nan, "std_max": nan,
                "flip_fraction": nan}
    std, flips = _rotation_rows(r, threshold)
    return {"n": int(len(r)), "std_mean": float(std.mean()), "std_median": float(np.median(std)),
            "std_p99": float(np.percentile(std, 99)), "std_max": float(std.max()),
            "flip_fraction": float(flips.mean())}


def mirror_stability(transform_scores, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """The seed's measurement for the other half of the sky's symmetry: how the score of each
    cutout changes when it is mirrored.

    Parameters
    ----------
    transform_scores : array_like, shape ``(N, 8)``
        Scores of the four rotations of each cutout, then of the four rotations of its mirror
        image (:data:`lensscore.scorer.TRANSFORMS`).
    threshold : float
        A cutout *flips* if it and its mirror image fall on different sides of it.

    Returns
    -------
    dict
        ``n``; ``delta_mean``, ``delta_median``, ``delta_p99``, ``delta_max`` of the largest
        ``|score(mirror rotated by k) - score(rotated by k)|`` per cutout; ``flip_fraction``;
        ``std8_max``: the largest spread (population std) over all 8 transforms.
    """
    r = np.asarray(transform_scores, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] != 8:
        raise ValueError(f"transform scores must have shape (N, 8), got {r.shape}")
    if len(r) == 0:
        nan = float("nan")
        return {"n": 0, "delta_mean": nan, "delta_median": nan, "delta_p99": nan,
                "delta_max": nan, "flip_fraction": nan, "std8_max": nan}
    delta, flips = _mirror_rows(r, threshold)
    return {"n": int(len(r)), "delta_mean": float(delta.mean()),
            "delta_median": float(np.median(delta)), "delta_p99": float(np.percentile(delta, 99)),
            "delta_max": float(delta.max()), "flip_fraction": float(flips.mean()),
            "std8_max": float(r.std(axis=1).max())}


def _rotation_rows(r: np.ndarray, threshold: float):
    """Per cutout of ``r`` (N, >= 4): the four rotations' population std, and whether they
    fall on both sides of ``threshold``."""
    std = r[:, :4].std(axis=1)
    cls = r[:, :4] >= threshold
    return std, cls.any(axis=1) & ~cls.all(axis=1)


def _mirror_rows(r: np.ndarray, threshold: float):
    """Per cutout of ``r`` (N, 8): the largest |mirror - rotation| and whether the mirror
    image falls on the other side of ``threshold``."""
    return (np.abs(r[:, 4:] - r[:, :4]).max(axis=1),
            (r[:, 0] >= threshold) != (r[:, 4] >= threshold))


class StabilityAccumulator:
    """:func:`rotation_stability` and :func:`mirror_stability` over cutouts that come batch by
    batch, without keeping their scores (a streaming scan).

    Means, maxima and flip fractions are exact (float64 sums); the median and 99th percentile
    need every value, so each cutout keeps two float32 (its rotations' std and its mirror
    ``|Δ|``): 8 bytes per cutout checked.

    Parameters
    ----------
    threshold : float
        As for :func:`rotation_stability`.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD):
        from array import array

        self.threshold = float(threshold)
        self.n = 0
        self._std, self._delta = array("f"), array("f")
        self._sum = {"std": 0.0, "delta": 0.0}
        self._max = {"std": -np.inf, "delta": -np.inf, "std8": -np.inf}
        self._flips = {"rot": 0, "mirror": 0}

    def add(self, transform_scores) -> None:
        """Cutouts' 8 transform scores, shape ``(N, 8)`` or ``(8,)`` (all finite)."""
        r = np.asarray(transform_scores, dtype=np.float64).reshape(-1, 8)
        if not len(r):
            return
        std, rflip = _rotation_rows(r, self.threshold)
        delta, mflip = _mirror_rows(r, self.threshold)
        self.n += len(r)
        self._std.extend(std.astype(np.float32).tolist())
        self._delta.extend(delta.astype(np.float32).tolist())
        for k, v in (("std", std), ("delta", delta)):
            self._sum[k] += float(v.sum())
            self._max[k] = max(self._max[k], float(v.max()))
        self._max["std8"] = max(self._max["std8"], float(r.std(axis=1).max()))
        self._flips["rot"] += int(rflip.sum())
        self._flips["mirror"] += int(mflip.sum())

    def rotation(self) -> dict:
        """As :func:`rotation_stability` returns."""
        if not self.n:
            return rotation_stability(np.empty((0, 4)))
        std = np.frombuffer(self._std, dtype=np.float32).astype(np.float64)
        return {"n": self.n, "std_mean": self._sum["std"] / self.n,
                "std_median": float(np.median(std)), "std_p99": float(np.percentile(std, 99)),
                "std_max": self._max["std"], "flip_fraction": self._flips["rot"] / self.n}

    def mirror(self) -> dict:
        """As :func:`mirror_stability` returns."""
        if not self.n:
            return mirror_stability(np.empty((0, 8)))
        delta = np.frombuffer(self._delta, dtype=np.float32).astype(np.float64)
        return {"n": self.n, "delta_mean": self._sum["delta"] / self.n,
                "delta_median": float(np.median(delta)),
                "delta_p99": float(np.percentile(delta, 99)), "delta_max": self._max["delta"],
                "flip_fraction": self._flips["mirror"] / self.n, "std8_max": self._max["std8"]}


_PAIRED = {"accuracy": accuracy, "roc_auc": roc_auc,
           "tpr_at_fpr_1pct": lambda y, s: tpr_at_fpr(y, s, 0.01),
           "tpr_at_fpr_0.1pct": lambda y, s: tpr_at_fpr(y, s, 0.001)}


def paired_bootstrap(labels, scores_a, scores_b, n_boot: int = 1000, seed: int = 0) -> dict:
    """Two models' metrics compared on the same cutouts, with a paired bootstrap interval.

    Parameters
    ----------
    labels : array_like of 0/1
    scores_a, scores_b : array_like
        The two models' scores of the same cutouts, in the order of ``labels``.
    n_boot : int
        Resamplings (with replacement, lenses and non-lenses apart so that the class counts
        stay fixed), each scoring both models on the same cutouts.
    seed : int
        Seed of the resampling.

    Returns
    -------
    dict
        ``{metric: {"a_minus_b", "lo95", "hi95"}}`` for accuracy, ROC AUC and TPR at FPR 1 %
        and 0.1 %: A - B on all cutouts, and the 2.5 and 97.5 percentiles of A - B over the
        resamplings (an interval that holds 0: within the noise of this test set).
    """
    y, sa = _check(labels, scores_a)
    sb = _check(labels, scores_b)[1]
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    diffs = {k: np.empty(n_boot) for k in _PAIRED}
    for r in range(n_boot):
        i = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        for k, f in _PAIRED.items():
            diffs[k][r] = f(y[i], sa[i]) - f(y[i], sb[i])
    return {k: {"a_minus_b": _PAIRED[k](y, sa) - _PAIRED[k](y, sb),
                "lo95": float(np.percentile(d, 2.5)), "hi95": float(np.percentile(d, 97.5))}
            for k, d in diffs.items()}


#: The non-lens groups of a real development set, by a path component of the id: ``src``
#: field sources (galaxies and stars: the harder, more telling half), ``sky`` random positions.
NONLENS_GROUPS: tuple[str, ...] = ("src", "sky")


def _text(column) -> np.ndarray:
    """A table column as text, masked (missing) values as ``""``."""
    return np.asarray(np.ma.filled(np.ma.asarray(column).astype(str), ""), dtype=str)


def labelled_scores(table, column: str = "score") -> tuple[list[str], np.ndarray, np.ndarray]:
    """The rows of a scan catalog that were scored (``status`` ok) and have a label.

    Parameters
    ----------
    table : astropy.table.Table
        A catalog as :func:`lensscore.catalog.read_catalog` reads it (any format).
    column : str
        What to return per row: ``score``, or ``rank`` for what ranks the rows (the ``logit``
        column where the catalog has one, as the scan ranks: float32 scores saturate at 0 and
        1 and tie there; else ``score``).

    Returns
    -------
    tuple
        ``(ids, labels (int), values (float))`` of those rows, in catalog order.
    """
    if len(table) == 0 or "label" not in table.colnames:
        return [], np.zeros(0, int), np.zeros(0)
    if column == "rank":
        column = "logit" if "logit" in table.colnames else "score"
    status, label = _text(table["status"]), np.char.strip(_text(table["label"]))
    keep = (status == "ok") & (label != "")
    ids = [str(i) for i in _text(table["id"])[keep]]
    return ids, label[keep].astype(float).astype(int), \
        np.asarray(_text(table[column])[keep], dtype=float)


def _group_mask(ids, group: str) -> np.ndarray:
    return np.array([f"/{group}/" in i for i in ids], bool)


def logit_breaks_ties(scores, logits) -> bool:
    """Whether ranking by ``logits`` differs from ranking by ``scores``: some rows with equal
    scores (float32 scores saturated at 0 or 1, or rounded alike) have different logits. A
    logit derived from the scores (a catalog of a lensscore before the logit column, or of a
    model without a logit output) never does."""
    s, lg = np.asarray(scores, np.float64), np.asarray(logits, np.float64)
    o = np.lexsort((lg, s))
    s, lg = s[o], lg[o]
    return bool(np.any((s[1:] == s[:-1]) & (lg[1:] != lg[:-1])))


def real_metrics(table, name: str, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Real-data metrics of a scan catalog's labelled rows, as a model's ``real_metrics`` record.

    Parameters
    ----------
    table : astropy.table.Table
        A ``lensscore scan`` catalog of labelled real cutouts
        (:func:`lensscore.catalog.read_catalog`).
    name : str
        The data set's name, recorded as ``data``.
    threshold : float
        Score at or above which a cutout counts as a lens.

    Returns
    -------
    dict
        ``data``, ``method``, ``metrics`` (:func:`classification_summary` of lenses against all
        non-lenses) and ``nonlens_groups``: per group of :data:`NONLENS_GROUPS` present, its
        size, how many score at least ``threshold`` and the ROC AUC of the lenses against it.
        The rank metrics (ROC AUC, TPR at FPR) rank by the logit where the catalog has one, as
        the scan does; ``method`` says "ranked by logit" where that ranks differently from the
        float32 scores (:func:`logit_breaks_ties`).

    Raises
    ------
    ValueError
        If no row was scored with a label.
    """
    ids, y, s = labelled_scores(table)
    if not ids:
        raise ValueError(f"{name}: no scored rows with labels")
    r = labelled_scores(table, "rank")[2]
    by_logit = logit_breaks_ties(s, r)
    groups = {}
    for g in NONLENS_GROUPS:
        sel = _group_mask(ids, g) & (y == 0)
        if sel.any():
            groups[g] = {"n": int(sel.sum()), "n_above": int(np.sum(s[sel] >= threshold)),
                         "above_threshold": float(np.mean(s[sel] >= threshold)),
                         "auc_lenses_vs": roc_auc(np.r_[y[y == 1], y[sel]],
                                                  np.r_[r[y == 1], r[sel]])}
    method = "scanned as a user would (not trained on)" + ("; ranked by logit" if by_logit
                                                           else "")
    return {"data": name, "method": method,
            "metrics": classification_summary(y, s, threshold, ranking=r),
            "nonlens_groups": groups}


def paired_auc(table_a, table_b, n_boot: int = 1000) -> dict:
    """Catalog A's ROC AUC minus catalog B's on the cutouts both scored, with the paired
    bootstrap interval (:func:`paired_bootstrap`).

    Parameters
    ----------
    table_a, table_b : astropy.table.Table
        Two scan catalogs of the same labelled real cutouts.
    n_boot : int
        Bootstrap resamplings.

    Returns
    -------
    dict
        ``{"all" | "src": {"a_minus_b", "lo95", "hi95", "n"}}``: lenses against all non-lenses,
        and against the field sources alone (where both classes are present). Each catalog
        ranks by its logit where it has one (:func:`labelled_scores`).
    """
    (ia, ya, sa), (ib, _, sb) = labelled_scores(table_a, "rank"), labelled_scores(table_b, "rank")
    a = {i: (int(v), float(x)) for i, v, x in zip(ia, ya, sa)}
    b = {i: float(x) for i, x in zip(ib, sb)}
    ids = sorted(set(a) & set(b))
    out = {}
    for group, keep in (("all", lambda i: True), ("src", lambda i: a[i][0] == 1 or "/src/" in i)):
        sel = [i for i in ids if keep(i)]
        y = np.array([a[i][0] for i in sel], int)
        if len(set(y)) < 2:
            continue
        d = paired_bootstrap(y, [a[i][1] for i in sel], [b[i] for i in sel],
                             n_boot=n_boot)["roc_auc"]
        out[group] = {**d, "n": len(sel)}
    return out
