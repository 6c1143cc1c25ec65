"""Keras -> ONNX: trace, convert with tf2onnx, describe, compress, and prove parity."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lensscore._version import __version__
from lensscore.config import ARCH_INVARIANCE, DEFAULT_BANDS, DEFAULT_SIZE, DEFAULT_THRESHOLD, \
    INVARIANCE_TOLERANCE
from lensscore.modelmeta import EXPORT, REAL_METRICS, TEST_METRICS, TRAINING, ModelMeta, \
    meta_key
from lensscore.preprocess import DEFAULT_SPEC, PreprocessSpec
from lensscore.trained import TRAINED_ON

from .graph import compress_weights, control_flow_nodes, fuse_max_trees, merge_metadata, \
    rename_io, rotational_branches

__all__ = ["OPSET", "ExportError", "ExportResult", "export_model", "load_keras", "to_onnx"]

log = logging.getLogger(__name__)

#: The ONNX opset every export uses (onnxruntime >= 1.13 runs it).
OPSET = 17
#: Parity bounds of DESIGN.md / issue 5: Keras vs onnxruntime, and across the transforms a model
#: claims invariance to (the four rotations; with D4 their mirror images too).
MAX_DIFF = 1e-5
MAX_ROT_SPREAD = INVARIANCE_TOLERANCE
WEIGHT_MODES = ("float32", "float16", "int8")


class ExportError(Exception):
    """An export that cannot be done or did not prove equal; the message is one line."""


@dataclass
class ExportResult:
    """What an export did and measured (printed by the CLI, stored in the model metadata)."""

    path: str
    arch: str
    opset: int
    weights: str
    size_bytes: int
    parity_source: str
    n_parity: int
    max_abs_diff: float
    mean_abs_diff: float
    rotation_spread: float
    rotation_invariant: bool
    float32_max_abs_diff: float
    #: the symmetry the model claims (none, C4, D4), proved on every export
    invariance: str = "none"
    #: max over cutouts of max |score(T x) - score(x)| over the 4 mirror transforms T
    mirror_spread: float = float("nan")
    accuracy_keras: float | None = None
    accuracy_onnx: float | None = None
    compression: dict | None = None
    seconds: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    #: the exported model's scores of the parity cutouts
    scores: np.ndarray | None = field(default=None, repr=False)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("metadata")
        d.pop("scores")
        return d


def load_keras(path):
    """Load a ``.keras`` model (RotationalConv2D registered); a clear error if it is not one."""
    import keras

    from train import models  # noqa: F401  (registers RotationalConv2D)

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # keras raises ValueError, BadZipFile, OSError, ... for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{path}: not a loadable Keras model ({first[:160]})") from None


def _input_geometry(model) -> tuple[int, int]:
    shapes = [tuple(t.shape) for t in model.inputs]
    if len(shapes) != 1:
        raise ExportError(f"model has {len(shapes)} inputs; expected one image input")
    s = shapes[0]
    if len(s) != 4 or s[1] is None or s[1] != s[2] or s[3] is None:
        raise ExportError(f"model input shape is {s}; expected (None, size, size, bands) NHWC "
                          "with a square, fixed size")
    out = tuple(model.outputs[0].shape)
    if len(model.outputs) != 1 or out[-1] != 1:
        raise ExportError(f"model output shape is {out}; expected one score per cutout (N, 1)")
    return int(s[1]), int(s[3])


def _rotational_layers(model):
    from train.models import RotationalConv2D

    return [layer for layer in model.layers if isinstance(layer, RotationalConv2D)]


def _chain(model):
    """The layers of ``model`` if it is a plain chain (each layer fed by the one before), else None."""
    layers = model.layers
    for prev, layer in zip(layers, layers[1:]):
        nodes = getattr(layer, "_inbound_nodes", [])
        parents = [p.operation for p in nodes[0].parent_nodes] if len(nodes) == 1 else None
        if parents != [prev]:
            return None
    return layers[1:]


def _transform_slices(x, k: int, mirror: bool):
    """:func:`lensscore.scorer.transform` of NHWC tensors: a mirror in x as one negative-step
    slice, then :func:`_rot90_slices`."""
    return _rot90_slices(x[:, :, ::-1, :] if mirror else x, k)


def _rot90_slices(x, k: int):
    """``np.rot90(x, k, axes=(1, 2))`` of NHWC tensors as transpose + negative-step slices.

    tf2onnx turns ``tf.reverse`` into ReverseSequence between extra transposes (10 % of the rot
    model's time in onnxruntime, profiled); a strided slice becomes one ``Slice`` that
    onnxruntime's transpose optimizer moves the layout transposes through.
    """
    import tensorflow as tf

    k %= 4
    if k == 0:
        return x
    if k == 2:
        return x[:, ::-1, ::-1, :]
    t = tf.transpose(x, [0, 2, 1, 3])
    return t[:, ::-1, :, :] if k == 1 else t[:, :, ::-1, :]


def _pool_first_forward(model):
    """An inference function that pools each rotational branch before the rotation maximum.

    ``pool(relu(max_k c_k + b)) == max_k pool(relu(c_k + b))`` exactly (max commutes with max,
    and adding a constant and ReLU are monotonic, also in floating point), so the function is
    unchanged, while onnxruntime keeps every branch in its blocked (NCHWc) layout through Conv,
    ReLU and MaxPool and the four-way ``Max`` reads maps 4x smaller (about 10% faster here).
    None when the model is not a chain in which every RotationalConv2D (ReLU or no activation)
    is followed by a 2-D max pooling.
    """
    import keras

    from train.models import RotationalConv2D

    chain = _chain(model)
    if chain is None:
        return None
    steps, i = [], 0
    while i < len(chain):
        layer = chain[i]
        if isinstance(layer, RotationalConv2D):
            nxt = chain[i + 1] if i + 1 < len(chain) else None
            act = getattr(layer.activation, "__name__", "")
            if not isinstance(nxt, keras.layers.MaxPooling2D) or act not in ("relu", "linear"):
                return None
            steps.append(("rot", layer, nxt))
            i += 2
        else:
            steps.append(("layer", layer, None))
            i += 1
    if not any(kind == "rot" for kind, _, _ in steps):
        return None

    def branch(conv, pool, x, k, m):
        y = conv.convolution_op(_transform_slices(x, k, m), conv.kernel)
        if conv.use_bias:
            y = y + conv.bias
        return pool(conv.activation(y))

    def forward(x):
        for kind, layer, pool in steps:
            if kind == "rot":
                b = [branch(layer, pool, x, k, m) for k, m in layer.TRANSFORMS]
                while len(b) > 1:  # fused into one n-ary Max afterwards
                    b = [keras.ops.maximum(u, v) for u, v in zip(b[::2], b[1::2])]
                x = b[0]
            else:
                x = layer(x, training=False)
        return x

    return forward


def to_onnx(model, opset: int = OPSET):
    """Convert with ``tf2onnx.convert.from_function`` (``from_keras`` fails on Keras 3).

    Every ``RotationalConv2D`` is traced as four Conv branches on the input rotated by
    transpose/reverse, sharing one kernel, joined by one ``Max`` -- bit-exactly invariant to 90°
    rotations in onnxruntime (the moves then rebuilt by :mod:`export.optimize`, which also
    flushes subnormal weights); every ``DihedralConv2D`` as eight (the rotations of the input and
    of its mirror image). Where the layer is followed by max pooling (HOLISMOKES), each
    branch is pooled before the ``Max`` (:func:`_pool_first_forward`); otherwise the layer is
    traced as it is, in ``input`` mode.
    """
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    size, nb = _input_geometry(model)
    rot = _rotational_layers(model)
    modes = [layer.mode for layer in rot]
    spec = (tf.TensorSpec([None, size, size, nb], tf.float32, name="image"),)
    forward = _pool_first_forward(model) if rot else None
    if forward is None:
        def forward(x):
            return model(x, training=False)

    @tf.function(input_signature=spec)
    def serve(image):
        return forward(image)

    try:
        for layer in rot:
            layer.mode = "input"
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    finally:
        for layer, m in zip(rot, modes):
            layer.mode = m
    rename_io(proto, "score")
    fuse_max_trees(proto)
    from .optimize import OPTIMIZED, optimize_graph  # here: `python -m export.optimize` alone

    done = optimize_graph(proto)  # checked by the parity and invariance checks of the export
    merge_metadata(proto, {meta_key(OPTIMIZED): json.dumps(done)})
    return proto


def _keras_scores(model, x: np.ndarray, batch: int = 32) -> np.ndarray:
    # batch 32, not 256: the first layer's maps of 256 cutouts (8 branches of 62x62x32 for d4)
    # took ~3 GB of the export's peak memory (8.9 -> 6.0 GB, /usr/bin/time -v, issue 32)
    out = [np.asarray(model(x[i:i + batch], training=False)).reshape(-1)
           for i in range(0, len(x), batch)]
    return np.concatenate(out).astype(np.float64)


def synthetic_cutouts(n: int, bands=DEFAULT_BANDS, size: int = DEFAULT_SIZE, seed: int = 0):
    """Raw, galaxy-like cutouts ``(n, bands, size, size)``: sky noise, an elliptical galaxy and,
    for every other cutout, an arc; only for parity checks when no test split is at hand."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    out = np.empty((n, len(bands), size, size), np.float32)
    for j in range(n):
        q, pa, r0 = rng.uniform(0.5, 1), rng.uniform(0, np.pi), rng.uniform(2, 6)
        u = xx * np.cos(pa) + yy * np.sin(pa)
        v = (-xx * np.sin(pa) + yy * np.cos(pa)) / q
        gal = np.exp(-np.hypot(u, v) / r0)
        arc = 0
        if j % 2:
            re, phi = rng.uniform(6, 14), rng.uniform(0, 2 * np.pi)
            ang = np.angle(np.exp(1j * (np.arctan2(yy, xx) - phi)))
            arc = np.exp(-0.5 * ((np.hypot(xx, yy) - re) / 1.2) ** 2) * np.exp(-0.5 * (ang / 0.8) ** 2)
        for b in range(len(bands)):
            out[j, b] = (gal * (1 + 0.5 * b) + arc * (1.5 - 0.4 * b) * rng.uniform(0.3, 1)
                         + rng.normal(0, 0.03, (size, size)) + rng.normal(0, 0.01))
    return out


def _run_context(keras_path: Path, run_dir):
    """The run directory a model belongs to: given, or the model's own directory if it is one."""
    if run_dir is not None:
        run = Path(run_dir)
        if not (run / "config.json").is_file():
            raise ExportError(f"{run}: not a run directory (no config.json)")
        return run
    parent = keras_path.parent
    return parent if (parent / "config.json").is_file() else None


def _parity_inputs(run, data_dir, bands, size, spec, n: int, seed: int):
    """Preprocessed NHWC inputs: the run's test split when reachable, padded with synthetic."""
    x, y, source = None, None, "synthetic"
    if run is not None:
        from train.data import load_dataset, load_split

        from train.fit import read_config

        conf = read_config(run)
        data = Path(data_dir or conf.get("data_dir", ""))
        if (run / "split.json").is_file() and data.is_dir():
            from train.presets import read_options

            ds = load_dataset(data, bands=tuple(bands), size=size, spec=spec,
                              options=read_options(conf.get("survey") or "hsc", bands, size))
            test = load_split(run / "split.json", ds)["test"]
            x, y, source = (ds.nhwc(test), ds.y[test].astype(int),
                            f"test split of {_data_name(str(data))} ({ds.fingerprint})")
        elif data_dir is None:
            log.warning("%s: data set %s not found; parity on synthetic cutouts", run, data)
    if x is None or len(x) < n:
        from lensscore.preprocess import preprocess

        k = n - (0 if x is None else len(x))
        syn = np.transpose(preprocess(synthetic_cutouts(k, bands, size, seed), spec), (0, 2, 3, 1))
        x = syn if x is None else np.concatenate([x, syn])
        if source != "synthetic":
            source += f" + {k} synthetic"
    return np.ascontiguousarray(x, np.float32), y, source


def _survey_preset(conf: dict, size: int) -> dict:
    """The survey preset of the training data (its ``survey``, ``pixel_scale``, ``zeropoint``)."""
    from train.presets import preset

    p = preset(conf.get("survey") or "hsc")
    if p["size"] != size:
        log.warning("model input %d px differs from the %s preset's %d px", size, p["survey"],
                    p["size"])
    return p


def _data_name(data_dir) -> str | None:
    """The training data's name: a directory's last part (``sim-hsc``), or a description kept as
    it is (``train simulate --survey hsc ...``)."""
    if not data_dir:
        return None
    d = str(data_dir)
    return Path(d).name if os.path.isabs(d) or os.path.exists(d) else d


def _run_metadata(run) -> dict:
    """Training description and test metrics of a run directory (JSON strings)."""
    meta = {}
    if run is None:
        return meta
    from train.fit import read_config

    conf = read_config(run)
    fingerprint = None
    if (run / "split.json").is_file():
        fingerprint = json.loads((run / "split.json").read_text()).get("fingerprint")
    # a name and a content hash, never a path of the machine that trained it
    train = {"data": _data_name(conf.get("data_dir")), "data_fingerprint": fingerprint,
             "n": conf.get("n"), "run": run.name,
             "config": {k: conf[k] for k in ("arch", "epochs", "batch_size", "lr", "l2", "conv_l2",
                                              "dropout", "patience", "augment", "seed")
                        if k in conf}}
    if (run / "state.json").is_file():
        st = json.loads((run / "state.json").read_text())
        train.update(epochs_trained=st.get("epoch"), best_epoch=st.get("best_epoch"),
                     best_val_loss=st.get("best_val_loss"))
    if conf.get("finetune"):
        train["finetune"] = conf["finetune"]
    if conf.get("init_from"):  # a warm start (train fit --init-from): the file by name and hash
        train["init"] = {"name": Path(conf["init_from"]).name, "sha256": conf.get("init_sha256")}
    meta[TRAINING] = json.dumps(train)
    if (run / "metrics.json").is_file():
        m = json.loads((run / "metrics.json").read_text())
        meta[TEST_METRICS] = json.dumps({k: m[k] for k in ("metrics", "rotation_stability",
                                                             "threshold", "source") if k in m})
        if "real_data" in m:  # measured on real survey cutouts (cross-validated if trained on)
            meta[REAL_METRICS] = json.dumps(m["real_data"])
    if (run / "trained_on.json").is_file():  # train finetune: the real cutouts it saw
        meta[TRAINED_ON] = (run / "trained_on.json").read_text()
    return meta


def _ort_scores(path: Path, x_nhwc: np.ndarray, rotations: bool):
    """onnxruntime's scores, and with ``rotations`` the scores of all 8 transforms ``(N, 8)``."""
    from lensscore.scorer import Scorer

    sc = Scorer(path, device="cpu")
    prepared = np.transpose(x_nhwc, (0, 3, 1, 2))
    if rotations:
        r = sc.score_transforms(prepared, preprocessed=True).astype(np.float64)
        return r[:, 0], r, sc
    return sc.run(prepared).astype(np.float64), None, sc


def export_model(
    keras_path,
    out_path,
    *,
    run_dir=None,
    data_dir=None,
    weights: str = "float32",
    opset: int = OPSET,
    n_parity: int = 256,
    max_diff: float | None = None,
    overwrite: bool = False,
    seed: int = 0,
) -> ExportResult:
    """Export a Keras model to ONNX and prove it computes the same scores.

    Parameters
    ----------
    keras_path : path
        A ``.keras`` file, typically ``runs/NAME/model.keras``.
    out_path : path
        The ``.onnx`` file to write (written only if parity holds).
    run_dir : path, optional
        The training run (default: the model's directory when it holds ``config.json``): bands,
        size, preprocessing, training description and test metrics come from it, and parity runs
        on its test split.
    data_dir : path, optional
        Where the run's data set is now, if it moved.
    weights : {"float32", "float16", "int8"}
        Storage of the large weights; compute is float32 in every case.
    n_parity : int
        At least this many cutouts in the parity check.
    max_diff : float, optional
        Bound on max |Δscore| vs Keras: 1e-5 for float32 (DESIGN.md); for compressed weights
        default 0.02.
    """
    _check_export_args(out_path, weights, overwrite)
    out_path = Path(out_path)
    if max_diff is None:
        max_diff = MAX_DIFF if weights == "float32" else 0.02
    t = {}
    t0 = time.perf_counter()
    src = _export_source(Path(keras_path), run_dir)
    t["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    x, y, parity_source = _parity_inputs(src.run, data_dir, src.meta.bands, src.meta.size,
                                         src.meta.preprocess, n_parity, seed)
    ref = _keras_scores(src.model, x)
    t["keras"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    proto = _convert_checked(src, opset)
    t["convert"] = time.perf_counter() - t0
    merge_metadata(proto, src.meta.to_props())
    proto.producer_name = "lensscore.export"
    proto.doc_string = f"lensscore {src.meta.arch} lens finder"

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        res = _write_with_parity(proto, tmp, src.meta, x, ref, weights, opset, parity_source, t)
        res.path = str(out_path)
        if y is not None:
            m = len(y)
            res.accuracy_keras = float(np.mean((ref[:m] >= DEFAULT_THRESHOLD) == (y == 1)))
            res.accuracy_onnx = float(np.mean((res.scores[:m] >= DEFAULT_THRESHOLD) == (y == 1)))
        if res.max_abs_diff > max_diff:
            raise ExportError(f"parity failed: max |Δscore| keras vs onnxruntime ({weights} "
                              f"weights) = {res.max_abs_diff:.3g} > {max_diff:g}")
        if res.rotation_invariant and res.rotation_spread > MAX_ROT_SPREAD:
            raise ExportError(f"rotation invariance failed: onnxruntime scores of the four "
                              f"rotations differ by {res.rotation_spread:.3g} > "
                              f"{MAX_ROT_SPREAD:g}")
        if res.invariance == "D4" and res.mirror_spread > MAX_ROT_SPREAD:
            raise ExportError(f"mirror invariance failed: onnxruntime scores of the mirror "
                              f"images differ by {res.mirror_spread:.3g} > {MAX_ROT_SPREAD:g}")
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return res


def _check_export_args(out_path, weights: str, overwrite: bool) -> None:
    """Refuse, before any work, what cannot be exported (one-line ExportError)."""
    if weights not in WEIGHT_MODES:
        raise ExportError(f"--weights must be one of {', '.join(WEIGHT_MODES)}, got {weights!r}")
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ExportError(f"{out_path}: the output must end in .onnx")
    if out_path.exists() and not overwrite:
        raise ExportError(f"{out_path} exists; pass --overwrite to replace it")


@dataclass
class _Source:
    """What is exported: the Keras model, its run directory, and the metadata it will carry."""

    model: object
    keras_path: Path
    run: Path | None
    meta: ModelMeta
    n_rotational: int
    #: branches each rotational layer must unroll into (4 for C4, 8 for D4)
    n_branches: int = 4


def _export_source(keras_path: Path, run_dir) -> _Source:
    """Load the model and describe it from its run: bands, size, preprocessing and survey grid
    (checked against the model's input), training data and test metrics."""
    model = load_keras(keras_path)
    size, nb = _input_geometry(model)
    run = _run_context(keras_path, run_dir)
    if run is not None:
        from train.fit import read_config

        conf = read_config(run)
    else:
        conf = {}
    bands = tuple(conf.get("bands") or DEFAULT_BANDS)
    spec = PreprocessSpec.from_json(conf["preprocess"]) if "preprocess" in conf else DEFAULT_SPEC
    if len(bands) != nb:
        raise ExportError(f"model takes {nb} bands but the run's bands are {','.join(bands)}")
    if conf.get("size", size) != size:
        raise ExportError(f"model input is {size} px but the run's size is {conf['size']}")
    rot = _rotational_layers(model)
    groups = {layer.GROUP for layer in rot}
    if len(groups) > 1:
        raise ExportError(f"the model mixes rotational layers of groups {sorted(groups)}")
    group = groups.pop() if groups else "none"
    arch = conf.get("arch") or {"C4": "rot", "D4": "d4"}.get(group, "baseline")
    if ARCH_INVARIANCE.get(arch, group) != group:
        raise ExportError(f"the run says arch {arch}, but the model's layers are invariant to "
                          f"{group}")
    p = _survey_preset(conf, size)
    meta = ModelMeta(bands=bands, size=size, preprocess=spec, arch=arch, invariance=group,
                     pixel_scale=float(p["pixel_scale"]),
                     zeropoint=float(p["zeropoint"]), survey=p["survey"], version=__version__,
                     extra={"source": keras_path.name, **_run_metadata(run)})
    return _Source(model, keras_path, run, meta, len(rot),
                   max((len(layer.TRANSFORMS) for layer in rot), default=4))


def _convert_checked(src: _Source, opset: int):
    """tf2onnx's graph, refused if it has control flow or the rotational layers did not unroll
    into four (C4) or eight (D4) branches each."""
    proto = to_onnx(src.model, opset)
    cf = control_flow_nodes(proto)
    if cf:
        raise ExportError(f"the exported graph has control flow ({', '.join(cf[:4])}); refusing")
    if src.n_rotational and len(rotational_branches(proto, src.n_branches)) != src.n_rotational:
        raise ExportError(f"the rotational layer did not export as {src.n_branches} Conv "
                          "branches into Max")
    return proto


def _write_with_parity(proto, tmp: Path, meta: ModelMeta, x, ref, weights: str, opset: int,
                       parity_source: str, t: dict) -> ExportResult:
    """Write ``tmp``: float32 parity first (the conversion itself must be exact), then the
    weights compressed as asked, scored again with their rotations."""
    import onnx

    onnx.save_model(proto, tmp)
    onnx.checker.check_model(str(tmp))
    s32, _, _ = _ort_scores(tmp, x, rotations=False)
    d32 = float(np.abs(s32 - ref).max())
    if d32 > MAX_DIFF:
        raise ExportError(f"parity failed: max |Δscore| keras vs onnxruntime = {d32:.3g} > "
                          f"{MAX_DIFF:g} on {len(x)} cutouts")
    comp = compress_weights(proto, weights) if weights != "float32" else None
    if comp:  # int8 scales can be subnormal too (a column of tiny weights)
        from .optimize import flush_subnormals

        comp["subnormal_scales_flushed"] = flush_subnormals(proto)
    t0 = time.perf_counter()
    export_info = {"opset": opset, "weights": weights, "parity_source": parity_source,
                   "n_parity": len(x), "float32_max_abs_diff": d32}
    from .logit import add_logit_output  # here: `python -m export.logit` runs without warning

    add_logit_output(proto)  # the score's logit beside it: it ranks where scores are 1.0
    merge_metadata(proto, {meta_key(EXPORT): json.dumps(export_info)})
    onnx.save_model(proto, tmp)
    onnx.checker.check_model(str(tmp))
    s, rots, sc = _ort_scores(tmp, x, rotations=True)
    _, lg = sc.run(np.transpose(x, (0, 3, 1, 2)), logits=True)
    d_logit = float(np.abs(0.5 * (1 + np.tanh(lg / 2)) - s).max())
    if d_logit > 1e-6:
        raise ExportError(f"the logit output does not give the score: max |sigmoid(logit) - "
                          f"score| = {d_logit:.3g}")
    t["onnx_parity"] = time.perf_counter() - t0
    diff = np.abs(s - ref)
    return ExportResult(
        path=str(tmp), arch=meta.arch, opset=opset, weights=weights,
        size_bytes=tmp.stat().st_size, parity_source=parity_source, n_parity=len(x),
        max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
        rotation_spread=float(np.ptp(rots[:, :4], axis=1).max()),
        mirror_spread=float(np.abs(rots[:, 4:] - rots[:, :1]).max()),
        rotation_invariant=meta.rotation_invariant, invariance=meta.invariance,
        float32_max_abs_diff=d32,
        compression=comp, seconds=t, metadata=sc.info(), scores=s)
