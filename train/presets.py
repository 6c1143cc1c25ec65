"""Survey presets for the simulator: data, not code paths.

Every preset keeps the field of view of the default grid (:data:`lensscore.config.FOV_ARCSEC`:
HOLISMOKES' 72 px x 0.168" = 12.1"), so the cutout side follows the pixel scale. Numbers and
where they come from:

* ``hsc`` -- HSC-SSP Wide g, r, i (Aihara et al. 2018, PASJ 70, S4, and 2022 PDR3): the default
  grid of :mod:`lensscore.config` (0.168"/px, zero point 27, coadd counts); seeing g 0.80"
  r 0.75" i 0.60" (the published medians, g 0.77" r 0.76" i 0.58", rounded up in g and i: the
  shipped models were trained on these), 5-sigma point-source depth g 26.5 r 26.1 i 25.9. They
  are also :class:`train.simconfig.SimConfig`'s defaults.
* ``ps1`` -- Pan-STARRS1 3pi stacks (Chambers et al. 2016, arXiv:1612.05560, Table 11 and Sec. 8;
  Magnier et al. 2020 for the stack zero points): 0.25"/px, median stack seeing g 1.31" r 1.19"
  i 1.11", 5-sigma stack depth g 23.3 r 23.2 i 23.1, sky g 21.9 r 20.9 i 20.1 mag/arcsec^2.
  Zero point 25 for counts per second (``FPA.ZP`` 25 with counts / ``EXPTIME``).
* ``des`` -- DES (6-year coadds), from lenstronomy ``SimulationAPI.ObservationConfig.DES``.
* ``lsst`` -- Rubin LSST (10-year coadds), from lenstronomy ``ObservationConfig.LSST``.
* ``kids`` -- KiDS DR4 (Kuijken et al. 2019, A&A 625, A2): 0.2"/px, median seeing g 0.86"
  r 0.70" i 0.81", 5-sigma depth (2" aperture) g 25.1 r 25.0 i 23.7, zero point 0 for flux in
  the calibrated units (we use 30 here: KiDS coadds are rescaled to a common zero point).

``preset(name)`` returns the :class:`train.simconfig.SimConfig` keyword arguments.
"""

from __future__ import annotations

import math

from lensscore.config import DEFAULT_BANDS, DEFAULT_ZEROPOINT, FOV_ARCSEC, PIXEL_SCALE_ARCSEC

__all__ = ["PRESETS", "preset", "read_options", "SURVEYS"]

PRESETS: dict[str, dict] = {
    "hsc": {"pixel_scale": PIXEL_SCALE_ARCSEC, "seeing": (0.80, 0.75, 0.60),
            "depth": (26.5, 26.1, 25.9), "sky_mag": (22.0, 21.3, 20.5),
            "zeropoint": DEFAULT_ZEROPOINT},
    "ps1": {"pixel_scale": 0.25, "seeing": (1.31, 1.19, 1.11), "depth": (23.3, 23.2, 23.1),
            "sky_mag": (21.9, 20.9, 20.1), "zeropoint": 25.0, "seeing_scatter": 0.15},
    "kids": {"pixel_scale": 0.2, "seeing": (0.86, 0.70, 0.81), "depth": (25.1, 25.0, 23.7),
             "sky_mag": (22.1, 21.0, 20.0), "zeropoint": 30.0},
}


def _lenstronomy_preset(survey: str) -> dict:
    """pixel scale, seeing, sky and 5-sigma point-source depth from lenstronomy's configs."""
    from lenstronomy.SimulationAPI.ObservationConfig import DES, LSST

    cls = {"des": (DES.DES, 6), "lsst": (LSST.LSST, 10)}[survey]
    seeing, depth, sky = [], [], []
    scale = None
    for band in "gri":
        k = cls[0](band=band, coadd_years=cls[1]).kwargs_single_band()
        scale = k["pixel_scale"]
        t = k["exposure_time"] * k["num_exposures"]
        # counts (electrons) per pixel from the sky over the whole coadd, plus read noise
        sky_cps = 10 ** (-0.4 * (k["sky_brightness"] - k["magnitude_zero_point"])) * scale ** 2
        sigma_cps = math.sqrt(sky_cps * t + k["num_exposures"] * k["read_noise"] ** 2) / t
        nea = 2.266 * (k["seeing"] / scale) ** 2  # Gaussian PSF noise-equivalent area, px
        depth.append(k["magnitude_zero_point"] - 2.5 * math.log10(5 * sigma_cps * math.sqrt(nea)))
        seeing.append(k["seeing"])
        sky.append(k["sky_brightness"])
    return {"pixel_scale": scale, "seeing": tuple(seeing), "depth": tuple(round(d, 2) for d in depth),
            "sky_mag": tuple(sky), "zeropoint": DEFAULT_ZEROPOINT}


SURVEYS = ("hsc", "ps1", "des", "lsst", "kids")


def preset(name: str) -> dict:
    """SimConfig keyword arguments of a survey preset (size from the 12.1" field of view).

    Raises
    ------
    ValueError
        For an unknown survey name.
    """
    name = name.lower()
    if name not in SURVEYS:
        raise ValueError(f"unknown survey preset {name!r}: choose one of {', '.join(SURVEYS)}")
    d = dict(PRESETS[name]) if name in PRESETS else _lenstronomy_preset(name)
    d["size"] = int(round(FOV_ARCSEC / d["pixel_scale"] / 2)) * 2  # even: centre between pixels
    d["survey"] = name
    return d


def read_options(name: str, bands=DEFAULT_BANDS, size: int | None = None):
    """How a model trained on a preset reads its inputs: a :class:`lensscore.grid.ReadOptions`
    whose ``grid`` is the preset's (bands, size, pixel scale, zero point)."""
    from lensscore.grid import Grid, ReadOptions

    p = preset(name)
    return ReadOptions(Grid(bands=tuple(bands), size=int(size or p["size"]),
                            pixel_scale=p["pixel_scale"], zeropoint=p["zeropoint"],
                            survey=p["survey"]))
