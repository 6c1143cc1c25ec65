"""Make examples/tiles: two overlapping coadd-like tiles per band (g, r, i) holding four of the
demo cutouts, and the object catalog that points at them (``lensscore scan --catalog``).

Each cutout is pasted whole into a sky of matching noise, so cutting an object out of its tile
gives back exactly the pixels of its file: catalog mode and file mode must score it the same.
Run from the repository root: ``python scripts/make_example_tiles.py`` (checks that claim).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from lensscore.config import DEFAULT_BANDS as BANDS
from lensscore.config import DEFAULT_SIZE as SIZE
from lensscore.config import DEFAULT_ZEROPOINT, PIXEL_SCALE_ARCSEC

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "examples" / "cutouts"
OUT = ROOT / "examples" / "tiles"
PICK = ["lenses/sim_000000", "nonlenses/sim_000001", "lenses/sim_000002", "nonlenses/sim_000003"]
HEIGHT, WIDTH, TILE, STEP = 100, 340, 200, 140  # two tiles, 60 px overlap


def main() -> None:
    rng = np.random.default_rng(7)
    cubes = [fits.getdata(SRC / f"{p}.fits").astype(np.float32) for p in PICK]
    # sky noise like the cutouts' own (robust sigma of their borders)
    border = np.concatenate([np.concatenate([c[:, :6].reshape(3, -1), c[:, -6:].reshape(3, -1)],
                                            1) for c in cubes], 1)
    sigma = 1.4826 * np.median(np.abs(border - np.median(border, 1, keepdims=True)), 1)
    sky = rng.normal(0, 1, (3, HEIGHT, WIDTH)).astype(np.float32) * sigma[:, None, None]
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [WIDTH / 2, HEIGHT / 2]
    w.wcs.cdelt = [-PIXEL_SCALE_ARCSEC / 3600, PIXEL_SCALE_ARCSEC / 3600]
    rows = []
    for k, (name, cube) in enumerate(zip(PICK, cubes)):
        x0, y0 = 14 + 80 * k, 14
        sky[:, y0:y0 + SIZE, x0:x0 + SIZE] = cube
        ra, dec = w.pixel_to_world_values(x0 + (SIZE - 1) / 2, y0 + (SIZE - 1) / 2)
        rows.append((Path(name).name, float(ra), float(dec), int(name.startswith("lenses")),
                     name))
    OUT.mkdir(parents=True, exist_ok=True)
    for t, x0 in enumerate((0, STEP)):
        tw = w.slice((slice(0, HEIGHT), slice(x0, x0 + TILE)))
        for b, band in enumerate(BANDS):
            h = tw.to_header()
            h["FILTER"], h["MAGZERO"] = band, DEFAULT_ZEROPOINT
            fits.PrimaryHDU(sky[b, :, x0:x0 + TILE], header=h).writeto(
                OUT / f"tile{t}_{band}.fits", overwrite=True)
    Table(rows=rows, names=("objectId", "ra", "dec", "is_lens", "cutout")).write(
        OUT / "objects.csv", overwrite=True)

    # the claim: each object cut from the tiles is its file's pixels
    from lensscore import Scorer
    from lensscore.io import load_source
    from lensscore.tiles import catalog_sources, close_tiles

    opts = Scorer(ROOT / "models" / "rot.onnx").read_options()
    sources, _ = catalog_sources(OUT / "objects.csv", str(OUT / "tile*_{band}.fits"), opts)
    for s in sources:
        cut = load_source(s, BANDS, SIZE, opts).data
        want = cubes[[Path(p).name for p in PICK].index(s.id)]
        assert np.array_equal(cut, want), s.id
    close_tiles()
    print(f"{len(sources)} objects in {OUT}: tiles give back their files' pixels")


if __name__ == "__main__":
    main()
