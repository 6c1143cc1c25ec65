"""Arcs painted onto real cutouts (train.paint), and the fine-tuning inputs that need no network:
labels from grades, folds grouped by sky position, real sets saved for a GPU machine."""

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import sky_wcs
from typer.testing import CliRunner

from train.paint import (Host, PaintConfig, detect, host_photometry, paint, paint_one, read_hosts,
                         stamp_detections, theta_e_prior)
from train.simulate import SimConfig

CFG = SimConfig.for_survey("ps1")


def galaxy(rng, n=CFG.size, mag_i=18.5, r_pix=3.0, x0=None, y0=None, noise=0.02):
    """A round exponential galaxy of i ``mag_i`` (zero point 25) on sky noise, PS1 grid."""
    y, x = np.mgrid[:n, :n]
    x0 = (n - 1) / 2 if x0 is None else x0
    y0 = (n - 1) / 2 if y0 is None else y0
    prof = np.exp(-np.hypot(x - x0, y - y0) / r_pix)
    prof /= prof.sum()
    img = np.empty((3, n, n), np.float32)
    for b, dm in enumerate((1.6, 0.6, 0.0)):  # g, r, i: a red galaxy
        img[b] = 10 ** (-0.4 * (mag_i + dm - CFG.zeropoint)) * prof
    return img + rng.normal(0, noise, img.shape).astype(np.float32)


def host_of(img, hid="nonlenses/src/a"):
    return Host(hid, img, 150.0, 2.0, *host_photometry(img, CFG))


def test_host_photometry_measures_magnitude_extent_and_centre(rng):
    h = host_of(galaxy(rng, mag_i=18.5))
    x = 2.5 / (3.0 * CFG.pixel_scale)  # the aperture in scale lengths of the exponential
    inside = 1 - (1 + x) * np.exp(-x)  # 0.845 of its light
    assert h.mag["i"] == pytest.approx(18.5 - 2.5 * np.log10(inside), abs=0.03)
    assert h.mag["g"] - h.mag["r"] == pytest.approx(1.0, abs=0.1)
    assert h.extent > 1.3 and h.offset <= 0.3 and h.paintable(PaintConfig())
    assert h.noise == pytest.approx(np.full(3, 0.02), rel=0.15)
    star = host_of(galaxy(rng, r_pix=0.2))  # narrower than the PSF is not a galaxy: a star
    assert not star.paintable(PaintConfig())
    faint = host_of(galaxy(rng, mag_i=22.5))
    assert not faint.paintable(PaintConfig())
    beside = host_of(galaxy(rng, x0=33, y0=23.5))  # its light peaks 2.3" from the centre
    assert beside.offset > 2 and not beside.paintable(PaintConfig())


def test_theta_e_follows_brightness_inside_the_range():
    rng = np.random.default_rng(0)
    bright = [theta_e_prior(rng, 17.5, (0.75, 2.5)) for _ in range(300)]
    faint = [theta_e_prior(rng, 20.5, (0.75, 2.5)) for _ in range(300)]
    assert all(0.75 <= t <= 2.5 for t in bright + faint if t is not None)
    assert np.median([t for t in bright if t]) > np.median([t for t in faint if t]) + 0.3
    assert theta_e_prior(rng, 30.0, (0.75, 2.5)) is None  # no galaxy that faint lenses


def test_painting_adds_a_lensed_arc_and_is_reproducible(rng):
    h = host_of(galaxy(rng))
    img, t = paint_one(h, 3, seed=7, cfg=CFG)
    assert img is not None and t["painted"] and img.dtype == np.float32
    assert t["magnification"] >= CFG.min_magnification and t["arc_snr"] >= CFG.min_arc_snr
    assert 0.75 <= t["theta_e"] <= 2.5
    arc = (img - h.data).sum(0)
    n = CFG.size
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    r = np.hypot(xx, yy) * CFG.pixel_scale
    # the arc's light lies around the deflector, near the Einstein radius, not on the host's core
    w = np.clip(arc, 0, None)
    assert arc.sum() > 0 and (w * r).sum() / w.sum() == pytest.approx(t["theta_e"], rel=0.6)
    again, t2 = paint_one(host_of(h.data.copy()), 3, seed=7, cfg=CFG)
    assert np.array_equal(img, again) and t2 == t  # pure in (host id, seed, k) and the pixels
    other, _ = paint_one(h, 4, seed=7, cfg=CFG)
    assert not np.array_equal(img, other)


def test_paint_spreads_jobs_over_hosts_and_is_worker_independent(rng):
    hosts = [host_of(galaxy(rng, mag_i=m), f"nonlenses/src/h{k}")
             for k, m in enumerate((18.0, 18.8, 19.5))]
    hosts.append(host_of(galaxy(rng, r_pix=0.2), "nonlenses/src/star"))
    rows = paint(hosts, 9, seed=1, cfg=CFG, chunk=4)
    assert [(r[0], r[1]) for r in rows] == [(f"nonlenses/src/h{j % 3}", j // 3) for j in range(9)]
    rows2 = paint(hosts, 9, seed=1, cfg=CFG, workers=2, chunk=2)
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(rows, rows2) if a[2] is not None)
    with pytest.raises(ValueError, match="no paintable host"):
        paint(hosts[3:], 2, cfg=CFG)


def test_finetune_paints_only_hosts_as_bright_as_it_is_told(rng):
    from train.finetune import FinetuneConfig, RealSet, paint_real
    from train.fit import FitConfig

    hosts = [host_of(galaxy(rng, mag_i=m), f"nonlenses/src/h{k}")
             for k, m in enumerate((18.0, 19.5))]
    real = RealSet(np.zeros((2, 3, 48, 48), np.float32), [0, 0], [h.id for h in hosts],
                   hosts=hosts)
    cfg = FitConfig(survey="ps1", size=CFG.size)
    _, used = paint_real(real, cfg, FinetuneConfig(n_paint=4))
    assert set(used) == {"nonlenses/src/h0", "nonlenses/src/h1"}
    _, used = paint_real(real, cfg, FinetuneConfig(n_paint=4, paint_max_mag=19.0))
    assert set(used) == {"nonlenses/src/h0"}


def test_detect_finds_injected_sources_and_not_noise(rng):
    n = 120
    img = rng.normal(0, 1.0, (n, n))
    yy, xx = np.mgrid[:n, :n]
    where = [(20.0, 30.0), (95.0, 80.0), (60.0, 60.0)]
    for x0, y0 in where:
        img += 40 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 2.0 ** 2))
    found = detect(img)
    assert len(found) == 3
    for x0, y0 in where:
        assert min(np.hypot(x - x0, y - y0) for x, y in found) < 0.5
    assert detect(rng.normal(0, 1.0, (n, n))) == []


def test_stamp_detections_keep_only_sources_whose_cutout_misses_the_lens(tmp_path, rng):
    from lensscore.io import find_sources

    n = 120  # 30" at 0.25": a lens at the centre, a neighbour near it and one far from it
    yy, xx = np.mgrid[:n, :n]
    d = tmp_path / "lenses" / "L1"
    d.mkdir(parents=True)
    for b in "gri":
        img = rng.normal(0, 1.0, (n, n))
        for x0, y0 in ((59.5, 59.5), (70.0, 65.0), (100.0, 35.0)):
            img += 50 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 8)
        w = sky_wcs(n, scale_arcsec=0.25)
        fits.PrimaryHDU(img.astype(np.float32), header=w.to_header()).writeto(d / f"L1_{b}.fits")
    rows = stamp_detections(find_sources(tmp_path / "lenses", "gri"))
    assert len(rows) == 1 and rows[0][0].startswith("L1/L1/det") and rows[0][3] == "L1/L1"
    w = sky_wcs(n, scale_arcsec=0.25)
    x, y = w.world_to_pixel_values(rows[0][1], rows[0][2])
    assert (float(x), float(y)) == pytest.approx((100.0, 35.0), abs=0.3)


def test_read_hosts_reads_through_the_scanners_reader(tmp_path, rng):
    from lensscore.io import find_sources
    from train.presets import read_options

    d = tmp_path / "nonlenses"
    d.mkdir()
    img = galaxy(rng)
    hdr = sky_wcs(CFG.size, scale_arcsec=CFG.pixel_scale).to_header()
    for k, b in enumerate("gri"):
        hdr[f"BAND{k}"] = b
    hdr["MAGZERO"] = 25.0
    fits.PrimaryHDU(img, header=hdr).writeto(d / "g1.fits")
    (d / "bad.fits").write_bytes(b"not fits")
    hosts, skipped = read_hosts(find_sources(tmp_path, CFG.bands), CFG, read_options("ps1"))
    assert [h.id for h in hosts] == ["nonlenses/g1"] and len(skipped) == 1
    assert np.allclose(hosts[0].data, img, atol=1e-6) and np.isfinite(hosts[0].ra)


def test_paint_cli_writes_pairs_truth_and_picture(tmp_path, rng):
    pytest.importorskip("matplotlib")
    from train.cli import app

    real = tmp_path / "real"
    for sub in ("nonlenses", "lenses"):
        (real / sub).mkdir(parents=True)
        for k in range(2):
            hdr = sky_wcs(CFG.size, scale_arcsec=CFG.pixel_scale, ra=150 + k).to_header()
            for j, b in enumerate("gri"):
                hdr[f"BAND{j}"] = b
            hdr["MAGZERO"] = 25.0
            fits.PrimaryHDU(galaxy(rng, mag_i=18.5 + k), header=hdr).writeto(
                real / sub / f"o{k}.fits")
    out = tmp_path / "painted"
    r = CliRunner().invoke(app, ["paint", str(real), "--out", str(out), "--n", "6",
                                 "--survey", "ps1"])
    assert r.exit_code == 0, r.output
    assert "2 of 2 non-lenses are galaxies" in r.output
    t = Table.read(out / "truth.ecsv")
    assert len(list((out / "lenses").glob("*.fits"))) == len(t) >= 5
    assert sorted(p.name for p in (out / "nonlenses").glob("*.fits")) == [
        "nonlenses_o0.fits", "nonlenses_o1.fits"]
    assert (out / "painted.jpg").stat().st_size > 1000
    # painted cutouts read back as the scan reads them: the host plus the arc
    from lensscore.io import find_sources, load_source
    from train.presets import read_options

    s = {x.id: x for x in find_sources(out, CFG.bands)}
    host = load_source(s["nonlenses/nonlenses_o0"], CFG.bands, CFG.size, read_options("ps1"))
    first = [row for row in t if row["host"] == "nonlenses/o0"][0]
    p = load_source(s[first["path"][:-5]], CFG.bands, CFG.size, read_options("ps1"))
    assert (p.data - host.data).sum() > 0
    r = CliRunner().invoke(app, ["paint", str(real), "--out", str(out), "--n", "6",
                                 "--survey", "ps1"])
    assert r.exit_code == 2 and "holds a painting already" in r.output
    # the faintest host is an option: o1 (i ~ 19.5) is left out at 19
    r = CliRunner().invoke(app, ["paint", str(real), "--out", str(tmp_path / "p19"), "--n", "4",
                                 "--survey", "ps1", "--max-mag", "19"])
    assert r.exit_code == 0 and "1 of 2 non-lenses are galaxies of i <= 19 " in r.output, r.output
    assert {row["host"] for row in Table.read(tmp_path / "p19" / "truth.ecsv")} == {"nonlenses/o0"}


def test_grades_become_labels_by_the_stated_rule(tmp_path):
    from train.finetune import GRADE_RULE, grade_label, read_labels

    assert [grade_label(g) for g in (0, 1, 2, 3, "", None, "x")] == [0, None, 1, 1, None, None,
                                                                     None]
    assert "grade 1" in GRADE_RULE
    f = tmp_path / "scan_grades.csv"  # what the gallery's "export grades" writes
    f.write_text("id,score,score_std,label,grade\na,0.9,,,3\nb,0.8,,,2\nc,0.7,,,1\nd,0.2,,,0\n"
                 "e,0.1,,,\n")
    assert read_labels(f) == {"a": 1, "b": 1, "d": 0}
    # the gallery writes the scan's label beside the grade: a grade decides where there is one
    # (a person looked), a label fills the ungraded rows, a grade 1 leaves its row out
    f.write_text("id,score,score_std,label,grade\nA,0.9,,1,\nB,0.8,,,3\nC,0.7,,,0\n"
                 "D,0.6,,0,3\nE,0.5,,1,1\n")
    assert read_labels(f) == {"A": 1, "B": 1, "C": 0, "D": 1}
    g = tmp_path / "labels.csv"
    g.write_text("id,label\na,1\nb,0\n")
    assert read_labels(g) == {"a": 1, "b": 0}
    g.write_text("id,label\na,2\n")
    with pytest.raises(ValueError, match="not 0 or 1"):
        read_labels(g)
    g.write_text("name,label\na,1\n")
    with pytest.raises(ValueError, match="'id' column"):
        read_labels(g)


def test_position_groups_are_friends_of_friends_on_the_sphere():
    from train.finetune import _folds, position_groups

    s = 1 / 3600
    ra = np.array([10.0, 10 + 20 * s, 10 + 40 * s, 10.5, 10.5 + 25 * s, np.nan, 359.9999,
                   0.0 + 5 * s])
    dec = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    g = position_groups(ra, dec, 30.0)
    # a chain 20" apart is one group (friends of friends); RA wraps at 0/360; NaN is alone
    assert g.tolist() == [0, 0, 0, 1, 1, 2, 3, 3]
    assert position_groups(ra, dec, 10.0).tolist() == [0, 1, 2, 3, 4, 5, 6, 6]
    y = np.array([1, 0, 0, 1, 0, 0, 1, 0])
    f = _folds(g, y, 3, seed=0)
    for grp in set(g.tolist()):  # a group's members share a fold; every fold has a lens
        assert len(set(f[g == grp].tolist())) == 1
    assert sorted(set(f[y == 1].tolist())) == [0, 1, 2]


def test_real_sets_travel_as_one_file(tmp_path, rng):
    from train.finetune import RealSet, read_real, save_real

    h = host_of(galaxy(rng))
    real = RealSet(rng.normal(size=(3, 3, 48, 48)).astype(np.float32), [1, 0, 0],
                   ["lenses/a", "nonlenses/src/a", "nonlenses/sky/b"], [1.0, 1.0, np.nan],
                   [2.0, 2.0, np.nan], ["d1", "d2", "d3"], [h])
    save_real(tmp_path / "r.npz", real)
    back = read_real(tmp_path / "r.npz")
    assert back.ids == real.ids and np.array_equal(back.x, real.x) and back.y.tolist() == [1, 0, 0]
    assert np.isnan(back.ra[2]) and back.digests == ["d1", "d2", "d3"]
    (bh,) = back.hosts
    assert bh.id == h.id and np.array_equal(bh.data, h.data) and bh.mag == h.mag
    assert bh.offset == h.offset and np.array_equal(bh.noise, h.noise)
    old = tmp_path / "old.npz"  # the format before positions and hosts still reads
    np.savez(old, x=real.x, y=real.y, ids=np.array(real.ids))
    o = read_real(old)
    assert np.isnan(o.ra).all() and o.hosts == [] and json.dumps(o.y.tolist()) == "[1, 0, 0]"


def test_detections_of_stamps_in_one_directory_keep_apart(tmp_path, rng):
    from lensscore.io import find_sources
    from train.paint import detections_around
    from train.presets import read_options

    n = 120
    yy, xx = np.mgrid[:n, :n]
    d = tmp_path / "lenses"
    d.mkdir()
    for name in ("A", "B"):  # two stamps, flat: lenses/A_g.fits, lenses/B_g.fits, ...
        for b in "gri":
            img = rng.normal(0, 1.0, (n, n))
            for x0, y0 in ((59.5, 59.5), (90.0, 40.0)):
                img += 50 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 8)
            hdr = sky_wcs(n, scale_arcsec=0.25, ra=150 + (name == "B")).to_header()
            fits.PrimaryHDU(img.astype(np.float32), header=hdr).writeto(d / f"{name}_{b}.fits")
    srcs = [s for s in find_sources(tmp_path, "gri")]
    assert [s.label for s in srcs] == [1, 1]
    det = detections_around(srcs, "gri", read_options("ps1"))
    ids = [s.id for s in det]
    assert len(ids) == 2 and len(set(ids)) == 2, ids
    assert all(i.startswith("nonlenses/det/lenses/") for i in ids)


def test_paint_and_finetune_refuse_what_they_cannot_read_in_one_line(tmp_path):
    from train.cli import app

    junk = tmp_path / "junk.txt"
    junk.write_text("not a table\x00\x01")
    cat = tmp_path / "ids.csv"
    cat.write_text("id,score\na,0.5\n")
    for args in (["paint", str(junk), "--out", str(tmp_path / "o")],
                 ["paint", str(cat), "--out", str(tmp_path / "o")]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2, r.output
        assert "Traceback" not in r.output and len(r.output.strip().splitlines()) <= 2
    assert "not a scan catalog" in r.output


def test_finetune_refuses_one_class_and_too_few_groups():
    from train.finetune import FinetuneConfig, RealSet, _check_real

    x = np.zeros((4, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match="all lenses"):
        _check_real(RealSet(x, [1, 1, 1, 1], list("abcd")), FinetuneConfig(folds=2), "d")
    real = RealSet(x, [1, 0, 1, 0], list("abcd"), [10.0] * 4, [0.0] * 4)  # one position
    with pytest.raises(ValueError, match="1 sky-position group"):
        _check_real(real, FinetuneConfig(folds=2), "d")


def test_recentre_cuts_lenses_on_their_detection_as_non_lenses_are_cut(tmp_path, rng):
    from lensscore.io import find_sources, load_source
    from train.paint import recentre
    from train.presets import read_options

    n, opts = 120, read_options("ps1")
    yy, xx = np.mgrid[:n, :n]
    for name, x0, ra in (("near", 65.5, 150.0), ("far", 73.5, 151.0)):  # 1.5" and 3.5" off
        d = tmp_path / "lenses" / name
        d.mkdir(parents=True)
        for b in "gri":
            img = rng.normal(0, 0.02, (n, n)) + 5 * np.exp(-((xx - x0) ** 2 + (yy - 59.5) ** 2)
                                                           / 8)
            hdr = sky_wcs(n, scale_arcsec=0.25, ra=ra).to_header()
            fits.PrimaryHDU(img.astype(np.float32), header=hdr).writeto(d / f"{name}_{b}.fits")
    srcs = find_sources(tmp_path, "gri")
    new, shifts = recentre(srcs, "gri", opts)
    assert list(shifts) == ["lenses/near/near"] and shifts["lenses/near/near"] == \
        pytest.approx(1.5, abs=0.05)
    assert [(s.id, s.label) for s in new] == [(s.id, s.label) for s in srcs]
    old, got = ({s.id: s for s in v} for v in (srcs, new))
    assert got["lenses/far/far"] is old["lenses/far/far"]  # none within 2": kept as it was
    before, after = (load_source(v["lenses/near/near"], "gri", CFG.size, opts).data
                     for v in (old, got))
    assert host_photometry(before, CFG)[3] == pytest.approx(1.5, abs=0.2)
    assert host_photometry(after, CFG)[3] < 0.2  # the light peak now at the centre
    # a fine-tune on the recentred set records both reads of a moved lens as seen, so a scan of
    # the stamps as they are still marks that lens in_training
    from lensscore.trained import cutout_digest
    from train.finetune import load_real, read_real, save_real
    from train.fit import FitConfig

    real = load_real(tmp_path, FitConfig(survey="ps1", size=CFG.size), recentre=True)
    from lensscore import tilecut

    assert not tilecut._TILES._open  # the stamps it cut from are closed (they were left open)
    assert real.also_seen == [cutout_digest(before)]
    # and where the catalogued cut was centred: the record places both reads of the lens
    assert real.also_seen_radec == [pytest.approx((150.0, 2.2), abs=1e-9)]
    load_source(got["lenses/near/near"], "gri", CFG.size, opts)  # cut from its stamp again
    assert tilecut._TILES._open
    read_hosts(new, CFG, opts)
    assert not tilecut._TILES._open  # read_hosts closes them too
    assert cutout_digest(after) in real.digests and cutout_digest(before) not in real.digests
    save_real(tmp_path / "r.npz", real)
    back = read_real(tmp_path / "r.npz")
    assert back.also_seen == real.also_seen and back.also_seen_radec == real.also_seen_radec
