"""Issue 30: the reader honours WCS geometry -- parity, orientation, per-band grids, non-square
pixels -- so that the same sky scores the same however a file stores it."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from conftest import fake_cutout, sky_wcs

from lensscore import load_cutout, scan
from lensscore.config import TRANSFORMS
from lensscore.errors import CutoutShapeError
from lensscore.geometry import (cd_matrix, check_band_grids, old_from_new, standard_transform,
                                transform, transform_name)


def _chiral(rng, n=72):
    img = fake_cutout(rng, n=n, lens=True)
    img[:, 8:20, 44:62] += 40  # off-centre: no symmetry of the square maps it onto itself
    img[:, 30:34, 10:14] += 25
    return img


def _stored(img, k, mirror, scale=0.168, crpix=None):
    """``img`` (standard orientation) as a file would store it after transform ``(k, mirror)``
    of its pixels, with the WCS that says where they are on the sky (``crpix``: the standard
    image's reference pixel, 1-based; default its centre)."""
    ny, nx = img.shape[-2:]
    cd = np.diag([-scale, scale]) / 3600
    crpix = np.array(crpix if crpix is not None else [(nx + 1) / 2, (ny + 1) / 2])
    # the stored pixels are transform(img): offsets from the array centres map as
    # d_std = B d_stored, so CD_stored = CD B and CRPIX moves with its pixel
    b = old_from_new(k, mirror)
    data = np.ascontiguousarray(transform(img, k, mirror))
    sy, sx = data.shape[-2:]
    c_std, c_st = np.array([(nx + 1) / 2, (ny + 1) / 2]), np.array([(sx + 1) / 2, (sy + 1) / 2])
    h = WCS(naxis=2)
    h.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    h.wcs.crval = [150.1, 2.2]
    h.wcs.crpix = list(c_st + np.linalg.solve(b, crpix - c_std))
    h.wcs.cd = cd @ b
    return data, h.to_header()


@pytest.mark.parametrize("k,mirror", TRANSFORMS)
def test_any_stored_orientation_reads_as_the_standard_one(tmp_path, rng, k, mirror):
    """A cutout stored mirrored (CDELT1 > 0, det CD > 0) or turned is put back: the pixels the
    model sees are the standard ones, bit for bit, and the catalog says what was done. An odd,
    non-square frame with its reference pixel off the centre: the centre's RA/Dec are mapped
    back through the crop offsets."""
    img = np.concatenate([_chiral(rng), _chiral(rng)[:, :9]], axis=1)[:, :, :77]  # 81 x 77
    crpix = [30.3, 50.7]
    ref_path = tmp_path / "ref.fits"
    hdr = _stored(img, 0, False, crpix=crpix)[1]
    for j, b in enumerate("gri"):
        hdr[f"BAND{j}"] = b
    fits.PrimaryHDU(img, header=hdr).writeto(ref_path)
    data, h = _stored(img, k, mirror, crpix=crpix)
    for j, b in enumerate("gri"):
        h[f"BAND{j}"] = b
    path = tmp_path / "stored.fits"
    fits.PrimaryHDU(data, header=h).writeto(path)
    ref, got = load_cutout(ref_path), load_cutout(path)
    assert ref.reoriented == ""
    assert got.reoriented == transform_name(*standard_transform(cd_matrix(WCS(h))))
    assert (got.reoriented != "") == (k != 0 or mirror)
    np.testing.assert_array_equal(got.data, ref.data)
    assert got.ra == pytest.approx(ref.ra, abs=1e-9) and got.dec == pytest.approx(ref.dec, abs=1e-9)


def test_other_parity_scores_the_same_with_any_model(tmp_path, rng, conv_model):
    """The target of issue 30: the same sky stored with the other parity scores the same with a
    model that is not invariant to anything, and the catalog's ``reoriented`` says so."""
    import csv

    (tmp_path / "d").mkdir()
    img = _chiral(rng)
    for name, (k, m) in (("a", (0, False)), ("b", (0, True)), ("c", (1, True))):
        data, h = _stored(img, k, m)
        for j, b in enumerate("gri"):
            h[f"BAND{j}"] = b
        fits.PrimaryHDU(data, header=h).writeto(tmp_path / "d" / f"{name}.fits")
    res = scan(tmp_path / "d", conv_model, output=tmp_path / "c.csv", rotations=False)
    assert res.scores[0] == res.scores[1] == res.scores[2]
    with open(tmp_path / "c.csv") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    assert [rows[i]["reoriented"] for i in "abc"] == ["", "mirror", "mirror+rot90"]
    # without the reader's fix the mirrored file is another image to this model
    from lensscore.scorer import Scorer

    plain = Scorer(conv_model).score(np.stack([img, img[..., ::-1]]))
    assert abs(plain[0] - plain[1]) > 1e-6


def _write_band(path, plane, band, *, crval=(150.1, 2.2), scale=0.168, flip=False, rot_deg=0.0):
    n = plane.shape[-1]
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    cd = np.array([[-c, s], [s, c]]) * scale / 3600
    if flip:
        cd[:, 0] *= -1
    w.wcs.cd = cd
    h = w.to_header()
    h["FILTER"] = band
    fits.PrimaryHDU(plane, header=h).writeto(path, overwrite=True)
    return path


@pytest.mark.parametrize("kw,msg", [
    ({"flip": True}, "stored mirrored against band g"),
    ({"crval": (150.1 + 2 * 0.168 / 3600 / np.cos(np.radians(2.2)), 2.2)}, "centre is 0.34"),
    ({"scale": 0.168 * 1.05}, "pixel scale"),
    ({"rot_deg": 5.0}, "turned by 5.0 deg"),
])
def test_per_band_files_on_different_grids_are_refused(tmp_path, rng, kw, msg):
    img = _chiral(rng)
    files = {b: _write_band(tmp_path / f"o_{b}.fits", img[j], b) for j, b in enumerate("gri")}
    load_cutout(files)  # one grid: fine
    _write_band(files["r"], img[1], "r", **kw)
    with pytest.raises(CutoutShapeError, match=msg) as e:
        load_cutout(files)
    assert "\n" not in str(e.value)


def test_each_bands_wcs_is_read_once_and_still_checked(tmp_path, rng, monkeypatch):
    """The cutout's WCS (the first band's here) is read once: the band check reuses it rather
    than reading that header again, and a first band off the others' grid is refused all the
    same."""
    import lensscore.cutout as cutout

    img = _chiral(rng)
    files = {b: _write_band(tmp_path / f"o_{b}.fits", img[j], b) for j, b in enumerate("gri")}
    seen = []
    real = cutout.celestial
    monkeypatch.setattr(cutout, "celestial", lambda h, *a, **k: seen.append(id(h)) or
                        real(h, *a, **k))
    load_cutout(files, wcs=False)
    assert len(seen) == len(set(seen)) == 3  # one read of each band's header
    _write_band(files["g"], img[0], "g", scale=0.168 * 1.05)
    with pytest.raises(CutoutShapeError, match="pixel scale"):
        load_cutout(files, wcs=False)


@pytest.mark.parametrize("ctype", [None, ("LINEAR", "LINEAR"), ("RA---TAN", None)])
def test_a_band_without_a_sky_wcs_lies_on_the_others_grid_whichever_band_it_is(tmp_path, rng,
                                                                               ctype):
    """Per-band files stored mirrored, their WCS saying so, one band without a celestial WCS
    (none, a linear one, half of one): the cutout is put into the standard orientation by the
    first band that has one, whether the band without is the first or not (g's header alone
    once decided, and g without a WCS left the cutout stacked as stored)."""
    img = _chiral(rng)
    files = {b: _write_band(tmp_path / f"o_{b}.fits", img[j], b, flip=True)
             for j, b in enumerate("gri")}
    ref = load_cutout(files, wcs=False)
    assert ref.reoriented
    for b in "gri":
        moved = dict(files, **{b: tmp_path / f"bare_{b}.fits"})
        head = fits.Header()
        head["FILTER"] = b
        for k, v in zip(("CTYPE1", "CTYPE2"), ctype or ()):
            if v:
                head[k] = v
        fits.PrimaryHDU(fits.getdata(files[b]), header=head).writeto(moved[b], overwrite=True)
        c = load_cutout(moved, wcs=False)
        assert c.reoriented == ref.reoriented and c.pixscale_in == ref.pixscale_in, b
        np.testing.assert_array_equal(c.data, ref.data)
        assert (c.ra, c.dec) == (ref.ra, ref.dec)
    # the first band with a WCS is the cutout's: r's centre, a fifth of a pixel off i's
    shifted = dict(files, g=tmp_path / "bare_g.fits")
    d_ra = 0.2 * 0.168 / 3600 / np.cos(np.radians(2.2))
    _write_band(files["r"], img[1], "r", flip=True, crval=(150.1 + d_ra, 2.2))
    c = load_cutout(shifted, wcs=False)
    assert c.ra == pytest.approx(ref.ra + d_ra, abs=1e-9)


def test_a_band_without_a_wcs_on_another_scale_is_refused(tmp_path, rng):
    """A band whose header states its scale by keyword only (PIXSCALE, no WCS) and differs
    from the others' is refused, as a WCS on another scale is; the same scale passes, whether
    the others' scale comes from a WCS or from keywords too."""
    img = _chiral(rng)
    files = {b: _write_band(tmp_path / f"o_{b}.fits", img[j], b) for j, b in enumerate("gri")}
    bare = {}
    for b, scale in (("r", 0.25), ("i", 0.168), ("g", 0.168)):
        head = fits.Header()
        head["FILTER"], head["PIXSCALE"] = b, scale
        bare[b] = tmp_path / f"bare_{b}_{scale}.fits"
        fits.PrimaryHDU(fits.getdata(files[b]), header=head).writeto(bare[b])
    with pytest.raises(CutoutShapeError, match=r"band r's pixel scale \(0.25\"\) differs from "
                                               r"band g's \(0.168\"\).*no WCS"):
        load_cutout(dict(files, r=bare["r"]), wcs=False)
    assert load_cutout(dict(files, i=bare["i"]), wcs=False).pixscale_in == pytest.approx(0.168)
    with pytest.raises(CutoutShapeError, match="band r's pixel scale"):  # no WCS at all
        load_cutout({"g": bare["g"], "r": bare["r"], "i": bare["i"]}, wcs=False)


def test_small_band_differences_within_tolerance_pass(rng):
    w0 = sky_wcs(72)
    w1 = sky_wcs(72, ra=150.1 + 0.2 * 0.168 / 3600)  # a fifth of a pixel
    assert check_band_grids("gr", [w0, w1], (72, 72)) == ""
    assert check_band_grids("gr", [w0, None], (72, 72)) == ""  # nothing to compare


def test_non_square_pixels_are_resampled_per_axis(tmp_path):
    """Pixels 0.168" wide and 0.21" high: a round source must come out round on the model's
    grid (resampling by the mean scale would squash it by 11 %)."""
    ny, nx = 80, 100
    sy, sx = 0.21, 0.168
    yy, xx = np.mgrid[:ny, :nx]
    yy = (yy - (ny - 1) / 2) * sy
    xx = (xx - (nx - 1) / 2) * sx
    blob = np.exp(-0.5 * (xx ** 2 + yy ** 2) / 1.0 ** 2).astype(np.float32)
    img = np.stack([blob + 0.01 * k for k in range(3)])
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.1, 2.2]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    w.wcs.cdelt = [-sx / 3600, sy / 3600]
    h = w.to_header()
    for j, b in enumerate("gri"):
        h[f"BAND{j}"] = b
    fits.PrimaryHDU(img, header=h).writeto(tmp_path / "a.fits")
    c = load_cutout(tmp_path / "a.fits")
    assert c.resampled and c.data.shape == (3, 72, 72)
    p = c.data[0] - c.data[0].min()
    prof_x, prof_y = p.sum(axis=0), p.sum(axis=1)
    ax = np.arange(72) - 35.5

    def width(prof):
        return np.sqrt((prof * ax ** 2).sum() / prof.sum())

    assert width(prof_x) == pytest.approx(width(prof_y), rel=0.02)
    assert width(prof_x) * 0.168 == pytest.approx(1.0, rel=0.05)  # 1" sigma on the sky


def test_standard_transform_shortcut_agrees_with_the_search(rng):
    """The closed-form shortcut for an already standard grid picks what the search over all 8
    transforms picks, for grids turned by any angle, of either parity, pixels of any shape."""
    import math

    from lensscore.geometry import old_from_new

    def search(cd):
        best, best_align = (0, False), -2.0
        for t in TRANSFORMS:
            new = cd @ old_from_new(*t)
            if np.linalg.det(new) >= 0:
                continue
            north = np.linalg.solve(new, [0.0, 1.0])
            align = north[1] / math.hypot(*north)
            if align > best_align + 1e-9:
                best, best_align = t, align
        return best

    n_short = 0
    for _ in range(2000):
        th = rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        cd = np.diag([-1.0, 1.0]) @ rot @ np.diag(rng.uniform(0.8, 1.2, 2)) * 4.6e-5
        if rng.random() < 0.5:
            cd[:, 0] *= -1
        assert standard_transform(cd) == search(cd)
        n_short += standard_transform(cd) == (0, False)
    assert 100 < n_short < 600  # the shortcut's case is among them, and not all of them
