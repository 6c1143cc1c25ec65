"""The helper scripts under scripts/ and bench/ that need no TensorFlow, and the library code
they drive."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from train.compare import compare_test_splits

from lensscore.metrics import paired_bootstrap

ROOT = Path(__file__).resolve().parent.parent


def _write(path, header, rows):
    path.write_text("\n".join([header] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


def test_compare_test_splits_scores_only_the_cutouts_both_held_out(tmp_path):
    # A: test split {0..5}, labelled ids; B: test split {2..7}, simulation indices only
    a = _write(tmp_path / "a.csv", "id,label,score",
               [(f"{'lenses' if i % 2 == 0 else 'nonlenses'}/sim_{i:06d}", int(i % 2 == 0),
                 0.9 if i % 2 == 0 else 0.1) for i in range(6)])
    b = _write(tmp_path / "b.csv", "index,score",
               [(i, 0.2 if i in (2, 3) else (0.8 if i % 2 == 0 else 0.3)) for i in range(2, 8)])
    r = compare_test_splits(a, b, ("a", "b"))
    assert r["n_common"] == 4 and r["n_lenses"] == 2  # 2, 3, 4, 5
    assert r["n_only"] == {"a": 2, "b": 2}
    assert r["a"]["accuracy"] == 1.0
    assert r["b"]["accuracy"] == 0.75  # index 2, a lens, scored 0.2
    assert r["b"]["n"] == 4
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_test_splits.py"),
                        str(a), str(b), "--json", str(tmp_path / "r.json")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "4 cutouts in both test splits (2 lenses)" in p.stdout
    assert (tmp_path / "r.json").exists()


def test_compare_test_splits_refuses_disjoint_or_contradicting_files(tmp_path):
    a = _write(tmp_path / "a.csv", "id,label,score", [("lenses/sim_000000", 1, 0.9)])
    b = _write(tmp_path / "b.csv", "index,score", [(1, 0.5)])
    with pytest.raises(ValueError, match="no labelled cutout"):
        compare_test_splits(a, b)
    c = _write(tmp_path / "c.csv", "id,label,score", [("x/sim_000000", 0, 0.9)])
    with pytest.raises(ValueError, match="disagree"):
        compare_test_splits(a, c)
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_test_splits.py"),
                        str(a), str(c)], capture_output=True, text=True)
    assert p.returncode == 1 and "disagree" in p.stderr


def test_paired_bootstrap_separates_a_real_difference_from_none():
    rng = np.random.default_rng(1)
    y = np.repeat([1, 0], 500)
    good = np.where(y == 1, rng.normal(2, 1, y.size), rng.normal(0, 1, y.size))
    worse = good + rng.normal(0, 2, y.size)  # the same ranking, blurred
    same = paired_bootstrap(y, good, good, n_boot=100)
    assert all(d == {"a_minus_b": 0.0, "lo95": 0.0, "hi95": 0.0} for d in same.values())
    d = paired_bootstrap(y, good, worse, n_boot=200)["roc_auc"]
    assert 0 < d["lo95"] < d["a_minus_b"] < d["hi95"]  # better, beyond the noise
    d = paired_bootstrap(y, good, good + rng.normal(0, 1e-3, y.size), n_boot=200)["roc_auc"]
    assert d["lo95"] <= 0 <= d["hi95"]  # a negligible difference is within it


def test_real_table_prints_one_row_a_catalog(tmp_path):
    cat = tmp_path / "real.csv"
    cat.write_text("id,status,label,score\nr/lenses/a,ok,1,0.9\nr/src/b,ok,0,0.7\n"
                   "r/sky/c,ok,0,0.2\n")
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "real_table.py"), f"mine={cat}"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == \
        "| mine | 1.000 | 1.000 | 1.000 | 1.000 | 1/1 | 1/1 | 0/1 |"
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "real_table.py"), str(cat)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "NAME=CATALOG" in p.stderr


def test_real_table_bootstraps_the_auc_difference_of_two_catalogs(tmp_path):
    """A model that ranks every lens first against one that ranks at random: the AUC
    difference's interval excludes 0; a catalog against itself gives exactly 0."""
    rng = np.random.default_rng(0)
    ids = [f"r/lenses/l{i}" for i in range(40)] + [f"r/{'src' if i % 3 else 'sky'}/n{i}"
                                                   for i in range(80)]
    y = np.r_[np.ones(40, int), np.zeros(80, int)]
    cats = {}
    for name, s in (("good", np.r_[rng.uniform(0.6, 1, 40), rng.uniform(0, 0.4, 80)]),
                    ("random", rng.uniform(0, 1, 120))):
        cats[name] = tmp_path / f"{name}.csv"
        cats[name].write_text("id,status,label,score\n" + "".join(
            f"{i},ok,{lab},{v}\n" for i, lab, v in zip(ids, y, s)))
    script = str(ROOT / "scripts" / "real_table.py")
    p = subprocess.run([sys.executable, script, f"good={cats['good']}",
                        f"random={cats['random']}", "--boot", "200"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = {ln.split(":")[0]: ln for ln in p.stdout.splitlines() if ln.startswith("- ")}
    for label, n in (("- lenses vs all non-lenses", 120), ("- lenses vs field sources", 93)):
        d, lo, hi = (float(v) for v in re.findall(r"[+-]\d\.\d+", lines[label])[:3])
        assert d > 0.3 and lo > 0.2 and lo <= d <= hi, lines[label]
        assert f"({n} cutouts)" in lines[label]
    p = subprocess.run([sys.executable, script, f"a={cats['good']}", f"b={cats['good']}",
                        "--boot", "50"], capture_output=True, text=True)
    assert "+0.000 [+0.000, +0.000]" in p.stdout
    p = subprocess.run([sys.executable, script, f"a={cats['good']}", "--boot", "50"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "exactly two" in p.stderr


def test_ablation_arms_name_simulator_architecture_and_seed(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from ablate_sim import arm_key, parse_arm
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert parse_arm("base") == ("base", "16", "rot")
    assert parse_arm("vdf+cut:d4") == ("vdf+cut", "16", "d4")
    assert parse_arm("vdf+cut:d4@2") == ("vdf+cut", "2", "d4")
    assert {arm_key(n) for n in ("vdf", "vdf:rot", "vdf@16", "vdf:")} == {"vdf"}
    assert arm_key("vdf+cut:d4@2") == "vdf+cut:d4@2"
    for bad in ("nope", "vdf:resnet", "base@x", "base@²"):
        with pytest.raises(ValueError, match="arm"):
            parse_arm(bad)
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "ablate_sim.py"), "--arms",
                        "vdf:resnet", "--out", str(tmp_path), "--real", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "unknown architecture" in p.stderr


def test_photometry_baseline_scores_each_fold_without_its_labels():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from photometry_baseline import cross_validated, features
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    # blank sky: no positive flux in the aperture -> magnitude 25 and the 'no flux' flag
    assert features({"g": 21.0, "r": 20.0, "i": np.nan}, np.nan, 0.5) == \
        [25.0, 1.0, -5.0, 0.0, 0.5, 1.0, 0.0]
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    x = np.column_stack([y + rng.normal(0, 0.5, 200), rng.normal(0, 1, 200)])
    fold = np.arange(200) % 5
    p = cross_validated(x, y, fold)
    assert ((p > 0.5) == y).mean() > 0.75  # the best any rule can do here: 0.84
    flipped = y.copy()
    flipped[fold == 0] = 1 - flipped[fold == 0]  # fold 0's own labels do not reach its scores
    q = cross_validated(x, flipped, fold)
    assert np.array_equal(p[fold == 0], q[fold == 0]) and not np.allclose(p[fold == 1],
                                                                            q[fold == 1])


def test_ft_table_reads_a_runs_cv_scores_as_it_is_and_averaged_over_the_mirror(tmp_path):
    run = tmp_path / "ft_x"
    run.mkdir()
    # two lenses and two field sources; the mirror score reverses one lens's rank
    _write(run / "cv_scores.csv", "id,label,fold,group,score_cv,score_before,score_cv_mirror",
           [("lenses/a", 1, 0, 0, 0.9, 0.5, 0.9), ("lenses/b", 1, 1, 1, 0.2, 0.5, 0.0),
            ("nonlenses/src/c", 0, 0, 0, 0.15, 0.5, 0.15),
            ("nonlenses/src/d", 0, 1, 1, 0.5, 0.5, 0.5)])
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "ft_table.py"),
                        str(run / "cv_scores.csv"), "--paired", "ft_x (mirror-averaged),ft_x",
                        "--boot", "50"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    rows = {r.split(" | ")[0].lstrip("| "): r.split(" | ")[1] for r in lines[2:-1]}
    # as it is: b (0.2) beats c (0.15), not d (0.5) -> 3 of 4 pairs; averaged: b (0.1) beats
    # nothing
    assert rows == {"ft_x": "0.750", "ft_x (mirror-averaged)": "0.500"}, p.stdout
    # the paired difference on all cutouts is the difference of the two AUCs
    assert lines[-1].startswith("AUC, ft_x (mirror-averaged) - ft_x: all non-lenses (4): -0.250 ")
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "ft_table.py"),
                        str(run / "cv_scores.csv"), "--paired", "ft_x,nope"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 1 and "no job 'nope'" in p.stderr, p.stderr
    # which cutouts pass 0.5 (at or above) in how many jobs: lens a and field source d (0.5)
    # in both, b and c in neither
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "ft_table.py"),
                        str(run / "cv_scores.csv"), "--agree", "ft_x,ft_x (mirror-averaged)"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "| lens (2) | 1 | 0 | 1 |" in p.stdout and "| src (2) | 1 | 0 | 1 |" in p.stdout, \
        p.stdout


def test_bench_judges_a_model_against_the_gemm_timed_beside_it_where_it_was():
    """A model's FLOP ratio is judged once: beside its own GEMM timings where the run has them,
    not also against the run's first GEMM figure, taken minutes earlier."""
    from bench.run import TARGETS, table_rows
    from lensscore.config import DEFAULT_BATCH_SIZE

    b = str(DEFAULT_BATCH_SIZE)
    r = {"gemm": {"median": 100.0, "n": 64}, "flops": {k: {"total": 1e9} for k in ("rot", "d4")},
         "model": {"rot": {"32": 95.0, b: 70.0}, "d4": {b: 70.0}},
         "model_beside_gemm": {"rot": {"batch": DEFAULT_BATCH_SIZE, "ratio": 0.9,
                                       "ratios": [0.9], "gemm_range": [90, 110]}}}
    rows = {m: t for m, _, _, t in table_rows(r)}
    tgt = TARGETS["model_rot"]
    assert rows[f"rot.onnx, onnxruntime, batch {b} (1.000 GFLOP/img)"] == \
        "judged beside the GEMM (below)"
    assert rows["rot.onnx, onnxruntime, batch 32 (1.000 GFLOP/img)"] == ""
    assert rows[f"d4.onnx, onnxruntime, batch {b} (1.000 GFLOP/img)"] == f"≥{tgt} NO"  # 0.70
    beside = [t for m, t in rows.items() if m.startswith("rot.onnx, batch")]
    assert beside == [f"≥{tgt} yes"]
