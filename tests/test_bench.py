"""`python -m bench --quick` runs end to end.

No absolute speed is asserted (speed lives in bench/), but what one run measures side by side
is: ratios far from their targets, memory and cold start, and the numbers that do not depend on
the machine (FLOPs, counts, the simulated test cutouts' metrics). Measured on the 2-core
development machine (issue 33): lensscore scan 11x and 9x the files/s of the Keras loops, cold
start 0.60 s, peak RSS 307 MiB (0.28 of Keras's 1090 MiB), catalog mode 1.21x the memory for 10x
the objects, batch 8 2.5-2.9x the img/s of batch 1.
"""

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
    assert r["n_files"] == 24 and 10 < r["gemm"]["median"] < 10_000  # GFLOP/s of a CPU
    assert 1 < r["ort_gemm"]["median"] < 10_000 and "onnxruntime MatMul" in md.read_text()
    for arch in ("baseline", "rot", "d4"):
        beside = r["model_beside_gemm"][arch]
        assert beside["batch"] == 8 and len(beside["ratios"]) == 1 and beside["ratio"] > 0
        one, eight = r["model"][arch]["1"], r["model"][arch]["8"]
        # measured, not judged: batch 8 ran 2.5-2.9x batch 1 on the Intel machines, 1.3-2.0x
        # on an AMD EPYC (bench/RESULTS.md)
        assert one > 0 and eight > 0, (arch, r["model"][arch])
    # the rotational layer is 4 convolutions of the first layer, D4's 8: counted from the graph
    conv1 = 2 * 62 * 62 * 32 * 11 * 11 * 3
    assert r["flops"]["rot"]["total"] - r["flops"]["baseline"]["total"] == 3 * conv1
    assert r["flops"]["d4"]["total"] - r["flops"]["baseline"]["total"] == 7 * conv1
    fps, rss, cold = (r["scan"][k] for k in ("files_per_s", "peak_rss_mib", "cold_start_s"))
    # issue 7's targets (bench.run.TARGETS) are judged by the full bench's table, on 2,000
    # files; here, 24 files, only what holds on any machine. Keras' process held 1,041 MiB
    # here against lensscore's 396 (an AMD EPYC; 1,090 against 307 on an Intel Xeon, before
    # the trunk and head were split), 8x fewer files/s, and a cold start 7x slower.
    assert fps["scan"] > 2 * max(fps["tf_loop"], fps["tf_data"]), fps
    assert 150 < rss["scan"] < 600 and rss["scan"] < rss["tf_data"] / 2, rss
    assert 0 < cold["lensscore"] < cold["tf_loop"] / 3, cold
    # the default scan checks d4's D4 claim on a sample (of 24 files about
    # ROTATION_SAMPLE_MIN, chosen by id hash), 7 more passes each
    n = r["scan"]["rotation_sample"]
    assert r["scan"]["sample_group"] == "D4" and 0 < n < 24, r["scan"]
    assert r["scan"]["scan_auto_images_vs_model_beside"] == pytest.approx(
        (24 + 7 * n) / 24 * r["scan"]["scan_auto_vs_model_beside"])
    assert set(r["train"]["samples_per_s"]) == {"baseline", "rot kernel"}
    assert all(v > 0 for v in r["train"]["samples_per_s"].values())
    assert r["sim"]["n"] == 8 and r["sim"]["cutouts_per_s"] > 0.5  # 3.5 measured
    assert r["dask"]["1"] > 0 and r["dask"]["2"] > 0
    assert r["placement"]["same_rows"] and 0 < r["placement"]["indexed_s"] < 5
    cat = r["catalog"]
    assert (cat["n_small"], cat["n_large"]) == (24, 240)
    assert cat["peak_rss_mib"]["large"] < 1.6 * cat["peak_rss_mib"]["small"]  # 1.21 measured
    # the simulated test cutouts: every model right on all 16, at FLOPs counted from the graphs
    tta = r["tta"]["models"]
    assert r["tta"]["n"] == 16 and all(m["roc_auc"] == 1.0 for m in tta.values()), tta
    for name in ("baseline", "rot"):
        assert tta[name]["gflop_per_cutout"] == pytest.approx(r["flops"][name]["total"] / 1e9)
        assert tta[f"{name} + TTA rot4"]["gflop_per_cutout"] == \
            pytest.approx(4 * tta[name]["gflop_per_cutout"])
    text = md.read_text()
    assert "| measurement |" in text and "GEMM" in text and "python -m bench" in text
