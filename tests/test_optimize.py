"""export.optimize: subnormal weights flushed, rotational branch inputs rebuilt -- same scores."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from onnx_models import make_model

from export import optimize as opt
from export.graph import rotational_branches
from lensscore.scorer import dihedral

MODELS = Path(__file__).resolve().parent.parent / "models"
TINY = np.finfo(np.float32).tiny


def _outputs(model, x, every=False):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    out = s.run(None, {"image": x})
    return out if every else out[0]


def _views(rng, n=6):
    x = rng.normal(size=(n, 3, 72, 72)).astype(np.float32)
    x[:, :, 5:20, 40:] += 3  # off-centre and chiral
    return [np.ascontiguousarray(t.transpose(0, 2, 3, 1)) for t in dihedral(x)]


def _with_subnormal(path):
    m = onnx.load(path)
    w = next(i for i in m.graph.initializer if i.name == "W")
    a = numpy_helper.to_array(w).copy()
    a.flat[:3] = [TINY / 4, -TINY / 8, 1e-40]
    w.CopyFrom(numpy_helper.from_array(a, "W"))
    return m


@pytest.mark.parametrize("arch,n", [("rot", 4), ("d4", 8)])
def test_branch_inputs_rebuilt_bit_for_bit(tmp_path, rng, arch, n):
    model = _with_subnormal(make_model(tmp_path / "m.onnx", arch=arch))
    views = _views(rng)
    before = [_outputs(model, v) for v in views]
    done = opt.optimize_graph(model)
    assert done == {"subnormal_weights_flushed": 3, "branches": n, "gathers": 0}
    for v, b in zip(views, before):
        np.testing.assert_array_equal(_outputs(model, v), b)  # the same scores, bit for bit
    after = np.stack([_outputs(model, v) for v in views])
    assert np.ptp(after[:n], axis=0).max() == 0  # invariance still exact
    g = model.graph
    w = numpy_helper.to_array(next(i for i in g.initializer if i.name == "W"))
    assert not ((w != 0) & (np.abs(w) < TINY)).any()
    # only the cheap moves: one NHWC->NCHW Transpose of the image, row Gathers, and
    # Transposes of the last two axes; no Slice, no Transpose straight into a rotated layout
    ops = [(nd.op_type, list(nd.input)) for nd in g.node]
    assert not any(op == "Slice" for op, _ in ops)
    assert sum("image" in ins for _, ins in ops) == 1
    perms = [list(a.ints) for nd in g.node if nd.op_type == "Transpose" for a in nd.attribute]
    assert perms.count([0, 3, 1, 2]) == 1 and all(p in ([0, 3, 1, 2], [0, 1, 3, 2]) for p in perms)
    assert len(rotational_branches(model, n)) == 1  # export's own check still sees the layer


def test_other_permutations_become_one_gather(tmp_path, rng):
    """A branch input that is no D4 transform (bands reversed after the NCHW transpose) is
    still made by one move: a Gather of the flattened image."""
    model = onnx.load(make_model(tmp_path / "m.onnx", arch="rot"))
    g = model.graph
    g.initializer.extend([numpy_helper.from_array(np.array([-1], np.int64), "c_start"),
                          numpy_helper.from_array(np.array([1], np.int64), "c_axis")])
    conv = next(nd for nd in g.node if nd.op_type == "Conv")
    old = conv.input[0]
    conv.input[0] = "bands_reversed"
    at = next(i for i, nd in enumerate(g.node) if nd is conv)
    g.node.insert(at, helper.make_node("Slice", [old, "c_start", "rs_end", "c_axis", "rs_step"],
                                       ["bands_reversed"]))
    x = _views(rng)[0]
    before = _outputs(model, x)
    done = opt.share_transforms(model)
    assert done == {"branches": 4, "gathers": 1}
    np.testing.assert_array_equal(_outputs(model, x), before)
    assert not any(nd.op_type == "Slice" for nd in g.node)


def test_every_rotational_layer_is_rebuilt(tmp_path, rng):
    """Two image tensors with branches of their own (the second reached through the first's
    NCHW->NHWC Transpose): both rebuilt, each from its own square NHWC root."""
    model = onnx.load(make_model(tmp_path / "m.onnx", arch="d4"))
    g = model.graph
    m2 = onnx.load(make_model(tmp_path / "m2.onnx", arch="d4"))
    rename = {"image": "second_image"}
    for nd in m2.graph.node:
        if nd.op_type in ("Slice", "Transpose", "Conv"):
            nd.input[:] = [rename.get(i, i if i in ("W",) or i.startswith(("rs_", "mx_"))
                                      else "x2_" + i) for i in nd.input]
            nd.output[:] = ["x2_" + o for o in nd.output]
            g.node.append(nd)
    head = [helper.make_node("Transpose", ["image"], ["x2_nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("Abs", ["x2_nchw"], ["x2_abs"]),  # not a move: a new root
            helper.make_node("Transpose", ["x2_abs"], ["second_image"], perm=[0, 2, 3, 1])]
    rest = list(g.node)
    del g.node[:]
    g.node.extend(head + rest)
    convs2 = [o for nd in m2.graph.node if nd.op_type == "Conv" for o in nd.output]
    g.node.append(helper.make_node("Max", convs2, ["x2_max"]))
    g.node.append(helper.make_node("ReduceMean", ["x2_max"], ["x2_mean"], keepdims=0))
    g.output.append(helper.make_tensor_value_info("x2_mean", onnx.TensorProto.FLOAT, None))
    x = _views(rng)[0]
    before = _outputs(model, x, every=True)
    done = opt.share_transforms(model)
    assert done == {"branches": 16, "gathers": 0}
    for a, b in zip(_outputs(model, x, every=True), before):
        np.testing.assert_array_equal(a, b)
    assert not any(nd.op_type == "Slice" for nd in g.node)


def test_optimize_file_checks_records_and_refuses(tmp_path, monkeypatch):
    p = tmp_path / "m.onnx"
    onnx.save(_with_subnormal(make_model(p, arch="d4")), p)
    r = opt.optimize(p)
    assert r["max_output_change"] <= opt.MAX_SCORE_CHANGE and r["transform_spread_after"] == 0
    props = {q.key: q.value for q in onnx.load(p).metadata_props}
    rec = json.loads(props["lensscore." + opt.OPTIMIZED])
    assert rec["branches"] == 8 and rec["subnormal_weights_flushed"] == 3
    assert opt.optimize(p) == {"path": str(p), "skipped": "optimized already"}

    # a pass that changed the function is refused, and the file is left as it was
    q = tmp_path / "q.onnx"
    make_model(q, arch="d4")
    original = q.read_bytes()

    def damage(model):
        w = next(i for i in model.graph.initializer if i.name == "W")
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 1.01, "W"))
        return 0

    monkeypatch.setattr(opt, "flush_subnormals", damage)
    with pytest.raises(ValueError, match="failed its check"):
        opt.optimize(q)
    assert q.read_bytes() == original and not (tmp_path / "q.onnx.tmp").exists()
    assert opt.main([str(q), str(tmp_path / "missing.onnx")]) == 1


def test_shipped_models_are_optimized():
    for p in sorted(MODELS.glob("*.onnx")):
        m = onnx.load(p)
        props = {q.key: q.value for q in m.metadata_props}
        assert "lensscore." + opt.OPTIMIZED in props, p.name
        for init in m.graph.initializer:
            if init.data_type == onnx.TensorProto.FLOAT:
                a = numpy_helper.to_array(init)
                assert not ((a != 0) & (np.abs(a) < TINY)).any(), (p.name, init.name)
        prod = {o: nd for nd in m.graph.node for o in nd.output}
        for conv in (nd for nd in m.graph.node if nd.op_type == "Conv"):
            t, moves = conv.input[0], []
            while t in prod and prod[t].op_type in ("Transpose", "Slice", "Gather", "Identity"):
                moves.append(prod[t])
                t = prod[t].input[0]
            # the mirror half of ps1 (export.symmetrise) is the only Slice left: before its Concat
            assert not any(nd.op_type == "Slice" for nd in moves), (p.name, conv.name)
