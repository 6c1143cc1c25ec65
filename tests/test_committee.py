"""Committees: several models score every cutout, their scores combined (HOLISMOKES)."""

import numpy as np
import pytest
from typer.testing import CliRunner

from lensscore import ModelError, scan
from lensscore.catalog import read_catalog
from lensscore.cli import app
from lensscore.committee import Committee, member_names
from lensscore.scan import ROTATION_SAMPLE_MIN
from onnx_models import make_model

runner = CliRunner()


@pytest.fixture(scope="module")
def second_conv(tmp_path_factory):
    """Another non-invariant model on the same grid (other weights)."""
    return make_model(tmp_path_factory.mktemp("m2") / "conv.onnx", arch="conv", seed=5)


@pytest.mark.parametrize("combine", ["mean", "median", "min"])
def test_committee_scores_combine_the_members(train_dir, tmp_path, conv_model, rot_model,
                                              second_conv, combine):
    models = [conv_model, rot_model, second_conv]
    singles = [scan(train_dir, m, rotations=True) for m in models]
    out = tmp_path / f"c_{combine}.ecsv"
    res = scan(train_dir, models, output=out, combine=combine)
    f = {"mean": np.mean, "median": np.median, "min": np.min}[combine]
    member = np.stack([s.scores for s in singles], axis=1)
    np.testing.assert_allclose(res.scores, f(member, axis=1), atol=1e-6)
    assert res.members == ["conv", "rot", "conv_2"]  # distinct column names
    np.testing.assert_allclose(res.member_scores, member, atol=1e-7)
    t = read_catalog(out)
    assert t.colnames[2:7] == ["score", "logit", "score_conv", "score_rot", "score_conv_2"]
    # the committee's logit is the logit of its combined score (the test models have no logit
    # output: the members' logits come from their float32 scores)
    np.testing.assert_allclose(1 / (1 + np.exp(-np.asarray(t["logit"], float))), t["score"],
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(t["score_rot"]), singles[1].scores, atol=1e-7)
    # the rotation report covers the committee's score: conv members are not invariant, so
    # every cutout's rotations are scored, and each rotation's committee score is combined
    rot = np.stack([s.rotation_scores for s in singles], axis=1)  # (N, M, 4)
    np.testing.assert_allclose(res.rotation_scores, f(rot, axis=1), atol=1e-6)
    assert res.rotation_mode == "all" and not res.rotation_claimed
    assert set(res.member_metrics()) == {"conv", "rot", "conv_2"}


def test_committee_of_invariant_models_is_invariant_and_checked_on_a_sample(train_dir, d4_model,
                                                                            rot_model, tmp_path):
    import shutil

    other = tmp_path / "other.onnx"
    shutil.copy(d4_model, other)
    res = scan(train_dir, [d4_model, other])
    assert res.invariance_claimed == "D4" and res.rotation_mode == "sample"
    assert not res.invariance_violated
    # of 40 inputs, about ROTATION_SAMPLE_MIN are checked (hash-chosen)
    assert ROTATION_SAMPLE_MIN // 2 <= res.mirror()["n"] < res.n_inputs
    assert res.mirror()["delta_max"] < 1e-6
    tta = scan(train_dir, [d4_model, other], tta="d8")
    np.testing.assert_allclose(tta.scores, res.scores, atol=1e-6)
    # a D4 and a C4 member: the committee claims what both are, C4, and checks every cutout
    mixed = scan(train_dir, [d4_model, rot_model])
    assert mixed.invariance_claimed == "C4" and mixed.rotation_mode == "all"
    assert not mixed.invariance_violated  # the mirror is not claimed
    assert mixed.mirror()["delta_max"] > 1e-5  # ... and the rot member is not blind to it


def test_committee_refuses_members_on_other_grids(tmp_path, conv_model):
    small = make_model(tmp_path / "small.onnx", size=64)
    # the sizes in the sentence's order: the refused member's, then the first member's
    with pytest.raises(ModelError, match=r"small.onnx reads other cutouts than .*conv.onnx "
                                         r"\(size 64 vs 72\)"):
        Committee([conv_model, small])
    with pytest.raises(ModelError, match="two or more"):
        Committee([conv_model])
    with pytest.raises(ModelError, match="--combine"):
        Committee([conv_model, conv_model], combine="max")
    assert member_names(["a/rot.onnx", "b/rot.onnx", "x/my-model.v2.onnx"]) == \
        ["rot", "rot_2", "my_model_v2"]


def test_committee_cli_and_resume(train_dir, tmp_path, conv_model, rot_model, second_conv):
    out = tmp_path / "c.csv"
    args = ["scan", str(train_dir), "-m", conv_model, "-m", rot_model, "--combine", "min",
            "-o", str(out), "--top", "3"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "committee members alone: conv AUC" in r.stdout and "committee min(" in r.output
    t = read_catalog(out)
    np.testing.assert_allclose(np.asarray(t["score"]),
                               np.minimum(t["score_conv"], t["score_rot"]), atol=1e-7)
    # another committee is another model: no resume into this catalog
    r = runner.invoke(app, ["scan", str(train_dir), "-m", conv_model, "-m", second_conv,
                            "--combine", "min", "-o", str(out), "--resume"])
    assert r.exit_code == 2 and "model_sha256" in r.output, r.output
    r = runner.invoke(app, [*args, "--resume"])
    assert r.exit_code == 0 and "40 resumed" in r.stdout, r.output
    r = runner.invoke(app, ["scan", str(train_dir), "-m", conv_model, "-m", rot_model,
                            "--combine", "max"])
    assert r.exit_code == 2 and "--combine must be one of" in r.output
