"""Scores that rank to the end: the logit output (export.logit), the scorer's logits, the
catalog's logit column and the ranking by it."""

import numpy as np
import onnx
import pytest
from onnx_models import make_model

from export.logit import add_logit, add_logit_output
from export.symmetrise import symmetrise
from lensscore.committee import Committee
from lensscore.scan import scan
from lensscore.scorer import Scorer, logit_of, mean_logit


def _sig(x):
    return 0.5 * (1 + np.tanh(np.asarray(x, np.float64) / 2))


def test_mean_logit_is_the_logit_of_the_mean_even_where_scores_saturate():
    lg = np.array([[0.3, -1.2, 2.0], [40.0, 45.0, 50.0], [-60.0, -55.0, -58.0]])
    ref = logit_of(_sig(lg[0]).mean())
    assert mean_logit(lg[0]) == pytest.approx(ref, rel=1e-12)
    m = mean_logit(lg, axis=1)
    # at 40-50 every sigmoid is 1.0 in float64; the mean's logit is still ~ -log(mean e^-l)
    assert m[1] == pytest.approx(-np.log(np.mean(np.exp(-lg[1]))), rel=1e-12)
    assert m[2] == pytest.approx(np.log(np.mean(np.exp(lg[2]))), rel=1e-12)
    assert np.isinf(logit_of(np.float32(1.0))) and logit_of(0.5) == 0.0


def test_logit_output_ranks_what_the_score_cannot(tmp_path, rng):
    # a head that saturates: most scores are exactly 1.0 in float32
    path = make_model(tmp_path / "m.onnx", arch="d4", head=(np.full(4, 40.0), 30.0))
    x = rng.normal(0, 1, (24, 3, 72, 72)).astype(np.float32)
    before = Scorer(path)
    assert before.logit_name is None
    s0, l0 = before.run(before.prepare(x), logits=True)  # derived from scores: +inf at 1.0
    check = add_logit(path)
    assert check["max_score_change"] == 0 and check["max_sigmoid_diff"] <= 1e-6
    sc = Scorer(path)
    assert sc.logit_name == "logit" and "logit" in sc.metadata.get("lensscore.logit", "")
    s, lg = sc.run(sc.prepare(x), logits=True)
    assert np.array_equal(s, s0)  # scores unchanged, bit for bit
    assert (s == 1.0).sum() >= 5 and np.isinf(l0[s == 1.0]).all()
    assert np.isfinite(lg).all() and len(set(lg[s == 1.0].tolist())) == int((s == 1.0).sum())
    np.testing.assert_allclose(_sig(lg), s, atol=1e-6)
    # the logit of a cutout does not depend on its batch
    _, one = sc.run(sc.prepare(x[3:4]), logits=True)
    assert one[0] == lg[3]
    with pytest.raises(ValueError, match="already"):
        add_logit_output(onnx.load(path))


def test_scan_writes_the_logit_and_ranks_by_it(tmp_path, rng, train_dir):
    path = make_model(tmp_path / "m.onnx", arch="d4", head=(np.full(4, 40.0), 30.0))
    add_logit(path)
    res = scan(train_dir, path, output=tmp_path / "c.ecsv")
    from lensscore.catalog import read_catalog

    t = read_catalog(tmp_path / "c.ecsv")
    assert t.colnames[2:4] == ["score", "logit"]
    ok = np.asarray(t["status"]) == "ok"
    lg = np.asarray(t["logit"], float)[ok]
    np.testing.assert_allclose(_sig(lg), np.asarray(t["score"], float)[ok], atol=1e-6)
    top = res.top(len(lg))
    assert np.all(np.diff(res.logits[top]) <= 0)  # ranked by logit, highest first
    # ties in the score are broken: a rank metric over logits is well-defined
    assert (res.scores[ok] == 1.0).sum() > 1


def test_symmetrised_model_logit_is_the_logit_of_the_mirror_mean(tmp_path, rng):
    src = make_model(tmp_path / "rot.onnx", arch="rot", head=(np.full(4, 8.0), 2.0))
    add_logit(src)
    dst = tmp_path / "sym.onnx"
    symmetrise(src, dst)
    a, b = Scorer(src), Scorer(dst)
    assert b.logit_name == "logit"
    x = rng.normal(0, 1, (16, 3, 72, 72)).astype(np.float32)
    p = a.prepare(x)
    _, la = a.run(p, logits=True)
    _, lm = a.run(p[..., ::-1].copy(), logits=True)  # the mirror image
    s, lg = b.run(p, logits=True)
    np.testing.assert_allclose(lg, mean_logit(np.stack([la, lm], 1), axis=1), atol=1e-4)
    np.testing.assert_allclose(_sig(lg), s, atol=1e-6)


def test_committee_logits_follow_the_combination(tmp_path):
    paths = [make_model(tmp_path / f"m{k}.onnx", arch="rot", seed=k) for k in range(2)]
    lg = np.array([[1.0, 3.0], [50.0, 60.0], [-2.0, 2.0]])
    for combine, want in (("mean", mean_logit(lg, axis=1)), ("min", lg.min(1)),
                          ("median", mean_logit(lg, axis=1))):  # two members: their mean
        c = Committee(paths, combine=combine)
        np.testing.assert_allclose(c.combine_logits(lg), want)
        np.testing.assert_allclose(_sig(c.combine_logits(lg)),
                                   c.combine_scores(_sig(lg)), atol=1e-6)
    three = Committee(paths + [make_model(tmp_path / "m2.onnx", arch="rot", seed=2)],
                      combine="median")
    assert three.combine_logits(np.array([[5.0, -1.0, 2.0]])).tolist() == [2.0]


def test_shipped_models_have_a_checked_logit_output():
    from lensscore._session import shipped_models

    for name, path in shipped_models().items():
        sc = Scorer(path)
        assert sc.logit_name == "logit", name


def test_rank_metrics_keep_ties_at_infinite_logits():
    """A model without a logit output: scores of 1.0 give +inf logits, a tie, not an order."""
    from lensscore.metrics import classification_summary

    y = [1, 1, 1, 0, 0]
    s = np.array([1.0, 1.0, 0.7, 0.2, 1.0], np.float32)
    by_score = classification_summary(y, s)
    by_logit = classification_summary(y, s, ranking=logit_of(s))
    assert by_logit["tpr_at_fpr_1pct"] == by_score["tpr_at_fpr_1pct"] == 0.0
    assert by_logit["roc_auc"] == pytest.approx(by_score["roc_auc"])


def _older(path, drop_last: int = 0):
    """A catalog as a lensscore before the logit column wrote it (optionally its last rows
    missing: a scan interrupted there)."""
    from astropy.table import Table

    t = Table.read(path, format="ascii.ecsv")
    t.remove_column("logit")
    if drop_last:
        t = t[:-drop_last]
    t.write(path, format="ascii.ecsv", delimiter=",", overwrite=True)


def test_catalogs_without_a_logit_column_still_resume_and_merge(tmp_path, train_dir):
    from lensscore.catalog import read_catalog
    from lensscore.merge import merge

    path = make_model(tmp_path / "m.onnx", arch="rot")
    full = tmp_path / "full.ecsv"
    scan(train_dir, path, output=full)
    old = tmp_path / "old.ecsv"
    scan(train_dir, path, output=old)
    _older(old, drop_last=5)
    assert "logit" not in old.read_text()
    res = scan(train_dir, path, output=old, resume=True)
    assert res.n_skipped == len(read_catalog(full)) - 5
    a, b = read_catalog(full), read_catalog(old)
    assert a.colnames == b.colnames and list(a["id"]) == list(b["id"])
    np.testing.assert_array_equal(a["logit"], b["logit"])  # derived as the scan derives it
    # shards of an older and of today's lensscore merge; the older one's logits derived
    for k in (1, 2):
        scan(train_dir, path, output=tmp_path / f"s{k}.ecsv", shard=f"{k}/2")
    _older(tmp_path / "s1.ecsv")
    merge([tmp_path / "s1.ecsv", tmp_path / "s2.ecsv"], tmp_path / "m.ecsv")
    m = read_catalog(tmp_path / "m.ecsv")
    assert sorted(m["id"]) == sorted(a["id"])
    assert np.isfinite(np.asarray(m["logit"], float)[np.asarray(m["status"]) == "ok"]).all()
