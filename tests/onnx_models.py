"""Tiny ONNX lens finders built with onnx.helper, for tests and benchmarks (no TensorFlow).

Both take ``image`` ``[N, size, size, bands]`` (NHWC, as exported Keras models do) and return
a sigmoid score ``[N, 1]``. ``rot`` mirrors the seed's RotationalConv2D: the same kernel on the
input rotated by 0/90/180/270 degrees, element-wise Max, then bias and ReLU -- exactly invariant
to rotations; ``d4`` the DihedralConv2D, the same over the rotations of the input and of its
mirror image -- exactly invariant to both.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lensscore.preprocess import DEFAULT_SPEC


def _rot_nodes(inp: str, k: int, tag: str) -> tuple[list, str]:
    """Nodes rotating an NHWC tensor by k*90 degrees like np.rot90(axes=(y, x))."""
    nodes, cur = [], inp
    for j in range(k):
        t, r = f"{tag}_t{j}", f"{tag}_r{j}"
        nodes.append(helper.make_node("Transpose", [cur], [t], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Slice", [t, "rs_start", "rs_end", "rs_axis", "rs_step"],
                                      [r]))
        cur = r
    return nodes, cur


def make_model(path, *, arch: str = "conv", size: int = 72, bands=("g", "r", "i"),
               filters: int = 4, seed: int = 0, metadata: bool = True, extra_meta=None,
               input_size=None, head=None) -> str:
    """Write a tiny model: ``arch`` is ``conv`` (not invariant), ``rot`` (C4) or ``d4``.

    ``head``: ``(weights, bias)`` of the last Dense layer (``filters`` weights) instead of random
    ones. The random head barely reads its features (scores 0.31-0.39 for any input); a head
    that weighs the feature telling rings from blobs makes scores span 0-1, so that a test can
    tell a working preprocessing from a broken one.
    """
    rng = np.random.default_rng(seed)
    nb = len(bands)
    w = rng.normal(0, 0.5, (filters, nb, 5, 5)).astype(np.float32)
    b = rng.normal(0, 0.1, filters).astype(np.float32)
    wd = rng.normal(0, 1.0, (filters, 1)).astype(np.float32)
    bd = np.array([-0.5], np.float32)
    if head is not None:
        wd = np.asarray(head[0], np.float32).reshape(filters, 1)
        bd = np.array([head[1]], np.float32)
    inits = [
        numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B"),
        numpy_helper.from_array(wd, "Wd"), numpy_helper.from_array(bd, "Bd"),
        numpy_helper.from_array(np.array([-1], np.int64), "rs_start"),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).min], np.int64), "rs_end"),
        numpy_helper.from_array(np.array([1], np.int64), "rs_axis"),
        numpy_helper.from_array(np.array([-1], np.int64), "rs_step"),
        numpy_helper.from_array(np.array([2], np.int64), "mx_axis"),
    ]
    nodes = []
    branches = {"rot": [(k, 0) for k in range(4)],
                "d4": [(k, m) for m in (0, 1) for k in range(4)]}.get(arch, [(0, 0)])
    outs = []
    for j, (k, m) in enumerate(branches):
        src = "image"
        if m:  # mirror in x (NHWC axis 2), then rotate
            src = f"mir{j}"
            nodes.append(helper.make_node("Slice", ["image", "rs_start", "rs_end", "mx_axis",
                                                    "rs_step"], [src]))
        rn, cur = _rot_nodes(src, k, f"b{j}")
        k = j
        nodes += rn
        nodes.append(helper.make_node("Transpose", [cur], [f"nchw{k}"], perm=[0, 3, 1, 2]))
        nodes.append(helper.make_node("Conv", [f"nchw{k}", "W"], [f"conv{k}"]))
        outs.append(f"conv{k}")
    if arch in ("rot", "d4"):
        nodes.append(helper.make_node("Max", outs, ["cmax"]))
        pre = "cmax"
    else:
        pre = outs[0]
    nodes += [
        helper.make_node("Add", [pre, "Bb"], ["biased"]),
        helper.make_node("Relu", ["biased"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "Wd", "Bd"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score"]),
    ]
    inits.append(numpy_helper.from_array(b.reshape(1, filters, 1, 1), "Bb"))
    s = input_size if input_size is not None else size
    graph = helper.make_graph(
        nodes, f"tiny_{arch}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", s, s, nb])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    if metadata:
        meta = {"lensscore.bands": ",".join(bands), "lensscore.size": str(size),
                "lensscore.preprocess": DEFAULT_SPEC.to_json(), "lensscore.arch": arch,
                "lensscore.rotation_invariant": str(arch in ("rot", "d4")).lower(),
                "lensscore.invariance": {"rot": "C4", "d4": "D4"}.get(arch, "none"),
                "lensscore.version": "test", **(extra_meta or {})}
        helper.set_model_props(m, meta)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return str(path)
