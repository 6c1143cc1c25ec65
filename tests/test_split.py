"""The trunk and the head of a model at their own batch sizes (lensscore._split): the same
scores, bit for bit, and the whole model wherever a cut is not plainly safe."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lensscore import Scorer, _session
from lensscore._split import SplitSession, split_model
from lensscore.config import TRUNK_BATCH_SIZE
from lensscore.errors import ModelError
from onnx_models import make_model

CPU = ["CPUExecutionProvider"]


@pytest.fixture(autouse=True)
def _no_trunk_batch_from_the_shell(monkeypatch):
    monkeypatch.delenv("LENSSCORE_TRUNK_BATCH", raising=False)


def _outputs(session, x):
    names = [o.name for o in session.get_outputs()]
    return session.run(names, {session.get_inputs()[0].name: x})


def _images(session, n, seed=0):
    shape = session.get_inputs()[0].shape[1:]
    return np.random.default_rng(seed).normal(0, 1, (n, *shape)).astype(np.float32)


@pytest.mark.parametrize("which", ["conv", "rot", "d4", "shipped rot", "shipped d4",
                                   "shipped baseline"])
def test_a_split_model_scores_as_the_whole_model_bit_for_bit(which, tmp_path):
    if which.startswith("shipped"):
        path = _session.resolve_model(which.split()[1])
    else:
        path = make_model(tmp_path / f"{which}.onnx", arch=which)
    split = _session.build(str(path), CPU, 1)
    whole = _session.build(str(path), CPU, 1, trunk_batch=0)
    assert isinstance(split, SplitSession) and not isinstance(whole, SplitSession)
    assert [o.name for o in split.get_outputs()] == [o.name for o in whole.get_outputs()]
    assert split.get_modelmeta().custom_metadata_map == whole.get_modelmeta().custom_metadata_map
    x = _images(whole, 37)  # not a multiple of the trunk batch: a short last trunk run
    for got, want in zip(_outputs(split, x), _outputs(whole, x)):
        assert got.shape == want.shape and np.array_equal(got, want)
    # and each image alone, as batch independence asks
    alone = np.concatenate([_outputs(split, x[i:i + 1])[0] for i in range(5)])
    assert np.array_equal(alone, _outputs(whole, x[:5])[0])


def test_the_scorer_runs_a_split_model_on_the_cpu(tmp_path):
    s = Scorer(make_model(tmp_path / "d4.onnx", arch="d4"), threads=1)
    assert isinstance(s._session, SplitSession) and s._session.trunk_batch == TRUNK_BATCH_SIZE
    assert s.providers == CPU and s.meta.invariance == "D4"


class _Spy:
    def __init__(self, session):
        self.session, self.sizes = session, []

    def run(self, names, feeds):
        self.sizes.append(len(next(iter(feeds.values()))))
        return self.session.run(names, feeds)


def test_the_trunk_runs_a_few_images_at_a_time_and_the_head_the_whole_run(tmp_path):
    s = Scorer(make_model(tmp_path / "rot.onnx", arch="rot"), threads=1, batch_size=40)
    split = s._session
    split.trunk, split.head = _Spy(split.trunk), _Spy(split.head)
    x = np.random.default_rng(2).normal(0, 1, (45, 3, 72, 72)).astype(np.float32)
    scores = s.score(x)
    b = TRUNK_BATCH_SIZE
    # a run of 45 (a tail of 5 rides with the batch of 40), its trunk in runs of b
    assert split.head.sizes == [45]
    assert split.trunk.sizes == [min(b, 45 - i) for i in range(0, 45, b)]
    assert np.array_equal(scores, Scorer(make_model(tmp_path / "rot.onnx", arch="rot"),
                                          threads=1, batch_size=1).score(x))


def test_a_model_averaged_over_its_mirror_runs_whole():
    """The shipped ps1 stacks each image and its mirror along the batch; its head pairs the
    rows, so a trunk run a few images at a time would pair the wrong ones."""
    path = _session.resolve_model("ps1")
    assert split_model(path.read_bytes()) is not None  # the graph alone does not show it
    s = _session.build(str(path), CPU, 1)
    assert not isinstance(s, SplitSession)


def _tiny(path, *, mix_batch=None, skip=False, dense=True):
    """image -> Conv -> GlobalAveragePool -> Flatten [-> + batch mean] -> Gemm -> Sigmoid."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 5, 5)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.normal(0, 1, (4, 1)).astype(np.float32), "Wd"),
             numpy_helper.from_array(np.array([0.1], np.float32), "Bd")]
    nodes = [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "W"], ["c"]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Flatten", ["g"], ["flat"])]
    feat = "flat"
    if mix_batch == "mean":  # each row plus the batch's mean: it depends on its neighbours
        nodes += [helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[0], keepdims=1),
                  helper.make_node("Add", ["flat", "mean"], ["mixed"])]
        feat = "mixed"
    elif mix_batch == "cumsum":  # each row plus the rows after it: the last one looks alone
        nodes.append(helper.make_node("CumSum", ["flat", "ax0"], ["mixed"], reverse=1))
        inits.append(numpy_helper.from_array(np.array(0, np.int64), "ax0"))
        feat = "mixed"
    if dense:
        nodes.append(helper.make_node("Gemm", [feat, "Wd", "Bd"], ["logit"]))
    else:
        nodes.append(helper.make_node("ReduceMean", [feat], ["logit"], axes=[1], keepdims=1))
    last = "logit"
    if skip:  # the head reads the image again, past the cut
        nodes += [helper.make_node("ReduceMean", ["image"], ["im"], axes=[1, 2, 3], keepdims=0),
                  helper.make_node("Unsqueeze", ["im", "ax1"], ["im1"]),
                  helper.make_node("Add", ["logit", "im1"], ["logit2"])]
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "ax1"))
        last = "logit2"
    nodes.append(helper.make_node("Sigmoid", [last], ["score"]))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 72, 72, 3])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return str(path)


def test_the_plain_tiny_model_splits(tmp_path):
    path = _tiny(tmp_path / "plain.onnx")
    s = _session.build(path, CPU, 1)
    assert isinstance(s, SplitSession) and s.cut == "flat"
    x = _images(s, 9)
    assert np.array_equal(_outputs(s, x)[0],
                          _outputs(_session.build(path, CPU, 1, trunk_batch=0), x)[0])


@pytest.mark.parametrize("kind", ["mean", "cumsum", "skip", "no dense layer"])
def test_models_without_a_safe_cut_run_whole(kind, tmp_path):
    path = _tiny(tmp_path / "m.onnx", mix_batch=kind if kind in ("mean", "cumsum") else None,
                 skip=kind == "skip", dense=kind != "no dense layer")
    if kind not in ("mean", "cumsum"):  # batch mixing is found by running the trunk
        assert split_model(Path(path).read_bytes()) is None
    s = _session.build(path, CPU, 1)
    assert not isinstance(s, SplitSession)
    x = _images(s, 6)
    assert _outputs(s, x)[0].shape == (6, 1)


@pytest.mark.parametrize("damage", ["truncated", "0xff"])
def test_a_corrupt_file_is_still_refused_in_one_line(damage, tmp_path):
    good = Path(make_model(tmp_path / "m.onnx")).read_bytes()
    # an endless varint is refused at once, not parsed for minutes
    data = good[: len(good) // 2] if damage == "truncated" else b"\xff" * 600_000
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(data)
    t0 = time.perf_counter()
    assert split_model(data) is None
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(ModelError, match="not a usable ONNX model"):
        Scorer(bad)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    """One protobuf field (numbers and lengths below 128)."""
    return bytes([number << 3 | wire, len(payload)]) + payload if wire == 2 else \
        bytes([number << 3 | wire]) + payload


def test_a_file_with_a_field_this_reader_does_not_expect_runs_whole(tmp_path):
    """A GraphProto whose field 1 (node) holds a varint: protobuf skips it as unknown and
    onnxruntime runs the model; the cut is not made, the model runs whole."""
    m = onnx.load(make_model(tmp_path / "m.onnx"))
    graph = m.graph.SerializeToString()
    m.ClearField("graph")
    odd = _field(1, 0, b"\x05") + graph
    data = m.SerializeToString() + bytes([7 << 3 | 2]) + _varint(len(odd)) + odd
    path = tmp_path / "odd.onnx"
    path.write_bytes(data)
    assert split_model(data) is None
    s = Scorer(path, threads=1)
    assert not isinstance(s._session, SplitSession)
    x = np.random.default_rng(3).normal(0, 1, (4, 3, 72, 72)).astype(np.float32)
    assert np.array_equal(s.score(x), Scorer(tmp_path / "m.onnx", threads=1).score(x))


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    return bytes(out + bytes([v]))
