"""``python -m export.logit MODEL.onnx [...]``: add the score's logit as a second output.

A sigmoid's float32 output is exactly 1.0 for every logit above ~17: the top of a survey's list
is ties, and TPR at FPR 0.1 % or the first false positive are ill-defined. The logit itself
ranks to the end. This adds an output ``logit`` (float32, one per image) beside ``score``:

* for a network ending in ``Sigmoid`` (every Keras export): the sigmoid's input;
* for a model averaged over the mirror (:mod:`export.symmetrise`: the mean of the sigmoids of two
  halves of a batch), the logit of that mean, computed stably from the halves' logits ``a, b``:
  ``log(s(a) + s(b)) - log(s(-a) + s(-b))`` with ``log s(x) = -softplus(-x)`` and
  ``log(e^u + e^v) = max(u, v) + softplus(-|u - v|)``, so that ``sigmoid(logit) == score``.

The score output and the ``lensscore.*`` metadata are untouched; ``lensscore.logit`` records what
was added. A model without a recognisable sigmoid is refused (the scorer then derives the logit
from the score, with the ties).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from lensscore.config import LOGIT_OUTPUT
from lensscore.modelmeta import META_PREFIX

__all__ = ["add_logit_output", "add_logit", "prune", "LOGIT_OUTPUT"]

_PASS = ("Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten")


def _producers(g) -> dict:
    return {o: n for n in g.node for o in n.output}


def prune(g) -> int:
    """Remove the nodes of graph ``g`` that no output needs (after an output was removed);
    returns how many."""
    prod = _producers(g)
    need, stack = set(), [o.name for o in g.output]
    while stack:
        n = prod.get(stack.pop())
        if n is not None and id(n) not in need:
            need.add(id(n))
            stack.extend(n.input)
    dead = [n for n in g.node if id(n) not in need]
    for n in dead:
        g.node.remove(n)
    return len(dead)


def _rename(g, old: str, new: str) -> None:
    for n in g.node:
        n.input[:] = [new if i == old else i for i in n.input]
        n.output[:] = [new if o == old else o for o in n.output]
    for v in g.value_info:
        if v.name == old:
            v.name = new


def _sigmoid_input(prod: dict, tensor: str):
    """The input of the Sigmoid that ``tensor`` is (through shape-only nodes), or None."""
    for _ in range(8):
        n = prod.get(tensor)
        if n is None:
            return None
        if n.op_type == "Sigmoid":
            return n.input[0]
        if n.op_type not in _PASS:
            return None
        tensor = n.input[0]
    return None


def add_logit_output(model):
    """Add the ``logit`` output to a model.

    Parameters
    ----------
    model : onnx.ModelProto
        One output, the score: a sigmoid (through shape-only nodes), or the mean of two
        sigmoids over a split batch (:mod:`export.symmetrise`). Changed in place.

    Returns
    -------
    onnx.ModelProto
        ``model``, with the output ``logit`` (float32, ``[N]``) after ``score``.

    Raises
    ------
    ValueError
        The model has a logit already, more than one output, or a score of another form.
    """
    import onnx
    from onnx import TensorProto, helper

    g = model.graph
    if any(o.name == LOGIT_OUTPUT for o in g.output):
        raise ValueError(f"the model has a {LOGIT_OUTPUT!r} output already")
    if len(g.output) != 1:
        raise ValueError("expected a model with one output (the score)")
    if any(LOGIT_OUTPUT in n.output for n in g.node):  # an inner tensor has the name
        _rename(g, LOGIT_OUTPUT, LOGIT_OUTPUT + "__inner")
    prod = _producers(g)
    out = g.output[0].name
    nodes = []
    direct = _sigmoid_input(prod, out)
    if direct is not None:
        nodes.append(helper.make_node("Identity", [direct], ["logit_raw"], name="logit_identity"))
    else:  # export.symmetrise: Mul(Add(Split(sigmoid(L))), 0.5)
        mul = prod.get(out)
        add = prod.get(mul.input[0]) if mul is not None and mul.op_type == "Mul" else None
        split = prod.get(add.input[0]) if add is not None and add.op_type == "Add" else None
        if split is None or split.op_type != "Split" or list(add.input) != list(split.output):
            raise ValueError("the score is neither a sigmoid nor a mean of two sigmoids: "
                             "cannot add its logit")
        pair = _sigmoid_input(prod, split.input[0])
        if pair is None:
            raise ValueError("the averaged score is not a sigmoid: cannot add its logit")
        axis = next((a.i for a in split.attribute if a.name == "axis"), 0)
        mk = helper.make_node
        nodes += [
            mk("Split", [pair], ["lg_a", "lg_b"], axis=axis, name="logit_split"),
            mk("Neg", ["lg_a"], ["lg_na"]), mk("Neg", ["lg_b"], ["lg_nb"]),
            # log s(x) = -softplus(-x); log s(-x) = -softplus(x)
            mk("Softplus", ["lg_na"], ["lg_spa"]), mk("Softplus", ["lg_nb"], ["lg_spb"]),
            mk("Softplus", ["lg_a"], ["lg_sqa"]), mk("Softplus", ["lg_b"], ["lg_sqb"]),
            mk("Neg", ["lg_spa"], ["lg_u1"]), mk("Neg", ["lg_spb"], ["lg_v1"]),
            mk("Neg", ["lg_sqa"], ["lg_u0"]), mk("Neg", ["lg_sqb"], ["lg_v0"]),
        ]
        for tag, u, v in (("1", "lg_u1", "lg_v1"), ("0", "lg_u0", "lg_v0")):
            nodes += [mk("Max", [u, v], [f"lg_max{tag}"]), mk("Sub", [u, v], [f"lg_d{tag}"]),
                      mk("Abs", [f"lg_d{tag}"], [f"lg_ad{tag}"]),
                      mk("Neg", [f"lg_ad{tag}"], [f"lg_nad{tag}"]),
                      mk("Softplus", [f"lg_nad{tag}"], [f"lg_c{tag}"]),
                      mk("Add", [f"lg_max{tag}", f"lg_c{tag}"], [f"lg_lse{tag}"])]
        nodes.append(mk("Sub", ["lg_lse1", "lg_lse0"], ["logit_raw"], name="logit_of_mean"))
    shape = helper.make_node("Constant", [], ["logit_shape"], value=helper.make_tensor(
        "logit_shape_value", TensorProto.INT64, [1], [-1]))
    nodes += [shape, helper.make_node("Reshape", ["logit_raw", "logit_shape"], [LOGIT_OUTPUT],
                                      name="logit_flat")]
    g.node.extend(nodes)
    g.output.append(helper.make_tensor_value_info(LOGIT_OUTPUT, TensorProto.FLOAT, ["N"]))
    onnx.checker.check_model(model)
    return model


def add_logit(path, *, n_check: int = 64, seed: int = 0) -> dict:
    """Add the ``logit`` output to the model file ``path`` (atomically), checked on ``n_check``
    synthetic cutouts through onnxruntime: the scores are unchanged (bit for bit) and
    ``sigmoid(logit)`` equals the score to 1e-6.

    Returns
    -------
    dict
        What was checked: ``n``, ``max_score_change``, ``max_sigmoid_diff``.
    """
    import onnx
    import onnxruntime as ort

    from .graph import merge_metadata

    path = Path(path)
    model = onnx.load(path)
    if any(o.name == LOGIT_OUTPUT for o in model.graph.output):
        raise ValueError(f"{path} has a {LOGIT_OUTPUT!r} output already")
    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(seed).normal(size=(n_check, *shape[1:])).astype(np.float32)
    x[: n_check // 2] *= 20  # scores from the middle to the saturated ends

    def run(m):
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [o.name for o in s.get_outputs()]
        return [np.asarray(a, np.float64).reshape(-1)
                for a in s.run(names, {s.get_inputs()[0].name: x})]

    (before,) = run(model)
    add_logit_output(model)
    after, logit = run(model)
    check = {"n": n_check, "max_score_change": float(np.abs(after - before).max()),
             "max_sigmoid_diff": float(np.abs(0.5 * (1 + np.tanh(logit / 2)) - after).max())}
    if check["max_score_change"] != 0 or check["max_sigmoid_diff"] > 1e-6:
        raise ValueError(f"{path}: the logit output failed its check: {check}")
    merge_metadata(model, {META_PREFIX + "logit": json.dumps(
        {"output": LOGIT_OUTPUT, "checked": check})})
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(model, tmp)
    os.replace(tmp, path)
    return check


def main(argv=None) -> int:
    import argparse

    from .graph import error_line

    ap = argparse.ArgumentParser(prog="python -m export.logit", description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="ONNX files, changed in place")
    a = ap.parse_args(argv)
    code = 0
    for p in a.models:
        try:
            print(p, json.dumps(add_logit(p)))
        except Exception as exc:  # noqa: BLE001 -- protobuf, checker, onnxruntime: one line each
            print(error_line(p, exc), file=sys.stderr)
            code = 1
    return code


if __name__ == "__main__":
    from train._extra import run

    raise SystemExit(run(main))
