"""Simulated arcs painted onto real survey cutouts: lens finders that learn from real pixels.

HOLISMOKES (Cañameras et al. 2020, A&A 644, A163; 2021; 2024) trains on the survey's own galaxies:
a lensed source simulated for each real galaxy is added to its cutout (positives whose deflector
light, neighbours, noise and sky are real), and the same galaxies unpainted are negatives. A
network trained so cannot win by "a red galaxy at the centre": both classes have one.

* **Hosts** (:func:`read_hosts`): real cutouts read by lensscore's own reader, on the model's
  grid and zero point, *before* preprocessing (what a scan reads). A host is kept when its
  central source is a galaxy (:func:`host_photometry`: wider than the preset's PSF) no fainter
  than ``max_mag`` in i (a lens search starts from a galaxy catalogue).
* **Einstein radius**: no redshift is known for a real cutout, so a stated prior ties it to the
  galaxy's brightness by the relation the simulator's own deflectors follow
  (:mod:`train.simconfig`: i = 19.2 - 2.5 log10(theta_E / 1.2") + N(0, 0.8 mag)), inverted and
  redrawn until theta_E lies in the preset's range; hosts too faint for that get no painting.
  The colour is recorded, not used (a colour-redshift relation holds for red sequence galaxies
  only, and painting every kind of galaxy is the point: the real lenses the PS1 model misses
  are the ones whose deflector is not red).
* **The source** is the simulator's (:func:`train.lenses.lensed_source`: a star-forming galaxy
  or a quasar with its host, inside the caustic region, SIE + external shear by lenstronomy),
  convolved with a PSF of the preset's seeing (drawn with its scatter), with the arc's own
  Poisson noise at the preset's gain, in the host's flux units. The cuts are the simulation's
  thresholds: magnification >= 5 and arc S/N >= 20 (as in the simulator: of the lensed light
  before the PSF, here against the host's measured noise), and in g the arc's brightest pixel
  at least as bright as the host there (after the PSF, against the real, noisy host; the
  simulator compares noiseless models before the PSF).
* Every painting is a pure function of ``(host id, seed, k)``: :func:`paint_one`.
* **Real negatives from the pixels we have** (:func:`detect` and :func:`stamp_detections`):
  every source detected in a stamp (6 sigma in r + i) far enough from its centre that the stamp's
  own object lies outside the cutout, cut from the stamp by lensscore's catalog-and-tiles reader.
"""

from __future__ import annotations

import logging
import math
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lensscore.config import FOV_ARCSEC
from lensscore.errors import CutoutError

from .lenses import arc_snr, draw_lens_model, lensed_source
from .observe import draw_conditions
from .render import renderer
from .simcheck import measure_noise
from .simconfig import (DEFLECTOR_MAG_REF, DEFLECTOR_MAG_SCATTER, DEFLECTOR_THETA_REF,
                        HOST_MAX_MAG, ZP, SimConfig)

__all__ = ["Host", "PaintConfig", "read_hosts", "host_photometry", "theta_e_prior", "paint_one",
           "paint", "detect", "stamp_detections", "detection_sources", "detections_around",
           "write_painted", "preview"]

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class PaintConfig:
    """What gets painted, and onto what.

    ``max_mag``: faintest host (i, aperture magnitude); ``min_extent``: a host is a galaxy when
    its light's second-moment width exceeds the preset PSF's (median seeing) by this factor
    (stars are left unpainted); ``max_offset``: its light must peak within this many arcsec of
    the centre (a sky position, or a detection on the wing of a bright neighbour, is no
    deflector); ``max_draws``: theta_E and source redraws per painting.
    """

    max_mag: float = HOST_MAX_MAG
    min_extent: float = 1.15
    max_offset: float = 0.75
    max_draws: int = 40
    aperture_arcsec: float = 2.5


@dataclass
class Host:
    """A real cutout to paint onto.

    Attributes
    ----------
    id : str
    data : ndarray, float32, shape ``(bands, size, size)``
        On the model's grid and zero point, before preprocessing.
    ra, dec : float
        Sky position (degrees; NaN without a WCS).
    mag : dict band -> float
        Aperture magnitudes of the central source (NaN where its flux is not positive).
    extent : float
        Second-moment width of the central source over the preset PSF's.
    offset : float
        Arcsec from the centre to the peak of the light inside the aperture (smoothed).
    noise : ndarray, shape ``(bands,)``
        Pixel noise per band (:func:`train.simcheck.measure_noise`), in the cutout's units.
    """

    id: str
    data: np.ndarray
    ra: float = math.nan
    dec: float = math.nan
    mag: dict = field(default_factory=dict)
    extent: float = math.nan
    noise: np.ndarray | None = None
    offset: float = math.nan

    def paintable(self, pc: PaintConfig) -> bool:
        """A galaxy at the centre, bright enough to be a deflector."""
        m = self.mag.get("i", math.nan)
        return bool(np.isfinite(m) and m <= pc.max_mag and self.extent >= pc.min_extent
                    and self.offset <= pc.max_offset)


def _sky(img: np.ndarray) -> float:
    """Sky level of a band: the median of the cutout's border pixels (4 px wide)."""
    b = np.concatenate([img[:4].ravel(), img[-4:].ravel(), img[4:-4, :4].ravel(),
                        img[4:-4, -4:].ravel()])
    return float(np.median(b))


def host_photometry(data: np.ndarray, cfg: SimConfig, aperture_arcsec: float = 2.5):
    """Aperture magnitudes (per band), second-moment width over the PSF's, noise per band, and
    the offset of the light's peak from the centre (arcsec).

    The central source: flux within ``aperture_arcsec`` of the cutout centre over the border's
    sky; its width from the second moments of the band sum inside the aperture, relative to a
    point source's under the preset's median seeing (1 for a star, more for a galaxy); its
    peak: the brightest pixel in the aperture of the band sum smoothed by a 1-pixel Gaussian.

    Parameters
    ----------
    data : ndarray, shape ``(bands, size, size)``
        A cutout on the preset's grid, at its zero point (as lensscore reads it).
    cfg : SimConfig
        The preset: zero point, pixel scale, seeing, bands.
    aperture_arcsec : float

    Returns
    -------
    mags : dict band -> float
        NaN where the aperture's flux is not positive.
    extent : float
    noise : ndarray, shape ``(bands,)``
    offset : float
    """
    from scipy import ndimage

    n = data.shape[-1]
    c = (n - 1) / 2
    yy, xx = np.mgrid[:n, :n]
    r2 = ((xx - c) ** 2 + (yy - c) ** 2) * cfg.pixel_scale ** 2
    ap = r2 <= aperture_arcsec ** 2
    mags, sub = {}, []
    for b, band in enumerate(cfg.bands):
        img = data[b].astype(np.float64) - _sky(data[b])
        sub.append(img)
        f = img[ap].sum()
        mags[band] = float(cfg.zeropoint - 2.5 * math.log10(f)) if f > 0 else math.nan
    tot = np.sum(sub, axis=0)
    w = np.clip(tot, 0, None) * ap
    width = math.nan
    if w.sum() > 0:
        m2 = float((w * r2).sum() / w.sum())
        psf = renderer(cfg).psf(float(np.median(cfg.seeing)))
        k = psf.shape[0]
        pr2 = ((np.mgrid[:k, :k] - (k - 1) / 2) ** 2).sum(0) * cfg.pixel_scale ** 2
        pap = pr2 <= aperture_arcsec ** 2
        p2 = float((psf * pr2 * pap).sum() / (psf * pap).sum())
        width = math.sqrt(m2 / p2)
    noise = np.array([measure_noise(data[b]) for b in range(data.shape[0])])
    sm = np.where(ap, ndimage.gaussian_filter(tot, 1.0), -np.inf)
    py, px = np.unravel_index(np.argmax(sm), sm.shape)
    offset = float(math.hypot(px - c, py - c) * cfg.pixel_scale)
    return mags, width, noise, offset


def read_hosts(sources, cfg: SimConfig, options, pc: PaintConfig = PaintConfig(),
               progress: Callable[[int, int], None] | None = None):
    """Read ``sources`` as :class:`Host` objects, through lensscore's reader.

    Parameters
    ----------
    sources : sequence of lensscore.sources.Source
    cfg : SimConfig
        The preset (photometry).
    options : lensscore.grid.ReadOptions
        The model's grid (:func:`train.presets.read_options`).
    pc : PaintConfig
    progress : callable(done, total), optional

    Returns
    -------
    hosts : list of Host
        Every readable cutout with its photometry (paintable or not: :meth:`Host.paintable`).
    skipped : list of (id, reason)
        Those the reader refused.
    """
    from lensscore.io import load_source
    from lensscore.tilecut import close_tiles

    hosts, skipped = [], []
    try:
        for k, s in enumerate(sources):
            try:
                c = load_source(s, cfg.bands, cfg.size, options)
            except (CutoutError, ValueError) as exc:
                skipped.append((s.id, str(exc)))
            else:
                hosts.append(Host(s.id, np.asarray(c.data, np.float32), float(c.ra),
                                  float(c.dec), *host_photometry(c.data, cfg, pc.aperture_arcsec)))
            if progress:
                progress(k + 1, len(sources))
    finally:
        close_tiles()  # the stamps detections are cut from (a scan closes its own the same way)
    return hosts, skipped


def theta_e_prior(rng, mag_i: float, theta_e_range, max_draws: int = 40) -> float | None:
    """An Einstein radius for a deflector of i magnitude ``mag_i`` (the module's stated prior),
    or None when ``max_draws`` draws all fall outside ``theta_e_range``."""
    lo, hi = theta_e_range
    for _ in range(max_draws):
        te = DEFLECTOR_THETA_REF * 10 ** (
            (DEFLECTOR_MAG_REF - mag_i + rng.normal(0, DEFLECTOR_MAG_SCATTER)) / 2.5)
        if lo <= te <= hi:
            return float(te)
    return None


def _seed_of(host_id: str) -> int:
    return zlib.crc32(host_id.encode())


def paint_one(host: Host, k: int, seed: int, cfg: SimConfig, pc: PaintConfig = PaintConfig()):
    """The ``k``-th painting of ``host``. Pure in ``(host.id, seed, k)`` and the host's pixels.

    Parameters
    ----------
    host : Host
    k : int
        The painting's number.
    seed : int
    cfg : SimConfig
        The preset: its PSF, gain and cuts.
    pc : PaintConfig

    Returns
    -------
    image : ndarray, float32, shape ``(bands, size, size)``, or None
        The host's pixels plus the lensed source (PSF-convolved, with its Poisson noise), in
        the host's units; None when no draw passed the cuts.
    truth : dict
        theta_E, magnification, arc S/N and contrast, quasar or not, ``painted``.
    """
    from scipy.signal import fftconvolve

    R = renderer(cfg)
    rng = np.random.default_rng([seed, _seed_of(host.id), k])
    cond = draw_conditions(R, rng)
    unit = 10 ** (0.4 * (cfg.zeropoint - ZP))  # internal counts -> the host's units
    sigma = np.asarray(host.noise, float) / unit
    truth = {"host": host.id, "seed": seed, "k": k, "host_mag_i": host.mag.get("i", math.nan),
             "host_g_r": host.mag.get("g", math.nan) - host.mag.get("r", math.nan),
             "theta_e": math.nan, "magnification": math.nan, "arc_snr": math.nan,
             "arc_contrast_g": math.nan, "quasar": False, "painted": False}
    te = theta_e_prior(rng, host.mag.get("i", math.nan), cfg.theta_e_range, pc.max_draws)
    if te is None:
        return None, truth
    quasar = bool(rng.random() < cfg.quasar_fraction)
    host_g = (host.data[0].astype(np.float64) - _sky(host.data[0])) / unit
    for attempt in range(pc.max_draws):
        if attempt % 4 == 0:  # a new lens model every 4 tries, as the simulator does
            kwl, bx, by = draw_lens_model(R, rng, te)
        _, lensed, _, mu = lensed_source(R, rng, te, kwl, bx, by, quasar)
        if mu < cfg.min_magnification:
            continue
        snr = arc_snr(lensed, sigma, cond["gain"])
        if snr < cfg.min_arc_snr:
            continue
        seen = np.stack([fftconvolve(lensed[b], cond["psf"][b], mode="same")
                         for b in range(lensed.shape[0])])
        peak = np.unravel_index(np.argmax(seen[0]), seen[0].shape)
        contrast = float(seen[0][peak] / max(host_g[peak], 1e-12))
        if contrast < cfg.min_contrast:
            continue
        noisy = seen + rng.normal(0.0, 1.0, seen.shape) * np.sqrt(
            np.clip(seen, 0, None) / np.asarray(cond["gain"])[:, None, None])
        img = (host.data + noisy * unit).astype(np.float32)
        truth.update(theta_e=te, magnification=mu, arc_snr=snr, arc_contrast_g=contrast,
                     quasar=quasar, painted=True, redraws=attempt)
        return img, truth
    return None, truth


def _paint_chunk(args):
    hosts, jobs, seed, cfg_json, pc = args
    cfg = SimConfig.from_json(cfg_json)
    by_id = {h.id: h for h in hosts}
    return [(hid, k, *paint_one(by_id[hid], k, seed, cfg, pc)) for hid, k in jobs]


def paint(hosts: Sequence[Host], n: int, seed: int = 0, cfg: SimConfig = SimConfig(),
          pc: PaintConfig = PaintConfig(), workers: int = 1, chunk: int = 64,
          progress: Callable[[int, int], None] | None = None):
    """``n`` paintings spread evenly over the paintable ``hosts`` (host j gets the k-th
    paintings with ``k = j, j + H, ...`` in turn), in job order.

    Returns a list of ``(host id, k, image or None, truth)``: a job whose draws all failed the
    cuts keeps its place with ``None`` (so a set is the same whatever the number of workers).
    """
    ok = [h for h in hosts if h.paintable(pc)]
    if not ok:
        raise ValueError("no paintable host: every cutout is a star, off-centre, too faint "
                         f"(i > {pc.max_mag}) or unreadable")
    jobs = [(ok[j % len(ok)].id, j // len(ok)) for j in range(n)]
    chunks = [jobs[s:s + chunk] for s in range(0, n, chunk)]
    need = [sorted({hid for hid, _ in c}) for c in chunks]
    by_id = {h.id: h for h in ok}
    args = [([by_id[h] for h in ids], c, seed, cfg.to_json(), pc) for ids, c in zip(need, chunks)]
    rows: list = []
    if workers <= 1:
        results = map(_paint_chunk, args)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("forkserver"))
        results = ex.map(_paint_chunk, args)
    try:
        for r in results:
            rows += r
            if progress:
                progress(len(rows), n)
    finally:
        if workers > 1:
            ex.shutdown(cancel_futures=True)
    return rows


def detect(img: np.ndarray, nsig: float = 6.0, smooth: float = 1.0) -> list[tuple[float, float]]:
    """Peaks of an image at least ``nsig`` times its noise above the sky, after Gaussian
    smoothing of ``smooth`` pixels: one (x, y) each, the flux-weighted centre of its
    connected region above 3 sigma (0-based pixels, x along the last axis)."""
    from scipy import ndimage

    im = np.nan_to_num(np.asarray(img, np.float64) - np.nanmedian(img))
    sm = ndimage.gaussian_filter(im, smooth)
    # white noise of sigma, smoothed by a unit Gaussian of s pixels: sigma / (2 sqrt(pi) s)
    noise = (measure_noise(im) / (2 * math.sqrt(math.pi) * smooth)) or 1e-30
    lab, n = ndimage.label(sm > 3 * noise)
    out = []
    for k in range(1, n + 1):
        region = lab == k
        if sm[region].max() < nsig * noise:
            continue
        w = np.where(region, np.clip(sm, 0, None), 0)
        cy, cx = ndimage.center_of_mass(w)
        out.append((float(cx), float(cy)))
    return out


def _stamp_image(s, bands):
    """The sum over ``bands`` of a source's per-band stamp files, with its celestial WCS and
    mean pixel scale (arcsec); None for a source that is not per-band files of those bands."""
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    from lensscore.geometry import axis_scales, cd_matrix

    files = dict(s.files) if isinstance(s.files, tuple) else {}
    if not all(b in files for b in bands):
        return None
    planes, wcs = [], None
    for b in bands:
        with fits.open(files[b], memmap=False) as hd, warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            hdu = next(h for h in hd if h.data is not None)
            planes.append(np.asarray(hdu.data, np.float64))
            wcs = wcs or WCS(hdu.header).celestial
    return np.sum(planes, axis=0), wcs, float(np.mean(axis_scales(cd_matrix(wcs))))


def stamp_detections(sources, bands=("r", "i"), nsig: float = 6.0,
                     fov_arcsec: float = FOV_ARCSEC, margin_arcsec: float = 0.5):
    """Sources detected in stamps (per-band files) away from each stamp's central object.

    A detection is kept when the stamp's centre (its object: a lens) lies outside the square
    field of view centred on the detection by more than ``margin_arcsec``. Returns a list of
    ``(id, ra, dec, stamp id)``; ids are ``<stamp id>/det<k>``.
    """
    rows = []
    for s, wcs, scale, found in _stamp_detections(sources, bands, nsig):
        half = (fov_arcsec / 2 + margin_arcsec) / scale
        for k, (x, y, dx, dy) in enumerate(found):
            if max(abs(dx), abs(dy)) <= half:
                continue
            ra, dec = wcs.pixel_to_world_values(x, y)
            rows.append((f"{s.id}/det{k}", float(ra), float(dec), s.id))
    return rows


def _stamp_detections(sources, bands, nsig: float):
    """For each source read from per-band stamps: ``(source, wcs, pixel scale, detections)``,
    each detection ``(x, y, dx, dy)``: pixel position and offset from the stamp's centre."""
    for s in sources:
        got = _stamp_image(s, bands)
        if got is None:
            continue
        img, wcs, scale = got
        cx, cy = (img.shape[1] - 1) / 2, (img.shape[0] - 1) / 2
        yield s, wcs, scale, [(x, y, x - cx, y - cy) for x, y in detect(img, nsig)]


def recentred_positions(sources, bands=("r", "i"), nsig: float = 6.0,
                        max_shift_arcsec: float = 2.0) -> dict:
    """Where a survey's catalog would put each stamp's central object: the flux-weighted
    centre of its detection (:func:`detect`, ``nsig`` in the band sum), the detection nearest
    the stamp centre within ``max_shift_arcsec``. The development set's non-lenses were cut
    so (centred on 6-sigma peaks in r+i), its lenses at their catalogued coordinates.

    Returns ``{id: (ra, dec, shift in arcsec)}`` for the stamps with such a detection."""
    out = {}
    for s, wcs, scale, found in _stamp_detections(sources, bands, nsig):
        near = [(math.hypot(dx, dy) * scale, x, y) for x, y, dx, dy in found]
        near = [d for d in near if d[0] <= max_shift_arcsec]
        if near:
            shift, x, y = min(near)
            ra, dec = wcs.pixel_to_world_values(x, y)
            out[s.id] = (float(ra), float(dec), float(shift))
    return out


def recentre(sources, bands, options, nsig: float = 6.0, max_shift_arcsec: float = 2.0):
    """``sources`` with every lens read from per-band stamps cut again, by lensscore's
    catalog-and-tiles reader, at :func:`recentred_positions` (same id and label); the other
    sources, and lenses without a detection near their centre, unchanged. Returns the new
    list and ``{id: shift in arcsec}`` of those moved."""
    import tempfile
    from dataclasses import replace

    from astropy.table import Table

    from lensscore.tiles import catalog_sources

    lenses = [s for s in sources if s.label == 1]
    det_bands = tuple(b for b in ("r", "i") if b in bands) or tuple(bands)
    pos = recentred_positions(lenses, det_bands, nsig, max_shift_arcsec)
    moved = {}
    with tempfile.TemporaryDirectory() as tmp:
        for s in lenses:
            if s.id not in pos:
                continue
            cat = Path(tmp) / "centre.ecsv"
            Table(rows=[("obj", *pos[s.id][:2])], names=("id", "ra", "dec")).write(
                cat, overwrite=True)
            cut, _ = catalog_sources(cat, str(Path(s.files[0][1]).parent), options)
            if len(cut) == 1 and cut[0].error is None:
                moved[s.id] = replace(cut[0], id=s.id, label=1)
    return [moved.get(s.id, s) for s in sources], {i: pos[i][2] for i in moved}


def detection_sources(stamp_dir, bands, options, nsig: float = 6.0):
    """Sources of lensscore's catalog-and-tiles reader for the detections in the stamps under
    ``stamp_dir`` (:func:`stamp_detections`; every stamp is a tile), ready for
    :func:`read_hosts`; a detection whose cutout does not fit on a stamp is an error source
    (the reader says why). Returns ``(sources, stamp id of each)``."""
    import tempfile

    from astropy.table import Table

    from lensscore.io import find_sources
    from lensscore.tiles import catalog_sources

    stamps = [s for s in find_sources(stamp_dir, bands) if not s.error]
    rows = stamp_detections(stamps, nsig=nsig, fov_arcsec=options.grid.size *
                            options.grid.pixel_scale)
    if not rows:
        return [], {}
    with tempfile.TemporaryDirectory() as tmp:
        cat = Path(tmp) / "detections.ecsv"
        Table(rows=[r[:3] for r in rows], names=("id", "ra", "dec")).write(cat)
        sources, _ = catalog_sources(cat, stamp_dir, options)
    return sources, {r[0]: r[3] for r in rows}


def detections_around(sources, bands, options, nsig: float = 6.0) -> list:
    """Sources of the detections around the lenses among ``sources`` (those with label 1 read
    from per-band stamps), as non-lenses ``nonlenses/det/<stamp>/det<k>``; detections whose
    cutout does not fit on their stamp are left out."""
    from dataclasses import replace

    stamp_dirs = sorted({str(Path(f).parent) for s in sources if s.label == 1
                         for _, f in (s.files if isinstance(s.files, tuple) else ())})
    out = []
    for d in stamp_dirs:
        det, _ = detection_sources(d, bands, options, nsig)
        # <stamp dir>/<stamp id>/det<k>: unique when one directory holds several stamps
        out += [replace(s, id=f"nonlenses/det/{Path(d).name}/{s.id}", label=0)
                for s in det if s.error is None]
    ids = [s.id for s in out]
    if len(set(ids)) != len(ids):
        raise ValueError("detections with the same id: stamps of the same name in one "
                         "directory?")
    return out


def write_painted(out_dir, rows, hosts: Sequence[Host], cfg: SimConfig,
                  overwrite: bool = False) -> dict:
    """Write paintings (``lenses/``) and their hosts unpainted (``nonlenses/``) as FITS cutouts
    on the model's grid (WCS at the host's position, ``MAGZERO``, ``BAND0..``), and
    ``truth.ecsv``; with ``overwrite``, the FITS files of an earlier painting there go first.
    Returns counts."""
    from astropy.io import fits
    from astropy.table import Table

    from .simulate import grid_header

    from lensscore.files import atomic_path

    out = Path(out_dir)
    for d in ("lenses", "nonlenses"):
        (out / d).mkdir(parents=True, exist_ok=True)
        if overwrite:  # a painting's files, not a mix of two
            for f in (out / d).glob("*.fits"):
                f.unlink()

    headers: dict = {}

    def header(h: Host):  # one per host: making a WCS header costs as much as writing a file
        if h.id not in headers:
            hd = grid_header(cfg, h.ra if np.isfinite(h.ra) else 0.0,
                             h.dec if np.isfinite(h.dec) else 0.0)
            hd["MAGZERO"] = cfg.zeropoint
            hd["HOST"] = h.id[-60:]
            headers[h.id] = hd
        return headers[h.id]

    def safe(s):
        return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s)

    by_id = {h.id: h for h in hosts}
    truth = []
    for hid, k, img, t in rows:
        if img is None:
            continue
        rel = f"lenses/{safe(hid)}__p{k:05d}.fits"
        with atomic_path(out / rel, suffix=".fits") as tmp:
            fits.PrimaryHDU(img, header=header(by_id[hid])).writeto(tmp)
        truth.append({**t, "path": rel, "label": 1})
    for h in {hid for hid, _, img, _ in rows if img is not None}:
        rel = f"nonlenses/{safe(h)}.fits"
        with atomic_path(out / rel, suffix=".fits") as tmp:
            fits.PrimaryHDU(by_id[h].data, header=header(by_id[h])).writeto(tmp)
    Table(rows=truth).write(out / "truth.ecsv", overwrite=True) if truth else None
    return {"painted": len(truth), "failed": sum(img is None for _, _, img, _ in rows)}


def preview(real: Sequence[np.ndarray], rows, hosts: Sequence[Host], png, per_row: int = 8,
            stretch: float | None = None) -> Path:
    """Real lenses (``real``, cutouts as read), then hosts unpainted, then the same hosts
    painted (``rows`` from :func:`paint`), as Lupton RGB panels at one stretch (default: a
    typical bright-pixel level of the real lenses)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .simcheck import rgb_panel, save_figure

    by_id = {h.id: h for h in hosts}
    done, seen = [], set()
    for hid, _, img, t in rows:  # one painting per host, as many hosts as fit
        if img is not None and hid not in seen:
            done.append((by_id[hid], img, t))
            seen.add(hid)
        if len(done) == per_row:
            break

    def sub(im):
        return np.asarray(im, float) - np.median(im, axis=(1, 2), keepdims=True)

    panels = {"real lenses": [sub(im) for im in real[:per_row]],
              "hosts (real)": [sub(h.data) for h, _, _ in done],
              "the same, painted": [sub(im) for _, im, _ in done]}
    if stretch is None:
        stretch = float(np.median([np.percentile(im, 99) for im in panels["real lenses"]]
                                  or [1.0]))
    fig, axes = plt.subplots(3, per_row, figsize=(1.5 * per_row, 5.0), squeeze=False)
    for r, (name, ims) in enumerate(panels.items()):
        for c in range(per_row):
            rgb_panel(axes[r, c], ims[c] if c < len(ims) else None, stretch)
            if r == 2 and c < len(done):
                t = done[c][2]
                axes[r, c].set_title(f"θE {t['theta_e']:.2f}\" μ {t['magnification']:.0f}",
                                     fontsize=6)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(f"arcs painted onto real cutouts, one stretch ({stretch:.3g})", fontsize=9)
    return save_figure(fig, png, 80)
