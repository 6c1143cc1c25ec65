"""TensorFlow's start-up log lines, held to ``TF_CPP_MIN_LOG_LEVEL``.

TensorFlow 2.19-2.21 print ``I0000 ... oneDNN custom operations are on`` and ``cudart_stub.cc
... Could not find cuda drivers`` while ``import tensorflow`` loads its libraries, before their
log level applies (tensorflow/tensorflow#100442): ``TF_CPP_MIN_LOG_LEVEL=3`` set before the
import does not stop them. ``python -m train`` and ``python -m export`` install
:func:`filter_tensorflow_import`: TensorFlow's import writes its C++ stderr into a small child
process that reads it line by line, and the lines its own level says to drop (glog
``I``/``W``/``E`` lines and abseil's "before absl::InitializeLog" note) are dropped; everything
else (Python warnings, tracebacks, any other text, a fatal check's ``F`` line) is written to
stderr at once, as it came -- even when the process dies while TensorFlow loads.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

__all__ = ["filter_tensorflow_import", "drop_tf_lines"]

#: glog/abseil severity letters by TF_CPP_MIN_LOG_LEVEL: 1 drops INFO, 2 also WARNING, 3 ERROR
_DROPPED = {0: "", 1: "I", 2: "IW", 3: "IWE"}
_GLOG = re.compile(r"^([IWE])\d{4} [\d:.]+ +\d+ \S+:\d+\] ")
_ABSL_NOTE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def _level() -> int:
    try:
        return max(0, min(3, int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))))
    except ValueError:
        return 0


def drop_tf_lines(text: str, level: int) -> str:
    """``text`` without the TensorFlow C++ log lines that ``TF_CPP_MIN_LOG_LEVEL=level``
    hides (and abseil's note about them when any are hidden)."""
    drop = _DROPPED[level]
    if not drop:
        return text
    kept = []
    for line in text.splitlines(keepends=True):
        m = _GLOG.match(line)
        if (m and m.group(1) in drop) or line.strip() == _ABSL_NOTE:
            continue
        kept.append(line)
    return "".join(kept)


#: the filtering child: lines from stdin to stdout, less those drop_tf_lines drops
_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); from train._tflog import drop_tf_lines; "
          "[sys.stdout.buffer.write(b) or sys.stdout.flush() for b in iter("
          "sys.stdin.buffer.readline, b'') if drop_tf_lines(b.decode('utf-8', 'replace'), "
          "int(sys.argv[2]))]")


class _Finder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once (the first import, wherever it happens) and runs its import
    with stderr (fd 2) into a child process that passes its lines on to stderr as they come,
    less those the log level hides."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            level = _level()
            if not level:
                return run(module)
            sys.stderr.flush()
            saved = os.dup(2)
            # a child process filters the lines on to stderr as they come: if TensorFlow's
            # loading aborts this process (a fatal check), the child still reads what was
            # written, the fatal line too, and passes it on
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(Path(__file__).resolve().parent.parent),
                 str(level)], stdin=subprocess.PIPE, stdout=saved, stderr=saved)
            os.dup2(child.stdin.fileno(), 2)
            try:
                return run(module)
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                child.stdin.close()  # the child reads to the end and exits
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
                os.close(saved)

        spec.loader.exec_module = exec_module
        return spec


def filter_tensorflow_import() -> None:
    """Hold TensorFlow's import-time log lines to ``TF_CPP_MIN_LOG_LEVEL`` (read when
    TensorFlow is imported, so that a CLI callback that sets it first still decides). Does
    nothing when TensorFlow is already imported."""
    if "tensorflow" in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())
