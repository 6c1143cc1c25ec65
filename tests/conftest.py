import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

# hypothesis keeps its caches out of the repository (issue 33: it wrote .hypothesis/ there)
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      os.path.join(tempfile.gettempdir(), "lensscore-hypothesis"))

from onnx_models import make_model


def sky_wcs(n=72, ra=150.1, dec=2.2, scale_arcsec=0.168):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    w.wcs.cdelt = [-scale_arcsec / 3600, scale_arcsec / 3600]
    return w


def fake_cutout(rng, n=72, nb=3, lens=False):
    """A galaxy-ish blob plus noise, optionally a ring (a cartoon lens)."""
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    r = np.hypot(x, y)
    img = np.empty((nb, n, n), np.float32)
    for b in range(nb):
        img[b] = 50 * np.exp(-r / 3) * (1 + 0.3 * b)
        if lens:
            img[b] += (12 - 4 * b) * np.exp(-0.5 * ((r - 10) / 1.5) ** 2)
        img[b] += rng.normal(0, 1.0, (n, n)) + 3 * b
    return img


def write_cube(path, data, bands=("g", "r", "i"), wcs=True, style="BAND", ra=150.1):
    hdr = fits.Header()
    if wcs:
        hdr.update(sky_wcs(data.shape[-1], ra=ra).to_header())
    if style == "BAND":
        for k, b in enumerate(bands):
            hdr[f"BAND{k}"] = b
    elif style == "BANDS":
        hdr["BANDS"] = "".join(bands)
    elif style == "FILTER":
        for k, b in enumerate(bands):
            hdr[f"FILTER{k + 1}"] = b
    fits.PrimaryHDU(data, header=hdr).writeto(path, overwrite=True)
    return path


def write_mef(path, data, bands=("HSC-G", "HSC-R", "HSC-I"), wcs=True):
    hdus = [fits.PrimaryHDU()]
    for b, plane in zip(bands, data):
        h = fits.Header()
        if wcs:
            h.update(sky_wcs(data.shape[-1]).to_header())
        hdus.append(fits.ImageHDU(plane, header=h, name=b))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def write_per_band(directory, obj_id, data, bands=("g", "r", "i"), wcs=True):
    paths = []
    for b, plane in zip(bands, data):
        h = fits.Header()
        if wcs:
            h.update(sky_wcs(data.shape[-1]).to_header())
        p = Path(directory) / f"{obj_id}_{b}.fits"
        fits.PrimaryHDU(plane, header=h).writeto(p, overwrite=True)
        paths.append(p)
    return paths


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def conv_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("m") / "conv.onnx", arch="conv")


@pytest.fixture(scope="session")
def rot_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("m") / "rot.onnx", arch="rot")


@pytest.fixture(scope="session")
def d4_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("m") / "d4.onnx", arch="d4")


@pytest.fixture
def labelled_dir(tmp_path, rng):
    """lenses/ and nonlenses/ with 6 cube cutouts each."""
    root = tmp_path / "cutouts"
    for cls, lens in (("lenses", True), ("nonlenses", False)):
        (root / cls).mkdir(parents=True)
        for k in range(6):
            write_cube(root / cls / f"obj{k:03d}.fits", fake_cutout(rng, lens=lens))
    return root


@pytest.fixture(scope="session")
def train_dir(tmp_path_factory):
    """A tiny labelled training set: 20 lenses and 20 non-lenses (lenses/, nonlenses/)."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("traindata")
    for cls, lens in (("lenses", True), ("nonlenses", False)):
        (root / cls).mkdir()
        for k in range(20):
            write_cube(root / cls / f"o{k:02d}.fits", fake_cutout(rng, lens=lens))
    return root
