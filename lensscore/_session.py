"""onnxruntime sessions, and building one ahead of time in a thread.

``lensscore scan`` spends ~0.3 s importing its command-line layer and parsing options before it
knows what to score, and building the model's session takes as long again; onnxruntime releases
the GIL while it builds. :func:`build_ahead` starts the build from the bare ``argv``
(:mod:`lensscore._entry`); :func:`load` takes that session when the file, providers and threads
match, and builds its own otherwise. The options are the same either way, so the scores are too.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .config import TRUNK_BATCH_SIZE
from .errors import ModelError


#: The model ``lensscore scan`` uses without ``-m``: HSC g, r, i, exactly invariant to rotations
#: and mirror images (D4)
DEFAULT_MODEL = "d4"


def shipped_models_dir() -> Path | None:
    """Where the shipped models are: ``lensscore/models`` of an installation, or ``models/`` of
    a source checkout; None if neither holds any."""
    here = Path(__file__).resolve().parent
    for d in (here / "models", here.parent / "models"):
        if d.is_dir() and any(d.glob("*.onnx")):
            return d
    return None


def shipped_models() -> dict[str, Path]:
    """The shipped models by name (the file name without ``.onnx``), sorted."""
    d = shipped_models_dir()
    return {p.stem: p for p in sorted(d.glob("*.onnx"))} if d else {}


def resolve_model(model) -> Path:
    """A model file: ``model`` if it exists, else the shipped model of that name (``ps1``,
    ``ps1.onnx``, ``PS1`` and ``models/ps1.onnx`` all name ``ps1``).

    Raises
    ------
    ModelError
        Neither a file nor a shipped model; the message lists the shipped ones.
    """
    p = Path(os.fspath(model))
    if p.is_file():
        return p
    shipped = shipped_models()
    name = p.name[:-5] if p.name.lower().endswith(".onnx") else p.name
    if name not in shipped and name.lower() in shipped:
        name = name.lower()  # -m D4, -m PS1.onnx: the shipped names are lower case
    if name in shipped and (len(p.parts) == 1 or p.parent.name == "models"):
        return shipped[name]  # also where a directory of that name is in the way
    if p.exists():
        return p  # a directory: the scorer says so
    names = ", ".join(shipped) or "none in this installation"
    raise ModelError(f"{p}: model file not found (shipped models, by name: {names}; "
                     "`lensscore models` lists them)")


def default_model_path() -> Path:
    """The shipped default model: ``$LENSSCORE_MODEL`` (a file or a shipped model's name), else
    ``models/d4.onnx`` (:data:`DEFAULT_MODEL`).

    Raises
    ------
    ModelError
        If no default model can be found.
    """
    env = os.environ.get("LENSSCORE_MODEL")
    if env:
        return resolve_model(env)
    shipped = shipped_models()
    if DEFAULT_MODEL in shipped:
        return shipped[DEFAULT_MODEL]
    raise ModelError(
        f"no default model: models/{DEFAULT_MODEL}.onnx is not shipped with this installation; "
        "pass --model FILE.onnx (or set LENSSCORE_MODEL)"
    )


_ahead: dict[tuple, tuple[threading.Thread, dict]] = {}
_lock = threading.Lock()


def _key(path, providers, threads) -> tuple:
    return os.path.realpath(os.fspath(path)), tuple(providers), int(threads or 0)


def _trunk_batch(given: int | None) -> int:
    """``given`` if not None, else ``$LENSSCORE_TRUNK_BATCH`` (0: run models whole) if set,
    else :data:`~lensscore.config.TRUNK_BATCH_SIZE`."""
    if given is not None:
        return int(given)
    env = os.environ.get("LENSSCORE_TRUNK_BATCH", "").strip()
    if not env:
        return TRUNK_BATCH_SIZE
    try:
        value = int(env)
    except ValueError:
        value = -1
    if value < 0:
        raise ModelError(f"LENSSCORE_TRUNK_BATCH must be a whole number >= 0 (0: run models "
                         f"whole), got {env!r}")
    return value


def build(path: str, providers: list[str], threads: int | None,
          trunk_batch: int | None = None):
    """A session with lensscore's options (the one place they are set).

    On the CPU alone, a model whose dense head can be cut from its convolutional trunk
    comes back as a :class:`lensscore._split.SplitSession` that runs the trunk
    ``trunk_batch`` images at a time (0: never; None: ``$LENSSCORE_TRUNK_BATCH`` if set, else
    :data:`~lensscore.config.TRUNK_BATCH_SIZE`). Every other model is an
    ``onnxruntime.InferenceSession``.
    """
    import onnxruntime as ort

    def options(spinning: bool = True):
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads or 0)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # Weight-only int8 models (export --weights int8) hold DequantizeLinear on initializers.
        # With QDQ handling on (the default) onnxruntime keeps those nodes and dequantizes ~26 M
        # weights on every run (several times slower at batch 1: bench/RESULTS.md); off, it
        # folds them into float32 constants once.
        so.add_session_config_entry("session.disable_quant_qdq", "1")
        if not spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return so

    trunk_batch = _trunk_batch(trunk_batch)
    if trunk_batch > 0 and list(providers) == ["CPUExecutionProvider"]:
        from ._split import build as build_split

        # Each session has its own thread pool; a pool left spinning after its run takes
        # the cores from the other's (rot: 293 against 444 img/s at batch 32, measured)
        split = build_split(path, options(spinning=False), providers, trunk_batch)
        if split is not None:
            return split
    so = options()
    try:
        return ort.InferenceSession(path, sess_options=so, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        msg = " ".join(str(exc).split())
        raise ModelError(f"{path}: not a usable ONNX model ({msg[:200]})") from None


def build_ahead(path, providers: list[str], threads: int | None = None) -> None:
    """Start building ``path``'s session in a daemon thread, for a later :func:`load`."""
    box: dict = {}

    def run():
        try:
            box["session"] = build(os.fspath(path), providers, threads)
        except BaseException:  # load() builds again and raises it in the caller's thread
            pass

    t = threading.Thread(target=run, name="lensscore-session-ahead", daemon=True)
    with _lock:
        _ahead[_key(path, providers, threads)] = (t, box)
    t.start()


def load(path: str, providers: list[str], threads: int | None,
         trunk_batch: int | None = None):
    """The session built ahead for the same file, providers and threads, else a new one
    (:func:`build`)."""
    with _lock:
        pending = _ahead.pop(_key(path, providers, threads), None)
    if pending is not None:
        pending[0].join()
        if "session" in pending[1]:
            return pending[1]["session"]
    return build(path, providers, threads, trunk_batch)


def discard_ahead() -> None:
    """Drop sessions built ahead that no :func:`load` took (the options parsed otherwise)."""
    with _lock:
        _ahead.clear()
