"""Cut a lens finder's ONNX file into its convolutional trunk and its dense head.

Why: on a CPU the two halves want different batch sizes. The first dense layer reads its ~105 MB
of float32 weights once a run, so it runs fastest on many images (rot's head: 4,750 img/s at 128
against 3,300 at 32), while the convolutions slow down when a run's feature maps outgrow the
caches. One session runs both at one batch size; two sessions, run as :class:`SplitSession` does,
give each its own (bench/RESULTS.md, "The trunk and the head at their own batch sizes"). The
scores do not change by one bit: every image goes through the same kernels, only the runs are
grouped differently.

The cut is read from the file's bytes (the protobuf wire format), not with the ``onnx`` package:
``onnx`` is not a dependency of the scorer and importing it takes ~0.6 s (its ``ml_dtypes``),
more than half of the cold start's budget. The cut is made only where it is plainly safe: one
image input, a ``MatMul``/``Gemm`` whose input comes from the image, a head that needs nothing
of the trunk but that tensor, no subgraphs, no external or sparse data. Anything else returns
None and the model runs whole.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["Split", "split_model", "build", "SplitSession"]

# ONNX's protobuf field numbers (onnx/onnx.proto)
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 1, 5, 11, 12
_GRAPH_VALUE_INFO, _GRAPH_QUANT_ANNOTATION, _GRAPH_SPARSE_INITIALIZER = 13, 14, 15
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE, _NODE_ATTRIBUTE, _NODE_DOMAIN = 1, 2, 4, 5, 7
_ATTR_GRAPH, _ATTR_GRAPHS = 6, 11
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 8, 13, 14
_VALUE_INFO_NAME = 1
_FLOAT = 1
_CONTROL_FLOW = {b"If", b"Loop", b"Scan", b"SequenceMap"}
#: images the trunk is run on, together and one by one, before a model is cut (:func:`build`)
PROBE_IMAGES = 3


class _Unsplittable(Exception):
    pass


def _varint(buf, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:  # protobuf's varints are at most 10 bytes
            raise _Unsplittable("bad varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _fields(buf):
    """``(field number, the whole field's bytes, value)`` of one message: the value is the
    payload of a length-delimited field, the integer of a varint, else None."""
    i, n = 0, len(buf)
    while i < n:
        start = i
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Unsplittable("field number 0")
        value = None
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            length, j = _varint(buf, i)
            i = j + length
            value = buf[j:i]
        else:
            raise _Unsplittable(f"wire type {wire}")
        if i > n:
            raise _Unsplittable("truncated field")
        yield number, buf[start:i], value


def _encode_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if not v:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def _field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _float_value_info(name: bytes, width: int | None = None) -> bytes:
    """A ValueInfoProto's payload: ``name``, a float32 tensor, of shape ``[N, width]`` where
    the width is given (onnxruntime fuses a dense layer's MatMul and Add into one Gemm only
    where it knows the rank; unfused, the logits differ from the whole model's in the last
    bit), else of any shape."""
    tensor = _encode_varint(1 << 3) + _encode_varint(_FLOAT)  # elem_type
    if width is not None:
        dims = _field(1, _field(2, b"N")) + _field(1, _encode_varint(1 << 3) + _encode_varint(width))
        tensor += _field(2, dims)  # shape
    return _field(_VALUE_INFO_NAME, name) + _field(2, _field(1, tensor))  # type.tensor_type


def _name(payload) -> bytes:
    """The name of a ValueInfoProto."""
    return next(bytes(v) for n, _, v in _fields(payload) if n == _VALUE_INFO_NAME)


class _Node:
    __slots__ = ("raw", "inputs", "outputs", "op")

    def __init__(self, raw, payload):
        self.raw = raw
        self.inputs: list[bytes] = []
        self.outputs: list[bytes] = []
        self.op = b""
        domain = b""
        for number, _, value in _fields(payload):
            if number == _NODE_INPUT:
                self.inputs.append(bytes(value))
            elif number == _NODE_OUTPUT:
                self.outputs.append(bytes(value))
            elif number == _NODE_OP_TYPE:
                self.op = bytes(value)
            elif number == _NODE_DOMAIN:
                domain = bytes(value)
            elif number == _NODE_ATTRIBUTE:
                if any(n in (_ATTR_GRAPH, _ATTR_GRAPHS) for n, _, _ in _fields(value)):
                    raise _Unsplittable("a node holds a subgraph")
        if self.op in _CONTROL_FLOW or domain not in (b"", b"ai.onnx"):
            raise _Unsplittable(f"{self.op.decode(errors='replace')} node")


def _closure(nodes: list[_Node], producer: dict, targets, stop: bytes | None = None) -> set[int]:
    """Indices of the nodes needed to compute ``targets``, not looking past ``stop``."""
    need: set[int] = set()
    todo = [t for t in targets if t != stop]
    while todo:
        k = producer.get(todo.pop())
        if k is None or k in need:
            continue
        need.add(k)
        todo.extend(t for t in nodes[k].inputs if t and t != stop)
    return need


def _reads(nodes: list[_Node], producer: dict, source: bytes, stop: bytes | None = None) -> set[int]:
    """Indices of the nodes whose result depends on ``source`` other than through ``stop``."""
    hit: set[int] = set()
    for k, nd in enumerate(nodes):  # ONNX lists nodes in topological order
        if any(t == source or (t != stop and producer.get(t) in hit) for t in nd.inputs if t):
            hit.add(k)
    return hit


class Split(NamedTuple):
    """A model cut in two: see :func:`split_model`."""

    trunk: bytes
    cut: str
    head: Callable[[int], bytes]


class _Graph(NamedTuple):
    """The parts of a GraphProto, each kept as its raw bytes."""

    nodes: list[_Node]
    inits: dict  # name -> raw field
    inputs: list  # (name, raw field)
    outputs: list  # (name, raw field)
    keep: list  # raw fields copied to both halves: name, doc string, metadata


def _parse_graph(payload) -> _Graph:
    g = _Graph([], {}, [], [], [])
    for number, raw, value in _fields(payload):
        if number == _GRAPH_NODE:
            g.nodes.append(_Node(raw, value))
        elif number == _GRAPH_INITIALIZER:
            name = b""
            for n, _, v in _fields(value):
                if n == _TENSOR_NAME:
                    name = bytes(v)
                elif n == _TENSOR_EXTERNAL_DATA or (n == _TENSOR_DATA_LOCATION and v):
                    raise _Unsplittable("external data")
            g.inits[name] = raw
        elif number == _GRAPH_INPUT:
            g.inputs.append((_name(value), raw))
        elif number == _GRAPH_OUTPUT:
            g.outputs.append((_name(value), raw))
        elif number == _GRAPH_SPARSE_INITIALIZER:
            raise _Unsplittable("sparse initializer")
        elif number not in (_GRAPH_VALUE_INFO, _GRAPH_QUANT_ANNOTATION):
            g.keep.append(raw)
    return g


def _assemble(model_fields: list, g: _Graph, part: set[int], graph_inputs: list,
              graph_outputs: list) -> bytes:
    """A serialized model: the original's fields, its graph cut down to the nodes ``part``."""
    used = {t for k in part for t in g.nodes[k].inputs}
    fields = [g.nodes[k].raw for k in sorted(part)]
    fields += [raw for name, raw in g.inits.items() if name in used]
    fields += graph_inputs + [raw for name, raw in g.inputs if name in g.inits and name in used]
    fields += graph_outputs + g.keep
    # one copy of the weights, not three: the build runs beside the command line's imports
    # (lensscore._entry) and holds the GIL while it copies
    key = _encode_varint(_MODEL_GRAPH << 3 | 2) + _encode_varint(sum(map(len, fields)))
    pieces = []
    for n, raw, _ in model_fields:
        pieces += [key, *fields] if n == _MODEL_GRAPH else [raw]
    return b"".join(pieces)


def split_model(data: bytes) -> Split | None:
    """The trunk and head of an ONNX model, as two serialized models, and the tensor between.

    Parameters
    ----------
    data : bytes
        A whole ``.onnx`` file.

    Returns
    -------
    Split or None
        ``trunk`` maps the model's input to the tensor ``cut`` (the features that the first
        dense layer reads); ``head(width)`` is the model that maps ``cut``, ``[N, width]``, to
        the model's outputs. Both keep the model's opsets and metadata. None where no cut is
        plainly safe (see the module docstring). Whether the trunk keeps the images apart (row
        ``i`` of ``cut`` from image ``i`` alone) is not read from the graph: :func:`build`
        checks it by running the trunk.
    """
    try:
        model_fields = list(_fields(memoryview(data)))
        graphs = [v for n, _, v in model_fields if n == _MODEL_GRAPH]
        if len(graphs) != 1:
            raise _Unsplittable("no single graph")
        g = _parse_graph(graphs[0])
        images = [(name, raw) for name, raw in g.inputs if name not in g.inits]
        if len(images) != 1:
            raise _Unsplittable("not one input")
        image, nodes = images[0][0], g.nodes
        producer = {t: k for k, nd in enumerate(nodes) for t in nd.outputs if t}
        live = _reads(nodes, producer, image)
        cut = next((nd.inputs[0] for nd in nodes if nd.op in (b"MatMul", b"Gemm")
                    and nd.inputs and producer.get(nd.inputs[0]) in live), None)
        if cut is None:
            raise _Unsplittable("no dense layer on the image's path")
        trunk = _closure(nodes, producer, [cut])
        head = _closure(nodes, producer, [name for name, _ in g.outputs], stop=cut)
        if head & _reads(nodes, producer, image, stop=cut):
            raise _Unsplittable("the head needs more of the trunk than the cut")
        trunk_bytes = _assemble(model_fields, g, trunk, [images[0][1]],
                                [_field(_GRAPH_OUTPUT, _float_value_info(cut))])
        return Split(trunk_bytes, cut.decode(), lambda width: _assemble(
            model_fields, g, head, [_field(_GRAPH_INPUT, _float_value_info(cut, width))],
            [raw for _, raw in g.outputs]))
    except Exception as exc:  # a file this reader misreads runs whole: onnxruntime judges it
        log.debug("the model runs whole: %s", exc)
        return None


class SplitSession:
    """The trunk and head sessions of one model, run as one: the trunk ``trunk_batch`` images
    at a time, the head on all the features of a run at once.

    It answers what :class:`lensscore.Scorer` asks of an ``onnxruntime.InferenceSession``
    (``run``, ``get_inputs``, ``get_outputs``, ``get_modelmeta``, ``get_providers``).
    """

    def __init__(self, trunk, head, cut: str, trunk_batch: int):
        self.trunk, self.head, self.cut = trunk, head, cut
        self.trunk_batch = int(trunk_batch)
        self._input = trunk.get_inputs()[0].name

    def run(self, output_names, feeds: dict):
        x = feeds[self._input]
        b = self.trunk_batch
        parts = [self.trunk.run([self.cut], {self._input: x[i:i + b]})[0]
                 for i in range(0, max(len(x), 1), b)]
        features = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return self.head.run(output_names, {self.cut: features})

    def get_inputs(self):
        return self.trunk.get_inputs()

    def get_outputs(self):
        return self.head.get_outputs()

    def get_modelmeta(self):
        return self.trunk.get_modelmeta()

    def get_providers(self):
        return self.trunk.get_providers()


def build(path, options, providers: list[str], trunk_batch: int) -> SplitSession | None:
    """A :class:`SplitSession` of the model file ``path``, or None where it cannot be cut
    safely or read (onnxruntime then says what is wrong with the file).

    Besides :func:`split_model`'s rules, the trunk must keep the images apart: run on
    :data:`PROBE_IMAGES` images it must give one row of features per image, each equal to the
    features of that image run alone (a model that averages over its mirror image stacks both
    along the batch, and its head pairs the rows: cut in two and run a few images at a time, it
    would pair the wrong ones). Mixing that shows only in larger runs is not caught; such a
    model breaks lensscore's batch-independence contract whole or cut.
    """
    import onnxruntime as ort

    try:
        split = split_model(Path(path).read_bytes())
    except OSError:
        return None
    if split is None:
        return None
    cut = split.cut
    try:
        trunk = ort.InferenceSession(split.trunk, sess_options=options, providers=providers)
        inp = trunk.get_inputs()[0]
        if not all(isinstance(d, int) and d > 0 for d in inp.shape[1:]):
            log.debug("the model runs whole: its input size is not fixed")
            return None
        x = np.random.default_rng(0).normal(0, 1, (PROBE_IMAGES, *inp.shape[1:]))
        x = x.astype(np.float32)
        rows = trunk.run([split.cut], {inp.name: x})[0]
        if rows.ndim != 2 or len(rows) != len(x):
            log.debug("the model runs whole: its trunk gives %s features for %d images",
                      rows.shape, len(x))
            return None
        for i in range(len(x)):
            alone = trunk.run([split.cut], {inp.name: x[i:i + 1]})[0]
            if not np.array_equal(rows[i:i + 1], alone, equal_nan=True):
                log.debug("the model runs whole: its trunk does not keep the images apart")
                return None
        head_model = split.head(rows.shape[1])
        # the split holds the file's bytes (~110 MB for rot and d4): dropped before onnxruntime
        # copies the head's, a one-file scan of d4 peaked at 379 MiB instead of 405
        del split
        head = ort.InferenceSession(head_model, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own types; the whole model still runs
        log.debug("the model runs whole: %s", " ".join(str(exc).split())[:200])
        return None
    return SplitSession(trunk, head, cut, trunk_batch)
