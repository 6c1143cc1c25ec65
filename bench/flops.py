"""FLOPs of an ONNX graph and the machine's float32 GEMM rate: the two halves of a FLOP limit."""

from __future__ import annotations

import time

import numpy as np

__all__ = ["onnx_flops", "gemm_gflops", "ort_gemm_gflops", "training_flops"]

_MOVES = frozenset({"Transpose", "ReverseSequence", "Slice", "Reshape", "Identity", "Concat",
                    "Cast"})


def _dims(t) -> list[int] | None:
    d = [x.dim_value if x.HasField("dim_value") else None for x in t.type.tensor_type.shape.dim]
    return None if any(v is None for v in d) else d


def onnx_flops(path) -> dict:
    """Multiply-add FLOPs (2 per MAC) of one image through an ONNX model, by op.

    Counts ``Conv`` (2 x output elements x kernel volume / group), ``MatMul`` and ``Gemm``
    (2 x M x K x N) from the shapes ONNX infers with the batch fixed at 1. Element-wise ops,
    pooling and the rotation ``Max`` are not counted: they are memory-bound and small.

    Returns ``{"total": flops, "by_op": {op: flops}, "nodes": [(op, name, flops, first), ...]}``
    where ``first`` marks the layers applied to the input image itself.
    """
    import onnx

    model = onnx.load(str(path))
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    shapes = {t.name: _dims(t) for t in list(g.value_info) + list(g.input) + list(g.output)}
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
    # DequantizeLinear/Cast of weights keep the weight's shape
    for n in g.node:
        if n.op_type in ("DequantizeLinear", "Cast") and n.input[0] in shapes:
            shapes.setdefault(n.output[0], shapes[n.input[0]])
    producer = {o: n for n in g.node for o in n.output}
    graph_inputs = {i.name for i in g.input}

    def from_input(name: str) -> bool:  # reached from the image through data movement only
        while name not in graph_inputs:
            n = producer.get(name)
            if n is None or n.op_type not in _MOVES:
                return False
            name = n.input[0]
        return True

    nodes, by_op = [], {}
    for n in g.node:
        f = 0
        if n.op_type == "Conv":
            out, w = shapes.get(n.output[0]), shapes.get(n.input[1])
            if out is None or w is None:
                raise ValueError(f"{path}: cannot infer the shapes of Conv {n.name}")
            f = 2 * int(np.prod(out)) * int(np.prod(w[1:]))
        elif n.op_type in ("MatMul", "Gemm"):
            a, b = shapes.get(n.input[0]), shapes.get(n.input[1])
            if a is None and b is not None and len(b) == 2:
                # a dense layer after a dynamic Reshape (flatten) that ONNX cannot infer: one
                # row per image
                trans = any(at.name == "transB" and at.i for at in n.attribute)
                a = [1, b[1] if trans else b[0]]
            if a is None or b is None:
                raise ValueError(f"{path}: cannot infer the shapes of {n.op_type} {n.name}")
            trans_b = any(at.name == "transB" and at.i for at in n.attribute)
            k = a[-1]
            m = int(np.prod(a[:-1]))
            nn = b[0] if trans_b else b[-1]
            f = 2 * m * k * nn
        if f:
            nodes.append((n.op_type, n.name, f, from_input(n.input[0])))
            by_op[n.op_type] = by_op.get(n.op_type, 0) + f
    return {"total": int(sum(n[2] for n in nodes)), "by_op": by_op, "nodes": nodes}


def training_flops(forward: dict) -> int:
    """FLOPs of one training sample: forward + backward.

    The backward pass costs two forward passes per layer (gradients of the weights and of the
    layer's input), except for the first layer, whose input gradient is never computed.
    """
    first = sum(f for _, _, f, is_first in forward["nodes"] if is_first)
    return int(3 * forward["total"] - first)


def gemm_gflops(n: int = 2048, reps: int = 5, min_seconds: float = 0.5) -> dict:
    """float32 ``n x n`` matrix product rate of numpy's BLAS (all cores): the FLOP limit.

    Each repetition runs products for at least ``min_seconds``; returns the median and the best
    of ``reps`` in GFLOP/s.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)
    return _product_rates(lambda: np.matmul(a, b, out=c), n, reps, min_seconds)


def ort_gemm_gflops(n: int = 2048, reps: int = 5, min_seconds: float = 0.5,
                    threads: int | None = None) -> dict:
    """The same ``n x n`` float32 product through onnxruntime (one ``MatMul`` with a constant
    right-hand side, as the dense layers are): the rate of the runtime's own GEMM kernels.

    Beside :func:`gemm_gflops` it tells whether a model's distance from the FLOP limit is its
    graph's (moves, pooling, maxima) or the runtime's kernels'. Same return as
    :func:`gemm_gflops`.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
                          [numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or 0)
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    onnx.checker.check_model(m)
    feed = {"a": a}
    sess.run(None, feed)
    return _product_rates(lambda: sess.run(None, feed), n, reps, min_seconds)


def _product_rates(product, n: int, reps: int, min_seconds: float) -> dict:
    """GFLOP/s of ``product()``, an ``n x n`` by ``n x n`` matrix product: ``reps``
    repetitions of at least ``min_seconds`` each; their median, best and list."""
    rates = []
    for _ in range(reps):
        k, t0 = 0, time.perf_counter()
        while True:
            product()
            k += 1
            dt = time.perf_counter() - t0
            if dt >= min_seconds:
                break
        rates.append(2 * n ** 3 * k / dt / 1e9)
    return {"n": n, "median": float(np.median(rates)), "best": float(np.max(rates)),
            "reps": [float(r) for r in rates]}
