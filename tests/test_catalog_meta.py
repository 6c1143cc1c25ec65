"""The catalog's header has one type, :class:`lensscore.catalog.CatalogMeta`: a scan writes it,
a resume and a merge compare its identity keys, a gallery reads it back. Its text on disk is
what catalogs written before the type existed hold, so they still resume and make galleries."""

import pytest

from lensscore import scan
from lensscore.catalog import IDENTITY, CatalogMeta, CatalogWriter, catalog_meta, read_catalog

from conftest import fake_cutout, write_cube

#: the header keys, in order, that catalogs written before CatalogMeta hold
KEYS = ["model", "model_arch", "pixel_scale", "zeropoint", "bands", "size",
        "lensscore_version", "row_order", "threshold", "model_sha256", "preprocess",
        "input_pixel_scale", "zeropoint_override", "max_bad_fraction", "tta"]


def _meta(**kw):
    base = dict(model="m.onnx", model_arch="rot", pixel_scale=0.25, zeropoint=25.0,
                bands=("g", "r", "i", "z"), size=64, lensscore_version="9.9", threshold=0.5,
                model_sha256="ab" * 32, preprocess='{"kind": "x"}', input_pixel_scale=0.2,
                zeropoint_override=(("g", 27.0), ("r", 27.1)), max_bad_fraction=0.3,
                tta="rot4")
    base.update(kw)
    return CatalogMeta(**base)


def test_the_header_as_written_before():
    d = _meta().to_dict()
    assert list(d) == KEYS
    assert d["bands"] == "g,r,i,z" and d["zeropoint_override"] == "g=27,r=27.1"
    assert d["input_pixel_scale"] == 0.2 and d["row_order"] == "input"
    assert CatalogMeta().to_dict()["input_pixel_scale"] == ""
    assert list(_meta(shard="2/8").to_dict()) == KEYS + ["shard"]
    assert set(IDENTITY) <= set(KEYS)


@pytest.mark.parametrize("suffix", [".ecsv", ".csv", ".fits"])
def test_read_back_from_every_format(tmp_path, suffix):
    meta = _meta(shard="3/4")
    out = tmp_path / f"c{suffix}"
    with CatalogWriter(out, [("id", "str"), ("path", "str"), ("score", "float64")],
                       meta.to_dict()) as w:
        w.write([{"id": "a", "path": "a.fits", "score": 0.5}])
    back = CatalogMeta.from_dict(catalog_meta(read_catalog(out)))
    assert back == meta  # FITS stores text: read back as numbers all the same
    opts = back.read_options()
    assert opts.grid.bands == ("g", "r", "i", "z") and opts.grid.size == 64
    assert opts.grid.pixel_scale == 0.25 and opts.pixel_scale == 0.2
    assert opts.zeropoints == (("g", 27.0), ("r", 27.1))


def test_a_header_from_elsewhere_reads_as_the_defaults():
    m = CatalogMeta.from_dict({"PIXEL_SCALE": "nan", "ZEROPOINT_OVERRIDE": "g=oops",
                               "SIZE": ""})
    assert m == CatalogMeta()
    opts = m.read_options(("g", "r", "i"), 72)
    assert opts.grid.pixel_scale == 0.168 and opts.grid.zeropoint == 27
    assert opts.pixel_scale is None and opts.zeropoints == ()


def test_a_scan_writes_it(tmp_path, rng, conv_model):
    d = tmp_path / "in"
    d.mkdir()
    write_cube(d / "a.fits", fake_cutout(rng))
    out = tmp_path / "c.ecsv"
    scan(d, conv_model, output=out, zeropoints="g=27", shard="1/1")
    raw = catalog_meta(read_catalog(out))
    assert list(raw) == KEYS + ["shard"]
    m = CatalogMeta.from_dict(raw)
    assert m.to_dict() == raw
    assert m.zeropoint_override == (("g", 27.0),) and m.shard == "1/1"
