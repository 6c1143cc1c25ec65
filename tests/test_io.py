import gzip
import shutil

import numpy as np
import pytest
from astropy.io import fits

from conftest import fake_cutout, sky_wcs, write_cube, write_mef, write_per_band
from lensscore import errors, load_cutout
from lensscore.io import find_sources, label_from_path, normalize_band


@pytest.mark.parametrize("style", ["BAND", "BANDS", "FILTER"])
def test_cube_band_keywords(tmp_path, rng, style):
    data = fake_cutout(rng)
    # store the planes as i, g, r: they must come back in the model's order g, r, i
    p = write_cube(tmp_path / "c.fits", data[[2, 0, 1]], bands=("i", "g", "r"), style=style)
    c = load_cutout(p)
    assert c.bands == ("g", "r", "i")
    np.testing.assert_array_equal(c.data, data)
    assert c.id == "c"


def test_cube_without_names_is_positional(tmp_path, rng):
    data = fake_cutout(rng)
    p = write_cube(tmp_path / "c.fits", data, style=None)
    np.testing.assert_array_equal(load_cutout(p).data, data)


def test_mef_hsc_names_and_crop_and_wcs(tmp_path, rng):
    data = fake_cutout(rng, n=81)
    p = write_mef(tmp_path / "m.fits", data[[1, 2, 0]], bands=("HSC-R2", "HSC-I", "HSC-G"))
    c = load_cutout(p, size=72)
    assert c.data.shape == (3, 72, 72)
    np.testing.assert_array_equal(c.data, data[:, 4:76, 4:76])
    # the crop's centre is 0-based pixel 4 + 35.5 of the 81-px image
    ra, dec = sky_wcs(81).all_pix2world([[39.5, 39.5]], 0)[0]
    assert (c.ra, c.dec) == pytest.approx((ra, dec), abs=1e-10)
    assert abs(c.ra - 150.1) < 1e-3
    assert c.wcs is not None and c.wcs.pixel_shape in (None, (72, 72))


def test_crop_offset_moves_radec(tmp_path, rng):
    data = fake_cutout(rng, n=100)
    p = write_cube(tmp_path / "c.fits", data)
    c = load_cutout(p, size=72)
    w = sky_wcs(100)
    ra, dec = w.all_pix2world([[14 + 35.5, 14 + 35.5]], 0)[0]
    assert (c.ra, c.dec) == pytest.approx((ra, dec), abs=1e-10)


def test_per_band_files_grouped(tmp_path, rng):
    data = fake_cutout(rng)
    write_per_band(tmp_path, "objA", data)
    write_per_band(tmp_path, "objB", data * 2)
    src = find_sources(tmp_path)
    assert [s.id for s in src] == ["objA", "objB"]
    assert "{g,r,i}" in src[0].path
    from lensscore.io import load_source

    c = load_source(src[1], ("g", "r", "i"), 72)
    np.testing.assert_array_equal(c.data, data * 2)
    assert np.isfinite(c.ra)


def test_hsc_per_band_names(tmp_path, rng):
    data = fake_cutout(rng)
    for b, plane in zip("GRI", data):
        fits.PrimaryHDU(plane).writeto(tmp_path / f"cutout-HSC-{b}-9813-5,3-obj7.fits")
    (s,) = find_sources(tmp_path)
    assert s.id == "cutout-9813-5,3-obj7"
    from lensscore.io import load_source

    np.testing.assert_array_equal(load_source(s, ("g", "r", "i"), 72).data, data)


def test_gzip_and_tile_compressed(tmp_path, rng):
    data = fake_cutout(rng)
    p = write_cube(tmp_path / "c.fits", data)
    with open(p, "rb") as fi, gzip.open(tmp_path / "c2.fits.gz", "wb") as fo:
        shutil.copyfileobj(fi, fo)
    np.testing.assert_array_equal(load_cutout(tmp_path / "c2.fits.gz").data, data)
    hdus = [fits.PrimaryHDU()]
    for b, plane in zip("gri", data):
        hdus.append(fits.CompImageHDU(plane, name=b, compression_type="GZIP_2",
                                      quantize_level=0.0))
    fits.HDUList(hdus).writeto(tmp_path / "c3.fits.fz")
    c = load_cutout(tmp_path / "c3.fits.fz")
    np.testing.assert_allclose(c.data, data, rtol=0, atol=0)
    assert c.id == "c3"


def test_nan_pixels_replaced_and_counted(tmp_path, rng):
    data = fake_cutout(rng)
    data[1, 3:5, 3:6] = np.nan
    data[2, 0, 0] = np.inf
    c = load_cutout(write_cube(tmp_path / "c.fits", data))
    assert c.n_nonfinite == 7 and np.isfinite(c.data).all()


def test_integer_blank_and_bscale(tmp_path, rng):
    data = (fake_cutout(rng) * 10).astype(np.int32)
    data[0, 0, 0] = -999
    hdu = fits.PrimaryHDU(data)
    hdu.header["BLANK"] = -999
    hdu.header["BAND0"], hdu.header["BAND1"], hdu.header["BAND2"] = "g", "r", "i"
    hdu.writeto(tmp_path / "i.fits")
    c = load_cutout(tmp_path / "i.fits")
    assert c.n_nonfinite == 1
    assert c.data[1, 5, 5] == data[1, 5, 5]


def _err(path, **kw):
    with pytest.raises(errors.CutoutError) as ei:
        load_cutout(path, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg
    return ei.value


def test_error_messages(tmp_path, rng):
    data = fake_cutout(rng)
    good = write_cube(tmp_path / "good.fits", data)
    raw = good.read_bytes()
    (tmp_path / "trunc.fits").write_bytes(raw[: len(raw) // 2])
    assert isinstance(_err(tmp_path / "trunc.fits"), errors.TruncatedFITSError)
    (tmp_path / "hdr_only.fits").write_bytes(raw[:2880])
    assert isinstance(_err(tmp_path / "hdr_only.fits"), errors.TruncatedFITSError)
    (tmp_path / "text.fits").write_text("this is not fits\n")
    assert isinstance(_err(tmp_path / "text.fits"), errors.NotFITSError)
    (tmp_path / "empty.fits").write_bytes(b"")
    assert "empty" in _err(tmp_path / "empty.fits").reason
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column("a", "E", array=np.zeros(3))])]).writeto(tmp_path / "table.fits")
    assert isinstance(_err(tmp_path / "table.fits"), errors.NoImageError)
    fits.PrimaryHDU(data[0]).writeto(tmp_path / "twod.fits")
    e = _err(tmp_path / "twod.fits")
    assert isinstance(e, errors.BandError) and "3 bands" in e.reason
    write_cube(tmp_path / "small.fits", data[:, :50, :50])
    e = _err(tmp_path / "small.fits")
    assert isinstance(e, errors.CutoutShapeError) and "50x50" in e.reason
    nan = data.copy()
    nan[2] = np.nan
    e = _err(write_cube(tmp_path / "nan.fits", nan))
    assert isinstance(e, errors.BadPixelsError) and "band i" in e.reason
    e = _err(write_cube(tmp_path / "gz.fits", data, bands=("g", "r", "z")))
    assert isinstance(e, errors.BandError) and "missing band(s) i" in e.reason
    fits.PrimaryHDU(np.zeros(10, np.float32)).writeto(tmp_path / "oned.fits")
    assert "1-D" in _err(tmp_path / "oned.fits").reason
    zero = data.copy()
    zero[0] = 0
    assert "constant" in _err(write_cube(tmp_path / "zero.fits", zero)).reason
    assert "no such file" in _err(tmp_path / "missing.fits").reason


def test_huge_naxis_refused_without_allocating(tmp_path):
    import resource

    # a header claiming 6000 x 6000 x 3 float32 (432 MB) over a sparse file of that length:
    # the data are all there (not truncated), so only the size guard can refuse it
    h = fits.Header()
    h["SIMPLE"], h["BITPIX"], h["NAXIS"] = True, -32, 3
    h["NAXIS1"], h["NAXIS2"], h["NAXIS3"] = 6000, 6000, 3
    p = tmp_path / "huge.fits"
    with open(p, "wb") as fh:
        fh.write(h.tostring().encode())
        fh.truncate(2880 + -(-6000 * 6000 * 3 * 4 // 2880) * 2880)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    e = _err(p)
    assert isinstance(e, errors.CutoutShapeError) and "far too large" in e.reason
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, grown_mib
    # a header claiming more than the file holds is refused as truncated
    h["NAXIS1"], h["NAXIS2"] = 100, 100
    (tmp_path / "short.fits").write_bytes(h.tostring().encode() + b"\0" * 2880)
    assert isinstance(_err(tmp_path / "short.fits"), errors.TruncatedFITSError)


def test_normalize_band_and_labels(tmp_path):
    assert normalize_band("HSC-G") == "g" and normalize_band("HSC-I2") == "i"
    assert normalize_band(" R ") == "r" and normalize_band("") is None
    assert label_from_path(tmp_path / "lens_3" / "a.fits") == 1
    assert label_from_path(tmp_path / "lenses" / "nonlens_2" / "a.fits") == 0
    assert label_from_path(tmp_path / "x" / "a.fits") is None


def test_find_sources_order_ids_labels_and_symlink_loop(tmp_path, rng):
    d = fake_cutout(rng)
    for sub in ("nonlenses", "lenses"):
        (tmp_path / sub).mkdir()
        for k in (2, 1):
            write_cube(tmp_path / sub / f"o{k}.fits", d)
    (tmp_path / "lenses" / "loop").symlink_to(tmp_path)  # a directory loop
    (tmp_path / "notes.txt").write_text("ignored")
    src = find_sources(tmp_path)
    assert [s.id for s in src] == ["lenses/o1", "lenses/o2", "nonlenses/o1", "nonlenses/o2"]
    assert [s.label for s in src] == [1, 1, 0, 0]
    src = find_sources(tmp_path, labels={"o1": 0, "lenses/o2": 0})
    assert [s.label for s in src] == [0, 0, 0, 0]
    with pytest.raises(FileNotFoundError):
        find_sources(tmp_path / "nope")
