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

import numpy as np

__all__ = ["onnx_weights", "load_onnx_weights", "MAX_PARITY"]

#: largest |score difference|, and |logit difference| / (1 + |logit|), between the network
#: and onnxruntime on the check's synthetic cutouts
MAX_PARITY = 1e-4


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

    Raises
    ------
    ValueError
        A weight that is not a constant, or a MatMul without its bias.
    """
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:  # constants made by nodes: DequantizeLinear of int8 weights, Constant
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            inits[n.output[0]] = _dequantize(n, inits)
        elif n.op_type == "Constant" and n.attribute:
            inits[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
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
        The largest difference found (at most :data:`MAX_PARITY`).

    Raises
    ------
    ValueError
        The file's layers do not fit the network (count or shapes), or the scores differ by
        more than :data:`MAX_PARITY` (another architecture, or a graph this reader misreads).
    """
    import keras

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
    scorer = Scorer(path)
    ref_s, ref = scorer.run(x.transpose(0, 3, 1, 2), logits=True)
    head = keras.Model(model.inputs[0], model.layers[-1].input)
    w, b = model.layers[-1].get_weights()
    got = (np.asarray(head(x, training=False), np.float64) @ w + b).reshape(-1)
    # scores always; logits where the file has its own logit output (a logit derived from a
    # saturated float32 score is no reference)
    diff = float(np.max(np.abs(1.0 / (1.0 + np.exp(-got)) - ref_s)))
    if scorer.logit_name:
        diff = max(diff, float(np.max(np.abs(got - ref) / (1.0 + np.abs(ref)))))
    if not diff <= MAX_PARITY:
        raise ValueError(f"{path}: the network with these weights scores differently from the "
                         f"file (max difference {diff:.2g} > {MAX_PARITY:g})")
    return diff
