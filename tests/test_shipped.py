"""The shipped models and demo cutouts: what the README promises a newcomer."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lensscore import Scorer, scan
from lensscore.cli import app

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
DEMO = ROOT / "examples" / "cutouts"
pytestmark = pytest.mark.skipif(not (MODELS / "rot.onnx").exists(),
                                reason="models/ not shipped in this checkout")
runner = CliRunner()


def test_demo_set_is_small_and_labelled():
    files = sorted(DEMO.rglob("*.fits"))
    assert len(files) == 100
    assert sum(f.stat().st_size for f in DEMO.rglob("*")) <= 8 * 2 ** 20
    assert {f.parent.name for f in files} == {"lenses", "nonlenses"}


def test_models_are_small_and_describe_themselves():
    for arch in ("baseline", "rot"):
        p = MODELS / f"{arch}.onnx"
        assert p.stat().st_size <= 30 * 10 ** 6
        info = Scorer(p).info()
        assert info["arch"] == arch and info["bands"] == ["g", "r", "i"] and info["size"] == 72
        assert info["rotation_invariant"] is (arch == "rot")
        assert (info["survey"], info["pixel_scale"], info["zeropoint"]) == ("hsc", 0.168, 27.0)
        # measured on real PS1 cutouts by a scan (never trained on them)
        assert info["real_metrics"]["method"].startswith("scanned")
        assert "accuracy" in json.dumps(info["test_metrics"])
        report = json.loads((MODELS / f"{arch}.export.json").read_text())
        assert report["weights"] == "int8" and report["float32_max_abs_diff"] <= 1e-5


def test_rot_is_invariant_on_every_demo_cutout_baseline_is_not():
    spread = {}
    for arch in ("baseline", "rot"):
        res = scan(DEMO, MODELS / f"{arch}.onnx", rotations=True)
        assert res.exit_code == 0 and res.n_scored == 100
        rs = res.rotation_scores
        spread[arch] = (rs.max(axis=1) - rs.min(axis=1))
        m = res.metrics()
        assert m["n_lens"] == 50 and m["roc_auc"] > 0.75, m  # far better than chance
    assert spread["rot"].max() <= 1e-5
    assert spread["baseline"].max() > 1e-3 and np.median(spread["baseline"]) > 0


def test_scan_with_the_default_model(monkeypatch):
    monkeypatch.delenv("LENSSCORE_MODEL", raising=False)
    r = runner.invoke(app, ["scan", str(DEMO), "--top", "5"])
    assert r.exit_code == 0, r.output
    assert "rot.onnx" in r.output and "accuracy" in r.stdout
    # rot.onnx claims invariance: scored once per cutout, the claim checked on a sample
    assert "rotation check on a sample of" in r.stdout and "max 0.00%" in r.stdout


def test_ps1_model_describes_its_grid_and_cross_validated_real_metrics():
    p = MODELS / "ps1-rot.onnx"
    assert p.stat().st_size <= 8 * 10 ** 6
    info = Scorer(p).info()
    assert (info["survey"], info["pixel_scale"], info["zeropoint"], info["size"]) == \
        ("ps1", 0.25, 25.0, 48)
    assert info["rotation_invariant"] is True and info["arch"] == "rot"
    # fine-tuned on real cutouts: its real-data numbers are cross-validated, and say so
    n_real = info["training"]["finetune"]["n_real"]
    real = info["real_metrics"]
    assert "cross-validation" in real["method"]
    assert real["cv"]["n"] == real["before_finetune"]["n"] == n_real
    assert 0.5 < real["cv"]["roc_auc"] <= 1
    raw = ROOT.parent / "shared" / "realdata" / "ps1-sled-dev" / "raw"
    if raw.is_dir():  # every cutout of the development set, each scored by cross-validation
        from lensscore.sources import find_sources

        srcs = find_sources(raw, ("g", "r", "i"))
        assert n_real == len(srcs)
        assert info["training"]["finetune"]["n_real_lenses"] == sum(s.label == 1 for s in srcs)
    report = json.loads((MODELS / "ps1-rot.export.json").read_text())
    assert report["rotation_spread"] == 0 and report["float32_max_abs_diff"] <= 1e-5
