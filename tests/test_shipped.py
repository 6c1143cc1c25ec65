"""The shipped models and demo cutouts: what the README promises a newcomer."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lensscore import Scorer, scan
from lensscore.cli import app
from lensscore.sources import find_sources

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
DEMO = ROOT / "examples" / "cutouts"
pytestmark = pytest.mark.skipif(not (MODELS / "d4.onnx").exists(),
                                reason="models/ not shipped in this checkout")
runner = CliRunner()


def test_demo_set_is_small_and_labelled():
    files = sorted(DEMO.rglob("*.fits"))
    assert len(files) == 100
    assert sum(f.stat().st_size for f in DEMO.rglob("*")) <= 8 * 2 ** 20
    assert {f.parent.name for f in files} == {"lenses", "nonlenses"}


def test_models_are_small_and_describe_themselves():
    for arch, group in (("baseline", "none"), ("rot", "C4"), ("d4", "D4")):
        p = MODELS / f"{arch}.onnx"
        assert p.stat().st_size <= 30 * 10 ** 6
        info = Scorer(p).info()
        assert info["arch"] == arch and info["bands"] == ["g", "r", "i"] and info["size"] == 72
        assert info["invariance"] == group and info["rotation_invariant"] is (group != "none")
        assert (info["survey"], info["pixel_scale"], info["zeropoint"]) == ("hsc", 0.168, 27.0)
        # measured on real PS1 cutouts by a scan (never trained on them)
        assert info["real_metrics"]["method"].startswith("scanned")
        assert "accuracy" in json.dumps(info["test_metrics"])
        report = json.loads((MODELS / f"{arch}.export.json").read_text())
        assert report["weights"] == "int8" and report["float32_max_abs_diff"] <= 1e-5
    assert json.loads((MODELS / "d4.export.json").read_text())["mirror_spread"] == 0


#: ROC AUC and accuracy of each shipped model on the 100 demo cutouts, as measured (issue 33):
#: scoring is deterministic, so the test allows a few misordered pairs of the 2,500 (0.0004
#: each) and one cutout's class, not a different model or preprocessing
DEMO_MEASURED = {"baseline": (1.0, 1.0), "rot": (0.9992, 0.99), "d4": (1.0, 0.99),
                 "ps1": (0.8716, 0.74)}


def _spread(res):
    t = res.transform_scores
    return t[:, :4].max(axis=1) - t[:, :4].min(axis=1), np.abs(t[:, 4:] - t[:, :4]).max(axis=1)


def test_shipped_models_score_the_demo_set_as_measured_and_d4_ps1_are_invariant():
    """The quick part of the next test: each model's demo metrics (one pass a cutout), and all
    8 transforms of every fourth demo cutout alike (<= 1e-5) for d4 and ps1."""
    for name in ("baseline", "rot", "d4", "ps1"):
        res = scan(DEMO, name, rotations=False)
        assert res.exit_code == 0 and res.n_scored == 100
        m = res.metrics()
        auc, acc = DEMO_MEASURED[name]
        assert m["n_lens"] == 50 and m["roc_auc"] == pytest.approx(auc, abs=0.002), (name, m)
        assert m["accuracy"] == pytest.approx(acc, abs=0.011), (name, m)
    for name in ("d4", "ps1"):
        sc = Scorer(name)
        sources = find_sources([DEMO], sc.bands)[::4]
        res = scan(None, scorer=sc, sources=sources, rotations=True)
        rot, mir = _spread(res)
        assert res.n_scored == 25 and rot.max() <= 1e-5 and mir.max() <= 1e-5, name


@pytest.mark.slow
def test_invariance_of_every_shipped_model_on_every_demo_cutout():
    """Issue 30's target on simulated cutouts: d4 and ps1 score all 8 transforms of every demo
    cutout alike (<= 1e-5); rot only the rotations; baseline neither. The measured mirror
    numbers of rot and baseline are what the model card reports (10 and 9 class flips).
    Slow (14 s on a 2-core machine): the test above is its quick part."""
    rot, mir, flips = {}, {}, {}
    for name in ("baseline", "rot", "d4", "ps1"):
        res = scan(DEMO, name, rotations=True)
        assert res.exit_code == 0 and res.n_scored == 100
        rot[name], mir[name] = _spread(res)
        flips[name] = res.mirror()["flip_fraction"]
        m = res.metrics()
        assert m["n_lens"] == 50
        auc, acc = DEMO_MEASURED[name]
        assert m["roc_auc"] == pytest.approx(auc, abs=0.002), (name, m)
        assert m["accuracy"] == pytest.approx(acc, abs=0.011), (name, m)
    for name in ("d4", "ps1"):
        assert rot[name].max() <= 1e-5 and mir[name].max() <= 1e-5, name
    assert rot["rot"].max() <= 1e-5 and mir["rot"].max() > 0.5 and flips["rot"] >= 0.05
    assert rot["baseline"].max() > 1e-3 and mir["baseline"].max() > 0.5


def test_scan_with_the_default_model(monkeypatch):
    monkeypatch.delenv("LENSSCORE_MODEL", raising=False)
    r = runner.invoke(app, ["scan", str(DEMO), "--top", "5"])
    assert r.exit_code == 0, r.output
    assert "d4.onnx" in r.output and "accuracy" in r.stdout
    # d4 claims D4 invariance: scored once per cutout, the claim checked on a sample
    assert "invariance check on a sample of" in r.stdout and "max 0.00%" in r.stdout
    assert "mirror |Δ| mean 0.00%" in r.stdout
    # the bench reads this line to count the sampled transforms in its scan-vs-model ratio
    from bench.run import _SAMPLE

    k = _SAMPLE.search(" ".join(r.stdout.split()))
    assert k and int(k.group(1)) > 0 and k.group(2) == "D4", r.stdout


def test_shipped_models_by_name():
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and "d4 (default)" in r.stdout and "ps1" in r.stdout
    for name in ("ps1", "ps1.onnx", "models/ps1.onnx", "PS1", "Ps1.ONNX"):
        assert Scorer(name).grid.survey == "ps1"
    r = runner.invoke(app, ["scan", str(DEMO), "-m", "nosuch", "--top", "0"])
    assert r.exit_code == 1 and "shipped models, by name: baseline, d4, ps1, rot" in r.output
    # a bad --device is a usage error, refused before any model is loaded
    r = runner.invoke(app, ["scan", str(DEMO), "-m", "nosuch", "--device", "gpu"])
    assert r.exit_code == 2 and "--device must be one of cpu, cuda, auto, got 'gpu'" in r.output


def test_ps1_model_describes_its_grid_and_cross_validated_real_metrics():
    p = MODELS / "ps1.onnx"
    assert p.stat().st_size <= 8 * 10 ** 6
    info = Scorer(p).info()
    assert (info["survey"], info["pixel_scale"], info["zeropoint"], info["size"]) == \
        ("ps1", 0.25, 25.0, 48)
    assert info["invariance"] == "D4" and info["arch"] == "rot"
    assert info["symmetrised"]["source"] == "ps1-rot.onnx"
    # the average over the mirror was never cross-validated: the numbers it carries are its
    # source's, and say so (not shown as its own real_metrics)
    assert "real_metrics" not in info and "test_metrics" not in info
    assert info["trained_on"]["n"] == 550
    # and where they are on the sky: the same objects cut from other files are marked too
    assert (info["trained_on"]["n_positions"], info["trained_on"]["radius_arcsec"]) == (550, 2.0)
    assert info["trained_on"]["positions"] == "550 sky positions"  # info: a count, not 11 kB
    n_real = info["training"]["finetune"]["n_real"]
    real = info["symmetrised"]["source_metrics"]["real_metrics"]
    assert "cross-validation" in real["method"]
    assert real["cv"]["n"] == real["before_finetune"]["n"] == n_real
    # as recorded when it was fine-tuned (models/README.md): 0.726 before, 0.941 cross-validated
    assert real["cv"]["roc_auc"] == pytest.approx(0.9413, abs=1e-4)
    assert real["before_finetune"]["roc_auc"] == pytest.approx(0.7255, abs=1e-4)
    raw = ROOT.parent / "shared" / "realdata" / "ps1-sled-dev" / "raw"
    if raw.is_dir():  # every cutout of the development set, each scored by cross-validation
        from lensscore.sources import find_sources

        srcs = find_sources(raw, ("g", "r", "i"))
        assert n_real == len(srcs)
        assert info["training"]["finetune"]["n_real_lenses"] == sum(s.label == 1 for s in srcs)
    report = json.loads((MODELS / "ps1.export.json").read_text())
    assert report["symmetrise"]["transform_spread"] == 0
    assert report["source_export"]["float32_max_abs_diff"] <= 1e-5
    assert info["symmetrised"]["source_metrics"]["export"]["float32_max_abs_diff"] <= 1e-5
