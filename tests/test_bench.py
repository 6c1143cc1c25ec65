"""`python -m bench --quick` runs end to end (no timing is asserted: speed lives in bench/)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.tf, pytest.mark.slow]


def test_bench_quick(tmp_path):
    if not (ROOT / "models" / "rot.onnx").exists():
        pytest.skip("models/rot.onnx not shipped in this checkout")
    out, md = tmp_path / "r.json", tmp_path / "RESULTS.md"
    p = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out),
                        "--markdown", str(md)], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["gemm"]["median"] > 0
    for arch in ("baseline", "rot", "d4"):
        assert all(v > 0 for v in r["model"][arch].values())
    # the rotational layer is 4 convolutions of the first layer, D4's 8: counted from the graph
    conv1 = 2 * 62 * 62 * 32 * 11 * 11 * 3
    assert r["flops"]["rot"]["total"] - r["flops"]["baseline"]["total"] == 3 * conv1
    assert r["flops"]["d4"]["total"] - r["flops"]["baseline"]["total"] == 7 * conv1
    assert r["scan"]["files_per_s"]["scan"] > 0 and r["scan"]["files_per_s"]["tf_loop"] > 0
    assert r["scan"]["peak_rss_mib"]["tf_data"] > 0 and r["scan"]["cold_start_s"]["lensscore"] > 0
    assert set(r["train"]["samples_per_s"]) == {"baseline", "rot kernel"}
    assert r["sim"]["cutouts_per_s"] > 0
    assert r["dask"]["1"] > 0 and r["dask"]["2"] > 0
    assert r["placement"]["same_rows"] and r["placement"]["indexed_s"] > 0
    text = md.read_text()
    assert "| measurement |" in text and "GEMM" in text and "python -m bench" in text
