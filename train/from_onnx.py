"""An exported model's weights back into its Keras network: a warm start from a shipped model.

``python -m train fit --init-from models/d4.onnx …`` continues training from the weights a model
file holds (the shipped models carry no Keras files: their runs were trained on a lent GPU
machine). :func:`load_onnx_weights` reads the initializers of a model written by
``python -m export`` (int8 weights through their ``DequantizeLinear``), assigns them to a network
of the same architecture in graph order (the first layer's kernel, shared by its rotational
branches; the other convolutions; the dense layers) and checks that the network then scores
synthetic cutouts as onnxruntime scores the file, refusing it otherwise.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["onnx_weights", "load_onnx_weights", "MAX_PARITY", "SATURATED", "TINY",
           "MAX_PARITY_FROM_SCORES", "CONSTANT_KINDS", "CHECK_SCALES", "SCALE_WARN"]

log = logging.getLogger(__name__)

#: the Constant node attributes read (a tensor; floats as float32, ints as int64); others
#: (sparse tensors, strings) are refused
CONSTANT_KINDS = {"value": None, "value_float": np.float32, "value_floats": np.float32,
                  "value_int": np.int64, "value_ints": np.int64}
#: factors by which the parity check of a file without a logit output scales its synthetic
#: inputs until most scores hold their logit (below :data:`SCALE_WARN` it warns)
CHECK_SCALES = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
SCALE_WARN = 1e-2

#: largest |score difference|, and |logit difference| / (1 + |logit|), between the network
#: and onnxruntime on the check's synthetic cutouts
MAX_PARITY = 1e-4
#: a float32 score this close to 1, or below :data:`TINY`, no longer holds its logit
SATURATED = 1e-4
TINY = 1e-30
#: the same, relative, for files without a logit output, whose logits are read back from their
#: float32 scores: onnxruntime's sigmoid is an approximation good to ~1 % in its tails (a
#: right file measured 0.011 here; another network's weights differ by far more)
MAX_PARITY_FROM_SCORES = 0.05


def _dequantize(node, inits: dict) -> np.ndarray:
    q = inits[node.input[0]].astype(np.float32)
    scale = inits[node.input[1]].astype(np.float32)
    zp = inits[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.zeros(1, np.float32)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return (q - zp) * scale


def onnx_weights(path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(kind, kernel, bias)`` per layer in graph order, in Keras layouts: ``conv`` kernels
    as (h, w, in, out), ``dense`` as (in, out). Rotational branches (Convs sharing one kernel)
    count once.

    Parameters
    ----------
    path : path
        An ONNX model written by ``python -m export``.

    Returns
    -------
    list of (str, ndarray, ndarray)
        ``("conv" | "dense", kernel, bias)`` per layer, float32.

    Raises
    ------
    ValueError
        A file that is not an ONNX model, a weight that is not a constant, or a MatMul
        without its bias.
    """
    import onnx
    from onnx import helper, numpy_helper

    try:
        g = onnx.load(str(path)).graph
    except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX file
        msg = " ".join(str(exc).split())[:160]
        raise ValueError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {msg})") \
            from None
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:  # constants made by nodes: DequantizeLinear of int8 weights, Constant
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            inits[n.output[0]] = _dequantize(n, inits)
        elif n.op_type == "Constant" and n.attribute:
            a = n.attribute[0]
            if a.name not in CONSTANT_KINDS:
                raise ValueError(f"{path}: Constant {n.name!r} holds a {a.name}, which this "
                                 "reader does not take; export the model again with "
                                 "python -m export")
            v = helper.get_attribute_value(a)
            inits[n.output[0]] = (numpy_helper.to_array(v) if a.name == "value"
                                  else np.asarray(v, CONSTANT_KINDS[a.name]))
    users: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)

    def const(name: str, what: str) -> np.ndarray:
        if name not in inits:
            raise ValueError(f"{path}: the {what} {name!r} is not a constant of the graph")
        return np.asarray(inits[name], np.float32)

    out, seen = [], set()
    for n in g.node:
        if n.op_type == "Conv" and n.input[1] not in seen:
            seen.add(n.input[1])
            w = const(n.input[1], "Conv weight").transpose(2, 3, 1, 0)
            b = const(n.input[2], "Conv bias") if len(n.input) > 2 else np.zeros(w.shape[-1])
            out.append(("conv", w, b))
        elif n.op_type == "MatMul":
            adds = [u for u in users.get(n.output[0], []) if u.op_type == "Add"]
            if len(adds) != 1:
                raise ValueError(f"{path}: MatMul {n.name!r} is not followed by its bias Add")
            bias = [i for i in adds[0].input if i != n.output[0]]
            out.append(("dense", const(n.input[1], "MatMul weight"), const(bias[0], "bias")))
    return out


def _recoverable(s: np.ndarray) -> np.ndarray:
    """Where a float32 score still holds its logit: above float32's tiny values, below 1."""
    return (s > TINY) & (s < 1 - SATURATED)


def _unsaturated(scorer, x: np.ndarray, ref_s: np.ndarray, path):
    """Check inputs (``x``, NHWC, and their scores) of which at least half have scores that hold
    their logit (:func:`_recoverable`): ``x`` itself or ``x`` scaled down by factors of 10. A
    file without a logit output can be checked on its scores only, and a score saturated at 1
    (or 0 in float32) agrees with almost any network."""
    for scale in CHECK_SCALES:
        xs = (x * np.float32(scale)).astype(np.float32)
        s = ref_s if scale == 1.0 else scorer.run(xs.transpose(0, 3, 1, 2))
        if np.mean(_recoverable(s)) >= 0.5:
            if scale < SCALE_WARN:
                log.warning("%s: has no logit output; its weights are checked on inputs scaled "
                            "by %g (fainter ones saturate its scores), which exercise the "
                            "network less than real cutouts would", path, scale)
            return xs, s
    raise ValueError(f"{path}: has no logit output and scores most check inputs 0 or 1 even "
                     f"when scaled by {min(CHECK_SCALES):g}, so its weights cannot be checked; "
                     "export it again with python -m export")


def load_onnx_weights(model, path, *, n_check: int = 16, seed: int = 0) -> float:
    """Set ``model``'s weights to those of the ONNX file ``path`` and return the largest
    difference between the two on ``n_check`` synthetic cutouts: of the scores, and of the
    logits relative to ``1 + |logit|`` where the file has a logit output (saturated scores
    would hide a misread).

    Parameters
    ----------
    model : keras.Model
        A network built by :func:`train.models.build_model` with the file's architecture and
        input size; its weights are replaced.
    path : path
        An ONNX model written by ``python -m export``.
    n_check, seed : int
        How many synthetic cutouts the parity check scores, and their seed.

    Returns
    -------
    float
        The larger of the two differences found: of the scores (at most :data:`MAX_PARITY`)
        and the relative one of the logits (at most :data:`MAX_PARITY`; for a file without a
        logit output, :data:`MAX_PARITY_FROM_SCORES` on the logits its scores hold).

    Raises
    ------
    ValueError
        The file's layers do not fit the network (count or shapes), or the scores differ by
        more than :data:`MAX_PARITY` (another architecture, or a graph this reader misreads).
    """
    import keras

    from lensscore.errors import LensscoreError
    from lensscore.scorer import Scorer

    layers = [la for la in model.layers if la.weights]
    found = onnx_weights(path)
    kinds = ["dense" if isinstance(la, keras.layers.Dense) else "conv" for la in layers]
    if [k for k, _, _ in found] != kinds:
        raise ValueError(f"{path}: its layers ({', '.join(k for k, _, _ in found)}) do not fit "
                         f"the {model.name} network ({', '.join(kinds)})")
    for la, (_, w, b) in zip(layers, found):
        want = [tuple(v.shape) for v in la.get_weights()]
        if want != [w.shape, b.shape]:
            raise ValueError(f"{path}: layer {la.name} has shapes {want}, the file "
                             f"{[w.shape, b.shape]}")
        la.set_weights([w, b])
    size, nb = int(model.inputs[0].shape[1]), int(model.inputs[0].shape[3])
    x = np.random.default_rng(seed).normal(size=(n_check, size, size, nb)).astype(np.float32)
    x *= np.linspace(0.05, 1.0, n_check, dtype=np.float32)[:, None, None, None]
    try:
        scorer = Scorer(path)
    except LensscoreError as exc:
        raise ValueError(str(exc)) from None
    ref_s, ref = scorer.run(x.transpose(0, 3, 1, 2), logits=True)
    if not scorer.logit_name:  # only scores to compare: the logits they hold, where they do
        x, ref_s = _unsaturated(scorer, x, ref_s, path)
        ok = _recoverable(ref_s)
        s64 = np.where(ok, ref_s, 0.5).astype(np.float64)
        ref = np.where(ok, np.log(s64) - np.log1p(-s64), np.nan)
    head = keras.Model(model.inputs[0], model.layers[-1].input)
    w, b = model.layers[-1].get_weights()
    got = (np.asarray(head(x, training=False), np.float64) @ w + b).reshape(-1)
    # scores always; and logits: the file's own, or else those its unsaturated scores hold
    sdiff = float(np.max(np.abs(1.0 / (1.0 + np.exp(-got)) - ref_s)))
    rel = float(np.nanmax(np.abs(got - ref) / (1.0 + np.abs(ref))))
    limit = MAX_PARITY if scorer.logit_name else MAX_PARITY_FROM_SCORES
    if not (sdiff <= MAX_PARITY and rel <= limit):
        what = "its logits" if scorer.logit_name else "the logits its scores hold"
        raise ValueError(f"{path}: the network with these weights scores differently from the "
                         f"file (scores: max difference {sdiff:.2g}, limit {MAX_PARITY:g}; "
                         f"{what}: max relative difference {rel:.2g}, limit {limit:g})")
    return max(sdiff, rel)
