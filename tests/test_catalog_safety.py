"""A catalog knows what wrote it: resume and merge refuse another model or other options, one
writer at a time, problems with the output found before any work."""

import hashlib
import os

import pytest
from astropy.io import fits
from typer.testing import CliRunner

import lensscore._optional as optional
from conftest import fake_cutout, write_cube
from lensscore import scan
from lensscore.catalog import read_catalog
from lensscore.cli import app
from lensscore.errors import LensscoreError
from lensscore.files import FileLock, atomic_path
from lensscore.merge import merge

runner = CliRunner()


@pytest.fixture
def cutouts(tmp_path, rng):
    d = tmp_path / "cutouts"
    d.mkdir()
    for k in range(6):
        write_cube(d / f"c{k}.fits", fake_cutout(rng, lens=k % 2 == 0))
    return d


def _sha(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


@pytest.mark.parametrize("suffix", [".csv", ".ecsv", ".fits"])
def test_resume_with_another_model_is_refused(tmp_path, cutouts, conv_model, rot_model, suffix):
    out = tmp_path / f"cat{suffix}"
    first = scan(cutouts, conv_model, output=out, rotations=False)
    before = out.read_bytes()
    r = runner.invoke(app, ["scan", str(cutouts), "-m", rot_model, "-o", str(out), "--resume",
                            "--no-rotations", "-q"])
    assert r.exit_code == 2, r.output
    assert "another model or other options" in r.output and "model_sha256" in r.output
    assert out.read_bytes() == before  # nothing mixed in
    # other input options are refused too
    r = runner.invoke(app, ["scan", str(cutouts), "-m", conv_model, "-o", str(out), "--resume",
                            "--no-rotations", "-q", "--pixel-scale", "0.25"])
    assert r.exit_code == 2 and "input_pixel_scale" in r.output, r.output
    # the same model resumes (nothing left to do)
    again = scan(cutouts, conv_model, output=out, rotations=False, resume=True)
    assert again.n_skipped == first.n_inputs
    assert list(again.scores) == list(first.scores)
    meta = {k.lower(): v for k, v in read_catalog(out).meta.items()}
    assert meta["model_sha256"] == _sha(conv_model)


def test_fits_catalog_keeps_full_metadata_keys(tmp_path, cutouts, conv_model):
    out = tmp_path / "cat.fits"
    scan(cutouts, conv_model, output=out, rotations=False)
    h = fits.getheader(out, 1)
    assert h["model_sha256"] == _sha(conv_model)  # 64 characters, a HIERARCH card
    assert h["lensscore_version"] and h["zeropoint_override"] == ""
    assert not any(k.startswith(("LENSSCOR", "MODEL_SH")) for k in h)  # no 8-character cuts


def test_resume_keys_rows_by_id_relative_to_the_scan_root(tmp_path, cutouts, conv_model,
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cat.csv"
    first = scan("cutouts", conv_model, output=out, rotations=False)
    for same in ("./cutouts", str(tmp_path / "cutouts")):
        again = scan(same, conv_model, output=out, rotations=False, resume=True)
        assert again.n_skipped == first.n_inputs == 6 and again.ids == first.ids
        assert len(read_catalog(out)) == 6


def test_two_roots_with_the_same_names_get_distinct_ids(tmp_path, cutouts, conv_model):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(cutouts, other)
    res = scan([cutouts, other], conv_model, output=tmp_path / "c.csv", rotations=False)
    # both prefixed (the first root's were once bare: ids then hung on the order of the roots)
    assert len(set(res.ids)) == 12 and "other/c0" in res.ids and f"{cutouts.name}/c0" in res.ids
    again = scan([cutouts, other], conv_model, output=tmp_path / "c.csv", rotations=False,
                 resume=True)
    assert again.n_skipped == 12 and len(read_catalog(tmp_path / "c.csv")) == 12


def test_one_writer_at_a_time(tmp_path, cutouts, conv_model):
    out = tmp_path / "cat.csv"
    with FileLock(tmp_path / "cat.csv.lock", "test"):
        r = runner.invoke(app, ["scan", str(cutouts), "-m", conv_model, "-o", str(out), "-q"])
        assert r.exit_code == 2 and "another process" in r.output, r.output
        assert not out.exists()
    r = runner.invoke(app, ["scan", str(cutouts), "-m", conv_model, "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "cat.csv.lock").exists()  # released and removed


def test_output_problems_found_before_any_work(tmp_path, cutouts, conv_model, monkeypatch):
    calls = []
    out = tmp_path / "cat.csv"
    out.write_text("id,path,score\n")
    with pytest.raises(LensscoreError, match="--resume"):
        scan(cutouts, conv_model, output=out, progress=lambda *a: calls.append(a))
    monkeypatch.setattr(optional, "HAS_PYARROW", False)
    with pytest.raises(LensscoreError, match=r"lensscore\[parquet\]"):
        scan(cutouts, conv_model, output=tmp_path / "c.parquet",
             progress=lambda *a: calls.append(a))
    r = runner.invoke(app, ["scan", str(cutouts), "-m", conv_model, "-o",
                            str(tmp_path / "c.parquet")])
    assert r.exit_code == 2 and "lensscore[parquet]" in r.output, r.output
    assert not calls and "scoring" not in r.output
    assert not (tmp_path / "c.parquet").exists()


def test_merge_refuses_shards_of_different_models(tmp_path, cutouts, conv_model, rot_model):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    scan(cutouts, conv_model, output=a, shard="1/2", rotations=False)
    scan(cutouts, rot_model, output=b, shard="2/2", rotations=False)
    with pytest.raises(LensscoreError, match="model_sha256"):
        merge([a, b], tmp_path / "m.csv")
    scan(cutouts, conv_model, output=b, shard="2/2", rotations=False, overwrite=True)
    assert merge([a, b], tmp_path / "m.csv").ok


def test_atomic_path_unique_names_and_nothing_left_on_failure(tmp_path):
    target = tmp_path / "x.json"
    with atomic_path(target) as t1, atomic_path(target) as t2:
        assert t1 != t2 and t1.parent == tmp_path
        t1.write_text("1")
        t2.write_text("2")
    assert target.read_text() == "1"  # the outer block replaced last
    with pytest.raises(RuntimeError), atomic_path(target) as t3:
        t3.write_text("half")
        raise RuntimeError
    assert target.read_text() == "1" and os.listdir(tmp_path) == ["x.json"]
