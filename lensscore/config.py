"""Defaults shared by the scorer, training and export: the one place for these numbers."""

from __future__ import annotations

__all__ = [
    "DEFAULT_BANDS",
    "DEFAULT_SIZE",
    "PIXEL_SCALE_ARCSEC",
    "FOV_ARCSEC",
    "DEFAULT_ZEROPOINT",
    "DEFAULT_THRESHOLD",
    "LOGIT_OUTPUT",
    "INVARIANCE_TOLERANCE",
    "SCAN_INVARIANCE_TOLERANCE",
    "DEFAULT_BATCH_SIZE",
    "TRUNK_BATCH_SIZE",
    "MAX_CUTOUT_PIXELS",
    "FITS_SUFFIXES",
    "META_PREFIX",
    "ARCH_INVARIANCE",
    "SYMMETRIES",
    "TRANSFORMS",
    "TRANSFORM_NAMES",
]

#: HSC g, r, i as in Cañameras et al. (2020, 2021).
DEFAULT_BANDS: tuple[str, ...] = ("g", "r", "i")
#: Cutout side in pixels of the default (HSC) grid.
DEFAULT_SIZE: int = 72
#: Pixel scale of the default grid: HSC's 0.168"/px.
PIXEL_SCALE_ARCSEC: float = 0.168
#: Side of a cutout on the default grid: 72 px x 0.168" = 12.096", quoted as 12.1" (rounded to
#: 0.1", as the shared real data's README and the docs say). Every survey preset of ``train``
#: keeps this field of view: its side is ``FOV_ARCSEC`` over its pixel scale, made even.
FOV_ARCSEC: float = DEFAULT_SIZE * PIXEL_SCALE_ARCSEC
#: Common AB zero point of the training images of a model without ``lensscore.zeropoint`` (HSC
#: coadd counts).
DEFAULT_ZEROPOINT: float = 27.0
DEFAULT_THRESHOLD: float = 0.5
#: the model output holding the score's logit, where a model has one (``export.logit``): it ranks
#: where float32 scores have saturated to 1.0
LOGIT_OUTPUT: str = "logit"
#: The largest spread of a model's scores over the transforms it claims invariance to (std of
#: the four rotations; largest change under a mirror) that export accepts: what it proves on
#: the machine that exports.
INVARIANCE_TOLERANCE: float = 1e-6
#: The spread above which a scan calls a claimed invariance violated: ten times what export
#: proves, room for other CPUs' and libraries' float rounding.
SCAN_INVARIANCE_TOLERANCE: float = 10 * INVARIANCE_TOLERANCE
#: Images per onnxruntime run (on CPU, per run of a model's dense head: the convolutional trunk
#: runs ``TRUNK_BATCH_SIZE`` at a time). The first dense layer reads its ~105 MB of weights once
#: a run, so 128 reads them a quarter as often as 32; with the trunk at 16, rot and d4 ran
#: 0.04-0.10 nearer the FLOP limit than whole at 32 (bench/RESULTS.md, "The trunk and the head
#: at their own batch sizes").
DEFAULT_BATCH_SIZE: int = 128
#: On CPU, images per run of a model's convolutional trunk, whose dense head then runs on the
#: whole batch (:mod:`lensscore._split`): a few images at a time keep the feature maps in the
#: cores' caches. 0 runs models whole; ``$LENSSCORE_TRUNK_BATCH`` overrides it.
TRUNK_BATCH_SIZE: int = 16
#: A cutout is small; an image HDU with more pixels than this is refused before its data are read,
#: so a corrupt header cannot make the scorer allocate gigabytes.
MAX_CUTOUT_PIXELS: int = 4096 * 4096
#: File name endings treated as FITS (longest first: matching order matters).
FITS_SUFFIXES: tuple[str, ...] = (
    ".fits.gz", ".fits.fz", ".fit.gz", ".fts.gz", ".fits", ".fit", ".fts", ".fz",
)
#: Prefix of the ONNX ``metadata_props`` keys that lensscore reads and writes.
META_PREFIX: str = "lensscore."
#: The symmetry groups a model can be exactly invariant to: none, C4 (the four 90° rotations),
#: D4 (the rotations and their mirror images: the 8 transforms of the dihedral group).
SYMMETRIES: tuple[str, ...] = ("none", "C4", "D4")
#: The architectures of ``train`` and the group each is invariant to by construction.
ARCH_INVARIANCE: dict[str, str] = {"baseline": "none", "rot": "C4", "d4": "D4"}
#: The 8 transforms of D4 as ``(k, mirror)``, in the order of every ``(..., 8)`` array of
#: transform scores: the four 90° rotations of the cutout, then the four rotations of its mirror
#: image (mirrored in x first: :func:`lensscore.scorer.transform`).
TRANSFORMS: tuple[tuple[int, bool], ...] = tuple((k, m) for m in (False, True) for k in range(4))
#: Catalog column suffixes of :data:`TRANSFORMS`: ``r0..r3`` the rotations, ``m0..m3`` the
#: mirror image rotated.
TRANSFORM_NAMES: tuple[str, ...] = tuple(f"{'m' if m else 'r'}{k}" for k, m in TRANSFORMS)
