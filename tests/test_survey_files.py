"""Real survey file conventions: zero points, pixel scales, band names, masks (issue 15).

Each test writes small files with the headers the survey really writes (not only the keywords the
reader uses), and checks what the reader makes of them against an independent expectation.
"""

import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from lensscore.errors import BandError, CutoutError, CutoutShapeError
from lensscore.grid import Grid, ReadOptions, covers, parse_zeropoints, resample
from lensscore.io import find_sources, label_from_path, load_cutout, load_source
from lensscore.survey import (
    bad_pixel_bits,
    band_from_header,
    normalize_band,
    zeropoint_from_header,
)

HSC = ReadOptions(Grid())  # 72 px, 0.168"/px, zero point 27
BANDS = ("g", "r", "i")


def _sky(rng, n, scale, fwhm=1.0, flux=(1.0, 2.0, 3.0)):
    """(3, n, n) images of one Gaussian galaxy at the centre, per-band fluxes, in AB flux units
    of zero point 27 (one unit = mag 27), plus mild noise."""
    yy, xx = (np.mgrid[:n, :n] - (n - 1) / 2) * scale
    s = fwhm / 2.3548
    g = np.exp(-(xx ** 2 + yy ** 2) / (2 * s * s)) / (2 * np.pi * s * s) * scale ** 2
    return np.stack([1000 * f * g + rng.normal(0, 0.01, g.shape) for f in flux]).astype(np.float32)


def _wcs_header(n, scale, ps1=False):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [(n + 1) / 2] * 2
    w.wcs.cdelt = [-scale / 3600, scale / 3600]
    h = w.to_header()
    if ps1:  # PS1 stacks write the PC matrix with the old PC00i00j keywords and CDELT
        h = fits.Header()
        for k, v in (("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN"), ("CRVAL1", 150.0),
                     ("CRVAL2", 2.0), ("CRPIX1", (n + 1) / 2), ("CRPIX2", (n + 1) / 2),
                     ("CDELT1", scale / 3600), ("CDELT2", scale / 3600), ("PC001001", -1.0),
                     ("PC001002", 0.0), ("PC002001", 0.0), ("PC002002", 1.0)):
            h[k] = v
    return h


def write_ps1(d: Path, name: str, sky, exptime=(430.0, 580.0, 990.0)):
    """Pan-STARRS1 3pi stack cutouts as the image server gives them: one file per band, counts,
    zero point FPA.ZP + 2.5 log10(EXPTIME), band in HIERARCH FPA.FILTER."""
    d.mkdir(parents=True, exist_ok=True)
    n = sky.shape[-1]
    for k, b in enumerate(BANDS):
        h = _wcs_header(n, 0.25, ps1=True)
        h["PSCAMERA"] = "GPC1"
        h["STK_TYPE"] = "DEEP_STACK"
        h["SKYCELL"] = "skycell.0636.047"
        h["HIERARCH FPA.TELESCOPE"] = "PS1"
        h["HIERARCH FPA.FILTERID"] = f"{b}.00000"
        h["HIERARCH FPA.FILTER"] = f"{b}.00000"
        h["HIERARCH FPA.ZP"] = 25.0
        h["EXPTIME"] = exptime[k]
        # flux at zero point 27 -> counts at zp 25 + 2.5 log10(t): f * t * 10^(-0.8)
        counts = sky[k] * exptime[k] * 10 ** (-0.4 * 2)
        fits.PrimaryHDU(counts.astype(np.float32), header=h).writeto(d / f"{name}_{b}.fits")


def write_mef(path: Path, planes, cards) -> None:
    """An empty primary HDU, then one image HDU per plane with its header cards (dicts)."""
    hdus = [fits.PrimaryHDU()]
    for plane, c in zip(planes, cards):
        h = fits.Header()
        h.update(c)
        hdus.append(fits.ImageHDU(np.asarray(plane, np.float32), header=h))
    fits.HDUList(hdus).writeto(path)


def write_hsc_mef(path: Path, band: str, image, mask=None, fluxmag0=None):
    """An HSC data-access cutout: empty primary, IMAGE (with FLUXMAG0 at zp 27), MASK with the
    pipeline's MP_* bit keywords, VARIANCE."""
    n = image.shape[-1]
    prim = fits.PrimaryHDU()
    prim.header["TELESCOP"] = "Subaru"
    prim.header["FILTER"] = f"HSC-{band.upper()}" + ("2" if band in "ri" else "")
    img_h = _wcs_header(n, 0.168)
    img_h["EXTNAME"] = "IMAGE"
    img_h["FLUXMAG0"] = fluxmag0 if fluxmag0 is not None else 10 ** (0.4 * 27)
    m_h = fits.Header()
    m_h["EXTNAME"] = "MASK"
    for k, p in enumerate(("BAD", "SAT", "INTRP", "CR", "EDGE", "DETECTED", "DETECTED_NEGATIVE",
                           "SUSPECT", "NO_DATA", "CROSSTALK", "NOT_DEBLENDED", "UNMASKEDNAN")):
        m_h[f"HIERARCH MP_{p}"] = k
    v_h = fits.Header()
    v_h["EXTNAME"] = "VARIANCE"
    mask = np.zeros(image.shape, np.int32) if mask is None else mask
    fits.HDUList([prim, fits.ImageHDU(image.astype(np.float32), header=img_h),
                  fits.ImageHDU(mask.astype(np.int32), header=m_h),
                  fits.ImageHDU(np.full(image.shape, 1e-4, np.float32), header=v_h)]
                 ).writeto(path)


# ----------------------------------------------------------------------------- header rules


def test_band_names_of_surveys():
    assert normalize_band("g.00000") == "g" and normalize_band("i.00000") == "i"
    assert normalize_band("HSC-R2") == "r" and normalize_band("HSC-I") == "i"
    assert normalize_band("r DECam SDSS c0002 6415.0 1480.0") == "r"
    h = fits.Header()
    h["HIERARCH FPA.FILTER"] = "r.00000"
    assert band_from_header(h) == "r"
    h2 = fits.Header()
    h2["EXTNAME"] = "IMAGE"
    assert band_from_header(h2) is None  # says what the plane is, not its band
    h2["FILTNAM"] = "F814W"
    assert band_from_header(h2) == "f814w"


def test_zero_points_of_surveys():
    ps1 = fits.Header()
    ps1["HIERARCH FPA.ZP"] = 25.0
    ps1["EXPTIME"] = 580.0
    assert zeropoint_from_header(ps1) == pytest.approx(25 + 2.5 * math.log10(580))
    des = fits.Header()
    des["MAGZERO"] = 30.0
    assert zeropoint_from_header(des) == 30.0
    hsc = fits.Header()
    hsc["FLUXMAG0"] = 63095734448.0194  # 10^(0.4 * 27)
    assert zeropoint_from_header(hsc) == pytest.approx(27.0)
    ls = fits.Header()
    ls["BUNIT"] = "nanomaggy"
    assert zeropoint_from_header(ls) == 22.5
    rubin = fits.Header()
    rubin["BUNIT"] = "nJy"
    assert zeropoint_from_header(rubin) == pytest.approx(31.4)
    assert zeropoint_from_header(fits.Header()) is None
    # the extension's keyword wins over the primary's
    assert zeropoint_from_header(des, hsc) == 30.0 and zeropoint_from_header(None, hsc) == 27.0


def test_mask_bits_from_mp_keywords_and_defaults():
    h = fits.Header()
    for p, k in (("BAD", 0), ("SAT", 1), ("DETECTED", 5), ("NO_DATA", 8), ("EDGE", 4)):
        h[f"HIERARCH MP_{p}"] = k
    bits = bad_pixel_bits(h)
    assert bits & (1 << 5) == 0  # a detected source is not bad
    assert bits == (1 << 0) | (1 << 1) | (1 << 4) | (1 << 8)
    assert bad_pixel_bits(fits.Header()) & (1 << 0) and not bad_pixel_bits(fits.Header()) & 32


def test_parse_zeropoints():
    assert parse_zeropoints("g=27,r=27.5,HSC-I=28") == (("g", 27.0), ("r", 27.5), ("i", 28.0))
    with pytest.raises(ValueError, match="BAND=ZP"):
        parse_zeropoints("g:27")
    for text, shown in (("27", "'27'"), ("g=x", "'g=x'")):  # what was typed, not "27=None"
        with pytest.raises(ValueError, match=f"got {shown}$"):
            parse_zeropoints(text)


# ----------------------------------------------------------------------------- grid


def test_resample_conserves_flux_and_centre(rng):
    sky = _sky(rng, 120, 0.25)[1]
    out = resample(sky, 0.25, 0.168, 72)
    ref = _sky(np.random.default_rng(0), 72, 0.168)[1]
    # total flux of the galaxy (well inside the field) is kept; the peak stays at the centre
    assert out.sum() == pytest.approx(ref.sum(), rel=0.03)
    assert np.unravel_index(out.argmax(), out.shape) in {(35, 35), (35, 36), (36, 35), (36, 36)}
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.99
    # downsampling too (anti-aliased)
    down = resample(ref, 0.168, 0.25, 48)
    assert down.sum() == pytest.approx(ref.sum(), rel=0.03)
    assert covers((120, 120), 0.25, Grid()) and not covers((40, 40), 0.25, Grid())


def _resample_2d(plane, scale_in, scale_out, size):
    """resample as scipy's 2-D calls compute it (the separable operator must equal them)."""
    from scipy import ndimage

    img = np.asarray(plane, np.float64)
    ratio = scale_out / scale_in
    if ratio > 1:
        img = ndimage.gaussian_filter(img, 0.5 * math.sqrt(ratio * ratio - 1), mode="nearest")
    off = (np.arange(size) - (size - 1) / 2) * ratio
    yy, xx = np.meshgrid((img.shape[0] - 1) / 2 + off, (img.shape[1] - 1) / 2 + off,
                         indexing="ij")
    out = ndimage.map_coordinates(img, [yy, xx], order=3, mode="nearest", prefilter=True)
    return (out * ratio * ratio).astype(np.float32)


@pytest.mark.parametrize("shape, scale_in, scale_out, size", [
    ((120, 120), 0.25, 0.168, 72),     # PS1 onto HSC: upsampled
    ((121, 119), 0.262, 0.168, 72),    # DES-like, odd and non-square
    ((72, 72), 0.168, 0.25, 48),       # HSC onto PS1: smoothed, then downsampled
    ((90, 130), 0.1, 0.168, 72),       # finer pixels, wide
])
def test_resample_equals_scipys_2d_interpolation(rng, shape, scale_in, scale_out, size):
    sky = rng.normal(0, 1, shape).astype(np.float32)  # noise: every pixel matters
    sky[shape[0] // 2, shape[1] // 2] += 50  # and a point source
    ref = _resample_2d(sky, scale_in, scale_out, size)
    got = resample(sky, scale_in, scale_out, size)
    assert got.shape == (size, size) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    # the operator is cached per geometry and read-only; a second call gives the same
    from lensscore.grid import _axis_operator

    op = _axis_operator(shape[0], scale_out / scale_in, size)
    assert op is _axis_operator(shape[0], scale_out / scale_in, size)
    assert op.shape == (size, shape[0]) and not op.flags.writeable
    assert np.array_equal(resample(sky, scale_in, scale_out, size), got)


# ----------------------------------------------------------------------------- real layouts


def test_ps1_per_band_stack_files(tmp_path, rng):
    sky = _sky(rng, 120, 0.25)
    write_ps1(tmp_path / "lenses" / "J1234", "J1234", sky)
    (src,) = find_sources(tmp_path, BANDS)
    assert src.label == 1
    c = load_source(src, BANDS, 72, HSC)
    assert c.pixscale_in == pytest.approx(0.25, rel=1e-6) and c.resampled
    assert c.zp_source == "header" and c.band_source == "header"
    assert c.data.shape == (3, 72, 72)
    # on zero point 27 and 0.168"/px: the same galaxy drawn directly on the model's grid
    expect = np.stack([resample(p, 0.25, 0.168, 72) for p in sky])
    np.testing.assert_allclose(c.data, expect, rtol=1e-4, atol=1e-4)
    # colours: band flux ratios 1:2:3 as drawn, whatever the per-band exposure times
    tot = c.data.sum(axis=(1, 2))
    np.testing.assert_allclose(tot / tot[0], [1, 2, 3], rtol=0.02)
    assert np.isfinite(c.ra) and c.ra == pytest.approx(150.0, abs=1e-4)


def test_ps1_too_small_after_resampling_is_an_error(tmp_path, rng):
    write_ps1(tmp_path, "tiny", _sky(rng, 40, 0.25))  # 10" < the model's 12.1"
    (src,) = find_sources(tmp_path, BANDS)
    with pytest.raises(CutoutShapeError, match="smaller than the model's field"):
        load_source(src, BANDS, 72, HSC)


def test_only_some_bands_state_a_zero_point_is_an_error(tmp_path, rng):
    sky = _sky(rng, 72, 0.168)
    write_mef(tmp_path / "mixed.fits", sky,
              [{**_wcs_header(72, 0.168), "FILTER": b, **({} if b == "i" else {"MAGZERO": 27.0})}
               for b in BANDS])
    with pytest.raises(CutoutError, match="not for i"):
        load_cutout(tmp_path / "mixed.fits", BANDS, 72, options=HSC)
    # --zeropoint completes it
    opts = ReadOptions(Grid(), zeropoints=(("i", 27.0),))
    c = load_cutout(tmp_path / "mixed.fits", BANDS, 72, options=opts)
    assert c.zp_source == "option"
    np.testing.assert_allclose(c.data, sky, rtol=1e-6)


def test_des_mef_with_different_zero_points_per_band(tmp_path, rng):
    """DES coadds state MAGZERO per band (30 here for g, 31 for r, 30.5 for i): colours come out
    as drawn once every band is on the model's zero point."""
    sky = _sky(rng, 80, 0.263)
    zps = (30.0, 31.0, 30.5)
    write_mef(tmp_path / "des.fits", [p * 10 ** (0.4 * (zp - 27)) for p, zp in zip(sky, zps)],
              [{**_wcs_header(80, 0.263), "FILTER": f"{b} DECam SDSS c0001 4720.0 1520.0",
                "MAGZERO": zp, "BUNIT": "counts/s"} for b, zp in zip(BANDS, zps)])
    c = load_cutout(tmp_path / "des.fits", BANDS, 72, options=HSC)
    assert c.resampled and c.zp_source == "header" and c.pixscale_in == pytest.approx(0.263)
    expect = np.stack([resample(p, 0.263, 0.168, 72) for p in sky])
    np.testing.assert_allclose(c.data, expect, rtol=1e-4, atol=1e-4)


def test_legacy_survey_cube_in_nanomaggies(tmp_path, rng):
    sky = _sky(rng, 64, 0.262)  # Legacy Survey: 0.262"/px, g r z (+ i here), nanomaggies
    h = _wcs_header(64, 0.262)
    h["BANDS"] = "gri"
    h["BUNIT"] = "nanomaggy"
    h["SURVEY"] = "LegacySurvey"
    cube = sky * 10 ** (0.4 * (22.5 - 27))
    fits.PrimaryHDU(cube.astype(np.float32), header=h).writeto(tmp_path / "ls.fits")
    c = load_cutout(tmp_path / "ls.fits", BANDS, 72, options=HSC)
    assert c.zp_source == "header" and c.band_source == "header" and c.resampled
    np.testing.assert_allclose(c.data, np.stack([resample(p, 0.262, 0.168, 72) for p in sky]),
                               rtol=1e-4, atol=1e-4)


def test_rubin_coadd_in_njy(tmp_path, rng):
    sky = _sky(rng, 72, 0.168)
    for k, b in enumerate(BANDS):  # one deepCoadd cutout per band, nJy, MASK/VARIANCE planes
        prim = fits.PrimaryHDU()
        prim.header["FILTER"] = b
        h = _wcs_header(72, 0.168)
        h["EXTNAME"] = "IMAGE"
        h["BUNIT"] = "nJy"
        m = fits.ImageHDU(np.zeros((72, 72), np.int32), name="MASK")
        v = fits.ImageHDU(np.ones((72, 72), np.float32), name="VARIANCE")
        fits.HDUList([prim, fits.ImageHDU(sky[k] * 10 ** (0.4 * (31.4 - 27)), header=h), m, v]
                     ).writeto(tmp_path / f"obj_{b}.fits")
    (src,) = find_sources(tmp_path, BANDS)
    c = load_source(src, BANDS, 72, HSC)
    assert not c.resampled and c.zp_source == "header"
    np.testing.assert_allclose(c.data, sky, rtol=1e-5, atol=1e-6)


def test_hsc_mef_with_mask_scores_like_its_image_planes_in_a_cube(tmp_path, rng):
    from lensscore import Scorer

    from onnx_models import make_model

    sky = _sky(rng, 72, 0.168)
    det = np.zeros((72, 72), np.int32)
    det[30:42, 30:42] = 1 << 5  # DETECTED: the galaxy, not bad
    for b, img in zip(BANDS, sky):
        write_hsc_mef(tmp_path / f"obj-HSC-{b.upper()}.fits", b, img, det)
    cube_h = fits.Header()
    cube_h.update(_wcs_header(72, 0.168))
    for k, b in enumerate(BANDS):
        cube_h[f"BAND{k}"] = b
    fits.PrimaryHDU(sky, header=cube_h).writeto(tmp_path / "cube.fits")
    srcs = {s.id: s for s in find_sources(tmp_path, BANDS)}
    assert set(srcs) == {"obj", "cube"}
    mef = load_source(srcs["obj"], BANDS, 72, HSC)
    cube = load_source(srcs["cube"], BANDS, 72, HSC)
    assert mef.band_source == "header" and mef.zp_source == "header" and mef.n_nonfinite == 0
    np.testing.assert_allclose(mef.data, cube.data, rtol=1e-5, atol=1e-6)
    sc = Scorer(make_model(tmp_path / "m.onnx"))
    assert sc.score(mef.data) == pytest.approx(sc.score(cube.data), abs=1e-6)
    # a BAD pixel is replaced (by the band's median) and counted; so is NO_DATA
    bad = det.copy()
    bad[0, 0] |= 1
    bad[1, 1] |= 1 << 8
    write_hsc_mef(tmp_path / "bad.fits", "g", sky[0], bad)
    d = load_cutout({"g": tmp_path / "bad.fits", "r": tmp_path / "obj-HSC-R.fits",
                     "i": tmp_path / "obj-HSC-I.fits"}, BANDS, 72, options=HSC)
    assert d.n_nonfinite == 2
    assert d.data[0, 0, 0] == pytest.approx(np.median(np.delete(sky[0].ravel(), [0, 73])))


def test_per_band_file_whose_header_contradicts_its_name(tmp_path, rng):
    sky = _sky(rng, 72, 0.168)
    for k, b in enumerate(BANDS):
        h = fits.Header()
        h["FILTER"] = "r" if b == "g" else b  # the g file is really an r image
        fits.PrimaryHDU(sky[k], header=h).writeto(tmp_path / f"x_{b}.fits")
    (src,) = find_sources(tmp_path, BANDS)
    with pytest.raises(BandError, match="header says r"):
        load_source(src, BANDS, 72, HSC)


def test_mef_with_one_unnamed_plane_is_never_read_by_position(tmp_path, rng):
    sky = _sky(rng, 72, 0.168)
    hdus = [fits.PrimaryHDU()]
    for k, b in enumerate(("i", None, "g")):  # r unnamed; planes in i, ?, g order
        h = fits.Header()
        if b:
            h["FILTER"] = b
        hdus.append(fits.ImageHDU(sky[k], header=h))
    fits.HDUList(hdus).writeto(tmp_path / "swap.fits")
    with pytest.raises(BandError, match="missing band"):
        load_cutout(tmp_path / "swap.fits", BANDS, 72, options=HSC)
    # all named, in another order: read by name
    hdus[2].header["FILTER"] = "r"
    fits.HDUList(hdus).writeto(tmp_path / "named.fits")
    c = load_cutout(tmp_path / "named.fits", BANDS, 72, options=HSC)
    np.testing.assert_array_equal(c.data, sky[[2, 1, 0]])
    assert c.band_source == "header"
    # none named and three planes: by position, and the cutout says so
    for h in hdus[1:]:
        h.header.remove("FILTER", ignore_missing=True)
    fits.HDUList(hdus).writeto(tmp_path / "anon.fits")
    assert load_cutout(tmp_path / "anon.fits", BANDS, 72, options=HSC).band_source == "position"


def test_no_pixel_scale_assumed_or_given(tmp_path, rng):
    sky = _sky(rng, 120, 0.25)
    h = fits.Header()
    for k, b in enumerate(BANDS):
        h[f"BAND{k}"] = b
    fits.PrimaryHDU(sky, header=h).writeto(tmp_path / "nowcs.fits")
    c = load_cutout(tmp_path / "nowcs.fits", BANDS, 72, options=HSC)
    assert math.isnan(c.pixscale_in) and not c.resampled and c.zp_source == "assumed"
    c = load_cutout(tmp_path / "nowcs.fits", BANDS, 72, options=ReadOptions(Grid(), 0.25))
    assert c.pixscale_in == 0.25 and c.resampled


def test_labels_only_below_the_scanned_root(tmp_path, rng):
    root = tmp_path / "lens_group" / "run1"
    write_ps1(root / "a", "a", _sky(rng, 60, 0.25))
    write_ps1(root / "lenses" / "b", "b", _sky(rng, 60, 0.25))
    labels = {s.id: s.label for s in find_sources(root, BANDS)}
    assert labels == {"a/a": None, "lenses/b/b": 1}
    assert label_from_path(root / "x.fits", root) is None
    assert label_from_path(root / "nonlenses" / "x.fits", root) == 0
    assert label_from_path(tmp_path / "lenses" / "x.fits", tmp_path / "lenses") == 1


# ----------------------------------------------------------------------------- CLI


def test_scan_cli_grid_options_and_columns(tmp_path, rng):
    import csv

    from onnx_models import make_model
    from typer.testing import CliRunner

    from lensscore.cli import app

    runner = CliRunner()
    ps1 = make_model(tmp_path / "ps1.onnx", size=48,
                     extra_meta={"lensscore.pixel_scale": "0.25", "lensscore.zeropoint": "25",
                                 "lensscore.survey": "ps1"})
    r = runner.invoke(app, ["info", ps1, "--json"])
    assert r.exit_code == 0 and '"pixel_scale": 0.25' in r.stdout and '"survey": "ps1"' in r.stdout
    data = tmp_path / "in"
    write_ps1(data / "lenses" / "a", "a", _sky(rng, 60, 0.25))
    h = fits.Header()
    for k, b in enumerate(BANDS):
        h[f"BAND{k}"] = b
    (data / "nonlenses").mkdir()
    fits.PrimaryHDU(_sky(rng, 72, 0.168), header=h).writeto(data / "nonlenses" / "nowcs.fits")
    out = tmp_path / "c.csv"
    r = runner.invoke(app, ["scan", str(data), "-m", ps1, "-o", str(out), "--pixel-scale", "0.168",
                            "--top", "0"])
    assert r.exit_code == 0, r.output
    assert '48px at 0.25"/px, zero point 25' in r.stderr
    with open(out) as fh:
        rows = {x["id"]: x for x in csv.DictReader(fh)}
    a, b = rows["lenses/a/a"], rows["nonlenses/nowcs"]
    assert (a["resampled"], a["zp_source"], a["band_source"]) == ("False", "header", "header")
    assert float(b["pixscale_in"]) == 0.168 and b["resampled"] == "True"
    assert b["zp_source"] == "assumed"
    # without --pixel-scale the header-less file is read at the model's scale, said once
    r = runner.invoke(app, ["scan", str(data / "nonlenses"), "-m", ps1, "--top", "0"])
    assert r.exit_code == 0 and "state no pixel scale" in r.stderr
    # bad options: exit 2 before any work
    for bad in (["--zeropoint", "g:27"], ["--zeropoint", "z=27"]):
        r = runner.invoke(app, ["scan", str(data), "-m", ps1, *bad])
        assert r.exit_code == 2 and "zeropoint" in r.stderr, r.output


def test_rotations_auto_samples_invariant_models_and_catches_a_false_claim(tmp_path, rng):
    """Issue 17: a model that says it is rotation-invariant is scored once per cutout, with the
    rotations of a deterministic sample; a false claim is caught and reported."""
    import csv

    from conftest import write_cube
    from onnx_models import make_model
    from typer.testing import CliRunner

    from lensscore import scan
    from lensscore.cli import app
    from lensscore.scan import ROTATION_SAMPLE_MIN

    (tmp_path / "d").mkdir()
    for k in range(80):  # an off-centre blob in noise: not symmetric under rotation
        img = rng.normal(0, 1, (3, 72, 72)).astype(np.float32)
        img[:, 10:20, 40:60] += 20
        write_cube(tmp_path / "d" / f"c{k:03d}.fits", img)
    d4 = make_model(tmp_path / "d4.onnx", arch="d4")
    rot = make_model(tmp_path / "rot.onnx", arch="rot")
    liar = make_model(tmp_path / "liar.onnx", arch="conv",
                      extra_meta={"lensscore.rotation_invariant": "true",
                                  "lensscore.invariance": "D4"})
    r = scan(tmp_path / "d", d4, output=tmp_path / "a.csv")
    assert r.rotation_mode == "sample" and not r.invariance_violated
    with open(tmp_path / "a.csv") as fh:
        rows = list(csv.DictReader(fh))
    measured = [x for x in rows if x["score_r0"] != ""]
    # about ROTATION_SAMPLE_MIN of 80 (hash-chosen, so not exactly)
    assert ROTATION_SAMPLE_MIN // 2 <= len(measured) <= 3 * ROTATION_SAMPLE_MIN
    assert r.stability()["n"] == len(measured)
    assert all(float(x["score_r0"]) == float(x["score"]) for x in measured)
    assert all(x["score_m3"] != "" and float(x["mirror_delta"]) == 0 for x in measured)
    assert scan(tmp_path / "d", d4, rotations=True).stability()["n"] == 80
    assert scan(tmp_path / "d", d4, rotations=False).rotation_scores is None
    # a C4 model is checked on every cutout: its rotations hold, its mirror images differ
    c4 = scan(tmp_path / "d", rot)
    assert c4.rotation_mode == "all" and c4.mirror()["n"] == 80 and not c4.invariance_violated
    assert c4.mirror()["delta_max"] > 1e-5
    res = CliRunner().invoke(app, ["scan", str(tmp_path / "d"), "-m", liar, "--top", "3"])
    assert res.exit_code == 0, res.output
    assert "invariance check on a sample of" in res.stdout
    assert "says it is invariant to rotations and mirror images" in res.stderr


def test_a_sample_that_draws_no_cutout_is_said_not_hidden(tmp_path, rng):
    """The D4 check's sample is hash-chosen (about ROTATION_SAMPLE_MIN cutouts), so a small scan
    can draw none: the summary says so rather than printing nothing."""
    from conftest import write_cube
    from onnx_models import make_model
    from typer.testing import CliRunner

    from lensscore.cli import app
    from lensscore.scan import ROTATION_SAMPLE_MIN, shard_of

    n = 2 * ROTATION_SAMPLE_MIN  # k = n // ROTATION_SAMPLE_MIN = 2: ids with shard 1 are sampled
    names = [f"c{k:04d}" for k in range(400) if shard_of(f"c{k:04d}", 2) != 1][:n]
    (tmp_path / "d").mkdir()
    for name in names:
        write_cube(tmp_path / "d" / f"{name}.fits", rng.normal(0, 1, (3, 72, 72)).astype(np.float32))
    d4 = make_model(tmp_path / "d4.onnx", arch="d4")
    r = CliRunner().invoke(app, ["scan", str(tmp_path / "d"), "-m", d4, "--top", "0"])
    assert r.exit_code == 0, r.output
    assert "no scored cutout of this scan (or shard) was in the hash-chosen sample" in r.stdout
    advice = CliRunner().invoke(app, ["scan", str(tmp_path / "d"), "-m", d4, "--top", "0",
                                      "--rotations"])  # what the line advises works
    assert advice.exit_code == 0 and f"stability over {n} cutouts" in advice.stdout


def test_cli_text_is_not_eaten_as_markup_and_one_class_says_na(tmp_path, rng, capsys):
    """Issue 18: '[default: …]' in help and '[parquet]' in messages survive; one labelled class
    prints n/a for ROC AUC instead of nan."""
    from conftest import write_cube
    from onnx_models import make_model
    from typer.testing import CliRunner

    from lensscore.cli import _fail, app

    runner = CliRunner()
    r = runner.invoke(app, ["scan", "--help"])
    assert "[default: the shipped" in r.stdout and "[dask]" in r.stdout
    import typer

    with pytest.raises(typer.Exit):
        _fail("pip install 'lensscore[parquet]'", 1)
    assert "lensscore[parquet]" in capsys.readouterr().err
    (tmp_path / "lenses").mkdir()
    write_cube(tmp_path / "lenses" / "a.fits", rng.normal(0, 1, (3, 72, 72)).astype(np.float32))
    m = make_model(tmp_path / "m.onnx")
    r = runner.invoke(app, ["scan", str(tmp_path / "lenses"), "-m", m, "--top", "0"])
    assert r.exit_code == 0 and "ROC AUC and TPR@FPR n/a (only one class" in r.stdout
    assert "nan" not in r.stdout
