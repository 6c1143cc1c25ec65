"""ONNX graph surgery and inspection without TensorFlow: metadata, weight compression, checks."""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from train.quantize import INT8_MIN_SIZE, int8_eligible, quantize_int8

__all__ = ["CONTROL_FLOW", "control_flow_nodes", "rotational_branches", "merge_metadata",
           "compress_weights", "rename_io", "fuse_max_trees", "error_line"]

log = logging.getLogger(__name__)

#: Node types that make a graph data-dependent (forbidden in exported models).
CONTROL_FLOW = frozenset({"If", "Loop", "Scan", "Assert", "SequenceMap"})
#: Ops followed upstream when tracing a Max input to its Conv: data movement, and the per-branch
#: ReLU and max pooling of a pool-first rotational layer (export.convert._pool_first_forward);
#: Gather: the row flips export.optimize builds the branch inputs with.
_PASSTHROUGH = frozenset({"Transpose", "Slice", "Reshape", "Identity", "ReverseSequence", "Relu",
                          "MaxPool", "Gather"})


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            for g in attr.graphs:
                yield from _all_nodes(g)


def error_line(path, exc: BaseException) -> str:
    """The one-line error of an ``export.*`` command on a model file, whatever failed (a missing
    or corrupt file, onnx's checker, onnxruntime, a failed check): the path once, then why."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"error: {msg}" if str(path) in msg else f"error: {path}: {msg}"


def control_flow_nodes(model: onnx.ModelProto) -> list[str]:
    """Names/types of every control-flow node (subgraphs included); empty means none."""
    return [f"{n.op_type}:{n.name}" for n in _all_nodes(model.graph) if n.op_type in CONTROL_FLOW]


def rotational_branches(model: onnx.ModelProto, n: int = 4) -> list[list[str]]:
    """For every ``Max`` node fed by ``n`` Conv branches, the names (or outputs) of those Convs.

    A branch is followed upstream through data-movement ops (Transpose, Slice, ...) to a
    ``Conv``. The rotational layer exported right is one Max with ``n`` distinct Convs that share
    one kernel initializer (4 for the rotations, C4; 8 with their mirror images, D4).
    """
    n_br = n
    producer = {o: n for n in model.graph.node for o in n.output}

    def conv_above(name: str):
        n = producer.get(name)
        while n is not None and n.op_type in _PASSTHROUGH:
            n = producer.get(n.input[0])
        return n if n is not None and n.op_type == "Conv" else None

    found = []
    for n in model.graph.node:
        if n.op_type != "Max" or len(n.input) != n_br:
            continue
        convs = [conv_above(i) for i in n.input]
        if all(c is not None for c in convs) and len({c.output[0] for c in convs}) == n_br \
                and len({c.input[1] for c in convs}) == 1:
            found.append([c.name or c.output[0] for c in convs])
    return found


def fuse_max_trees(model: onnx.ModelProto) -> int:
    """Merge nested binary ``Max`` nodes into one n-ary ``Max`` (max is associative).

    TensorFlow has only a binary maximum, so the rotational layer's max over four branches
    arrives as ``Max(Max(a, b), Max(c, d))``; this makes it ``Max(a, b, c, d)``, the form DESIGN.md
    names. An inner Max is merged only if nothing else reads it. Returns the nodes removed.
    """
    g = model.graph
    removed = 0
    while True:
        uses: dict[str, int] = {}
        for n in g.node:
            for i in n.input:
                uses[i] = uses.get(i, 0) + 1
        outputs = {o.name for o in g.output}
        producer = {n.output[0]: n for n in g.node if n.op_type == "Max"}
        merged = None
        for n in g.node:
            if n.op_type != "Max":
                continue
            for i in n.input:
                inner = producer.get(i)
                if inner is not None and uses[i] == 1 and i not in outputs:
                    merged = (n, inner)
                    break
            if merged:
                break
        if merged is None:
            return removed
        outer, inner = merged
        new_inputs = []
        for i in outer.input:
            new_inputs += list(inner.input) if i == inner.output[0] else [i]
        del outer.input[:]
        outer.input.extend(new_inputs)
        g.node.remove(inner)
        removed += 1


def merge_metadata(model: onnx.ModelProto, props: dict[str, str]) -> list[str]:
    """Add ``props`` to ``metadata_props``; keys already there keep their value.

    Returns the keys that were kept because they were present with another value.
    """
    have = {p.key: p for p in model.metadata_props}
    kept = []
    for k, v in props.items():
        v = str(v)
        if k in have:
            if have[k].value != v:
                kept.append(k)
                log.warning("metadata %s is already set; keeping %r", k, have[k].value[:60])
            continue
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    return kept


def rename_io(model: onnx.ModelProto, output: str = "score") -> None:
    """Give the (single) output a stable name."""
    old = model.graph.output[0].name
    if old == output:
        return
    for n in model.graph.node:
        for i, o in enumerate(n.output):
            if o == old:
                n.output[i] = output
        for i, o in enumerate(n.input):
            if o == old:
                n.input[i] = output
    model.graph.output[0].name = output


def compress_weights(model: onnx.ModelProto, mode: str, min_size: int = INT8_MIN_SIZE) -> dict:
    """Store large float32 weights as float16 or int8; compute stays float32.

    ``float16``: every float32 initializer with ``>= min_size`` elements becomes float16 plus a
    ``Cast`` back to float32. ``int8``: the kernels :mod:`train.quantize`'s rule picks (dense, that
    large) become int8 with a symmetric per-output-column scale and a ``DequantizeLinear``;
    convolution kernels stay float32. Only weights change: activations are never quantized, so a
    score does not depend on its batch neighbours.

    Returns a summary: tensors and bytes before/after.
    """
    if mode not in ("float16", "int8"):
        raise ValueError(f"weights mode must be float16 or int8, got {mode!r}")
    g = model.graph
    new_inits, new_nodes, n_done, before, after = [], [], 0, 0, 0
    for init in list(g.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        w = numpy_helper.to_array(init)
        if w.size < min_size or (mode == "int8" and not int8_eligible(w, min_size)):
            continue
        name = init.name
        before += w.nbytes
        if mode == "float16":
            stored = numpy_helper.from_array(w.astype(np.float16), name + "_f16")
            new_nodes.append(helper.make_node("Cast", [stored.name], [name], to=TensorProto.FLOAT,
                                              name=name + "_cast"))
            new_inits.append(stored)
            after += w.size * 2
        else:
            q, scale = quantize_int8(w)
            stored = numpy_helper.from_array(q, name + "_q")
            sc = numpy_helper.from_array(scale, name + "_scale")
            zp = numpy_helper.from_array(np.zeros_like(q[0]), name + "_zp")
            new_nodes.append(helper.make_node("DequantizeLinear", [stored.name, sc.name, zp.name],
                                              [name], axis=1, name=name + "_dq"))
            new_inits += [stored, sc, zp]
            after += q.nbytes + scale.nbytes + q.shape[1]
        g.initializer.remove(init)
        n_done += 1
    g.initializer.extend(new_inits)
    nodes = new_nodes + list(g.node)  # weights first: the graph stays topologically sorted
    del g.node[:]
    g.node.extend(nodes)
    return {"mode": mode, "tensors": n_done, "bytes_before": before, "bytes_after": after}
