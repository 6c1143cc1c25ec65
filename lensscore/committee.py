"""Committees: several networks score every cutout; the committee's score combines theirs.

HOLISMOKES found that averaging networks beats any one of them at low false-positive rates.
A :class:`Committee` behaves like a :class:`lensscore.scorer.Scorer` (``scan`` takes either), and
also gives each member's score (the catalog's ``score_<name>`` columns).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .config import SYMMETRIES
from .errors import ModelError
from .scorer import Scorer, check_tta, mean_logit

__all__ = ["Committee", "COMBINE", "member_names", "make_scorer", "from_recipe"]

#: How members' scores are combined: each keeps a rotation-invariant score invariant
COMBINE = ("mean", "median", "min")


def member_names(paths: Sequence[str]) -> list[str]:
    """Column-safe, distinct names from model file names: ``rot.onnx`` -> ``rot``, two
    ``rot.onnx`` in different directories -> ``rot``, ``rot_2``."""
    names, seen = [], set()
    for p in paths:
        base = "".join(c if c.isalnum() else "_" for c in Path(p).stem).strip("_") or "model"
        name, k = base, 2
        while name in seen:
            name, k = f"{base}_{k}", k + 1
        seen.add(name)
        names.append(name)
    return names


class Committee:
    """Score with several ONNX models at once and combine their scores.

    Parameters
    ----------
    models : sequence of path or Scorer
        Two or more models. They must read the same cutouts: the same bands, size, pixel
        scale, zero point and preprocessing (checked here; a committee of models on different
        grids is refused with the reason).
    combine : {"mean", "median", "min"}
        How the members' scores make the committee's.
    **scorer_kwargs
        Passed to :class:`Scorer` for members given as paths (``device``, ``threads``, ...).

    Attributes
    ----------
    members : list of Scorer
    names : list of str
        Member names (from the file names), the catalog's ``score_<name>`` columns.

    Raises
    ------
    ModelError
        Fewer than two models, an unknown ``combine``, or members that read different cutouts.
    """

    def __init__(self, models: Sequence, combine: str = "mean", **scorer_kwargs):
        if combine not in COMBINE:
            raise ModelError(f"--combine must be one of {', '.join(COMBINE)}, got {combine!r}")
        if len(models) < 2:
            raise ModelError("a committee needs two or more models")
        self.members = [m if isinstance(m, Scorer) else Scorer(m, **scorer_kwargs)
                        for m in models]
        self.combine = combine
        self.names = member_names([m.path for m in self.members])
        first = self.members[0]
        for m in self.members[1:]:
            why = _difference(m, first)  # in the sentence's order: m, then first
            if why:
                raise ModelError(
                    f"committee: {m.path} reads other cutouts than {first.path} ({why}); "
                    "committee members must share bands, grid and preprocessing -- scan them "
                    "separately and join the catalogs by id")
        self._sha256: str | None = None

    # ------------------------------------------------------------------ what scan reads
    @property
    def path(self) -> str:
        return " + ".join(m.path for m in self.members)

    def __getattr__(self, name):
        # bands, size, spec, grid, read_options, batch_size, device, providers, input_name:
        # the members agree on what is read, so the first member's answer is the committee's
        if name in ("bands", "size", "spec", "grid", "read_options", "batch_size", "device",
                    "providers"):
            return getattr(self.members[0], name)
        raise AttributeError(name)

    @property
    def arch(self) -> str:
        return f"committee {self.combine}({', '.join(m.arch for m in self.members)})"

    @property
    def rotation_invariant(self) -> bool:
        """Invariant members make an invariant committee (mean, median and min are symmetric
        in the members and do not mix rotations)."""
        return all(m.rotation_invariant for m in self.members)

    @property
    def trained_digests(self) -> frozenset[str]:
        """The cutouts any member was trained on."""
        return frozenset().union(*(m.trained_digests for m in self.members))

    @property
    def trained_positions(self):
        """A member's record of positions where every member that records its training cutouts
        records their positions too, else None: whether a scan can place everything the
        committee was trained on (:meth:`trained_near` asks every member)."""
        recorded = [m for m in self.members if m.trained_digests]
        pos = [m.trained_positions for m in recorded]
        return pos[0] if pos and all(p is not None for p in pos) else None

    def trained_near(self, ra, dec) -> bool:
        """Whether any member was trained on a cutout centred there (Scorer.trained_near)."""
        return any(m.trained_near(ra, dec) for m in self.members)

    @property
    def invariance(self) -> str:
        """The largest group every member is invariant to (none, C4 or D4)."""
        return min((m.invariance for m in self.members), key=SYMMETRIES.index)

    @property
    def sha256(self) -> str:
        """One hash for the committee: the members' hashes, in order, and the combination."""
        if self._sha256 is None:
            h = hashlib.sha256(self.combine.encode())
            for m in self.members:
                h.update(m.sha256.encode())
            self._sha256 = h.hexdigest()
        return self._sha256

    def info(self) -> dict:
        return {"committee": self.combine, "members": [m.info() for m in self.members]}

    def recipe(self) -> tuple:
        """A picklable description to build the same committee elsewhere (Dask workers)."""
        return ("committee", tuple(m.recipe() for m in self.members), self.combine)

    # ------------------------------------------------------------------ scoring
    def combine_scores(self, s: np.ndarray) -> np.ndarray:
        """Combine members' scores ``(N, members)`` into the committee's ``(N,)``."""
        f = {"mean": np.mean, "median": np.median, "min": np.min}[self.combine]
        return f(s, axis=1).astype(np.float32)

    def combine_logits(self, lg: np.ndarray) -> np.ndarray:
        """The logit of :meth:`combine_scores` from members' logits ``(N, members)``, float64:
        the mean's by :func:`lensscore.scorer.mean_logit`, the median's and the minimum's
        directly (the sigmoid keeps the order)."""
        lg = np.asarray(lg, np.float64)
        if self.combine == "mean":
            return mean_logit(lg, axis=1)
        if self.combine == "min":
            return lg.min(axis=1)
        srt = np.sort(lg, axis=1)
        n = srt.shape[1]
        return srt[:, n // 2] if n % 2 else mean_logit(srt[:, n // 2 - 1:n // 2 + 1], axis=1)

    def member_scores(self, images, *, preprocessed: bool = False, logits: bool = False):
        """Each member's scores: ``(N, members)``; with ``logits`` also their logits."""
        x = np.asarray(images, np.float32) if preprocessed else self.members[0].prepare(images)
        if x.ndim == 3:
            x = x[None]
        if not logits:
            return np.stack([m.score(x, preprocessed=True) for m in self.members], axis=1)
        res = [m.run(x, logits=True) for m in self.members]
        return np.stack([r[0] for r in res], axis=1), np.stack([r[1] for r in res], axis=1)

    def member_transform_scores(self, images, *, preprocessed: bool = False,
                                logits: bool = False):
        """Each member's scores of the 8 transforms (:data:`lensscore.scorer.TRANSFORMS`):
        ``(N, members, 8)``; with ``logits`` also their logits."""
        x = np.asarray(images, np.float32) if preprocessed else self.members[0].prepare(images)
        if x.ndim == 3:
            x = x[None]
        res = [m.score_transforms(x, preprocessed=True, logits=logits) for m in self.members]
        if not logits:
            return np.stack(res, axis=1)
        return np.stack([r[0] for r in res], axis=1), np.stack([r[1] for r in res], axis=1)

    def score(self, images, *, preprocessed: bool = False, tta: str = "none"):
        """The committee's scores (as :meth:`Scorer.score`)."""
        check_tta(tta)
        one = np.ndim(images) == 3
        if tta != "none":
            s = self.score_transforms(images, preprocessed=preprocessed)
            s = (s[..., :4] if tta == "rot4" else s).mean(axis=-1, dtype=np.float32)
        else:
            s = self.combine_scores(self.member_scores(images, preprocessed=preprocessed))
        return float(np.ravel(s)[0]) if one else s

    def score_transforms(self, images, *, preprocessed: bool = False) -> np.ndarray:
        """The committee's scores of the 8 transforms: ``(N, 8)`` (``(8,)`` for one)."""
        one = np.ndim(images) == 3
        r = self.member_transform_scores(images, preprocessed=preprocessed)
        c = np.stack([self.combine_scores(r[:, :, k]) for k in range(r.shape[-1])], axis=1)
        return c[0] if one else c

    def score_rotations(self, images, *, preprocessed: bool = False) -> np.ndarray:
        """The committee's scores of the four rotations: ``(N, 4)`` (``(4,)`` for one)."""
        return self.score_transforms(images, preprocessed=preprocessed)[..., :4]


def _difference(a: Scorer, b: Scorer) -> str:
    """What makes two models read different cutouts ('' if nothing)."""
    ga, gb = a.grid, b.grid
    for what, va, vb in (("bands", ",".join(a.bands), ",".join(b.bands)),
                         ("size", a.size, b.size), ("pixel scale", ga.pixel_scale, gb.pixel_scale),
                         ("zero point", ga.zeropoint, gb.zeropoint)):
        if va != vb:
            return f"{what} {va} vs {vb}"
    if a.spec != b.spec:
        return "preprocessing differs"
    return ""


def make_scorer(model=None, *, combine: str = "mean", **scorer_kwargs):
    """A :class:`Scorer` for one model (``None``: the shipped one), a :class:`Committee` for a
    sequence of two or more."""
    models = [model] if model is None or isinstance(model, (str, Path)) else list(model)
    if len(models) == 1:
        return Scorer(models[0], **scorer_kwargs)
    return Committee(models, combine=combine, **scorer_kwargs)


def from_recipe(recipe: tuple, threads: int | None = None):
    """Build a :class:`Scorer` or :class:`Committee` from ``.recipe()`` (on a Dask worker)."""
    if recipe[0] == "committee":
        return Committee([from_recipe(r, threads) for r in recipe[1]], combine=recipe[2])
    _, path, opts = recipe
    return Scorer(path, threads=threads, **dict(opts))
