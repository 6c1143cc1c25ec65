"""``python -m export.optimize MODEL.onnx [...]``: two graph passes that make an exported model
run at its convolutions' speed in onnxruntime, without changing what it computes.

1. **Subnormal weights flushed to zero** (:func:`flush_subnormals`). Training leaves some kernel
   entries below float32's smallest normal number (7,104 of the 73,728 ``conv3`` weights of the
   shipped ``rot.onnx``). x86 cores take a slow path for every multiply with such a number: that
   one 3×3 convolution ran at 53 GFLOP/s inside the model against 258 with the same shapes and
   normal weights (onnxruntime's own profile; `bench/RESULTS.md`). onnxruntime's advice is to
   export without denormals; its ``session.set_denormal_as_zero`` option would also change the
   floating-point mode of the caller's thread, which a library must not do. A subnormal weight is
   below 1.2e-38; setting the shipped models' ones to zero changed none of their scores by one
   bit (measured; :func:`optimize` checks every model it rewrites).
2. **The branch inputs of the rotational layers rebuilt** (:func:`share_transforms`). tf2onnx
   makes each rotated or mirrored copy of the image with its own ``Slice`` (a negative step)
   and a ``Transpose`` from NHWC straight into a rotated NCHW layout: element-by-element copies
   that took 1.6–1.9 ms a batch each. Every branch input that is one of the 8 transforms of the
   image (D4) is now reached from the image in NCHW layout by the two cheapest moves
   onnxruntime has, a row ``Gather`` (the up-down flip, 0.06 ms a batch of 32) and a
   ``Transpose`` of the last two axes (the diagonal mirror, 0.4 ms), the branches sharing their
   common steps. Any other per-image permutation becomes one ``Gather`` of the flattened image.
   Each ``Conv`` receives the same tensor, bit for bit, so invariance stays exact.

``python -m export`` applies both to every model it writes. This command applies them to a model
file in place and refuses to write one whose scores changed (more than
:data:`MAX_SCORE_CHANGE`) or whose invariance broke.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from lensscore.config import INVARIANCE_TOLERANCE
from lensscore.modelmeta import META_PREFIX

__all__ = ["flush_subnormals", "share_transforms", "optimize_graph", "optimize", "OPTIMIZED",
           "MAX_SCORE_CHANGE"]

#: metadata key (after ``lensscore.``) recording the passes and their check
OPTIMIZED = "optimized"
#: largest change of a score the passes may make on the check's synthetic cutouts
MAX_SCORE_CHANGE = 1e-6

#: ops whose output is a per-image permutation of their data input (with constant arguments)
_MOVES = ("Transpose", "Slice", "Identity")
_TINY = np.finfo(np.float32).tiny


def flush_subnormals(model) -> int:
    """Set every subnormal float32 initializer entry of ``model`` to zero (in place); returns
    how many there were."""
    from onnx import TensorProto, numpy_helper

    n = 0
    for init in model.graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(init)
        sub = (a != 0) & (np.abs(a) < _TINY)
        if sub.any():
            a = a.copy()
            a[sub] = 0
            init.CopyFrom(numpy_helper.from_array(a, init.name))
            n += int(sub.sum())
    return n


def _const(inits: dict, name: str):
    from onnx import numpy_helper

    return numpy_helper.to_array(inits[name]) if name in inits else None


def _slice(node, a: np.ndarray, inits: dict):
    """``a[…]`` as ONNX's ``Slice`` with constant arguments does it; None if it is not a
    per-image slice (a non-constant argument, or a cut along the batch axis)."""
    args = [_const(inits, i) if i else None for i in node.input[1:]]
    if len(args) < 2 or any(i and v is None for i, v in zip(node.input[1:], args)):
        return None
    starts, ends = args[0], args[1]
    axes = args[2] if len(args) > 2 and args[2] is not None else np.arange(len(starts))
    steps = args[3] if len(args) > 3 and args[3] is not None else np.ones(len(starts), np.int64)
    cut = [slice(None)] * a.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = int(ax) % a.ndim
        if ax == 0:  # the batch axis: only "all of it" keeps this per image
            if int(s) != 0 or int(st) != 1 or int(e) < 10 ** 9:  # tf2onnx writes 1e9 for "to the end"
                return None
            continue
        cut[ax] = slice(int(s), int(e), int(st))
    return a[tuple(cut)]


def _apply(node, a: np.ndarray, inits: dict):
    """One move applied to a batch of one index image; None where it is not a per-image move."""
    if node.op_type == "Identity":
        return a
    if node.op_type == "Transpose":
        perm = next((list(x.ints) for x in node.attribute if x.name == "perm"), None)
        return None if perm is None or perm[0] != 0 else np.transpose(a, perm)
    return _slice(node, a, inits)


def _upstream(conv_input: str, prod: dict) -> tuple[list, list]:
    """The per-image moves above a Conv input: ``chain[i]`` makes ``tensors[i]`` from
    ``tensors[i + 1]``; ``tensors[0]`` is the Conv's input."""
    chain, tensors, t = [], [conv_input], conv_input
    while t in prod and prod[t].op_type in _MOVES:
        chain.append(prod[t])
        t = prod[t].input[0]
        tensors.append(t)
    return chain, tensors


def _index(chain: list, pos: int, shape, inits: dict):
    """Positions in the flattened image ``tensors[pos]`` (per-image ``shape``) of the Conv
    input's elements, shaped as the Conv input; None where a move is not per image."""
    a = np.arange(int(np.prod(shape))).reshape(1, *shape)
    for node in reversed(chain[:pos]):
        a = _apply(node, a, inits)
        if a is None:
            return None
    return a[0]


def _plan(chain: list, tensors: list, shapes: dict, inits: dict, tables: dict):
    """``(root, index, word)`` for one Conv input: the furthest tensor upstream of which it is
    a D4 transform (``word`` as in :func:`_d4_words`), else the furthest of which it is any
    per-image permutation (``word`` None); None where there is nothing to gain."""
    fallback = None
    for pos in range(len(chain), 0, -1):
        root, shape = tensors[pos], shapes.get(tensors[pos])
        if not shape or any(d is None for d in shape[1:]):
            continue
        index = _index(chain, pos, shape[1:], inits)
        if index is None:
            continue
        fallback = fallback or (root, index, None)
        if len(shape) == 4 and shape[1] == shape[2]:
            if tuple(shape[1:]) not in tables:
                tables[tuple(shape[1:])] = _d4_words(shape[1:])
            table = tables[tuple(shape[1:])]
            word = table.get((index.shape, np.ascontiguousarray(index).tobytes()))
            if word is not None:
                return root, index, word
    if fallback is None or len(chain) < 2:
        return None  # one move is already as cheap as a Gather
    return fallback


def _d4_words(root_shape) -> dict:
    """The 8 transforms of an NHWC image with square pixels, as NCHW index images keyed by
    their shape and bytes, each with the shortest word of moves that makes it from the NCHW
    image: ``"F"``, the up-down flip (a row Gather), and ``"T"``, the diagonal mirror (a
    Transpose of the last two axes). A breadth-first search: the words form a tree rooted at
    the NCHW image. A word never starts with ``"T"``: onnxruntime merges two Transposes in a
    row into one, and the merged NHWC->NCWH Transpose took 5 ms a batch where the two moves
    take 0.6."""
    h, w, c = root_shape
    base = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1)
    words = {(base.shape, base.tobytes()): ("", base)}
    frontier = [("", base)]
    while frontier:
        nxt = []
        for word, a in frontier:
            for step, b in (("F", a[:, ::-1, :]), ("T", a.transpose(0, 2, 1))):
                if step == "T" and not word:
                    continue  # onnxruntime merges it with the NHWC->NCHW Transpose: 8x slower
                if (b.shape, b.tobytes()) not in words:
                    words[(b.shape, b.tobytes())] = (word + step, b)
                    nxt.append((word + step, b))
        frontier = nxt
    return {k: w for k, (w, _) in words.items()}


class _Builder:
    """New nodes for the branch inputs of one root tensor, made once each and shared; their
    names are new in the graph (``taken``: every name in it, updated)."""

    def __init__(self, root: str, size: int, taken: set):
        from onnx import helper, numpy_helper

        self.root, self.nodes, self.inits, self.made, self.taken = root, [], [], {}, taken
        self._h, self._np = helper, numpy_helper
        self.flip = self.fresh(root + "__rows_reversed")
        self.size = size

    def fresh(self, name: str) -> str:
        out, k = name, 1
        while out in self.taken:
            k += 1
            out = f"{name}_{k}"
        self.taken.add(out)
        return out

    def word(self, word: str) -> str:
        """The tensor of the NCHW image moved by ``word`` (made with its prefixes)."""
        if word in self.made:
            return self.made[word]
        name = self.fresh(f"{self.root}__nchw{'_' + word if word else ''}")
        h = self._h
        if not word:
            node = h.make_node("Transpose", [self.root], [name], perm=[0, 3, 1, 2], name=name)
        elif word[-1] == "F":
            if all(i.name != self.flip for i in self.inits):
                self.inits.append(self._np.from_array(
                    np.arange(self.size - 1, -1, -1, dtype=np.int64), self.flip))
            node = h.make_node("Gather", [self.word(word[:-1]), self.flip], [name], axis=2,
                               name=name)
        else:
            node = h.make_node("Transpose", [self.word(word[:-1])], [name], perm=[0, 1, 3, 2],
                               name=name)
        self.nodes.append(node)
        self.made[word] = name
        return name

    def gather(self, index: np.ndarray) -> str:
        """Any per-image permutation: one Gather of the flattened root image."""
        if "flat" not in self.made:
            flat = self.fresh(self.root + "__flat")
            shape = self._np.from_array(np.array([0, -1], np.int64), self.fresh(flat + "_shape"))
            self.inits.append(shape)
            self.nodes.append(self._h.make_node("Reshape", [self.root, shape.name], [flat],
                                                name=flat))
            self.made["flat"] = flat
        idx = self._np.from_array(index.astype(np.int64), self.fresh(self.root + "__perm"))
        self.inits.append(idx)
        out = self.fresh(self.root + "__gathered")
        self.nodes.append(self._h.make_node("Gather", [self.made["flat"], idx.name], [out],
                                            axis=1, name=out))
        return out


def _static_shapes(model) -> dict:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    vals = list(inferred.graph.value_info) + list(inferred.graph.input)
    return {v.name: [d.dim_value if d.HasField("dim_value") else None
                     for d in v.type.tensor_type.shape.dim] for v in vals}


def share_transforms(model) -> dict:
    """Rebuild the data movement between image tensors and the Convs they feed (in place).

    A Conv input that is a D4 transform of an NHWC tensor with square pixels is made from that
    tensor's NCHW layout by row flips and diagonal mirrors, shared with the other branches of
    the same tensor; another per-image permutation reached by two moves or more becomes one flat
    Gather. A single move (the NHWC->NCHW Transpose of a plain network) is left alone, and so is
    a graph with control flow. Each Conv's input is unchanged, bit for bit.

    Returns
    -------
    dict
        ``{"branches": Conv inputs rebuilt, "gathers": those of them made by a flat Gather}``.
    """
    from .graph import control_flow_nodes

    g = model.graph
    done = {"branches": 0, "gathers": 0}
    if control_flow_nodes(model):
        return done
    shapes, inits = _static_shapes(model), {i.name: i for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    taken = {t for n in g.node for t in list(n.input) + list(n.output)} | set(inits) \
        | {v.name for v in g.input}
    plans, tables = {}, {}
    for conv in [n for n in g.node if n.op_type == "Conv"]:
        chain, tensors = _upstream(conv.input[0], prod)
        plan = _plan(chain, tensors, shapes, inits, tables)
        if plan is not None:
            plans.setdefault(plan[0], []).append((conv, len(chain), *plan[1:]))
    builders = {}
    for root, convs in plans.items():
        if len(convs) == 1 and convs[0][1] == 1 and convs[0][3] == "":
            continue  # a plain network's one NHWC->NCHW Transpose: nothing to share
        b = builders[root] = _Builder(root, convs[0][2].shape[-1], taken)
        for conv, _, index, word in convs:
            conv.input[0] = b.word(word) if word is not None else b.gather(index)
            done["branches"] += 1
            done["gathers"] += word is None
    _insert_after_roots(g, builders)
    _prune(model)
    return done


def _insert_after_roots(g, builders: dict) -> None:
    """Put each builder's nodes right after the node that makes its root (first, for a graph
    input) and its initializers into the graph: one rebuild of the node list."""
    old = list(g.node)
    made = {o for n in old for o in n.output}
    nodes = [n for r, b in builders.items() if r not in made for n in b.nodes]
    for n in old:
        nodes.append(n)
        nodes += [m for r, b in builders.items() if r in n.output for m in b.nodes]
    del g.node[:]
    g.node.extend(nodes)
    for b in builders.values():
        g.initializer.extend(b.inits)


def _prune(model) -> None:
    """Drop the nodes no output needs and the initializers no node reads (graphs without
    control flow: :func:`share_transforms` leaves the others alone)."""
    from .logit import prune

    g = model.graph
    prune(g)
    used = {i for n in g.node for i in n.input} | {v.name for v in g.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)


def optimize_graph(model) -> dict:
    """Both passes on an ``onnx.ModelProto`` (in place); returns what they did."""
    import onnx

    done = {"subnormal_weights_flushed": flush_subnormals(model), **share_transforms(model)}
    onnx.checker.check_model(model)
    return done


def _scores(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Every output of the model on ``x`` (NHWC), stacked as float64 columns."""
    import onnxruntime as ort

    s = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    outs = s.run(None, {s.get_inputs()[0].name: x})
    return np.stack([np.asarray(o, np.float64).reshape(-1) for o in outs], axis=1)


def _transforms_nhwc(x: np.ndarray) -> list:
    """The 8 transforms of NHWC images (:data:`lensscore.scorer.TRANSFORMS`)."""
    from lensscore.scorer import dihedral

    return [np.ascontiguousarray(np.transpose(t, (0, 2, 3, 1)))
            for t in dihedral(np.transpose(x, (0, 3, 1, 2)))]


def _group(model) -> int:
    """How many of :data:`lensscore.scorer.TRANSFORMS` the model says it is invariant to (its
    metadata read as the scorer reads it: older models say only ``rotation_invariant``)."""
    from lensscore.modelmeta import ModelMeta

    props = {p.key: p.value for p in model.metadata_props}
    try:
        inv = ModelMeta.from_props(props, "model").invariance
    except Exception:  # noqa: BLE001 -- no lensscore metadata: nothing claimed
        return 1
    return {"C4": 4, "D4": 8}.get(inv, 1)


def optimize(path, *, n_check: int = 64, seed: int = 0) -> dict:
    """Apply :func:`optimize_graph` to the model file ``path`` (atomically), checked.

    On ``n_check`` synthetic cutouts and their 8 transforms, through onnxruntime: no output (the
    score, and the logit where there is one) moves by more than :data:`MAX_SCORE_CHANGE`, and the
    last output (the logit: it does not saturate) spreads over the transforms the model claims
    invariance to (``lensscore.invariance``) no more than before, or than
    :data:`lensscore.config.INVARIANCE_TOLERANCE`. Records the passes and the check under
    ``lensscore.optimized``; a model optimized already is left as it is.

    Returns
    -------
    dict
        The passes' counts and the check's numbers (or ``skipped``).
    """
    import onnx

    from .graph import merge_metadata

    path = Path(path)
    model = onnx.load(path)
    if any(p.key == META_PREFIX + OPTIMIZED for p in model.metadata_props):
        return {"path": str(path), "skipped": "optimized already"}
    dims = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(seed).normal(size=(n_check, *dims[1:])).astype(np.float32)
    x[:, 2:dims[1] // 3, dims[2] // 2:] += 3  # off-centre and chiral
    views = _transforms_nhwc(x) if dims[1] == dims[2] else [x]
    n = min(_group(model), len(views))
    before = [_scores(model.SerializeToString(), v) for v in views]
    done = optimize_graph(model)
    after = [_scores(model.SerializeToString(), v) for v in views]
    change = max(float(np.abs(a - b).max()) for a, b in zip(after, before))
    spread = [float(np.ptp(np.stack([s[:, -1] for s in v[:n]]), axis=0).max())
              for v in (before, after)]
    check = {"n": n_check, "transforms": n, "max_output_change": change,
             "transform_spread_before": spread[0], "transform_spread_after": spread[1]}
    if not (change <= MAX_SCORE_CHANGE and spread[1] <= max(spread[0], INVARIANCE_TOLERANCE)):
        raise ValueError(f"{path}: the optimized graph failed its check: {check}")
    merge_metadata(model, {META_PREFIX + OPTIMIZED: json.dumps({**done, "checked": check})})
    tmp = path.with_name(path.name + ".tmp")
    try:
        onnx.save_model(model, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": str(path), **done, **check}


def main(argv=None) -> int:
    import argparse

    from .graph import error_line

    ap = argparse.ArgumentParser(prog="python -m export.optimize",
                                 description=__doc__.split("\n\n")[0].replace("``", ""))
    ap.add_argument("models", nargs="+", help="ONNX files, changed in place")
    a = ap.parse_args(argv)
    code = 0
    for p in a.models:
        try:
            print(json.dumps(optimize(p)))
        except Exception as exc:  # noqa: BLE001 -- protobuf, checker, onnxruntime: one line each
            print(error_line(p, exc), file=sys.stderr)
            code = 1
    return code


if __name__ == "__main__":
    from train._extra import run

    raise SystemExit(run(main))
