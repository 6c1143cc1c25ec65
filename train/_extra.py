"""One line, not a traceback, where a ``train`` or ``export`` command needs the ``[train]``
extra and the light install (``pip install lensscore``) has not got it."""

from __future__ import annotations

import sys
from collections.abc import Callable

#: the top-level modules of the ``[train]`` extra (pyproject.toml) and what they bring
TRAIN_EXTRA = frozenset({"tensorflow", "keras", "tf2onnx", "onnx", "lenstronomy", "matplotlib"})


def run(main: Callable[[], object]):
    """``main()``; a missing module of the ``[train]`` extra ends the process with a one-line
    error (exit 1) instead of a traceback. Any other error is raised as it is."""
    try:
        return main()
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in TRAIN_EXTRA:
            raise
        sys.exit(f"error: this command needs {top}, which is not installed: "
                 "pip install 'lensscore[train]'")
