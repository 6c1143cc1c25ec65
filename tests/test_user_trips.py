"""Issue 32: what a new user tripped on, each fixed with a test that fails without the fix."""

import numpy as np
import pytest
from conftest import fake_cutout, write_cube
from typer.testing import CliRunner

from lensscore.catalog import rows_path
from lensscore.cli import app
from lensscore.scan import read_labels
from lensscore.scorer import Scorer

runner = CliRunner()


def test_empty_directory_leaves_no_catalog_to_block_the_rerun(tmp_path, conv_model):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "e.ecsv"
    for _ in range(2):  # the rerun meets the same clean state
        r = runner.invoke(app, ["scan", str(tmp_path / "empty"), "-m", conv_model, "-o", str(out)])
        assert r.exit_code == 1 and "no FITS files found" in r.output, r.output
        assert not out.exists() and "exists" not in r.output


def test_a_file_named_without_a_fits_suffix_is_read_as_named(tmp_path, rng, conv_model):
    """``lensscore scan examples/cutouts/*`` names truth.ecsv too: a file named directly is
    read whatever its suffix (an error row if its bytes are no FITS), not a traceback."""
    write_cube(tmp_path / "a.fits", fake_cutout(rng, lens=True))
    (tmp_path / "cube.dat").write_bytes((tmp_path / "a.fits").read_bytes())
    (tmp_path / "truth.ecsv").write_text("# %ECSV 1.0\nid label\n")
    out = tmp_path / "c.csv"
    r = runner.invoke(app, ["scan", *(str(tmp_path / n) for n in ("a.fits", "cube.dat",
                                                                  "truth.ecsv")),
                            "-m", conv_model, "-o", str(out), "--top", "0"])
    assert r.exit_code == 3, r.output  # some inputs failed
    rows = out.read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["a", "cube.dat", "truth.ecsv"]
    assert rows[1].split(",")[2] == rows[0].split(",")[2]  # the same bytes, the same score
    assert "not a FITS file" in rows[2]


def test_resume_of_a_csv_without_its_metadata_is_refused(tmp_path, rng, conv_model):
    (tmp_path / "d" / "lenses").mkdir(parents=True)
    for k in range(3):
        write_cube(tmp_path / "d" / "lenses" / f"c{k}.fits", fake_cutout(rng, lens=True))
    out = tmp_path / "c.csv"
    r = runner.invoke(app, ["scan", str(tmp_path / "d"), "-m", conv_model, "-o", str(out)])
    assert r.exit_code == 0, r.output
    (tmp_path / "c.csv.meta.json").unlink()
    r = runner.invoke(app, ["scan", str(tmp_path / "d"), "-m", conv_model, "-o", str(out),
                            "--resume"])
    assert r.exit_code == 2 and "c.csv.meta.json" in r.output and "missing" in r.output


def test_interrupted_fits_scan_names_the_journal(tmp_path):
    assert rows_path(tmp_path / "x.fits") == tmp_path / "x.fits.journal.ecsv"
    assert rows_path(tmp_path / "x.parquet") == tmp_path / "x.parquet.journal.ecsv"
    assert rows_path(tmp_path / "x.ecsv") == tmp_path / "x.ecsv"


def test_scorer_names_nan_pixels(conv_model, rng):
    x = np.stack([fake_cutout(rng) for _ in range(2)])
    x[1, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"\[1\] hold NaN or inf pixels"):
        Scorer(conv_model).score(x)
    flat = np.zeros((1, 3, 72, 72), np.float32)
    with pytest.raises(ValueError, match="no signal"):
        Scorer(conv_model).score(flat)


def test_a_mostly_nan_cutout_is_an_error_row_not_a_score(tmp_path, rng, conv_model):
    """Issue 32: a cutout 83 % NaN (a tile edge) was scored 'ok'. Above --max-bad-fraction
    (default 0.3) of its field it is an error row; bad_fraction says how much was bad."""
    import csv

    d = tmp_path / "d" / "lenses"
    d.mkdir(parents=True)
    edge = fake_cutout(rng, lens=True)
    edge[:, :, :60] = np.nan  # 83 % of the field, in every band
    write_cube(d / "edge.fits", edge)
    few = fake_cutout(rng, lens=True)
    few[0, :5, :5] = np.nan  # 25 pixels in one band
    write_cube(d / "few.fits", few)
    out = tmp_path / "c.csv"
    r = runner.invoke(app, ["scan", str(tmp_path / "d"), "-m", conv_model, "-o", str(out)])
    assert r.exit_code == 3, r.output
    with open(out) as fh:
        rows = {x["id"]: x for x in csv.DictReader(fh)}
    assert rows["lenses/edge"]["status"] == "error"
    assert "83% of the model's field is NaN" in rows["lenses/edge"]["error"]
    assert rows["lenses/few"]["status"] == "ok"
    assert float(rows["lenses/few"]["bad_fraction"]) == pytest.approx(25 / 72 ** 2, rel=1e-4)
    r = runner.invoke(app, ["scan", str(tmp_path / "d"), "-m", conv_model, "-o", str(out),
                            "--overwrite", "--max-bad-fraction", "0.9"])
    assert r.exit_code == 0, r.output


def test_assumed_zero_points_and_another_surveys_grid_are_said_once(tmp_path, rng, conv_model):
    from astropy.io import fits
    from conftest import sky_wcs

    d = tmp_path / "d" / "lenses"
    d.mkdir(parents=True)
    for k in range(3):  # PS1-like: 120 px at 0.25", no zero point in the header
        h = sky_wcs(120, scale_arcsec=0.25).to_header()
        for j, b in enumerate("gri"):
            h[f"BAND{j}"] = b
        fits.PrimaryHDU(fake_cutout(rng, n=120, lens=True), header=h).writeto(d / f"c{k}.fits")
    r = runner.invoke(app, ["scan", str(tmp_path / "d"), "-m", conv_model, "--top", "0"])
    assert r.exit_code == 0, r.output
    assert r.output.count("3 input(s) state no zero point") == 1
    assert 'note: 3 of 3 inputs are on a 0.25"/px grid and were resampled' in r.output
    from lensscore._session import shipped_models

    if "ps1" in shipped_models():
        assert "-m ps1" in r.output


def test_a_scan_marks_the_models_own_training_cutouts_and_keeps_them_out_of_the_test(
        tmp_path, rng, conv_model):
    """Issue 32: scanning a model's own fine-tuning data printed in-sample numbers as a test.
    A model stamped with its training cutouts' digests gets those rows marked in_training, and
    its metrics are over the other rows only (printed apart, loudly)."""
    import csv
    import shutil

    from export.stamp import stamp_trained_on

    from lensscore import scan

    seen, new = tmp_path / "seen", tmp_path / "all"
    for d in (seen / "lenses", seen / "nonlenses"):
        d.mkdir(parents=True)
    for k in range(3):  # each at its own place on the sky, 36" apart
        write_cube(seen / "lenses" / f"a{k}.fits", fake_cutout(rng, lens=True), ra=150 + k / 100)
        write_cube(seen / "nonlenses" / f"b{k}.fits", fake_cutout(rng), ra=150.5 + k / 100)
    shutil.copytree(seen, new)
    for k in range(3):  # cutouts the model never saw, beside those it did
        write_cube(new / "lenses" / f"c{k}.fits", fake_cutout(rng, lens=True), ra=151 + k / 100)
        write_cube(new / "nonlenses" / f"d{k}.fits", fake_cutout(rng), ra=151.5 + k / 100)
    model = tmp_path / "m.onnx"
    shutil.copy(conv_model, model)
    rec = stamp_trained_on(model, seen, "six cutouts")
    assert rec["n"] == 6 and Scorer(model).trained_digests
    res = scan(new, model, output=tmp_path / "c.csv", rotations=False)
    assert res.n_in_training == 6
    with open(tmp_path / "c.csv") as fh:
        rows = {x["id"]: x["in_training"] for x in csv.DictReader(fh)}
    assert {i for i, v in rows.items() if v == "True"} == \
        {f"lenses/a{k}" for k in range(3)} | {f"nonlenses/b{k}" for k in range(3)}
    assert res.metrics()["n"] == 6 and res.metrics(in_training=True)["n"] == 6
    r = runner.invoke(app, ["scan", str(new), "-m", str(model), "--top", "0"])
    assert r.exit_code == 0 and "6 of 12 inputs are cutouts this model was trained on" in r.output
    assert "in-sample only" in r.stdout and "labels: 3 lenses, 3 non-lenses" in r.stdout
    # a model without the record: no column, every row counts
    plain = scan(new, conv_model, output=tmp_path / "p.csv", rotations=False)
    assert plain.n_in_training == 0 and plain.metrics()["n"] == 12
    with open(tmp_path / "p.csv") as fh:
        assert "in_training" not in fh.readline()


def test_the_same_objects_from_other_files_are_marked_by_their_place_on_the_sky(
        tmp_path, rng, conv_model):
    """Scanning a model's training objects from other files (another crop or resampling: other
    pixels, so other digests) printed in-sample numbers as a test. The record keeps each
    training cutout's centre on the sky; a cutout centred within its radius (2") is marked."""
    import shutil

    from astropy.io import fits

    from export.stamp import stamp_trained_on

    from lensscore import scan

    seen, new = tmp_path / "seen" / "lenses", tmp_path / "new" / "lenses"
    seen.mkdir(parents=True)
    new.mkdir(parents=True)
    cubes = [fake_cutout(rng, lens=True) for _ in range(2)]
    for k, c in enumerate(cubes):
        write_cube(seen / f"a{k}.fits", c, ra=150 + k / 100)
    model = tmp_path / "m.onnx"
    shutil.copy(conv_model, model)
    rec = stamp_trained_on(model, seen.parent, "two cutouts")
    assert (rec["n"], rec["n_positions"], rec["radius_arcsec"]) == (2, 2, 2.0)
    moved = np.roll(cubes[0], 1, axis=2)  # one pixel over: other pixels, another digest
    write_cube(new / "near.fits", moved, ra=150 + 1.5 / 3600)  # its centre 1.5" from a0's
    write_cube(new / "far.fits", moved, ra=150 + 3 / 3600)  # 3" away: another object
    write_cube(new / "nowcs.fits", moved, wcs=False)  # no place on the sky: pixels only
    write_cube(new / "exact.fits", cubes[1], ra=150.01)  # a1 itself
    res = scan(new.parent, model, rotations=False)
    marked = {i for i, t in zip(res.ids, res.in_training) if t}
    assert marked == {"lenses/near", "lenses/exact"}, marked
    # a record made before positions were kept gains them, its digests kept
    with pytest.raises(ValueError, match="records trained_on already"):
        stamp_trained_on(model, new.parent, "again")
    with fits.open(new / "far.fits", mode="update") as h:  # far is trained on now too
        h[0].data = h[0].data + 1
    rec = stamp_trained_on(model, new.parent, "more", update=True)
    # digests: a0 and a1 kept, near's (nowcs has its pixels) and far's added (exact is a1);
    # positions: a0's and a1's kept, near's and far's added (exact's is a1's, nowcs has none)
    assert (rec["n"], rec["n_positions"], rec["data"]) == (4, 4, "two cutouts + more")
    res = scan(new.parent, model, rotations=False)
    assert res.in_training.all()


def test_what_a_scan_cannot_place_it_says_and_a_placeholder_wcs_marks_nothing(
        tmp_path, rng, conv_model):
    """Inputs without a sky position are counted (a note under the metrics); a committee
    marks what any member was trained on; a centre that two different training cutouts share
    (one placeholder WCS for many files) is left out of the record, so it marks no new cutout
    there; a malformed record is said once and its digests still mark identical cutouts."""
    import json
    import shutil

    import onnx

    from export.stamp import stamp_trained_on

    from lensscore import scan

    seen, new = tmp_path / "seen" / "lenses", tmp_path / "new" / "lenses"
    seen.mkdir(parents=True)
    new.mkdir(parents=True)
    a, b, c = (fake_cutout(rng, lens=True) for _ in range(3))
    write_cube(seen / "a.fits", a, ra=150.0)
    write_cube(seen / "b.fits", b, ra=150.5)  # b and b2: one placeholder centre
    write_cube(seen / "b2.fits", c, ra=150.5)
    model = tmp_path / "m.onnx"
    shutil.copy(conv_model, model)
    rec = stamp_trained_on(model, seen.parent, "three")
    assert (rec["n_positions"], rec["n_positions_shared"]) == (1, 1)
    write_cube(new / "near_a.fits", np.roll(a, 1, axis=2), ra=150.0 + 1 / 3600)
    write_cube(new / "at_b.fits", fake_cutout(rng, lens=True), ra=150.5)  # never seen
    write_cube(new / "nowcs.fits", fake_cutout(rng, lens=True), wcs=False)
    res = scan(new.parent, [model, conv_model], rotations=False)  # a committee
    assert dict(zip(res.ids, res.in_training)) == {
        "lenses/near_a": True, "lenses/at_b": False, "lenses/nowcs": False}
    assert res.training_record == "positions" and res.n_unplaced == 1
    assert res.metrics()["n_unverified"] == 1  # the library says so too
    pixels_only = tmp_path / "p.onnx"  # a member that records its cutouts by pixels alone
    m = onnx.load(model)
    prop = next(p for p in m.metadata_props if p.key == "lensscore.trained_on")
    prop.value = json.dumps({k: v for k, v in json.loads(prop.value).items()
                             if k not in ("positions", "n_positions", "radius_arcsec")})
    onnx.save_model(m, pixels_only)
    assert scan(new.parent, [model, pixels_only], rotations=False).training_record == "pixels"
    out = tmp_path / "c.csv"
    scan(new.parent, model, output=out, rotations=False)
    res = scan(new.parent, model, output=out, rotations=False, resume=True)  # all rows resumed
    assert res.n_skipped == 3 and res.n_unplaced == 1
    r = runner.invoke(app, ["scan", str(new.parent), "-m", str(model), "--top", "0"])
    assert "1 of these 2 labelled inputs have no sky position" in \
        " ".join(r.output.split()), r.output
    m = onnx.load(model)  # a hand-edited record: one position off the sky
    prop = next(p for p in m.metadata_props if p.key == "lensscore.trained_on")
    prop.value = json.dumps({**json.loads(prop.value), "positions": "150.0,95.0"})
    onnx.save_model(m, model)
    write_cube(new / "a.fits", a, ra=150.0)  # a itself: its pixels
    res = scan(new.parent, model, rotations=False)
    assert dict(zip(res.ids, res.in_training))["lenses/a"] and res.n_in_training == 1
    assert res.training_record == "pixels" and res.metrics()["n_unverified"] == 3
    r = runner.invoke(app, ["scan", str(new.parent), "-m", str(model), "--top", "0"])
    said = " ".join(r.output.split())
    assert r.exit_code == 0 and said.count("no place on the sky (150, 95)") == 1, r.output
    assert "by their pixels only (no sky positions)" in said


def test_ids_do_not_depend_on_the_order_of_the_paths_and_resume_loses_nothing(
        tmp_path, rng, conv_model, monkeypatch):
    """Two roots with the same file names: the first root's ids were bare and the second's
    prefixed, so a scan resumed with the paths in the other order matched the ids to the other
    root's files, skipped them and exited 0 with rows lost. Now ids do not depend on the order;
    labels keyed by the new ids, or by the old ones, still match."""
    import csv
    import gzip

    from lensscore import find_sources, scan

    monkeypatch.chdir(tmp_path)
    for d in ("n1", "n2", "m/n1", "x/a/b", "x/b", "d"):
        (tmp_path / d).mkdir(parents=True)
    for d in ("n1", "n2", "m/n1", "x/a", "x/a/b", "x/b"):
        for k in range(3 if d in ("n1", "n2") else 1):
            write_cube(tmp_path / d / f"c{k}.fits", fake_cutout(rng))

    def ids(*roots):
        return sorted((s.id, s.path) for s in find_sources(list(roots)))

    assert ids("n1", "n2") == ids("n2", "n1") == sorted(
        (f"{d}/c{k}", f"{d}/c{k}.fits") for d in ("n1", "n2") for k in range(3))
    # roots of one name: as much of their paths as tells them apart
    assert {i for i, _ in ids("m/n1", "n1")} == {"m/n1/c0", f"{tmp_path.name}/n1/c0", "c1", "c2"}
    # x/a's b/c0 is taken: the prefixes grow until they meet no id, in either order
    assert ids("x/a", "x/b") == ids("x/b", "x/a") == [
        ("b/c0", "x/a/b/c0.fits"), ("x/a/c0", "x/a/c0.fits"), ("x/b/c0", "x/b/c0.fits")]
    write_cube(tmp_path / "d" / "o.fits", fake_cutout(rng))  # one root, one id twice
    with gzip.open(tmp_path / "d" / "o.fits.gz", "wb") as fh:
        fh.write((tmp_path / "d" / "o.fits").read_bytes())
    assert ids("d") == [("o", "d/o.fits"), ("o#2", "d/o.fits.gz")]

    out = tmp_path / "c.csv"
    full = scan(["n1", "n2"], conv_model, output=out, rotations=False)
    lines = out.read_text().splitlines()
    keep = 1 + next(k for k, x in enumerate(lines) if x.startswith("id,")) + 2
    out.write_text("\n".join(lines[:keep]) + "\n")  # interrupted after two rows (n1's)
    res = scan(["n2", "n1"], conv_model, output=out, rotations=False, resume=True)
    assert res.n_skipped == 2 and res.n_scored == 6
    one = tmp_path / "one.csv"  # one root, bare ids; resumed with a root added: said
    scan(["n1"], conv_model, output=one, rotations=False)
    r = runner.invoke(app, ["scan", "n1", "n2", "-m", conv_model, "-o", str(one), "--resume",
                            "--no-rotations", "--top", "0"])
    assert r.exit_code == 0 and "3 of its rows have ids that none of these inputs has" in \
        " ".join(r.output.split()), r.output
    with open(out) as fh:
        rows = [r for r in csv.DictReader(fh)]
    assert sorted(r["path"] for r in rows) == sorted(full.paths)  # each file once
    labels = tmp_path / "labels.csv"  # by the new ids, and by the old bare ones
    labels.write_text("id,label\nn1/c0,1\nn2/c0,0\nc1,1\n")
    got = {s.id: s.label for s in find_sources(["n1", "n2"], labels=read_labels(labels))}
    assert (got["n1/c0"], got["n2/c0"], got["n1/c1"], got["n2/c1"], got["n1/c2"]) == \
        (1, 0, 1, 1, None)


@pytest.mark.parametrize("ext", [".csv", ".fits"])
def test_resume_retries_error_rows_when_asked(tmp_path, rng, conv_model, ext):
    """Issue 32: resume never retried error rows, so a transient failure was permanent."""
    from astropy.table import Table

    d = tmp_path / "d" / "lenses"
    d.mkdir(parents=True)
    for k in range(3):
        write_cube(d / f"c{k}.fits", fake_cutout(rng, lens=True))
    good = (d / "c1.fits").read_bytes()
    (d / "c1.fits").write_bytes(good[:2000])  # truncated now: an error row
    out = tmp_path / f"c{ext}"
    args = ["scan", str(tmp_path / "d"), "-m", conv_model, "-o", str(out), "--top", "0"]
    r = runner.invoke(app, args)
    assert r.exit_code == 3, r.output
    (d / "c1.fits").write_bytes(good)  # the file is back
    r = runner.invoke(app, [*args, "--resume"])  # a plain resume keeps the error
    assert r.exit_code == 3 and "3 resumed" in r.stdout, r.output
    r = runner.invoke(app, [*args, "--retry-errors"])
    assert r.exit_code == 2 and "--retry-errors is for --resume" in r.output
    r = runner.invoke(app, [*args, "--resume", "--retry-errors"])
    assert r.exit_code == 0, r.output
    t = Table.read(out, format="ascii.csv" if ext == ".csv" else None)
    assert sorted(t["id"]) == ["lenses/c0", "lenses/c1", "lenses/c2"]
    assert list(t["status"]) == ["ok"] * 3 and list(t["id"])[-1] == "lenses/c1"


def test_ps1_asinh_compressed_pixels_are_made_linear(tmp_path, rng):
    """Issue 32: PS1 archive stacks are asinh-compressed (BSOFTEN, BOFFSET); read as stored,
    their pixels were the compressed values. Both the fast path and astropy's now expand them."""
    from astropy.io import fits

    from lensscore import load_cutout
    from lensscore.errors import CutoutError

    flux = fake_cutout(rng).astype(np.float64) * 10
    soft, off = 30.0, -5.0
    a = 2.5 * np.log10(np.e)
    v = (a * np.arcsinh((flux - off) / (2 * soft))).astype(np.float32)
    for name, cards in (("float", {}), ("scaled", {"BSCALE": 1.0, "BZERO": 0.0})):
        h = fits.Header({"BAND0": "g", "BAND1": "r", "BAND2": "i", "BSOFTEN": soft,
                         "BOFFSET": off, **cards})
        fits.PrimaryHDU(v, header=h).writeto(tmp_path / f"{name}.fits")
        c = load_cutout(tmp_path / f"{name}.fits")
        np.testing.assert_allclose(c.data, flux, rtol=1e-4, atol=1e-3)
    h = fits.Header({"BAND0": "g", "BAND1": "r", "BAND2": "i", "BSOFTEN": soft})
    fits.PrimaryHDU(v, header=h).writeto(tmp_path / "half.fits")
    with pytest.raises(CutoutError, match="BSOFTEN and BOFFSET"):
        load_cutout(tmp_path / "half.fits")


def test_outputs_follow_the_umask_and_png_alone_writes_no_html(tmp_path, rng, conv_model,
                                                                monkeypatch):
    """Issue 32: FITS catalogs, galleries and PNGs were written 0600 (mkstemp), .ecsv/.csv
    0644; `gallery --png` also wrote (or demanded) CATALOG.html, and without matplotlib wrote
    the HTML and then failed, so the rerun hit "exists"."""
    import os
    import stat

    import lensscore._optional as opt

    d = tmp_path / "d" / "lenses"
    d.mkdir(parents=True)
    for k in range(2):
        write_cube(d / f"c{k}.fits", fake_cutout(rng, lens=True))
    old = os.umask(0o022)
    try:
        for ext in (".ecsv", ".fits"):
            r = runner.invoke(app, ["scan", str(tmp_path / "d"), "-m", conv_model, "-o",
                                    str(tmp_path / f"c{ext}"), "--top", "0"])
            assert r.exit_code == 0, r.output
            assert stat.S_IMODE(os.stat(tmp_path / f"c{ext}").st_mode) == 0o644, ext
        cat = str(tmp_path / "c.ecsv")
        monkeypatch.setattr(opt, "HAS_MATPLOTLIB", False)
        r = runner.invoke(app, ["gallery", cat, "--png", str(tmp_path / "g.png")])
        assert r.exit_code == 2 and "matplotlib" in r.output
        assert not (tmp_path / "c.html").exists() and not (tmp_path / "g.png").exists()
        monkeypatch.setattr(opt, "HAS_MATPLOTLIB", True)
        r = runner.invoke(app, ["gallery", cat, "--png", str(tmp_path / "g.png")])
        assert r.exit_code == 0, r.output
        assert (tmp_path / "g.png").exists() and not (tmp_path / "c.html").exists()
        assert stat.S_IMODE(os.stat(tmp_path / "g.png").st_mode) == 0o644
        r = runner.invoke(app, ["gallery", cat])
        assert r.exit_code == 0 and stat.S_IMODE(os.stat(tmp_path / "c.html").st_mode) == 0o644
    finally:
        os.umask(old)


@pytest.mark.parametrize("survey,names", [
    ("CFHT MegaCam", {"g": "g.MP9401", "r": "r.MP9601", "i": "i.MP9702"}),
    ("DECam", {"g": "g DECam SDSS c0001 4720.0 1520.0", "r": "r DECam SDSS c0002 6415.0 1480.0",
               "i": "i DECam SDSS c0003 7835.0 1470.0"}),
    ("OmegaCAM/KiDS", {"g": "OCAM_g_SDSS", "r": "r_SDSS", "i": "OCAM_i_SDSS"}),
    ("SDSS", {"g": "SDSS g", "r": "sdss-r", "i": "i"}),
    ("Rubin", {"g": "lsst-g", "r": "r_6", "i": "i"}),
    ("Suprime-Cam", {"g": "W-S-G+", "r": "W-S-R+", "i": "W-S-I+"}),
    ("HSC", {"g": "HSC-G", "r": "HSC-R2", "i": "HSC-I2"}),
    ("PS1", {"g": "g.00000", "r": "r.00000", "i": "i.00000"}),
])
def test_survey_filter_names_are_read_per_band(tmp_path, rng, survey, names):
    """Issue 32: CFHT MegaCam's FILTER = 'g.MP9401' was refused ("file name says band g, its
    header says g.mp9401"). The survey conventions are one table (lensscore.survey); each is read
    from per-band files' headers."""
    from astropy.io import fits
    from conftest import sky_wcs

    from lensscore import load_cutout

    img = fake_cutout(rng)
    files = {}
    for k, (b, name) in enumerate(names.items()):
        h = sky_wcs().to_header()
        h["FILTER"] = name
        files[b] = tmp_path / f"o_{b}.fits"
        fits.PrimaryHDU(img[k], header=h).writeto(files[b])
    c = load_cutout(files)
    assert c.band_source == "header", survey
    np.testing.assert_array_equal(c.data[1], img[1])


def test_an_unreadable_header_band_is_no_contradiction_but_a_known_one_is(tmp_path, rng):
    from astropy.io import fits

    from lensscore import load_cutout
    from lensscore.errors import BandError
    from lensscore.survey import parse_band

    img = fake_cutout(rng)
    files = {b: tmp_path / f"o_{b}.fits" for b in "gri"}
    for k, b in enumerate("gri"):
        fits.PrimaryHDU(img[k], header=fits.Header({"FILTER": f"F{k}_odd"})).writeto(files[b])
    c = load_cutout(files)  # FILTER names no band any convention knows: the file names say
    assert c.band_source == "filename"
    fits.PrimaryHDU(img[1], header=fits.Header({"FILTER": "i.MP9702"})).writeto(
        files["r"], overwrite=True)
    with pytest.raises(BandError, match="file name says band r, its header says i"):
        load_cutout(files)
    assert parse_band("F814W") == "f814w" and parse_band("VIS") == "vis"
    assert parse_band("F0_odd") is None


def test_an_empty_shard_writes_a_mergeable_catalog_and_fits_refuses_non_ascii(tmp_path, rng,
                                                                             conv_model):
    """Review: a shard holding none of the inputs exited 1 and left no catalog, so merge called
    it missing; a .fits catalog of inputs with non-ASCII names crashed at the end."""
    from lensscore.scan import shard_of

    d = tmp_path / "d" / "lenses"
    d.mkdir(parents=True)
    for k in range(3):
        write_cube(d / f"c{k}.fits", fake_cutout(rng, lens=True))
    ids = [f"lenses/c{k}" for k in range(3)]
    empty = next(k for k in range(1, 9) if all(shard_of(i, 8) != k for i in ids))
    outs = []
    for k in range(1, 9):
        out = tmp_path / f"s{k}.csv"
        r = runner.invoke(app, ["scan", str(tmp_path / "d"), "-m", conv_model, "-o", str(out),
                                "--shard", f"{k}/8", "--top", "0"])
        assert r.exit_code == 0, (k, r.output)
        outs.append(str(out))
        if k == empty:
            assert "holds none of the 3 inputs" in r.output and out.exists()
    r = runner.invoke(app, ["merge", *outs, "-o", str(tmp_path / "all.csv"), "--inputs",
                            str(tmp_path / "d")])
    assert r.exit_code == 0 and "missing" not in r.output, r.output
    write_cube(d / "caf\u00e9.fits", fake_cutout(rng, lens=True))
    r = runner.invoke(app, ["scan", str(tmp_path / "d"), "-m", conv_model, "-o",
                            str(tmp_path / "x.fits")])
    assert r.exit_code == 2 and "ASCII" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("ext", [".ecsv", ".fits"])
def test_catalog_columns_carry_units(tmp_path, rng, conv_model, ext):
    from astropy.table import Table

    d = tmp_path / "d" / "lenses"
    d.mkdir(parents=True)
    write_cube(d / "c.fits", fake_cutout(rng, lens=True))
    out = tmp_path / f"c{ext}"
    r = runner.invoke(app, ["scan", str(tmp_path / "d"), "-m", conv_model, "-o", str(out)])
    assert r.exit_code == 0, r.output
    t = Table.read(out)
    assert str(t["ra"].unit) == "deg" and str(t["dec"].unit) == "deg"
    assert t["pixscale_in"].unit.to_string() in ("arcsec / pix", "arcsec / pixel")
    assert float(t["pixscale_in"][0]) == 0.168  # no float noise (0.16800000000000118)


def test_fits_output_refuses_non_ascii_kept_columns_up_front():
    """Second review: a non-ASCII value in a catalog-mode kept column crashed the .fits write
    at the end; it is refused before any work, naming the field."""
    from pathlib import Path

    from astropy.table import Table

    root = Path(__file__).resolve().parent.parent / "examples" / "tiles"
    if not (root / "objects.csv").exists():
        pytest.skip("examples/tiles not in this checkout")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t = Table.read(root / "objects.csv")
        t["note"] = ["caf\u00e9"] + ["ok"] * (len(t) - 1)
        t.write(Path(tmp) / "o.ecsv")
        r = runner.invoke(app, ["scan", "--catalog", str(Path(tmp) / "o.ecsv"), "--images",
                                str(root / "tile*_{band}.fits"), "-o", str(Path(tmp) / "x.fits")])
        assert r.exit_code == 2 and "the note of input" in r.output, r.output
        assert not (Path(tmp) / "x.fits.journal.ecsv").exists()


def _bool_scan_inputs(tmp_path, rng):
    """Two cutouts on the model's grid, one on a PS1-like 0.25" grid (resampled), one junk."""
    d = tmp_path / "in"
    d.mkdir()
    for k in range(2):
        write_cube(d / f"a{k}.fits", fake_cutout(rng))
    from astropy.io import fits

    from conftest import sky_wcs as wcs_of
    h = wcs_of(n=60, scale_arcsec=0.25).to_header()
    for k, b in enumerate("gri"):
        h[f"BAND{k}"] = b
    fits.PrimaryHDU(fake_cutout(rng, n=60), header=h).writeto(d / "ps1.fits")
    (d / "junk.fits").write_bytes(b"junk" * 100)
    return d


@pytest.mark.parametrize("ext", [".ecsv", ".fits", ".parquet", ".csv"])
def test_catalog_booleans_are_typed(tmp_path, rng, conv_model, ext):
    """Issue 32: resampled (and in_training) were the strings "true"/"false"; they are
    booleans now in ECSV, FITS and Parquet, True/False in a CSV."""
    import csv

    from astropy.table import Table

    from lensscore import scan
    from lensscore.catalog import read_catalog

    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"c{ext}"
    res = scan(_bool_scan_inputs(tmp_path, rng), conv_model, output=out, rotations=False)
    assert res.n_scored == 3 and res.n_failed == 1
    if ext == ".csv":
        with open(out) as fh:
            raw = {r["id"]: r["resampled"] for r in csv.DictReader(fh)}
        assert raw == {"a0": "False", "a1": "False", "ps1": "True", "junk": ""}
        t = read_catalog(out)
    else:
        t = Table.read(out)  # astropy alone: the type is in the file
    assert t["resampled"].dtype == bool
    got = {str(i): v for i, v, s in zip(t["id"], t["resampled"].tolist(), t["status"])
           if s == "ok"}
    assert got == {"a0": False, "a1": False, "ps1": True}


def _age(path):
    """Make a catalog look written by lensscore before typed booleans: "true"/"false" text
    (and, in ECSV, a string column)."""
    import csv
    import warnings

    from astropy.io import fits

    from astropy.table import Table

    if path.suffix == ".fits":
        t = Table.read(path)
        t["resampled"] = [("" if m else str(v).lower()) for v, m in
                          zip(t["resampled"].tolist(), np.ma.getmaskarray(t["resampled"]))]
        with warnings.catch_warnings():  # the header's long keys: HIERARCH cards, as before
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            t.write(path, overwrite=True)
        return
    lines = path.read_text().splitlines(keepends=True)
    head = [ln.replace("{name: resampled, datatype: bool}", "{name: resampled, datatype: string}")
            for ln in lines if ln.startswith("#")]
    body = list(csv.reader(ln for ln in lines if not ln.startswith("#")))
    k = body[0].index("resampled")
    for r in body[1:]:
        r[k] = r[k].lower()
    with open(path, "w", newline="") as fh:
        fh.writelines(head)
        csv.writer(fh, lineterminator="\n").writerows(body)


@pytest.mark.parametrize("ext", [".ecsv", ".csv", ".fits"])
def test_old_string_booleans_read_resume_merge_and_gallery(tmp_path, rng, conv_model, ext):
    """Catalogs written before typed booleans ("true"/"false") still read as booleans, resume
    (the file becomes typed), merge with a new shard, and make a gallery."""
    from astropy.table import Table

    from lensscore import scan
    from lensscore.catalog import read_catalog
    from lensscore.gallery import gallery
    from lensscore.merge import merge

    d = _bool_scan_inputs(tmp_path, rng)
    ok = {"a0": False, "a1": False, "ps1": True}

    def typed(path):
        t = read_catalog(path)
        assert t["resampled"].dtype == bool
        return {str(i): v for i, v, s in zip(t["id"], t["resampled"].tolist(), t["status"])
                if s == "ok"}

    old = tmp_path / f"old{ext}"
    scan(d, conv_model, output=old, rotations=False)
    _age(old)
    assert "true" in (Table.read(old)["resampled"].tolist() if ext == ".fits"
                      else old.read_text())
    assert typed(old) == ok
    assert gallery(old, tmp_path / "g.html").n_shown == 3
    # shards: one written by the old version, one by this one
    s1, s2 = tmp_path / f"s1{ext}", tmp_path / f"s2{ext}"
    for s, k in ((s1, "1/2"), (s2, "2/2")):
        scan(d, conv_model, output=s, rotations=False, shard=k)
    _age(s1)
    m = merge([s1, s2], tmp_path / f"m{ext}")
    assert m.n_rows == 4 and typed(tmp_path / f"m{ext}") == ok
    # resume (the junk's error row scored again): the old rows kept, the file typed
    r = scan(d, conv_model, output=old, rotations=False, resume=True, retry_errors=True)
    assert r.n_skipped == 3 and r.n_failed == 1
    assert typed(old) == ok
    if ext == ".csv":
        assert "true" not in old.read_text() and "false" not in old.read_text()
    else:
        assert Table.read(old)["resampled"].dtype == bool


@pytest.mark.parametrize("module,args,missing", [
    ("train", ["simulate", "--n", "2", "--out", "{tmp}/sim"], "lenstronomy"),
    ("export.symmetrise", ["models/ps1.onnx", "{tmp}/s.onnx"], "onnx"),
])
def test_a_command_without_the_train_extra_says_so_in_one_line(tmp_path, module, args, missing):
    """The light install (``pip install lensscore``) has the train and export commands but not
    their libraries: a command that needs one ends in one line that names it, not a traceback."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    argv = [a.format(tmp=tmp_path) for a in args]
    code = ("import runpy, sys\n"
            f"sys.modules[{missing!r}] = None  # as if not installed\n"
            f"sys.argv = ['x', *{argv!r}]\n"
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                       timeout=120)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert err[-1] == (f"error: this command needs {missing}, which is not installed: "
                       "pip install 'lensscore[train]'")
