import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from typer.testing import CliRunner

from conftest import fake_cutout, write_cube, write_mef, write_per_band
from lensscore import scan
from lensscore.catalog import CatalogWriter, catalog_columns, read_catalog
from lensscore.cli import app
from lensscore.errors import LensscoreError

runner = CliRunner()


def _mixed_dir(root, rng, n=4):
    (root / "lenses").mkdir(parents=True)
    (root / "nonlenses").mkdir()
    for k in range(n):
        write_cube(root / "lenses" / f"cube{k}.fits", fake_cutout(rng, lens=True))
        write_mef(root / "nonlenses" / f"mef{k}.fits", fake_cutout(rng, n=76))
    write_per_band(root / "lenses", "pb", fake_cutout(rng, lens=True))
    return root


def test_scan_all_formats_roundtrip(tmp_path, rng, rot_model):
    root = _mixed_dir(tmp_path / "d", rng)
    ref = None
    for ext in (".csv", ".ecsv", ".fits", ".parquet"):
        out = tmp_path / f"cat{ext}"
        res = scan(root, rot_model, output=out)
        assert res.exit_code == 0 and res.n_scored == 9
        t = read_catalog(out)
        assert len(t) == 9 and list(t["id"][:2]) == ["lenses/cube0", "lenses/cube1"]
        assert set(t.colnames) >= {"score", "score_std", "score_r3", "ra", "dec", "label",
                                   "status", "error"}
        np.testing.assert_allclose(np.asarray(t["score"], float), res.scores, rtol=0, atol=0)
        assert not os.path.exists(str(out) + ".journal.ecsv")
        if ref is None:
            ref = np.asarray(t["score"], float)
        np.testing.assert_array_equal(np.asarray(t["score"], float), ref)
    assert Table.read(tmp_path / "cat.ecsv").meta["model"] == "rot.onnx"


def test_scan_broken_inputs_exit_3(tmp_path, rng, conv_model):
    root = _mixed_dir(tmp_path / "d", rng, n=2)
    (root / "nonlenses" / "text.fits").write_text("not fits")
    (root / "nonlenses" / "empty.fits").write_bytes(b"")
    good = (root / "lenses" / "cube0.fits").read_bytes()
    (root / "lenses" / "trunc.fits").write_bytes(good[:5000])
    out = tmp_path / "c.ecsv"
    r = runner.invoke(app, ["scan", str(root), "-m", conv_model, "-o", str(out), "-q"])
    assert r.exit_code == 3, r.output
    t = read_catalog(out)
    assert len(t) == 8
    bad = t[t["status"] == "error"]
    assert sorted(bad["id"]) == ["lenses/trunc", "nonlenses/empty", "nonlenses/text"]
    assert all(len(str(e)) > 5 and "\n" not in str(e) for e in bad["error"])
    assert "scored 5 of 8 inputs, 3 failed" in r.stdout
    assert "ROC AUC" in r.stdout and "stability over 5 cutouts: rotations" in r.stdout
    assert "mirror |Δ|" in r.stdout
    # existing catalog is never silently overwritten
    r = runner.invoke(app, ["scan", str(root), "-m", conv_model, "-o", str(out), "-q"])
    assert r.exit_code == 2 and "--resume" in r.output


def test_scan_only_good_exit_0_and_no_rotations(tmp_path, rng, conv_model):
    root = _mixed_dir(tmp_path / "d", rng, n=2)
    out = tmp_path / "c.csv"
    r = runner.invoke(app, ["scan", str(root), "-m", conv_model, "-o", str(out), "-q",
                            "--no-rotations", "--top", "3", "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    t = read_catalog(out)
    assert "score_std" not in t.colnames and len(t) == 5
    assert "top 3 lens scores" in r.stdout
    assert "rotation stability" not in r.stdout


def test_workers_processes_give_identical_catalog(tmp_path, rng, conv_model):
    root = _mixed_dir(tmp_path / "d", rng, n=20)
    a = scan(root, conv_model, workers=1, batch_size=8)
    b = scan(root, conv_model, workers=2, batch_size=32)
    assert a.ids == b.ids
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


def test_labels_file_and_empty_dir(tmp_path, rng, conv_model):
    d = tmp_path / "plain"
    d.mkdir()
    for k in range(3):
        write_cube(d / f"o{k}.fits", fake_cutout(rng, lens=k == 0))
    (tmp_path / "labels.csv").write_text("id,label\no0,1\no1,0\no2,0\n")
    res = scan(d, conv_model, labels=str(tmp_path / "labels.csv"))
    assert res.labels.tolist() == [1, 0, 0] and res.metrics()["n"] == 3
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["scan", str(tmp_path / "empty"), "-m", conv_model])
    assert r.exit_code == 1 and "no FITS files" in r.output
    r = runner.invoke(app, ["scan", str(d), "-m", str(tmp_path / "none.onnx")])
    assert r.exit_code == 1 and "not found" in r.output
    r = runner.invoke(app, ["scan", str(d), "-m", conv_model, "--workers", "0"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["scan", str(d), "-m", conv_model, "-o", str(tmp_path / "x.txt")])
    assert r.exit_code == 2 and "format" in r.output


def test_resume_repairs_partial_line(tmp_path, rng, conv_model):
    root = _mixed_dir(tmp_path / "d", rng, n=3)
    scan(root, conv_model, output=tmp_path / "one.ecsv")
    # simulate a crash: first 3 rows plus half a row on disk
    lines = (tmp_path / "one.ecsv").read_text().splitlines(keepends=True)
    n_head = sum(1 for ln in lines if ln.startswith("#")) + 1
    part = tmp_path / "part.ecsv"
    part.write_text("".join(lines[: n_head + 3]) + lines[n_head + 3][:20])
    res = scan(root, conv_model, output=part, resume=True)
    assert res.n_skipped == 3 and res.n_inputs == 7
    a, b = read_catalog(tmp_path / "one.ecsv"), read_catalog(part)
    assert list(a["id"]) == list(b["id"])
    np.testing.assert_array_equal(np.asarray(a["score"]), np.asarray(b["score"]))
    with pytest.raises(LensscoreError, match="columns"):
        scan(root, conv_model, output=part, resume=True, rotations=False)
    with pytest.raises(LensscoreError, match="progress must be a function"):
        scan(root, conv_model, progress=False)  # before any work, not at the first batch


def test_writer_journal_kept_on_interrupt(tmp_path):
    cols = catalog_columns(rotations=False, labels=False)
    w = CatalogWriter(tmp_path / "c.fits", cols, {"model": "m"})
    w.write([{"id": "a", "path": "a.fits", "score": 0.5, "status": "ok", "error": ""}])
    w.close(finalize=False)
    assert (tmp_path / "c.fits.journal.ecsv").exists() and not (tmp_path / "c.fits").exists()
    w = CatalogWriter(tmp_path / "c.fits", cols, {"model": "m"}, resume=True)
    assert w.done == {"a"}  # ids: relative to the scan root
    w.write([{"id": "b", "path": "b.fits", "status": "error", "error": "bad, file"}])
    w.close()
    t = read_catalog(tmp_path / "c.fits")
    assert list(t["id"]) == ["a", "b"] and t["error"][1] == "bad, file"


def test_kill_mid_scan_then_resume_equals_one_shot(tmp_path, rng, conv_model):
    d = tmp_path / "many"
    d.mkdir()
    base = fake_cutout(rng)
    write_cube(d / "seed.fits", base)
    for k in range(600):  # hard links keep it cheap
        os.link(d / "seed.fits", d / f"o{k:04d}.fits")
    one = tmp_path / "one.csv"
    scan(d, conv_model, output=one, rotations=False, batch_size=16)
    out = tmp_path / "killed.csv"
    code = ("import sys; from lensscore.cli import main; sys.argv=['lensscore','scan',"
            f"{str(d)!r},'-m',{conv_model!r},'-o',{str(out)!r},'-q','--no-rotations',"
            "'--batch-size','16']; main()")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        if out.exists() and out.stat().st_size > 2000:
            break
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    n_before = len(read_catalog(out)) if out.exists() else 0
    assert n_before < 601, "scan finished before it could be killed; make it larger"
    r = runner.invoke(app, ["scan", str(d), "-m", conv_model, "-o", str(out), "-q",
                            "--no-rotations", "--resume"])
    assert r.exit_code == 0, r.output
    a, b = read_catalog(one), read_catalog(out)
    assert list(a["path"]) == list(b["path"]) and len(set(b["path"])) == 601
    np.testing.assert_allclose(np.asarray(a["score"]), np.asarray(b["score"]), atol=1e-6)


def test_info_and_version(rot_model):
    r = runner.invoke(app, ["info", rot_model])
    assert r.exit_code == 0 and "rotation_invariant" in r.stdout and "g" in r.stdout
    # a nested record as indented keys, not a JSON blob
    assert "│ preprocess " in r.stdout and "│   clip " in r.stdout and '"clip"' not in r.stdout
    r = runner.invoke(app, ["info", rot_model, "--json"])
    assert r.exit_code == 0 and '"size": 72' in r.stdout
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and "lensscore" in r.stdout
    r = runner.invoke(app, ["scan", "--help"])
    assert r.exit_code == 0 and "--resume" in r.stdout


def test_info_shows_numbers_short_and_records_as_rows():
    from lensscore.cli import _info_rows, _info_value

    assert [_info_value(v) for v in (0.92833333, 80400.0, 12345.6, 4.59647e-08, True, None,
                                     "x")] == ["0.9283", "80400", "12346", "4.596e-08", "true",
                                               "null", "x"]
    rows = list(_info_rows({"a": {"b": [1, 2.5], "c": {}}, "d": [{"e": 1}]}))
    assert rows == [("a", ""), ("  b", "1, 2.5"), ("  c", "{}"), ("d", '[{"e": 1}]')]


def test_scorer_never_imports_tensorflow():
    code = ("import sys, pkgutil, importlib, lensscore\n"
            "for m in pkgutil.walk_packages(lensscore.__path__, 'lensscore.'):\n"
            "    if m.name != 'lensscore.__main__': importlib.import_module(m.name)\n"
            "bad = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'lenstronomy', 'onnx')\n"
            "       if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_core_install_never_pulls_tensorflow():
    from importlib.metadata import requires

    core = [r for r in requires("lensscore") if "extra ==" not in r]
    assert core and not any(r.lower().startswith(("tensorflow", "keras", "tf2onnx", "lenstronomy"))
                            for r in core)


@pytest.mark.slow  # a pip install
def test_installed_package_ships_the_default_model(tmp_path):
    """A non-editable install finds models/d4.onnx (installed as lensscore/models/)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "models" / "d4.onnx").exists():
        pytest.skip("models/d4.onnx not in this checkout")
    target = tmp_path / "site"
    # build isolation: the venv's own setuptools may predate pyproject's license field
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--target", str(target), str(root)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    code = ("import lensscore, lensscore.scorer as s; p = s.default_model_path(); "
            "print(lensscore.__file__); print(p); print(s.Scorer().arch)")
    env = {k: v for k, v in os.environ.items() if k != "LENSSCORE_MODEL"}
    env["PYTHONPATH"] = str(target)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    lib, model, arch = p.stdout.split()
    assert lib.startswith(str(target)) and model.startswith(str(target))
    assert model.endswith("lensscore/models/d4.onnx") and arch == "d4"


def test_tta_rot4_makes_any_model_invariant(tmp_path, rng, conv_model):
    """--tta rot4: the score is the mean of the four rotations' scores, so a cutout and its
    rotations score the same even with a model that is not invariant."""
    import numpy as np

    from lensscore import Scorer

    d = tmp_path / "d"
    d.mkdir()
    cubes = [fake_cutout(rng, lens=k % 2 == 0) for k in range(4)]
    for k, c in enumerate(cubes):
        for q in range(4):
            write_cube(d / f"c{k}_rot{q}.fits", np.rot90(c, q, axes=(1, 2)).copy())
    plain = scan(d, conv_model, rotations=True)
    out = tmp_path / "tta.csv"
    res = scan(d, conv_model, output=out, rotations=False, tta="rot4")
    assert res.tta == "rot4" and res.rotation_scores is not None  # the four scores are kept
    np.testing.assert_allclose(res.scores, plain.rotation_scores.mean(axis=1), atol=1e-6)
    per_cutout = res.scores.reshape(4, 4)
    assert np.ptp(per_cutout, axis=1).max() < 1e-6  # rotations of one cutout: one score
    assert np.ptp(plain.scores.reshape(4, 4), axis=1).max() > 1e-4  # the model alone is not
    sc = Scorer(conv_model)
    x = np.stack(cubes)
    np.testing.assert_allclose(sc.score(x, tta="rot4"), per_cutout[:, 0], atol=1e-6)
    assert isinstance(sc.score(x[0], tta="rot4"), float)

    r = runner.invoke(app, ["scan", str(d), "-m", conv_model, "--tta", "rot4", "--top", "0"])
    assert r.exit_code == 0 and "mean over the four rotations" in r.stdout, r.output
    r = runner.invoke(app, ["scan", str(d), "-m", conv_model, "--tta", "rot8"])
    assert r.exit_code == 2 and "--tta must be one of none, rot4" in r.output
    # a catalog scored with TTA is not resumed without it
    r = runner.invoke(app, ["scan", str(d), "-m", conv_model, "-o", str(out), "--resume",
                            "--rotations", "-q"])
    assert r.exit_code == 2 and "tta" in r.output, r.output
