"""Catalog mode against file mode, side by side: objects/s of ``lensscore scan --catalog`` over
coadd tiles, files/s of the same number of cutout files, and peak RSS of catalog scans of a
small and a large catalog over the same tiles (memory must not grow with the catalog)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from lensscore.config import DEFAULT_BANDS as BANDS
from lensscore.config import DEFAULT_ZEROPOINT, PIXEL_SCALE_ARCSEC


def _sky(n_side: int, tile_px: int, overlap: int):
    """The TAN sky (the default grid's pixel scale) that ``n_side**2`` overlapping tiles cover:
    ``(wcs, n_sky, step)``."""
    from astropy.wcs import WCS

    step = tile_px - overlap
    n_sky = step * (n_side - 1) + tile_px
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [n_sky / 2, n_sky / 2]
    w.wcs.cdelt = [-PIXEL_SCALE_ARCSEC / 3600, PIXEL_SCALE_ARCSEC / 3600]
    return w, n_sky, step


def write_tiles(root: Path, n_side: int, tile_px: int, overlap: int, seed: int = 0):
    """``n_side**2`` tiles per band (HSC-like: the default grid's pixel scale and zero point)
    over one TAN sky, and the sky's WCS and size."""
    from astropy.io import fits

    w, n_sky, step = _sky(n_side, tile_px, overlap)
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for ty in range(n_side):
        for tx in range(n_side):
            sl = (slice(ty * step, ty * step + tile_px), slice(tx * step, tx * step + tile_px))
            tw = w.slice(sl)
            for band in BANDS:
                data = rng.normal(0, 0.05, (tile_px, tile_px)).astype(np.float32)
                yy, xx = np.mgrid[:tile_px, :tile_px]
                for _ in range(40):  # some galaxies, so that cutouts are not flat noise
                    x0, y0 = rng.uniform(0, tile_px, 2)
                    r2 = (xx - x0) ** 2 + (yy - y0) ** 2
                    data += rng.uniform(5, 50) * np.exp(-r2 / (2 * rng.uniform(2, 6) ** 2))
                h = tw.to_header()
                h["FILTER"], h["MAGZERO"] = f"HSC-{band.upper()}", DEFAULT_ZEROPOINT
                fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header=h, name="IMAGE")]
                             ).writeto(root / f"t{ty:02d}{tx:02d}_{band}.fits")
    return w, n_sky


def write_objects(path: Path, w, n_sky: int, n: int, margin: int = 40, seed: int = 1):
    from astropy.table import Table

    rng = np.random.default_rng(seed)
    x, y = rng.uniform(margin, n_sky - margin, (2, n))
    ra, dec = w.pixel_to_world_values(x, y)
    Table({"objectId": np.arange(n), "ra": ra, "dec": dec,
           "mag_i": rng.uniform(18, 24, n)}).write(path, overwrite=True)


def catalog_runs(model, data_files: Path, n_files: int, reps: int, run_measured, check,
                 lensscore_cmd, quick: bool = False) -> dict:
    """Catalog mode over 16 tiles (4x4 per band): ``n_files`` objects against ``n_files``
    files, and peak RSS of a 10x larger catalog (20,000 objects at full size)."""
    out = {"n_tiles": 16, "n_small": n_files, "n_large": 10 * n_files}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        w, n_sky = write_tiles(d / "tiles", 4, 256 if quick else 1024, 120)
        write_objects(d / "small.csv", w, n_sky, n_files)
        write_objects(d / "large.csv", w, n_sky, 10 * n_files, seed=2)
        rate = {"catalog": [], "files": []}
        rss = {"small": [], "large": []}

        def one(cat):
            r = check(run_measured(lensscore_cmd(
                "scan", "--catalog", cat, "--images", str(d / "tiles" / "t*_{band}.fits"),
                "-m", model, "-o", d / "c.csv", "--overwrite", "--no-rotations", "--quiet",
                "--top", "0"), timeout=3600), "lensscore scan --catalog")
            m = re.search(r"([\d,.]+) files/s", r["stdout"])
            return r, float(m.group(1).replace(",", "")) if m else float("nan")

        for _ in range(reps):
            r, inner = one(d / "small.csv")
            rate["catalog"].append(inner)
            rss["small"].append(r["rss_mib"])
            r = check(run_measured(lensscore_cmd(
                "scan", data_files, "-m", model, "-o", d / "f.csv", "--overwrite",
                "--no-rotations", "--quiet", "--top", "0")), "lensscore scan (files)")
            m = re.search(r"([\d,.]+) files/s", r["stdout"])
            rate["files"].append(float(m.group(1).replace(",", "")) if m else float("nan"))
        r, inner = one(d / "large.csv")
        rss["large"].append(r["rss_mib"])
        out["large_objects_per_s"] = inner
    out["objects_per_s"] = float(np.median(rate["catalog"]))
    out["files_per_s"] = float(np.median(rate["files"]))
    out["peak_rss_mib"] = {k: float(np.median(v)) for k, v in rss.items()}
    return out


def _header_tiles(root: Path, n_side: int, tile_px: int, overlap: int):
    """Like :func:`write_tiles`, with flat small images: only the headers matter for placing."""
    from astropy.io import fits

    w, n_sky, step = _sky(n_side, tile_px, overlap)
    root.mkdir(parents=True, exist_ok=True)
    data = np.zeros((tile_px, tile_px), np.float32)
    for ty in range(n_side):
        for tx in range(n_side):
            h = w.slice((slice(ty * step, ty * step + tile_px),
                         slice(tx * step, tx * step + tile_px))).to_header()
            for band in BANDS:
                h["FILTER"] = band
                fits.PrimaryHDU(data, header=h).writeto(root / f"t{ty:02d}{tx:02d}_{band}.fits")
    return w, n_sky


def placement_runs(n_objects: int = 100_000, n_side: int = 20, tile_px: int = 200,
                   overlap: int = 80, reps: int = 1, exhaustive: bool = True) -> dict:
    """Seconds to place ``n_objects`` on ``n_side**2`` tiles per band
    (:func:`lensscore.tiles.catalog_sources`: reading the catalog and the tile headers,
    finding each object's tile per band), with the KD-tree of tile centres, and -- in the same
    run -- testing every object on every tile, as before issue 32 (``exhaustive``)."""
    import time

    import lensscore.tiles as tiles
    from lensscore.grid import Grid, ReadOptions

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        w, n_sky = _header_tiles(d / "t", n_side, tile_px, overlap)
        write_objects(d / "o.fits", w, n_sky, n_objects)
        args = (d / "o.fits", str(d / "t" / "t*_{band}.fits"), ReadOptions(Grid()))
        out = {"n_objects": n_objects, "n_tiles": 3 * n_side ** 2}

        def timed():
            t = []
            for _ in range(reps):
                t0 = time.perf_counter()
                src, _ = tiles.catalog_sources(*args)
                t.append(time.perf_counter() - t0)
            return float(np.median(t)), src

        out["indexed_s"], fast = timed()
        if exhaustive:
            near = tiles._near_tiles
            tiles._near_tiles = lambda ts, xyz: [np.arange(len(xyz))] * len(ts)
            try:
                out["exhaustive_s"], slow = timed()
            finally:
                tiles._near_tiles = near
            out["same_rows"] = ({s.id: (s.files, s.error) for s in fast}
                                == {s.id: (s.files, s.error) for s in slow})
        return out


def rows(r: dict) -> list[tuple[str, str, str, str]]:
    rows_ = []
    p = r.get("placement")
    if p:
        ex = p.get("exhaustive_s")
        rows_.append((f"catalog mode: placing {p['n_objects']:,} objects on {p['n_tiles']:,} "
                      "tiles (read catalog and headers, find the tiles)",
                      f"{p['indexed_s']:.1f} s",
                      (f"{ex / p['indexed_s']:.1f}× faster than every object on every tile "
                       f"({ex:.1f} s, same rows: {p['same_rows']})" if ex else ""),
                      f"≤5 s {'OK' if p['indexed_s'] <= 5 else 'NO'}"))
    c = r.get("catalog")
    if not c:
        return rows_
    return rows_ + [
        (f"lensscore scan --catalog, {c['n_small']} objects over {c['n_tiles']} tiles x 3 "
         "bands, inside the scan", f"{c['objects_per_s']:.1f} objects/s",
         f"{c['objects_per_s'] / c['files_per_s']:.2f} of file mode "
         f"({c['files_per_s']:.1f} files/s, same run)", ""),
        (f"peak RSS, catalog of {c['n_small']} vs {c['n_large']} objects (same tiles)",
         f"{c['peak_rss_mib']['small']:.0f} vs {c['peak_rss_mib']['large']:.0f} MiB",
         f"{c['peak_rss_mib']['large'] / c['peak_rss_mib']['small']:.2f}× for 10× the "
         f"objects ({c['large_objects_per_s']:.1f} objects/s)", ""),
    ]
