"""The simulator's configuration: survey grid, conditions, populations (:class:`SimConfig`),
and the internal flux unit every component is drawn in.

The defaults are the HSC preset (:mod:`train.presets`); ``SimConfig.for_survey`` takes another.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from lensscore.config import DEFAULT_BANDS, DEFAULT_SIZE, DEFAULT_ZEROPOINT

from .presets import PRESETS

__all__ = ["SimConfig", "BANDS", "ZP", "flux", "DEFLECTORS", "DEFLECTOR_MAG_REF",
           "DEFLECTOR_THETA_REF", "DEFLECTOR_MAG_SCATTER", "HANDEDNESS", "HOST_MAX_MAG"]

#: the bands the colour model (:data:`train.render.COLOURS`, :func:`train.render.draw_mags`)
#: draws magnitudes in: g - r, r - i
BANDS = DEFAULT_BANDS
#: the zero point of the internal flux unit (:func:`flux`); images are rescaled to
#: ``SimConfig.zeropoint`` when they are written
ZP = DEFAULT_ZEROPOINT
#: the HSC preset: SimConfig's defaults
_HSC = PRESETS["hsc"]

DEFLECTORS = ("uniform", "sis-vdf")
#: "uniform" deflectors' brightness: i = 19.2 - 2.5 log10(theta_E / 1.2") + N(0, 0.8 mag)
#: (a rule of thumb; train.paint inverts it for real galaxies of known brightness)
DEFLECTOR_MAG_REF, DEFLECTOR_THETA_REF, DEFLECTOR_MAG_SCATTER = 19.2, 1.2, 0.8
#: the faintest real galaxy arcs are painted onto (i, aperture magnitude; train.paint): by the
#: relation above its median theta_E is 0.23", so fainter hosts would rarely draw one in range
HOST_MAX_MAG = 21.0


HANDEDNESS = ("both", "one")


@dataclass(frozen=True)
class SimConfig:
    """Survey and simulation parameters (defaults: HSC Wide g, r, i)."""

    size: int = DEFAULT_SIZE
    pixel_scale: float = _HSC["pixel_scale"]
    supersample: int = 2
    seeing: tuple = _HSC["seeing"]
    seeing_scatter: float = 0.12
    depth: tuple = _HSC["depth"]
    depth_scatter: float = 0.15
    sky_mag: tuple = _HSC["sky_mag"]
    moffat_beta: float = 3.5
    psf_size: int = 25
    theta_e_range: tuple = (0.75, 2.5)
    min_magnification: float = 5.0
    min_arc_snr: float = 20.0
    min_contrast: float = 1.0
    max_redraws: int = 40
    star_fraction: float = 0.3
    quasar_fraction: float = 0.25
    bands: tuple = BANDS
    zeropoint: float = _HSC["zeropoint"]
    survey: str = "hsc"
    #: "uniform" (theta_E drawn in ``theta_e_range``, deflector brightness by a rule of thumb:
    #: the shipped models' sets) or "sis-vdf" (a physical population, :mod:`train.population`)
    deflectors: str = "uniform"
    #: line-of-sight field galaxies per arcmin^2 (i 20-25), anywhere in the cutout; 0 for none
    los_per_arcmin2: float = 0.0
    #: sis-vdf only: the faintest deflector (i magnitude; None for no limit). A lens search
    #: starts from catalogued galaxies, and a deflector at the survey's depth is in none.
    deflector_max_mag: float | None = None
    #: "both": every chiral feature (today: the winding of spiral arms) drawn with either
    #: handedness, half each, as on the sky; "one": every spiral winds the same way, the sets the
    #: models before issue 30 were trained on (kept so that their test splits can be made again)
    handedness: str = "both"

    def __post_init__(self):
        if tuple(self.bands) != BANDS:
            raise ValueError(f"bands must be {', '.join(BANDS)} (the bands the colour model draws "
                             f"magnitudes in), got {self.bands!r}")
        for name in ("seeing", "depth", "sky_mag"):
            if len(getattr(self, name)) != len(self.bands):
                raise ValueError(f"{name} needs one value per band ({len(self.bands)}), "
                                 f"got {getattr(self, name)!r}")
        if self.handedness not in HANDEDNESS:
            raise ValueError(f"handedness must be one of {', '.join(HANDEDNESS)}, "
                             f"got {self.handedness!r}")
        if self.deflectors not in DEFLECTORS:
            raise ValueError(f"deflectors must be one of {', '.join(DEFLECTORS)}, "
                             f"got {self.deflectors!r}")
        if self.deflector_max_mag is not None and self.deflectors != "sis-vdf":
            raise ValueError("deflector_max_mag (--deflector-max-mag) needs deflectors sis-vdf")
        if not self.los_per_arcmin2 >= 0:
            raise ValueError(f"los_per_arcmin2 must be >= 0, got {self.los_per_arcmin2}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def for_survey(cls, survey: str = "hsc", **overrides) -> SimConfig:
        """The preset of a survey (:mod:`train.presets`), with ``overrides`` on top."""
        from .presets import preset

        return cls(**{**preset(survey), **overrides})

    @classmethod
    def from_json(cls, d: str | dict) -> SimConfig:
        d = json.loads(d) if isinstance(d, str) else d
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def flux(mag):
    """Flux in the internal unit (zero point :data:`ZP`) of a magnitude (or an array of them)."""
    return 10 ** (-0.4 * (np.asarray(mag, float) - ZP))
