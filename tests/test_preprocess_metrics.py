import itertools

import numpy as np
import pytest

from conftest import fake_cutout
from lensscore import metrics
from lensscore.preprocess import DEFAULT_SPEC, PreprocessSpec, preprocess


def test_scale_offset_rotation_invariance(rng):
    x = fake_cutout(rng)
    p = preprocess(x)
    assert p.dtype == np.float32 and p.shape == x.shape
    for c in (1e-11, 10 ** (0.4 * 3), 7.5e4):  # KiDS-like, zp 30 vs 27, huge
        np.testing.assert_allclose(preprocess(x * c), p, atol=2e-6)
    offsets = np.array([-40.0, 3.0, 1e3], np.float32)[:, None, None]
    np.testing.assert_allclose(preprocess(x + offsets), p, atol=1e-4)
    for k in range(4):
        np.testing.assert_array_equal(preprocess(np.rot90(x, k, axes=(1, 2))),
                                      np.rot90(p, k, axes=(1, 2)))
    np.testing.assert_array_equal(preprocess(x[:, ::-1]), p[:, ::-1])


def test_statistics_are_numpys_bit_for_bit(rng):
    """preprocess' one-partition median and percentile equal np.median / np.percentile exactly
    (a model's training data were normalised with those), ties, odd sizes and scales included;
    so does the whole output against the formula written with numpy's functions."""
    from lensscore.preprocess import _median_last, _percentile_last

    for t in range(400):
        n, k = int(rng.choice([72, 48, 7, 64, 101])), int(rng.integers(1, 4))
        x = rng.normal(size=(k, 3, n, n)).astype(np.float32)
        if t % 3 == 0:
            x = np.round(x * 3) / 3
        x = (x * rng.uniform(1e-12, 1e6)).astype(np.float32).astype(np.float64)
        np.testing.assert_array_equal(_median_last(x.reshape(k, 3, -1)),
                                      np.median(x, axis=(2, 3)))
        np.testing.assert_array_equal(_median_last(x.astype(np.float32).reshape(k, 3, -1)),
                                      np.median(x, axis=(2, 3)))  # x holds float32 values
        a = np.abs(x).reshape(k, -1)
        for q in (99.5, 50, 0, 0.1, 97.3, 100):
            np.testing.assert_array_equal(_percentile_last(a, q), np.percentile(a, q, axis=1))
    spec = PreprocessSpec(stretch="asinh", clip=None)
    for s in (DEFAULT_SPEC, spec):
        x = fake_cutout(rng)[None].astype(np.float64)
        y = x - np.median(x, axis=(2, 3), keepdims=True)
        y = y / np.percentile(np.abs(y).reshape(1, -1), s.percentile, axis=1)[:, None, None, None]
        y = np.arcsinh(y) if s.stretch == "asinh" else y
        y = y if s.clip is None else np.clip(y, -s.clip, s.clip)
        np.testing.assert_array_equal(preprocess(x[0], s), y[0].astype(np.float32))


def test_batch_is_per_cutout(rng):
    xs = np.stack([fake_cutout(rng) * s for s in (1, 100, 0.01)])
    batch = preprocess(xs)
    for k in range(3):
        np.testing.assert_array_equal(batch[k], preprocess(xs[k]))


def test_spec_json_roundtrip_and_errors(rng):
    s = PreprocessSpec(stretch="asinh", clip=None, percentile=99.0)
    assert PreprocessSpec.from_json(s.to_json()) == s
    assert PreprocessSpec.from_json(DEFAULT_SPEC.to_json()) == DEFAULT_SPEC
    with pytest.raises(ValueError, match="not known"):
        PreprocessSpec.from_json('{"name": "other"}')
    with pytest.raises(ValueError, match="unknown fields"):
        PreprocessSpec.from_json('{"name": "sky-scale", "bogus": 1}')
    with pytest.raises(ValueError):
        PreprocessSpec(stretch="log")
    with pytest.raises(ValueError, match="no signal"):
        preprocess(np.ones((3, 8, 8)))
    p = preprocess(fake_cutout(rng), s)
    assert np.isfinite(p).all()


def _auc_bruteforce(y, s):
    pos, neg = s[y == 1], s[y == 0]
    return np.mean([1.0 if a > b else 0.5 if a == b else 0.0
                    for a, b in itertools.product(pos, neg)])


def test_auc_matches_definition_with_ties(rng):
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + 0.3 * y, 1)  # many ties
    assert metrics.roc_auc(y, s) == pytest.approx(_auc_bruteforce(y, s), abs=1e-12)
    assert np.isnan(metrics.roc_auc(np.ones(4), np.arange(4)))


def test_tpr_at_fpr_and_tpr0():
    # 10 negatives, 10 positives
    neg = np.arange(10) / 100.0          # 0 .. 0.09
    pos = np.array([0.005, 0.02, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99])
    y = np.r_[np.zeros(10), np.ones(10)]
    s = np.r_[neg, pos]
    assert metrics.tpr0(y, s) == pytest.approx(0.8)
    assert metrics.tpr_at_fpr(y, s, 0.0) == pytest.approx(0.8)
    assert metrics.tpr_at_fpr(y, s, 0.1) == pytest.approx(0.8)
    assert metrics.tpr_at_fpr(y, s, 0.8) == pytest.approx(0.9)
    assert metrics.accuracy(y, s, 0.5) == pytest.approx(0.9)
    c = metrics.confusion(y, s, 0.5)
    assert c == {"tp": 8, "fp": 0, "tn": 10, "fn": 2}
    summ = metrics.classification_summary(y, s)
    assert summ["accuracy"] == pytest.approx(0.9) and summ["n_lens"] == 10


def test_rotation_stability():
    r = np.array([[0.1, 0.1, 0.1, 0.1], [0.4, 0.6, 0.4, 0.6], [0.9, 0.9, 0.9, 0.5]])
    st = metrics.rotation_stability(r)
    assert st["std_max"] == pytest.approx(np.std([0.9, 0.9, 0.9, 0.5]))
    assert st["std_median"] == pytest.approx(0.1)
    assert st["flip_fraction"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        metrics.rotation_stability(np.zeros((3, 3)))


def test_a_logit_breaks_ties_only_where_the_scores_tie_and_it_does_not():
    from lensscore.metrics import logit_breaks_ties
    from lensscore.scorer import logit_of

    s = np.array([1.0, 1.0, 0.3, 0.0, 0.0], np.float32)
    assert not logit_breaks_ties(s, logit_of(s))  # derived from the scores: the same ranking
    assert logit_breaks_ties(s, [19.0, 18.0, -0.85, -20.0, -21.0])
    assert not logit_breaks_ties([0.9, 0.2], [2.2, -1.4])
