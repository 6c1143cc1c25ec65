"""Real Pan-STARRS1 files (../shared/realdata/ps1-sled-dev, never committed): the reader of raw
survey files agrees with an independent calibration, and a scan needs no options."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lensscore.cli import app
from lensscore.grid import Grid, ReadOptions
from lensscore.io import find_sources, load_source
from lensscore.preprocess import preprocess

ROOT = Path(__file__).resolve().parent.parent
REAL = Path(os.environ.get("LENSSCORE_REALDATA", ROOT.parent / "shared" / "realdata")) / "ps1-sled-dev"
pytestmark = pytest.mark.skipif(not (REAL / "raw").is_dir(),
                                reason=f"real data not here ({REAL}): ../shared is absent")
BANDS = ("g", "r", "i")
runner = CliRunner()


def _pairs(step: int):
    raw = {}
    for s in find_sources(REAL / "raw", BANDS):
        raw[s.id.rsplit("/", 1)[0]] = s  # raw/lenses/NAME/NAME_{g,r,i} -> lenses/NAME
    cal = find_sources(REAL / "cal", BANDS)
    return [(raw[c.id], c) for c in cal[::step]]


def _agreement(step: int):
    opts = ReadOptions(Grid())  # the HSC grid the cal/ set was made for: 72 px, 0.168", zp 25->27
    corr = []
    for r, c in _pairs(step):
        a = load_source(r, BANDS, 72, opts)
        b = load_source(c, BANDS, 72, opts)
        assert a.resampled and not b.resampled and a.zp_source == "header"
        assert a.pixscale_in == pytest.approx(0.25, rel=1e-3)
        corr.append(np.corrcoef(preprocess(a.data).ravel(), preprocess(b.data).ravel())[0, 1])
    corr = np.array(corr)
    assert np.median(corr) >= 0.95 and corr.min() >= 0.9, (np.median(corr), corr.min())
    return corr


def test_raw_reading_agrees_with_the_independent_calibration_sample():
    """Every 5th object (lenses, field sources, sky): calibration + resampling + preprocess of
    raw/ against preprocess(cal/)."""
    assert len(_agreement(5)) >= 100


@pytest.mark.slow
def test_raw_reading_agrees_with_the_independent_calibration_all():
    assert len(_agreement(1)) == 550


def _subset(tmp_path, n=3):
    """A small raw/ tree of links: n lenses, n field sources, n sky positions."""
    out = tmp_path / "raw"
    for sub in ("lenses", "nonlenses/src", "nonlenses/sky"):
        (out / sub).mkdir(parents=True)
        for d in sorted((REAL / "raw" / sub).iterdir())[:n]:
            (out / sub / d.name).symlink_to(d, target_is_directory=True)
    return out


def _check_catalog(path, n):
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n
    for r in rows:
        assert r["status"] == "ok" and float(r["pixscale_in"]) == pytest.approx(0.25, rel=1e-3)
        assert r["zp_source"] == "header" and r["band_source"] == "header"
    return rows


def test_scan_raw_ps1_files_with_no_options(tmp_path):
    raw = _subset(tmp_path)
    out = tmp_path / "c.csv"
    r = runner.invoke(app, ["scan", str(raw), "-o", str(out), "--top", "0"])
    assert r.exit_code == 0, r.output
    rows = _check_catalog(out, 9)
    assert all(x["resampled"] == "True" for x in rows)  # 0.25" -> the HSC model's 0.168"
    assert {x["label"] for x in rows} == {"0", "1"}
    # the PS1 model's grid is the files' own: cropped, never resampled
    ps1 = ROOT / "models" / "ps1.onnx"
    if ps1.exists():
        r = runner.invoke(app, ["scan", str(raw), "-m", str(ps1), "-o", str(tmp_path / "p.csv"),
                                "--top", "0"])
        assert r.exit_code == 0, r.output
        rows = _check_catalog(tmp_path / "p.csv", 9)
        assert all(x["resampled"] == "False" for x in rows)
        # ps1.onnx was fine-tuned on these very cutouts: the scan says so, row by row
        assert all(x["in_training"] == "True" for x in rows)
        assert "9 of 9 inputs are cutouts this model was trained on" in r.output


def _crop(src_dir, out_dir, rows, cols):
    """The per-band stamps of one raw object cropped to data[rows, cols], the WCS moved with
    them (another cutout of the same sky: other pixels on the model's grid)."""
    from astropy.io import fits

    out_dir.mkdir(parents=True)
    for f in sorted(src_dir.glob("*.fits")):
        with fits.open(f) as h:
            hdr, data = h[0].header.copy(), h[0].data[rows, cols]
        hdr["CRPIX1"] -= cols.start
        hdr["CRPIX2"] -= rows.start
        fits.PrimaryHDU(data, header=hdr).writeto(out_dir / f.name)


def test_ps1_marks_its_training_objects_cut_from_other_files(tmp_path):
    """ps1.onnx records where on the sky its 550 training cutouts are centred: the same lens
    cut again half an arcsecond off (other pixels, other digests) is still marked in_training;
    cut 2.5" off it is another cutout. WCS-less copies (cal/) cannot be placed: the scan says so."""
    ps1 = ROOT / "models" / "ps1.onnx"
    lens = sorted((REAL / "raw" / "lenses").iterdir())[0]
    _crop(lens, tmp_path / "d" / "lenses" / "near", slice(0, 116), slice(2, 118))  # 2 px off
    _crop(lens, tmp_path / "d" / "lenses" / "far", slice(0, 100), slice(10, 110))  # 10 px off
    out = tmp_path / "p.csv"
    r = runner.invoke(app, ["scan", str(tmp_path / "d"), "-m", str(ps1), "-o", str(out),
                            "--top", "0"])
    assert r.exit_code == 0, r.output
    with open(out) as fh:
        rows = {x["id"].split("/")[1]: x["in_training"] for x in csv.DictReader(fh)}
    assert rows == {"near": "True", "far": "False"}, rows
    assert "1 of 2 inputs are cutouts this model was trained on" in r.output
    cal = sorted((REAL / "cal" / "lenses").glob("*.fits"))[:2]
    r = runner.invoke(app, ["scan", *map(str, cal), "-m", str(ps1), "--top", "0"])
    said = " ".join(r.output.split())
    assert r.exit_code == 0 and "2 of these 2 labelled inputs have no sky position" in said
    assert "labels (not verified unseen): 2 lenses" in said


@pytest.mark.slow
def test_scan_all_raw_ps1_files(tmp_path):
    out = tmp_path / "c.csv"
    r = runner.invoke(app, ["scan", str(REAL / "raw"), "-o", str(out), "--top", "0"])
    assert r.exit_code == 0, r.output
    assert all(x["resampled"] == "True" for x in _check_catalog(out, 550))


def test_fast_reader_reads_real_ps1_files_as_astropy_does():
    """Every raw PS1 file (2-D float, 167 cards with HIERARCH, PC00i00j WCS) is read by the
    fast path with astropy's pixels and header values, and its plain-TAN centre and scale are
    astropy's WCS's."""
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_scales

    from lensscore.fastfits import read_simple_cube
    from lensscore.readers import _wcs_cards
    from lensscore.tanwcs import simple_tan

    files = sorted((REAL / "raw").rglob("*.fits"))
    assert len(files) > 1000
    for k, f in enumerate(files[::3]):
        got = read_simple_cube(str(f))
        assert got is not None, f
        data, head = got
        with fits.open(f) as h:
            np.testing.assert_array_equal(data, h[0].data.astype(np.float32))
            for key, v in head.items():
                assert h[0].header[key] == v and type(h[0].header[key]) is type(v), (f, key)
            if k % 10:
                continue
            tan = simple_tan(head)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                w = WCS(_wcs_cards(h[0].header)).celestial
        ra, dec = w.all_pix2world([[59.5, 59.5]], 0)[0]
        r2, d2 = tan.pix2world(59.5, 59.5)
        assert abs((r2 - ra + 180) % 360 - 180) < 1e-9 and abs(d2 - dec) < 1e-9
        np.testing.assert_allclose(tan.pixel_scales(), proj_plane_pixel_scales(w), rtol=1e-12)
