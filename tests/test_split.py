"""The trunk and the head of a model at their own batch sizes (lensscore._split): the same
scores, bit for bit, and the whole model wherever a cut is not plainly safe."""

from __future__ import annotations

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


def _outputs(session, x):
    names = [o.name for o in session.get_outputs()]
    return session.run(names, {session.get_inputs()[0].name: x})


def _images(session, n, seed=0):
    shape = session.get_inputs()[0].shape[1:]
    return np.random.default_rng(seed).normal(0, 1, (n, *shape)).astype(np.float32)


@pytest.mark.parametrize("which", ["conv", "rot", "d4", "shipped rot", "shipped d4"])
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


def test_a_model_averaged_over_its_mirror_runs_whole():
    """The shipped ps1 stacks each image and its mirror along the batch; its head pairs the
    rows, so a trunk run a few images at a time would pair the wrong ones."""
    path = _session.resolve_model("ps1")
    assert split_model(path.read_bytes()) is not None  # the graph alone does not show it
    s = _session.build(str(path), CPU, 1)
    assert not isinstance(s, SplitSession)


def _tiny(path, *, mix_batch=False, skip=False, dense=True):
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
    if mix_batch:  # each row plus the batch's mean: a score that depends on its neighbours
        nodes += [helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[0], keepdims=1),
                  helper.make_node("Add", ["flat", "mean"], ["mixed"])]
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


@pytest.mark.parametrize("kind", ["mix_batch", "skip", "no dense layer"])
def test_models_without_a_safe_cut_run_whole(kind, tmp_path):
    path = _tiny(tmp_path / "m.onnx", mix_batch=kind == "mix_batch", skip=kind == "skip",
                 dense=kind != "no dense layer")
    if kind != "mix_batch":  # the batch mean is found by running the trunk, not in the graph
        assert split_model(Path(path).read_bytes()) is None
    s = _session.build(path, CPU, 1)
    assert not isinstance(s, SplitSession)
    x = _images(s, 6)
    assert _outputs(s, x)[0].shape == (6, 1)


def test_a_corrupt_file_is_still_refused_in_one_line(tmp_path):
    good = Path(make_model(tmp_path / "m.onnx")).read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(good[: len(good) // 2])
    assert split_model(bad.read_bytes()) is None
    assert split_model(b"\xff" * 64) is None
    with pytest.raises(ModelError, match="not a usable ONNX model"):
        Scorer(bad)


def test_the_trunk_batch_can_be_set_or_turned_off_from_the_environment(tmp_path, monkeypatch):
    path = make_model(tmp_path / "m.onnx")
    monkeypatch.setenv("LENSSCORE_TRUNK_BATCH", "0")
    assert not isinstance(_session.build(path, CPU, 1), SplitSession)
    monkeypatch.setenv("LENSSCORE_TRUNK_BATCH", "3")
    s = _session.build(path, CPU, 1)
    assert isinstance(s, SplitSession) and s.trunk_batch == 3
    monkeypatch.setenv("LENSSCORE_TRUNK_BATCH", "sixteen")
    with pytest.raises(ModelError, match="LENSSCORE_TRUNK_BATCH must be a whole number >= 0"):
        Scorer(path)
