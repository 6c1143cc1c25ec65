import gzip
import shutil
import time
from pathlib import Path

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


# ----------------------------------------------------------------------------- fast reader
def _fast_cases(tmp_path, rng):
    """Cube files the fast reader must read exactly as astropy does, and files it must leave
    to astropy (``None``)."""
    cube = fake_cutout(rng, n=80)
    ok, other = {}, {}

    def write(name, data, cards=(), bitpix=np.float32, ext=False, **kw):
        h = fits.Header()
        for c in cards:
            h.append(c)
        hdus = [fits.PrimaryHDU(np.asarray(data, bitpix), header=h)]
        if ext:
            hdus.append(fits.ImageHDU(np.zeros((3, 3), np.float32), name="MASK"))
        p = tmp_path / f"{name}.fits"
        fits.HDUList(hdus).writeto(p, **kw)
        return str(p)

    tan = list(sky_wcs(80, ra=359.99, dec=-31.0, scale_arcsec=0.2).to_header().cards)
    cd = sky_wcs(80).to_header()
    cd_cards = [c for c in cd.cards if not c.keyword.startswith(("CDELT", "PC"))] + [
        ("CD1_1", -4.6e-5), ("CD1_2", 1.1e-6), ("CD2_1", 1.0e-6), ("CD2_2", 4.7e-5)]
    ok["bands"] = write("bands", cube, [("BANDS", "g,r,i")])
    ok["on_grid_wcs"] = write("og", cube, [("BANDS", "gri")] + list(sky_wcs(80).to_header().cards))
    ok["filters_zp_wcs"] = write("fz", cube, [("FILTER1", "HSC-G"), ("FILTER2", "HSC-R"),
                                              ("FILTER3", "HSC-I"), ("MAGZERO", 30.0)] + tan)
    nan = cube.copy()
    nan[1, 3:9, 5:7] = np.nan
    ok["cd_nan_f64"] = write("cd", nan, [("BAND0", "g"), ("BAND1", "r"), ("BAND2", "i"),
                                         ("PHOTZP", 27.5), ("OBSERVER", "O'Brien  "),
                                         ("FLAG", True), ("NOTE", "")] + cd_cards,
                             bitpix=np.float64)
    ok["positional_comments"] = write("pos", cube, [("COMMENT", "made by a test"),
                                                    ("HISTORY", "x = 'y'"), ("EXPTIME", 1)])
    ok["hierarch"] = write("hier", cube, [("HIERARCH FPA.ZP", 25.0), ("EXPTIME", 30.0),
                                          ("BANDS", "gri")])
    other["extension"] = write("ext", cube, [("BANDS", "gri")], ext=True)
    other["int_scaled"] = write("int", (cube * 100).astype(np.int16), [("BANDS", "gri")],
                                bitpix=np.int16)
    gz = tmp_path / "gz.fits.gz"
    with open(ok["bands"], "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    other["gzip"] = str(gz)
    trunc = tmp_path / "trunc.fits"
    trunc.write_bytes(Path(ok["bands"]).read_bytes()[:-3000])
    other["truncated"] = str(trunc)
    return ok, other


def test_fast_reader_reads_as_astropy_does(tmp_path, rng, monkeypatch):
    """The fast path (lensscore.fastfits, lensscore.tanwcs) gives the cutouts astropy's path
    gives, bit for bit, and hands every file it does not fully understand to astropy."""
    from lensscore import fastfits, readers
    from lensscore.grid import ReadOptions

    ok, other = _fast_cases(tmp_path, rng)
    for name, path in other.items():
        assert fastfits.read_simple_cube(path) is None, name
    opts = ReadOptions()
    fast = {}
    for name, path in ok.items():
        if isinstance(path, dict):
            continue
        got = fastfits.read_simple_cube(path)
        assert got is not None, name
        data, head = got
        with fits.open(path) as h:
            np.testing.assert_array_equal(data, h[0].data.astype(np.float32))
            for k, v in head.items():
                assert h[0].header[k] == v and type(h[0].header[k]) is type(v), (name, k, v)
        fast[name] = load_cutout(path, size=72, options=opts, wcs=False)
    # per-band files (one 2-D image each, band from FILTER or from the name)
    pb = dict(zip("gri", map(str, write_per_band(tmp_path, "pb", fake_cutout(rng)))))
    with fits.open(pb["r"], mode="update") as h:
        h[0].header["FILTER"] = "HSC-R"
    assert all(fastfits.read_simple_cube(f)[0].ndim == 2 for f in pb.values())
    ok["per_band"] = pb
    fast["per_band"] = load_cutout(pb, size=72, options=opts, wcs=False)
    monkeypatch.setattr(readers, "read_simple_cube", lambda path: None)
    for name, path in ok.items():
        slow = load_cutout(path, size=72, options=opts, wcs=False)
        f = fast[name]
        np.testing.assert_array_equal(f.data, slow.data)
        for attr in ("bands", "n_nonfinite", "resampled", "zp_source", "band_source"):
            assert getattr(f, attr) == getattr(slow, attr), (name, attr)
        assert np.allclose(f.pixscale_in, slow.pixscale_in, rtol=1e-12, equal_nan=True), name
        assert np.allclose([f.ra, f.dec], [slow.ra, slow.dec], atol=1e-10, equal_nan=True), name
    assert not np.isnan(fast["filters_zp_wcs"].ra) and fast["cd_nan_f64"].n_nonfinite == 12
    # a cutout asked with its WCS (the gallery, notebooks) still gets astropy's
    monkeypatch.undo()
    assert fast["on_grid_wcs"].wcs is None
    assert load_cutout(ok["on_grid_wcs"], size=72, options=opts).wcs is not None


def test_plain_tan_equals_astropy_and_refuses_the_rest(rng):
    import warnings

    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_scales

    from lensscore.tanwcs import simple_tan

    for t in range(300):
        h = fits.Header([("NAXIS", 3), ("NAXIS1", 72), ("NAXIS2", 60), ("NAXIS3", 3),
                         ("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN"),
                         ("CRVAL1", rng.uniform(0, 360)), ("CRVAL2", rng.uniform(-89.5, 89.5)),
                         ("CRPIX1", rng.uniform(-50, 120)), ("CRPIX2", rng.uniform(-50, 120)),
                         ("RADESYS", "ICRS")])
        s, th = rng.uniform(0.05, 1.0) / 3600, rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        if t % 3 == 0:
            m = np.diag([-s, s]) @ rot * rng.uniform(0.8, 1.2, (2, 2))
            h.update({f"CD{i + 1}_{j + 1}": m[i, j] for i in range(2) for j in range(2)})
        else:
            h.update(CDELT1=-s, CDELT2=s * rng.uniform(0.9, 1.1))
            if t % 3 == 1:
                h.update({f"PC{i + 1}_{j + 1}": rot[i, j] for i in range(2) for j in range(2)})
        tan = simple_tan(h)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = WCS(h).celestial
        x, y = rng.uniform(0, 72), rng.uniform(0, 60)
        ra, dec = w.all_pix2world([[x, y]], 0)[0]
        r2, d2 = tan.pix2world(x, y)
        assert abs(((r2 - ra + 180) % 360 - 180) * np.cos(np.radians(dec))) < 1e-9
        assert abs(d2 - dec) < 1e-9
        # the array forms (catalog mode places objects with them) against astropy's
        xs, ys = rng.uniform(-100, 200, (2, 5))
        ras, decs = w.pixel_to_world_values(xs, ys)
        r3, d3 = tan.pixel_to_world_values(xs, ys)
        assert np.all(np.abs(((r3 - ras + 180) % 360 - 180) * np.cos(np.radians(decs))) < 1e-9)
        assert np.all(np.abs(d3 - decs) < 1e-9)
        bx, by = tan.world_to_pixel_values(ras, decs)
        np.testing.assert_allclose(np.c_[bx, by], np.c_[xs, ys], atol=1e-6)
        fx, fy = w.world_to_pixel_values(ras, decs)
        np.testing.assert_allclose(np.c_[bx, by], np.c_[fx, fy], atol=1e-6)
        np.testing.assert_allclose(tan.pixel_scales(), proj_plane_pixel_scales(w), rtol=1e-9)
    base = fits.Header([("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN"), ("CRVAL1", 10.0),
                        ("CRVAL2", 5.0), ("CRPIX1", 1.0), ("CRPIX2", 1.0), ("CDELT1", -1e-5),
                        ("CDELT2", 1e-5)])
    assert simple_tan(base) is not None
    old_pc = base.copy()
    old_pc.update(PC001001=0.0, PC001002=-1.0, PC002001=1.0, PC002002=0.0)  # PS1's spelling
    np.testing.assert_allclose(simple_tan(old_pc).cd, [[0, 1e-5], [1e-5, 0]])
    old_pc.update(PC1_1=0.0, PC1_2=-1.0, PC2_1=1.0, PC2_2=0.0)  # both spellings, agreeing
    np.testing.assert_allclose(simple_tan(old_pc).cd, [[0, 1e-5], [1e-5, 0]])
    for extra in ({"CTYPE1": "RA---TAN-SIP", "CTYPE2": "DEC--TAN-SIP", "A_ORDER": 2},
                  {"PV2_1": 0.1}, {"CROTA2": 10.0}, {"CTYPE1A": "RA---TAN"},
                  {"CTYPE1": "RA---SIN", "CTYPE2": "DEC--SIN"}, {"LONPOLE": 170.0},
                  {"CUNIT1": "arcsec"}, {"PC1_1": 1.0, "PC001001": -1.0},
                  {"CD1_3": 0.5}):
        h = base.copy()
        h.update(extra)
        assert simple_tan(h) is None, extra


def test_fast_reader_never_raises_on_damaged_headers(tmp_path, rng):
    """Bytes of a cube's header overwritten at random: the fast reader answers a cube or None
    (astropy then reports the damage), never an exception."""
    from lensscore.fastfits import read_simple_cube

    good = Path(write_cube(tmp_path / "c.fits", fake_cutout(rng))).read_bytes()
    end = good.index(b"END     ")
    alphabet = np.frombuffer(b" =/'TF0123456789.-+EDABCNXISZ\x00\xff", np.uint8)
    bad = tmp_path / "bad.fits"
    for _ in range(300):
        raw = bytearray(good)
        for pos in rng.integers(0, end + 80, int(rng.integers(1, 6))):
            raw[pos] = int(rng.choice(alphabet))
        bad.write_bytes(bytes(raw))
        got = read_simple_cube(str(bad))
        assert got is None or (got[0].dtype == np.float32 and got[0].ndim in (2, 3))
        if got is not None:
            dict(got[1])  # every value was checked when read: each parses on access


def test_find_sources_counts_a_linked_file_once(tmp_path, rng):
    """A file and a symlink to it (beside it, or in another directory) are one object: the
    first found is kept, as ``realpath`` says they are the same file."""
    d = tmp_path / "lenses"
    d.mkdir()
    write_cube(d / "a.fits", fake_cutout(rng))
    write_cube(d / "b.fits", fake_cutout(rng))
    (d / "c_link.fits").symlink_to(d / "a.fits")
    other = tmp_path / "more"
    other.mkdir()
    (other / "z_link.fits").symlink_to(d / "b.fits")
    write_cube(other / "y.fits", fake_cutout(rng))
    ids = [s.id for s in find_sources([tmp_path])]
    assert ids == ["lenses/a", "lenses/b", "more/y"]


def _parse_value_reads(text: str) -> bool:
    from lensscore import fastfits

    try:
        fastfits.parse_value(text)
    except fastfits._Unsupported:
        return False
    return True


_TRICKY_VALUES = [
    "                   1", "  -1.5E-03 / c", "  .5", "  5.", "  1D+2", " +7 /", "  T", "F / x",
    "  'abc'", "  'it''s' / q", "  ''", "  '''' ", "  'a'' ' / x", "  'a''", "  'open", "",
    "       ", "  (1.0, 2.0)", "  1_000", "  inf", "  nan", "  TRUE", "  1.2.3", "  12 'x'",
    "  'x' y", "  1e5", "  - 1", "\t3\t/\t", "  'a' /'b'", "  /only a comment", "  0x1F",
]


def test_the_header_check_accepts_exactly_what_parse_value_reads():
    """fastfits checks all of a header's values with one pattern (_VALUES) and parses each on
    first access: the pattern must accept a value exactly where parse_value reads it, else a
    file would reach the fast path with a value it cannot read (or miss it for nothing)."""
    hyp = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")
    from lensscore import fastfits

    def agree(text):
        assert (fastfits._VALUES.fullmatch(text) is not None) == _parse_value_reads(text), text

    for text in _TRICKY_VALUES:
        agree(text)
    # joined as _read_header joins them: a comment or string must not run into the next value
    for a in ("  1 / c", "  'x' / 'y", "  'open", "  T", "  2.5E3"):
        for b in ("  2", "  'b'", "", "  x", "  'it''s'", "  (1, 2)"):
            both = fastfits._VALUES.fullmatch(fastfits._SEP.join([a, b])) is not None
            assert both == (_parse_value_reads(a) and _parse_value_reads(b)), (a, b)
    alphabet = st.sampled_from(list(" '/+-.0123456789EeDdTF\tx(),_"))

    @hyp.settings(max_examples=400, deadline=None, database=None, derandomize=True)
    @hyp.given(st.text(alphabet, max_size=12))
    def check(text):
        agree(text)

    check()


def test_fast_header_parses_a_value_when_read_and_refuses_what_it_cannot_read():
    from lensscore import fastfits

    def header(*cards):
        text = "".join(c.ljust(80) for c in (*cards, "END"))
        return (text + " " * (-len(text) % 2880)).encode("ascii")

    head, length = fastfits._read_header(header(
        "SIMPLE  =                    T", "NAXIS   =                    2", "A       = 'x' / c",
        "A       =                    3", "HIERARCH FPA.ZP = 25.0", "COMMENT  anything = here"))
    assert length == 2880 and dict(head) == {"SIMPLE": True, "NAXIS": 2, "A": "x",
                                             "FPA.ZP": 25.0}
    assert "A" in head and "B" not in head and head.get("B", 7) == 7
    head, _ = fastfits._read_header(header("NAXIS   =                    2", "B       = 'x' / c"))
    assert head._parsed == {} and head["B"] == "x" and set(head._parsed) == {"B"}  # when read
    for bad in (["X       = (1.0, 2.0)"], ["X       = 'open"], ["X       = 1_000"],
                ["CONTINUE  'x'"], ["lower   = 1"], ["HIERARCH NAXIS = 3"]):
        with pytest.raises(fastfits._Unsupported):
            fastfits._read_header(header("NAXIS   =                    2", *bad))
    # a bad value after many integers is refused at once: each value matches in one way only
    # (with "\d+\.?\d*" an integer splits many ways: 10 three-digit cards took 0.69 s, and
    # each further card multiplies the time)
    t0 = time.perf_counter()
    with pytest.raises(fastfits._Unsupported):
        fastfits._read_header(header(*[f"N{k:<7d}=               123456" for k in range(40)],
                                     "UNDEF   ="))
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(fastfits._Unsupported):  # END in the block that is missing
        fastfits._read_header(header(*["C       = 1"] * 40)[:2880])
