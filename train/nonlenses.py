"""Non-lenses, the hard negatives: spirals, edge-on discs, LRGs (some with blue companions that
look like arcs), compact groups, ring galaxies, mergers with tidal arcs, other galaxies.

Their mix (:data:`NONLENS_TYPES`) is HOLISMOKES XI-like; ``field_star`` and ``blank_sky`` hold no
galaxy and are drawn by :func:`train.scene.simulate_one` itself.
"""

from __future__ import annotations

import numpy as np

from .render import COLOURS, component, lrg, population_lrg

__all__ = ["NONLENS_TYPES", "nonlens"]

NONLENS_TYPES = {"spiral": 2 / 9, "edge_on_disc": 1 / 9, "lrg": 1 / 8, "lrg_blue_companion": 1 / 8,
                 "compact_group": 1 / 12, "random_galaxy": 1 / 6, "ring_galaxy": 1 / 12,
                 "merger": 1 / 12, "field_star": 1 / 12, "blank_sky": 1 / 12}


def _arc_of_clumps(R, rng, mag_i, radius, phi0, width, cx=0.0, cy=0.0, n=10, sigma=0.1, col=None):
    """Clumps along a circular arc (spiral arms, rings, tidal tails): not lensed."""
    comps = []
    for phi in phi0 + np.linspace(-width / 2, width / 2, n):
        rr = radius * rng.uniform(0.95, 1.05)
        comps.append(component(R, rng, "gauss", mag_i + 2.5 * np.log10(n),
                               cx + rr * np.cos(phi), cy + rr * np.sin(phi),
                               sigma=sigma * rng.uniform(0.7, 1.3), col=col or COLOURS["clump"]))
    return comps


def nonlens(R, rng, subtype, cfg):
    """Components of a non-lens of the given subtype, centred in the cutout. With ``sis-vdf``
    deflectors, LRGs are the lens population's galaxies, unlensed: a deflector's brightness,
    colour and size then tell nothing about the class."""
    mi = rng.uniform(17.0, 21.0)  # drawn for every subtype: the draws after it stay in step
    draw = _SUBTYPES.get(subtype, _random_galaxy)
    return draw(R, rng, subtype, cfg, mi)


def _lrg_nonlens(R, rng, subtype, cfg, mi):
    """An LRG, and for ``lrg_blue_companion`` one or two blue companions, half of them
    tangentially elongated: the arcs a lens would show, without the lensing."""
    if cfg.deflectors == "sis-vdf":
        comps = population_lrg(R, rng, cfg)[0]
    else:
        comps = lrg(R, rng, mi)
    if subtype == "lrg_blue_companion":
        for _ in range(int(rng.integers(1, 3))):
            d, phi = rng.uniform(1.0, 3.0), rng.uniform(0, 2 * np.pi)
            e = (0.0, 0.0)
            if rng.random() < 0.5:  # tangentially elongated: looks like an arc, is not lensed
                from lenstronomy.Util.param_util import phi_q2_ellipticity

                e = phi_q2_ellipticity(phi + np.pi / 2, rng.uniform(0.25, 0.5))
            comps.append(component(R, rng, "sersic", rng.uniform(20.5, 23.5), d * np.cos(phi),
                                   d * np.sin(phi), r=rng.uniform(0.15, 0.5), n=1.0, e=e,
                                   col=COLOURS["blue"]))
    return comps


def _disc(R, rng, subtype, cfg, mi):
    """A disc with a bulge: edge-on (``edge_on_disc``), or a ``spiral`` with two bright blue
    arms winding out, either way round unless ``cfg.handedness`` is ``"one"``."""
    qmin, qmax = (0.1, 0.25) if subtype == "edge_on_disc" else (0.4, 1.0)
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    pa, q = rng.uniform(0, np.pi), rng.uniform(qmin, qmax)
    r_d = rng.uniform(0.8, 2.2)
    comps = [component(R, rng, "sersic", mi + 0.4, 0, 0, r=r_d, n=1.0,
                       e=phi_q2_ellipticity(pa, q), col=COLOURS["disc"]),
             component(R, rng, "sersic", mi + 1.5, 0, 0, r=0.3 * r_d, n=rng.uniform(2, 4),
                       qmin=0.7, col=COLOURS["lrg"])]
    if subtype == "spiral":  # two bright blue arms, winding out
        # the sky has no handedness: either winding, half each (``one``: always the same)
        wind = 2.5 if cfg.handedness == "one" or rng.random() < 0.5 else -2.5
        for arm in range(2):
            phi0 = rng.uniform(0, 2 * np.pi) + arm * np.pi
            for t in np.linspace(0, 1, 12):
                rr, ph = r_d * (0.6 + 1.2 * t), phi0 + wind * t
                comps.append(component(R, rng, "gauss", mi + 0.8 + 2.5 * np.log10(24), rr *
                                       np.cos(ph), rr * np.sin(ph), sigma=rng.uniform(0.06, 0.15)))
    return comps


def _compact_group(R, rng, subtype, cfg, mi):
    """Three to five galaxies within 3", half of them red."""
    comps = []
    for _ in range(int(rng.integers(3, 6))):
        d, phi = rng.uniform(0, 3.0), rng.uniform(0, 2 * np.pi)
        col = COLOURS["lrg"] if rng.random() < 0.5 else COLOURS["any"]  # groups are red-rich
        comps.append(component(R, rng, "sersic", mi + rng.uniform(0, 2.5), d * np.cos(phi),
                               d * np.sin(phi), r=rng.uniform(0.3, 1.2), n=rng.uniform(1, 4),
                               col=col))
    return comps


def _ring_galaxy(R, rng, subtype, cfg, mi):
    """A bulge inside a full ring of clumps: a ring without a lens."""
    comps = [component(R, rng, "sersic", mi + 0.3, 0, 0, r=rng.uniform(0.3, 0.8),
                       n=rng.uniform(2, 4), qmin=0.7, col=COLOURS["any"])]
    return comps + _arc_of_clumps(R, rng, mi + rng.uniform(0.5, 2.0), rng.uniform(1.0, 2.5), 0,
                                  2 * np.pi, n=24, sigma=0.12)


def _merger(R, rng, subtype, cfg, mi):
    """Two galaxies and a tidal arc of clumps on the far side of the second."""
    d, phi = rng.uniform(0.6, 2.0), rng.uniform(0, 2 * np.pi)
    comps = [component(R, rng, "sersic", mi, 0, 0, r=rng.uniform(0.4, 1.2), n=rng.uniform(1, 4)),
             component(R, rng, "sersic", mi + rng.uniform(0, 1.5), d * np.cos(phi),
                       d * np.sin(phi), r=rng.uniform(0.3, 1.0), n=rng.uniform(1, 4))]
    return comps + _arc_of_clumps(R, rng, mi + rng.uniform(1.5, 3.0), rng.uniform(1.2, 2.8),
                                  phi + np.pi, rng.uniform(1.0, 2.5), n=10, sigma=0.12,
                                  col=COLOURS["any"])


def _random_galaxy(R, rng, subtype, cfg, mi):
    """One galaxy of random size and profile: at these magnitudes about half are early types
    with LRG-like colours."""
    early = rng.random() < 0.5
    return [component(R, rng, "sersic", mi, 0, 0, r=rng.uniform(0.3, 2.0),
                      n=rng.uniform(2.5, 5) if early else rng.uniform(0.7, 2.5), qmin=0.3,
                      col=COLOURS["lrg"] if early else COLOURS["any"])]


#: the components of each galaxy subtype; any other subtype is a random galaxy
_SUBTYPES = {"lrg": _lrg_nonlens, "lrg_blue_companion": _lrg_nonlens, "spiral": _disc,
             "edge_on_disc": _disc, "compact_group": _compact_group,
             "ring_galaxy": _ring_galaxy, "merger": _merger, "random_galaxy": _random_galaxy}
