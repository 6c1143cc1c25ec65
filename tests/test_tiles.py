"""Catalog mode: objects (RA/Dec) cut out of overlapping coadd tiles score as the same cutouts
scanned as files; objects off the tiles or on an edge get error rows; input columns are kept."""

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.table import Table
from astropy.wcs import WCS
from typer.testing import CliRunner

from lensscore import scan
from lensscore.catalog import read_catalog
from lensscore.cli import app
from lensscore.errors import LensscoreError
from lensscore.scan import scan_catalog, shard_of
from lensscore.tiles import close_tiles

runner = CliRunner()
BANDS = ("g", "r", "i")
N_SKY, N_TILE, STEP = 560, 340, 220  # 2x2 tiles of 340 px overlapping by 120 px (20")


def _sky_wcs():
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [N_SKY / 2, N_SKY / 2]
    w.wcs.cdelt = [-0.168 / 3600, 0.168 / 3600]
    return w


@pytest.fixture(scope="module")
def survey(tmp_path_factory, rng_module):
    """A sky with blobs (and rings: cartoon lenses) at known positions, cut into 4 tiles per
    band, and an object catalog: objects inside, in overlaps, near the sky's edge, off it."""
    rng = rng_module
    root = tmp_path_factory.mktemp("survey")
    w = _sky_wcs()
    yy, xx = np.mgrid[:N_SKY, :N_SKY]
    sky = rng.normal(0, 0.05, (3, N_SKY, N_SKY)).astype(np.float32)
    # object pixel positions: interior, overlaps (x or y in 220..340), near the edge, off
    pos = [(80.3, 90.7), (150.0, 420.2), (265.4, 100.1), (120.5, 281.6), (279.9, 279.2),
           (430.6, 150.3), (460.2, 470.8), (300.2, 200.5), (20.0, 300.0), (700.0, 100.0)]
    rows = []
    for k, (x, y) in enumerate(pos):
        r = np.hypot(xx - x, yy - y)
        for b in range(3):
            sky[b] += 30 * np.exp(-r / 3) * (1 + 0.3 * b)
            if k % 2 == 0:
                sky[b] += (8 - 2 * b) * np.exp(-0.5 * ((r - 10) / 1.5) ** 2)
        ra, dec = w.pixel_to_world_values(x, y)
        rows.append((f"obj{k}", float(ra), float(dec), 20.0 + k, k % 2 == 0))
    tiles = root / "tiles"
    tiles.mkdir()
    for ty in (0, STEP):
        for tx in (0, STEP):
            tw = w.slice((slice(ty, ty + N_TILE), slice(tx, tx + N_TILE)))
            for b, band in enumerate(BANDS):
                h = tw.to_header()
                h["FILTER"] = f"HSC-{band.upper()}"
                h["MAGZERO"] = 27.0
                fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(
                    sky[b, ty:ty + N_TILE, tx:tx + N_TILE], header=h, name="IMAGE")]).writeto(
                    tiles / f"patch{ty // STEP}{tx // STEP}_{band}.fits")
    cat = Table(rows=rows, names=("objectId", "ra", "dec", "mag", "is_lens"))
    cat.write(root / "objects.csv")
    return root, cat, pos


@pytest.fixture(scope="module")
def rng_module():
    return np.random.default_rng(11)


def _as_files(root, cat, pos, out):
    """The same objects cut out by hand: each from the tile where it lies farthest from an
    edge, 72x72 with Cutout2D, written as cubes with the tile's WCS and zero point."""
    out.mkdir()
    made = {}
    for (oid, ra, dec, *_), (x, y) in zip(cat.iterrows(), pos):
        best, room = None, -1
        for ty in (0, STEP):
            for tx in (0, STEP):
                lx, ly = x - tx, y - ty
                rm = min(lx + 0.5, N_TILE - 0.5 - lx, ly + 0.5, N_TILE - 0.5 - ly) - 36
                if rm > room:
                    best, room = (ty // STEP, tx // STEP), rm
        if best is None:
            continue
        planes, hdr = [], None
        for band in BANDS:
            with fits.open(root / "tiles" / f"patch{best[0]}{best[1]}_{band}.fits") as h:
                c = Cutout2D(h[1].data, SkyCoord(ra, dec, unit="deg"), (72, 72),
                             wcs=WCS(h[1].header), mode="strict")
                planes.append(c.data)
                hdr = c.wcs.to_header()
        hdr["BANDS"], hdr["MAGZERO"] = "gri", 27.0
        fits.PrimaryHDU(np.stack(planes), header=hdr).writeto(out / f"{oid}.fits")
        made[oid] = f"patch{best[0]}{best[1]}_"
    return made


def test_catalog_mode_equals_files_errors_and_columns(survey, tmp_path, conv_model):
    root, cat, pos = survey
    images = str(root / "tiles" / "patch*_{band}.fits")
    out = tmp_path / "cat.ecsv"
    res = scan_catalog(root / "objects.csv", images, conv_model, output=out, rotations=False)
    by_id = dict(zip(res.ids, res.scores))
    files = _as_files(root, cat, pos, tmp_path / "files")
    ref = scan(tmp_path / "files", conv_model, rotations=False)
    assert sorted(files) == sorted(ref.ids) and len(files) == 8
    for oid, s in zip(ref.ids, ref.scores):
        assert abs(by_id[oid] - s) <= 1e-5, (oid, by_id[oid], s)
    t = read_catalog(out)
    rows = {str(r["id"]): r for r in t}
    assert set(rows) == {f"obj{k}" for k in range(10)}
    assert rows["obj8"]["status"] == "error" and "edge" in rows["obj8"]["error"]
    assert rows["obj9"]["status"] == "error" and "off every" in rows["obj9"]["error"]
    # the input's columns are kept, and RA/Dec are the catalog's
    assert t.colnames[:4] == ["id", "path", "mag", "is_lens"]
    assert float(rows["obj3"]["mag"]) == 23.0
    assert rows["obj4"]["ra"] == pytest.approx(cat["ra"][4], abs=1e-9)
    assert res.exit_code == 3 and res.n_failed == 2
    # objects in overlaps are cut from the tile where they are farthest from an edge
    assert {files[k] for k in ("obj2", "obj3", "obj7")} == {"patch00_", "patch10_",
                                                           "patch01_"}
    for oid, tile in files.items():
        assert tile in rows[oid]["path"], (oid, rows[oid]["path"])


def test_catalog_mode_cli_resume_shards_and_bad_input(survey, tmp_path, conv_model):
    root, cat, pos = survey
    objects = str(root / "objects.csv")
    images = str(root / "tiles")  # a directory: bands from the FILTER keywords
    out = tmp_path / "c.csv"
    base = ["scan", "--catalog", objects, "--images", images, "-m", conv_model, "-q",
            "--no-rotations", "--keep-columns", "mag"]
    r = runner.invoke(app, [*base, "-o", str(out)])
    assert r.exit_code == 3, r.output
    assert "(rows in tile order)" in r.stdout
    t = read_catalog(out)
    assert t.colnames[:3] == ["id", "path", "mag"] and len(t) == 10
    r = runner.invoke(app, [*base, "-o", str(out), "--resume"])
    assert r.exit_code == 3 and "10 resumed" in r.stdout, r.output
    parts = []
    # obj8 (on an edge) falls in shard 1/2, obj9 (off every tile) in 2/2 (the documented hash):
    # each shard has one error row and finishes with 3
    assert [shard_of(f"obj{k}", 2) for k in (8, 9)] == [1, 2]
    for k in (1, 2):
        p = tmp_path / f"s{k}.csv"
        r = runner.invoke(app, [*base, "-o", str(p), "--shard", f"{k}/2"])
        assert r.exit_code == 3, (k, r.output)
        rows = read_catalog(p)
        assert list(rows["status"]).count("error") == 1
        parts += [str(i) for i in rows["id"]]
    assert sorted(parts) == sorted(str(i) for i in t["id"])
    # bad input: a clear one-line error before any work
    bad = tmp_path / "bad.csv"
    bad.write_text("name,x\na,1\n")
    for args, text in (([objects, "--images", str(tmp_path / "none")], "no such file"),
                       ([str(bad), "--images", images], "RA and Dec"),
                       ([objects, "--images", images, "--id-column", "nope"],
                        "--id-column nope: not in"),
                       ([objects], "--images")):
        r = runner.invoke(app, ["scan", "--catalog", *args, "-m", conv_model, "-q"])
        assert r.exit_code == 2 and text in r.output, (args, r.output)
    with pytest.raises(LensscoreError, match="repeat"):
        dup = tmp_path / "dup.csv"
        dup.write_text("id,ra,dec\na,150,2\na,150,2\n")
        scan_catalog(dup, images, conv_model)


def test_compressed_and_masked_tiles(survey, tmp_path, conv_model):
    """Tile-compressed tiles (lossless) give the same scores; MASK planes of survey MEFs mask
    the cutout's pixels as they do in files."""
    root, cat, pos = survey
    ref = scan_catalog(root / "objects.csv", str(root / "tiles" / "patch*_{band}.fits"),
                       conv_model, rotations=False)
    packed = tmp_path / "packed"
    packed.mkdir()
    for f in sorted((root / "tiles").glob("*.fits")):
        with fits.open(f) as h:
            img = h[1]
            mask = np.zeros(img.data.shape, np.int32)
            if f.name.startswith("patch00_"):
                mask[80:100, 70:90] = 1  # BAD, over obj0 at (80.3, 90.7)
            mh = fits.Header()
            mh["EXTNAME"], mh["MP_BAD"] = "MASK", 0
            fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
                img.data, header=img.header, compression_type="GZIP_2", quantize_level=0),
                fits.CompImageHDU(mask, header=mh)]).writeto(packed / f.name)
    res = scan_catalog(root / "objects.csv", str(packed / "patch*_{band}.fits"), conv_model,
                       rotations=False, output=tmp_path / "p.ecsv")
    rows = {str(r["id"]): r for r in read_catalog(tmp_path / "p.ecsv")}
    assert rows["obj0"]["n_nonfinite"] == 3 * 20 * 20
    for oid, a, b in zip(res.ids, res.scores, ref.scores):
        if oid == "obj0" or np.isnan(b):
            continue
        assert a == pytest.approx(b, abs=1e-6), oid
    assert res.ids == ref.ids


def test_catalog_mode_on_dask_equals_one_process(survey, tmp_path, conv_model):
    distributed = pytest.importorskip("distributed")
    root, _, _ = survey
    images = str(root / "tiles" / "patch*_{band}.fits")
    one = scan_catalog(root / "objects.csv", images, conv_model, rotations=False,
                       output=tmp_path / "one.csv")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as c, distributed.Client(c) as client:
        res = scan_catalog(root / "objects.csv", images, conv_model, rotations=False,
                           client=client, output=tmp_path / "dask.csv")
    assert res.ids == one.ids
    np.testing.assert_array_equal(res.scores, one.scores)
    assert (tmp_path / "one.csv").read_text() == (tmp_path / "dask.csv").read_text()


def test_catalog_rows_lead_back_to_their_pixels(survey, tmp_path, conv_model):
    """A catalog row's `files` rebuilds the source it was scored from (#18: no path
    parsing): the gallery of a catalog-mode scan shows the objects cut from the tiles."""
    from lensscore.gallery import gallery
    from lensscore.io import load_source
    from lensscore.sources import Source

    root, cat, pos = survey
    out = tmp_path / "cat.ecsv"
    res = scan_catalog(root / "objects.csv", str(root / "tiles" / "patch*_{band}.fits"),
                       conv_model, output=out, rotations=False)
    t = read_catalog(out)
    ok = [r for r in t if r["status"] == "ok"]
    assert len(ok) == 8
    for r in ok:
        src = Source.from_row(dict(zip(t.colnames, r)))
        assert src.position == pytest.approx((float(r["ra"]), float(r["dec"])), abs=1e-12)
        a = load_source(src, ["g", "r", "i"], 72, res.read_options).data
        assert np.isfinite(a).all() and a.shape == (3, 72, 72)
    close_tiles()
    bad = next(r for r in t if r["status"] == "error")
    assert Source.from_row(dict(zip(t.colnames, bad))).files == ()
    g = gallery(out, tmp_path / "g.html", top=0, min_score=0.0)
    assert g.n_shown == 8 and g.n_failed == 0


def _small_tiles(root, n_side=5, px=220, step=140, rot_deg=0.0):
    """``n_side**2`` tiles per band of ``px`` pixels over one TAN sky (overlapping by
    ``px - step``), turned by ``rot_deg``: header and a small image only."""
    root.mkdir(parents=True, exist_ok=True)
    n_sky = step * (n_side - 1) + px
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [n_sky / 2, n_sky / 2]
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    w.wcs.cd = np.array([[-c, s], [s, c]]) * 0.168 / 3600
    data = np.zeros((px, px), np.float32)
    for ty in range(n_side):
        for tx in range(n_side):
            h = w.slice((slice(ty * step, ty * step + px), slice(tx * step, tx * step + px)))
            h = h.to_header()
            for b in "gri":
                h["FILTER"] = b
                fits.PrimaryHDU(data, header=h).writeto(root / f"t{ty}{tx}_{b}.fits")
    return w, n_sky


@pytest.mark.parametrize("rot_deg", [0.0, 30.0])
def test_spatial_index_places_objects_as_testing_every_tile_does(tmp_path, monkeypatch, rot_deg):
    """Issue 32: catalog mode finds each object's tiles with a KD-tree of tile centres instead of
    projecting every object onto every tile; the sources (tile chosen per band, error rows) are
    the same as the exhaustive search's, for objects on tiles, on edges, off the sky and
    without a position."""
    import lensscore.tiles as tiles
    from lensscore.grid import Grid, ReadOptions

    w, n_sky = _small_tiles(tmp_path / "t", rot_deg=rot_deg)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-80, n_sky + 80, (2, 3000))  # some off the tiles, some on edges
    ra, dec = w.pixel_to_world_values(x, y)
    ra[:5], dec[:5] = np.nan, np.nan
    ra[5:10] += 90  # far away
    dec[10] = 95.0  # no place on the sky either
    Table({"id": np.arange(len(ra)), "ra": ra, "dec": dec}).write(tmp_path / "o.csv")
    opts = ReadOptions(Grid())
    args = (tmp_path / "o.csv", str(tmp_path / "t" / "t*_{band}.fits"), opts)
    fast, _ = tiles.catalog_sources(*args)
    monkeypatch.setattr(tiles, "_near_tiles",
                        lambda ts, xyz: [np.arange(len(xyz))] * len(ts))  # every tile
    slow, _ = tiles.catalog_sources(*args)
    # the same rows; objects on tiles in the same order (tile by tile). Error rows may sit
    # elsewhere in the order: the exhaustive search also ranks tiles an object is off
    assert {s.id: (s.files, s.error) for s in fast} == {s.id: (s.files, s.error) for s in slow}
    assert [s.id for s in fast if s.error is None] == [s.id for s in slow if s.error is None]
    n_err = sum(s.error is not None for s in fast)
    assert 10 <= n_err < len(fast) / 2  # both kinds of objects are in the test
    # an object without a position says so (it was "off every g tile")
    errors = {s.id: s.error for s in fast}
    assert errors["0"] == "RA/Dec (nan, nan) is no place on the sky"
    assert errors["10"].endswith(", 95) is no place on the sky")


def test_a_tile_in_use_is_not_closed_under_its_reader(tmp_path):
    """Issue 32: the tile cache closed tiles under its lock but they were read outside it, so a
    Dask worker's second thread could close the tile the first was cutting from. A tile now
    stays open while acquired; eviction and close() take effect on release."""
    from lensscore.tilecut import _OpenTiles

    paths = []
    for k in range(2):
        p = tmp_path / f"t{k}.fits"
        fits.PrimaryHDU(np.ones((10, 10), np.float32)).writeto(p)
        paths.append(str(p))
    cache = _OpenTiles(limit=1)
    a = cache.acquire(paths[0])
    b = cache.acquire(paths[1])  # evicts a: another thread's load
    assert a.retired and a.hdul[0].data.sum() == 100  # still readable: a is in use
    cache.release(b)
    cache.close()  # the scan ends while a's reader is still cutting
    assert a.hdul[0].data.sum() == 100 and b.hdul._file.closed  # b: nobody uses it
    cache.release(a)
    assert a.hdul._file.closed  # closed once its reader is done


def test_tiles_stored_mirrored_are_oriented_band_by_band(tmp_path):
    """Review of issue 30: catalog mode stacked a band whose tile was stored mirrored as it was.
    Each band is now put into the standard orientation by its own tile's WCS, so the cutouts
    are the same whichever way each tile was written; tiles of different scales are refused."""
    import lensscore.tiles as tiles
    from lensscore.grid import Grid, ReadOptions

    n = 200
    rng = np.random.default_rng(5)
    sky = rng.normal(0, 1, (3, n, n)).astype(np.float32)
    sky[:, 40:70, 120:150] += 20  # chiral structure
    base = WCS(naxis=2)
    base.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    base.wcs.crval = [150.0, 2.0]
    base.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    base.wcs.cd = np.diag([-0.168, 0.168]) / 3600
    objs = Table({"id": ["a", "b"], "ra": [150.0, 150.0 + 5 / 3600], "dec": [2.0, 2.0 - 4 / 3600]})
    objs.write(tmp_path / "o.csv")
    opts = ReadOptions(Grid())

    def write(dirname, mirrored_band=None, scale=1.0):
        d = tmp_path / dirname
        d.mkdir()
        for k, b in enumerate("gri"):
            w, data = base.deepcopy(), sky[k]
            if b == mirrored_band:
                data = data[:, ::-1]
                w.wcs.cd = base.wcs.cd @ np.diag([-1.0, 1.0])
                w.wcs.crpix = [n + 1 - base.wcs.crpix[0], base.wcs.crpix[1]]
            if b == "i" and scale != 1.0:
                w.wcs.cd = w.wcs.cd * scale
            h = w.to_header()
            h["FILTER"] = b
            fits.PrimaryHDU(np.ascontiguousarray(data), header=h).writeto(d / f"t_{b}.fits")
        srcs, _ = tiles.catalog_sources(tmp_path / "o.csv", str(d / "t_{band}.fits"), opts)
        try:
            return [tiles.load_tile_cutout(s, "gri", 72, opts) for s in srcs]
        finally:
            tiles.close_tiles()  # as a scan does when it ends

    ref = write("plain")
    got = write("r_mirrored", "r")
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a.data, b.data)
        assert a.reoriented == "" and b.reoriented == "g:as stored;r:mirror;i:as stored"
    from lensscore.errors import CutoutError

    with pytest.raises(CutoutError, match="must share a pixel scale"):
        write("i_scaled", scale=1.05)


def test_a_tile_band_turned_by_a_non_right_angle_is_refused(tmp_path):
    """Second review: after the quarter turns, the bands of one object must share their grid's
    orientation (as per-band files must); an r tile turned by 20 degrees is refused."""
    import lensscore.tiles as tiles
    from lensscore.errors import CutoutError
    from lensscore.grid import Grid, ReadOptions

    n = 300
    d = tmp_path / "t"
    d.mkdir()
    for b in "gri":
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [150.0, 2.0]
        w.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
        a = np.radians(20.0 if b == "r" else 0.0)
        w.wcs.cd = np.array([[-np.cos(a), np.sin(a)], [np.sin(a), np.cos(a)]]) * 0.168 / 3600
        h = w.to_header()
        h["FILTER"] = b
        fits.PrimaryHDU(np.ones((n, n), np.float32), header=h).writeto(d / f"t_{b}.fits")
    Table({"id": ["a"], "ra": [150.0], "dec": [2.0]}).write(tmp_path / "o.csv")
    opts = ReadOptions(Grid())
    srcs, _ = tiles.catalog_sources(tmp_path / "o.csv", str(d / "t_{band}.fits"), opts)
    try:
        with pytest.raises(CutoutError, match="turned by 20.0 deg"):
            tiles.load_tile_cutout(srcs[0], "gri", 72, opts)
    finally:
        tiles.close_tiles()
