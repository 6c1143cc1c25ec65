"""Resumable training with the seed's recipe; a resumed run reaches the one-shot result."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lensscore.config import ARCH_INVARIANCE, DEFAULT_BANDS, DEFAULT_SIZE, DEFAULT_THRESHOLD
from lensscore.files import atomic_path, atomic_write
from lensscore.preprocess import DEFAULT_SPEC

from .data import Dataset, load_dataset, load_split, make_split, save_split

__all__ = ["FitConfig", "fit", "predict_scores", "RunDir", "load_config", "data_and_split",
           "write_history", "compiled_model"]

log = logging.getLogger(__name__)


@dataclass
class FitConfig:
    """Training configuration; defaults are the seed's (Table 2) and HOLISMOKES'.

    Attributes
    ----------
    arch : {"baseline", "rot", "d4"}
    epochs, batch_size, lr, l2, dropout : the recipe (35, 128, 6e-4, 1e-4, 0.5)
    conv_l2 : float or None
        L2 on convolution kernels if different from ``l2`` (the seed's code: 1e-3).
    patience : int
        Early stopping on validation loss; the best epoch's weights are kept.
    augment : bool or None
        Random 90° rotations and flips of the training images (the seed's first idea). None
        (the default): on for every architecture that is not invariant to both by construction
        (``baseline``, and ``rot``, which is blind to rotations but not to mirror images).
    seed : int
        Split, initialisation, shuffling, dropout and augmentation all derive from it.
    rot_mode : {"kernel", "input"}
        How :class:`train.models.RotationalConv2D` computes (same function).
    jit : bool
        XLA-compile the training step.
    init_from : str or None
        Start a new run from these weights instead of a random initialisation: an exported
        ``.onnx`` model of the same architecture (:mod:`train.from_onnx`, checked for parity)
        or a Keras ``.keras`` / ``.weights.h5`` file. Recorded with its sha256 in
        ``config.json`` (``init_sha256``).
    """

    arch: str = "d4"
    epochs: int = 35
    batch_size: int = 128
    lr: float = 6e-4
    l2: float = 1e-4
    conv_l2: float | None = None
    dropout: float = 0.5
    patience: int = 5
    augment: bool | None = None
    seed: int = 0
    rot_mode: str = "kernel"
    jit: bool = True
    init_from: str | None = None
    bands: tuple = DEFAULT_BANDS
    size: int = DEFAULT_SIZE
    #: survey preset of the training data (:mod:`train.presets`): export writes its pixel scale
    #: and zero point into the model, so the scorer puts inputs on the same grid
    survey: str = "hsc"
    preprocess: str = field(default_factory=DEFAULT_SPEC.to_json)

    def __post_init__(self):
        if self.arch not in ARCH_INVARIANCE:
            raise ValueError(f"unknown arch {self.arch!r}: choose one of "
                             f"{', '.join(ARCH_INVARIANCE)}")
        if self.augment is None:
            self.augment = ARCH_INVARIANCE[self.arch] != "D4"


class RunDir:
    """Files of a run directory."""

    def __init__(self, path):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.split = self.path / "split.json"
        self.ckpt = self.path / "checkpoint.keras"
        self.state = self.path / "state.json"
        self.best = self.path / "best.weights.h5"
        self.model = self.path / "model.keras"
        self.history = self.path / "history.csv"
        self.metrics = self.path / "metrics.json"
        self.report = self.path / "report.md"


def read_config(run) -> dict:
    """A run directory's ``config.json`` as a dict: the one place it is parsed (a run is a
    :class:`RunDir` or its path)."""
    path = run.config if isinstance(run, RunDir) else Path(run) / "config.json"
    return json.loads(path.read_text())


def load_config(run: RunDir) -> FitConfig:
    """The :class:`FitConfig` a run directory was started with."""
    d = read_config(run)
    cfg = FitConfig(**{k: v for k, v in d.items() if k in FitConfig.__dataclass_fields__})
    cfg.bands = tuple(cfg.bands)
    return cfg


def _bce(y, p) -> float:
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def predict_scores(model, ds: Dataset, idx, batch: int = 256) -> np.ndarray:
    """Keras scores of ``ds`` items ``idx`` (in chunks: the data set may be a memmap)."""
    out = []
    for i in range(0, len(idx), batch):
        out.append(np.asarray(model(ds.nhwc(idx[i:i + batch]), training=False)).reshape(-1))
    return np.concatenate(out) if out else np.empty(0, np.float32)


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = rng.integers(0, 4, len(x))
    flip = rng.integers(0, 2, len(x)).astype(bool)
    return augment(x, k, flip, channels_last=True)


def augment(x: np.ndarray, k, flip, *, channels_last: bool) -> np.ndarray:
    """Cutout ``j`` rotated by ``k[j]`` x 90° (:func:`lensscore.scorer.rotate`), then mirrored
    in x where ``flip[j]``: the dihedral augmentation of training and fine-tuning."""
    from lensscore.scorer import rotate

    out = np.empty_like(x)
    for j in range(len(x)):
        img = rotate(x[j], int(k[j]), channels_last=channels_last)
        out[j] = (img[..., ::-1, :] if channels_last else img[..., ::-1]) if flip[j] else img
    return out


def compiled_model(cfg: FitConfig):
    """The run's network (:func:`train.models.build_model`), compiled with its recipe."""
    import keras

    from .models import build_model

    model = build_model(cfg.arch, size=cfg.size, n_bands=len(cfg.bands), l2=cfg.l2,
                        conv_l2=cfg.conv_l2, dropout=cfg.dropout, rot_mode=cfg.rot_mode,
                        seed=cfg.seed)
    model.compile(optimizer=keras.optimizers.Adam(cfg.lr), loss="binary_crossentropy",
                  jit_compile=cfg.jit)
    return model


def _save_atomic(model, path: Path, weights_only=False):
    # Keras picks the format from the ending: keep ".keras" / ".weights.h5" last
    ending = ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix
    with atomic_path(path, suffix=ending) as tmp:
        if weights_only:
            model.save_weights(tmp)
        else:
            model.save(tmp)


def fit(
    data_dir,
    out_dir,
    config: FitConfig | None = None,
    *,
    resume: bool = False,
    dataset: Dataset | None = None,
    stop_after: int | None = None,
    epochs: int | None = None,
    on_batch: Callable[[int, int, int, float], None] | None = None,
    on_epoch: Callable[[dict], bool | None] | None = None,
    checkpoint: bool = True,
) -> list[dict]:
    """Train, checkpointing every epoch; ``resume=True`` continues an interrupted run.

    Parameters
    ----------
    data_dir : path
        Labelled FITS cutouts (see :func:`train.data.load_dataset`).
    out_dir : path
        The run directory: ``config.json``, ``split.json``, ``checkpoint.keras``, ``state.json``,
        ``history.csv``, and at the end ``model.keras`` (best validation loss).
    config : FitConfig
        Ignored on resume (the run's own ``config.json`` is used).
    resume : bool
    dataset : Dataset, optional
        Already loaded data (tests, notebooks).
    stop_after : int, optional
        Stop after this many epochs in this call (to train in several sessions).
    epochs : int, optional
        On resume: raise the run's epoch limit (recorded in ``config.json``) to continue a run
        that reached it; an early-stopped run stays stopped.
    on_batch : callable(epoch, batch, n_batches, loss), optional
    on_epoch : callable(history_row), optional
        Returning ``True`` ends the run after this epoch, as early stopping would (the best
        epoch's weights go into ``model.keras``): a caller's time budget.
    checkpoint : bool
        Save ``checkpoint.keras`` and ``best.weights.h5`` (each with the optimizer's state,
        ~3x the weights: ~2 s each for the HOLISMOKES CNN) every epoch so that the run can
        resume. ``False`` where one call trains the whole run (a lent GPU machine, whose epochs
        take ~6 s): the best weights are then kept in memory until ``model.keras``.
        The state and the history are written every epoch either way.

    Returns
    -------
    list of dict
        The history, one row per epoch.

    Raises
    ------
    ValueError
        ``stop_after`` without ``checkpoint``: nothing would be left to resume from.
    FileExistsError, FileNotFoundError
        A new run into a directory that holds one; a resume of a directory that holds none.
    """
    from . import models  # noqa: F401  (registers RotationalConv2D for load_model)

    if stop_after is not None and not checkpoint:
        raise ValueError("stop_after is for resuming later, which needs checkpoint=True")
    run = RunDir(out_dir)
    cfg = _open_run(run, config, resume, epochs)
    # the model first: a start (--init-from) that does not fit fails before split.json exists
    model, state = _model_and_state(run, cfg, resume)
    ds, split = data_and_split(run, cfg, data_dir, dataset, write_config=not resume)
    if state.get("stopped") or state["epoch"] >= cfg.epochs:
        log.info("%s: training already finished at epoch %d", run.path, state["epoch"])
        _finalize(model, run)
        return state["history"]

    done_here = 0
    best = {}  # the best epoch's weights, in memory when not checkpointing
    for epoch in range(state["epoch"], cfg.epochs):
        t0 = time.perf_counter()
        losses = _train_epoch(model, ds, split["train"], cfg, epoch, on_batch)
        row = _end_epoch(model, run, state, ds, split, epoch, losses, t0, cfg.patience,
                         best=None if checkpoint else best)
        ended = on_epoch(row) is True if on_epoch is not None else False
        done_here += 1
        if state["stopped"]:
            log.info("early stopping after epoch %d (best %d)", epoch + 1, state["best_epoch"])
            break
        if ended:
            log.info("ended by the caller after epoch %d (best %d)", epoch + 1,
                     state["best_epoch"])
            break
        if stop_after is not None and done_here >= stop_after:
            return state["history"]
    _finalize(model, run, best.get("weights"))
    return state["history"]


def _open_run(run: RunDir, config: FitConfig | None, resume: bool, epochs: int | None):
    """The run's configuration: its own ``config.json`` on resume (with a raised epoch limit
    recorded), else ``config`` for a new run directory (refused if it holds a run)."""
    if resume:
        if not run.config.exists():
            raise FileNotFoundError(f"{run.path}: no config.json, nothing to resume")
        cfg = load_config(run)
        if epochs is not None and epochs != cfg.epochs:
            d = read_config(run)
            log.info("%s: epoch limit %d -> %d", run.path, cfg.epochs, epochs)
            d["epochs"] = cfg.epochs = int(epochs)
            atomic_write(run.config, json.dumps(d, indent=1))
        return cfg
    if run.state.exists() or run.model.exists():
        raise FileExistsError(f"{run.path} holds a run already; use --resume or another --out")
    run.path.mkdir(parents=True, exist_ok=True)
    return config or FitConfig()


def data_and_split(run: RunDir, cfg: FitConfig, data_dir, dataset: Dataset | None, *,
                   write_config: bool):
    """The data set and the run's split (made once, then read back: resume sees the same)."""
    from lensscore.preprocess import PreprocessSpec

    from .presets import read_options

    ds = dataset or load_dataset(data_dir, bands=cfg.bands, size=cfg.size,
                                 spec=PreprocessSpec.from_json(cfg.preprocess),
                                 options=read_options(cfg.survey, cfg.bands, cfg.size))
    if run.split.exists():  # a resume, or a new run where an earlier attempt stopped early
        split = load_split(run.split, ds, seed=cfg.seed)
    else:
        split = make_split(ds.y, seed=cfg.seed)
        save_split(run.split, ds, split, cfg.seed)
    if write_config:
        d = asdict(cfg)
        d["bands"] = list(cfg.bands)
        d["data_dir"] = str(data_dir)
        if cfg.init_from:
            h = hashlib.sha256()  # hashlib.file_digest is Python >= 3.11; we support 3.10
            with open(cfg.init_from, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
            d["init_sha256"] = h.hexdigest()
        d["n"] = {k: int(len(v)) for k, v in split.items()}
        run.config.write_text(json.dumps(d, indent=1))
    return ds, split


def _model_and_state(run: RunDir, cfg: FitConfig, resume: bool):
    """The model and training state: from the checkpoint on resume, else new (seeded)."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    if keras.backend.backend() == "tensorflow":
        _tf_determinism(cfg.jit)
    # other backends (JAX on a GPU machine without TensorFlow): XLA always; no op-determinism
    # switch to set
    if resume and run.ckpt.exists():
        model = keras.saving.load_model(run.ckpt)
        model.jit_compile = cfg.jit
        state = json.loads(run.state.read_text())
        _set_seed_states(model, state.get("seed_states", {}))
        return model, state
    state = {"epoch": 0, "best_val_loss": None, "best_epoch": None, "wait": 0,
             "history": [], "stopped": False}
    model = compiled_model(cfg)
    if cfg.init_from:
        _init_weights(model, Path(cfg.init_from))
    return model, state


def _init_weights(model, path: Path) -> None:
    """``model``'s weights from an exported ONNX model or a Keras file (a warm start)."""
    if path.suffix == ".onnx":
        from .from_onnx import load_onnx_weights

        diff = load_onnx_weights(model, path)
        log.info("weights from %s (parity with onnxruntime: %.2g)", path, diff)
    else:
        model.load_weights(path)
        log.info("weights from %s", path)


def _train_epoch(model, ds: Dataset, tr, cfg: FitConfig, epoch: int, on_batch) -> list[float]:
    """One pass over the training indices ``tr``, in an order and with augmentations drawn
    from ``(seed, epoch)`` only (so that a resumed run repeats them); the batch losses."""
    order = np.random.default_rng([cfg.seed, epoch]).permutation(tr)
    aug_rng = np.random.default_rng([cfg.seed, epoch, 1])
    n_batches = int(np.ceil(len(tr) / cfg.batch_size))
    losses = []
    for b in range(n_batches):
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        xb = ds.nhwc(idx)
        if cfg.augment:
            xb = _augment(xb, aug_rng)
        loss = float(np.asarray(model.train_on_batch(xb, ds.y[idx].astype(np.float32)
                                                     .reshape(-1, 1))).reshape(-1)[0])
        losses.append(loss)
        if on_batch is not None:
            on_batch(epoch, b + 1, n_batches, loss)
    return losses


def _end_epoch(model, run: RunDir, state: dict, ds: Dataset, split, epoch: int,
               losses: list[float], t0: float, patience: int, *,
               best: dict | None = None) -> dict:
    """Validate, keep the best weights, decide early stopping and checkpoint everything a
    resume needs (model, state with the dropout RNGs, history); the epoch's history row.
    With ``best`` (a dict) given, nothing is checkpointed and the best weights go into
    ``best["weights"]`` instead of ``best.weights.h5``."""
    va = split["val"]
    yv = ds.y[va].astype(np.float32)
    pv = predict_scores(model, ds, va)
    row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_loss": _bce(yv, pv),
           "val_accuracy": float(np.mean((pv >= DEFAULT_THRESHOLD) == (yv == 1))),
           "seconds": time.perf_counter() - t0,
           "samples_per_s": len(split["train"]) / max(time.perf_counter() - t0, 1e-9)}
    state["history"].append(row)
    state["epoch"] = epoch + 1
    if state["best_val_loss"] is None or row["val_loss"] < state["best_val_loss"]:
        state.update(best_val_loss=row["val_loss"], best_epoch=epoch + 1, wait=0)
        if best is None:
            _save_atomic(model, run.best, weights_only=True)
        else:
            best["weights"] = model.get_weights()
    else:
        state["wait"] += 1
    state["stopped"] = state["wait"] >= patience
    state["seed_states"] = _seed_states(model)
    if best is None:
        _save_atomic(model, run.ckpt)
    atomic_write(run.state, json.dumps(state, indent=1))
    write_history(run.history, state["history"])
    return row


def _tf_determinism(jit: bool) -> None:
    """Keras silently turns XLA off when op determinism is on, so it is one or the other: with
    --no-jit every op is deterministic (resume == one-shot is tested that way); with XLA the
    compiled CPU program is run identically but TensorFlow does not promise it."""
    import tensorflow as tf

    if jit:
        from tensorflow.python.framework.config import disable_op_determinism

        disable_op_determinism()  # no public alias in TF 2.21
    else:
        tf.config.experimental.enable_op_determinism()


def _seed_states(model) -> dict:
    """Dropout RNG states: Keras does not save them in a .keras file, resume needs them."""
    return {layer.name: np.asarray(layer.seed_generator.state).tolist()
            for layer in model.layers if getattr(layer, "seed_generator", None) is not None}


def _set_seed_states(model, states: dict):
    for layer in model.layers:
        if layer.name in states and getattr(layer, "seed_generator", None) is not None:
            layer.seed_generator.state.assign(np.asarray(states[layer.name],
                                                         layer.seed_generator.state.dtype))


def _finalize(model, run: RunDir, best_weights=None):
    if best_weights is not None:
        model.set_weights(best_weights)
    elif run.best.exists():
        model.load_weights(run.best)
    _save_atomic(model, run.model)


def write_history(path: Path, history: list[dict]):
    """Write a run's per-epoch history (a list of dicts, one per epoch) as CSV."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
