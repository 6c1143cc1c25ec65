"""The ``lensscore`` console script: for ``lensscore scan`` on the CPU, the model's onnxruntime
session starts building (:func:`lensscore._session.build_ahead`) before the command-line layer is
imported and the options parsed; both take ~0.3 s, and they overlap.

Only the bare ``argv`` is read here, and only to guess: the CLI parses the options as always, and
a session built for a guess that turns out wrong is not used (:func:`lensscore._session.load`
matches file, providers and threads).
"""

from __future__ import annotations

import os
import sys

_TAKES_VALUE_NOT_MODEL = {"--combine", "-o", "--output", "--labels", "--tta", "--threshold",
                          "--batch-size", "--workers", "--top", "--bands", "--size", "--gallery",
                          "--shard", "--tls-ca-file", "--tls-cert", "--tls-key", "--catalog",
                          "--images", "--id-column", "--keep-columns", "--pixel-scale",
                          "--zeropoint"}


def scan_models(argv: list[str]) -> tuple[list[str], int | None] | None:
    """``(model paths, threads)`` a ``scan`` command line will load on the CPU, or None when it
    is not such a line (another command, --help, --dask, a --device, anything unclear)."""
    if not argv or argv[0] != "scan":
        return None
    models: list[str] = []
    threads = None
    it = iter(argv[1:])
    for a in it:
        name, eq, val = a.partition("=")
        if name in ("-m", "--model", "--threads", "--device", "--dask") or \
                name in _TAKES_VALUE_NOT_MODEL:
            if not eq:
                val = next(it, None)
                if val is None:
                    return None
            if name == "--dask" or (name == "--device" and val != "cpu"):
                return None
            if name == "--threads":
                if not val.isdigit():
                    return None
                threads = int(val)
            elif name in ("-m", "--model"):
                models.append(val)
        elif a in ("--help", "--") or (a.startswith("-m") and len(a) > 2):
            return None
    return models, threads


#: numpy's BLAS runs single-threaded in the console script, unless the environment says
#: otherwise. The model runs in onnxruntime's own thread pool; numpy's matrix products are the
#: loader's small ones (:func:`lensscore.grid.resample`, 72x120 @ 120x120), which OpenBLAS
#: splits over every core at a few times the CPU time of one thread (bench/RESULTS.md), and its
#: threads would take cores from onnxruntime's. Set before numpy is first imported.
_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def main() -> None:
    for var in _BLAS_THREADS:
        os.environ.setdefault(var, "1")
    guess = scan_models(sys.argv[1:])
    if guess is not None:
        try:
            from . import _session

            models, threads = guess
            for m in models or [_session.default_model_path()]:
                m = _session.resolve_model(m)
                if os.path.isfile(m):
                    _session.build_ahead(m, ["CPUExecutionProvider"], threads)
        except Exception:  # a guess only: the CLI reports any problem in its own words
            pass
    from .cli import main as cli_main

    if guess is None:
        cli_main()
        return
    try:
        cli_main()
    except SystemExit as exc:
        code = exc.code
        if code is not None and not isinstance(code, int):
            raise
    else:
        code = 0
    _exit_now(code or 0)


def _exit_now(code: int) -> None:
    """End a finished scan without the interpreter's teardown (~0.12 s: freeing onnxruntime's
    session and threads, and every module). The scan has closed its catalog and gallery files;
    what is still buffered in Python is flushed here, and nothing else is pending."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed pipe: nothing more can be written anyway
            pass
    os._exit(code)
