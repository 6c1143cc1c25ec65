"""lensscore: find galaxy-scale strong gravitational lenses in multi-band FITS cutouts.

The scorer needs only numpy, astropy and onnxruntime::

    from lensscore import Scorer, load_cutout, scan

    scorer = Scorer()                      # the shipped d4 model; or Scorer("ps1"), Scorer("my.onnx")
    cut = load_cutout("obj.fits", scorer.bands, scorer.size, options=scorer.read_options())
    p = scorer.score(cut.data)             # one (bands, y, x) cutout: a float; (N, ...): (N,)
    res = scan("cutouts/", scorer=scorer, output="candidates.ecsv")
"""

import importlib as _importlib
import types as _types

from ._version import __version__

#: public name -> the module that defines it. Imported on first use, so that the console script
#: (:mod:`lensscore._entry`) starts building the model's session before numpy, astropy or the
#: command-line layer are imported.
_WHERE = {"Scorer": "scorer", "Committee": "committee", "load_cutout": "io",
          "find_sources": "sources", "scan": "scan", "scan_catalog": "scan",
          "ScanResult": "scan", "Cutout": "cutout", "Source": "sources",
          "preprocess": "preprocess", "PreprocessSpec": "preprocess",
          "CutoutError": "errors", "LensscoreError": "errors", "ModelError": "errors"}

__all__ = ["__version__", *_WHERE]


def __getattr__(name):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))


class _Package(_types.ModuleType):
    """Importing ``lensscore.scan`` or ``lensscore.preprocess`` binds the submodule on the
    package; ``lensscore.scan`` stays the function (as with ``from .scan import scan``)."""

    def __setattr__(self, name, value):
        if _WHERE.get(name) == name and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


import sys as _sys  # noqa: E402

_sys.modules[__name__].__class__ = _Package
