"""lensscore: find galaxy-scale strong gravitational lenses in multi-band FITS cutouts.

The scorer needs only numpy, astropy and onnxruntime::

    from lensscore import Scorer, load_cutout, scan

    scorer = Scorer()                      # the shipped models/rot.onnx; or Scorer("my.onnx")
    cut = load_cutout("obj.fits", scorer.bands, scorer.size, options=scorer.read_options())
    p = scorer.score(cut.data)             # one (bands, y, x) cutout: a float; (N, ...): (N,)
    res = scan("cutouts/", scorer=scorer, output="candidates.ecsv")
"""

from ._version import __version__
from .committee import Committee
from .errors import CutoutError, LensscoreError, ModelError
from .io import Cutout, Source, find_sources, load_cutout
from .preprocess import PreprocessSpec, preprocess
from .scan import ScanResult, scan, scan_catalog
from .scorer import Scorer

__all__ = [
    "__version__",
    "Scorer",
    "Committee",
    "load_cutout",
    "find_sources",
    "scan",
    "scan_catalog",
    "ScanResult",
    "Cutout",
    "Source",
    "preprocess",
    "PreprocessSpec",
    "CutoutError",
    "LensscoreError",
    "ModelError",
]
