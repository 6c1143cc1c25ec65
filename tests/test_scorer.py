import dataclasses
import os
import sys

import numpy as np
import pytest

from conftest import fake_cutout, write_cube
from lensscore import ModelError, Scorer
from lensscore.preprocess import DEFAULT_SPEC
from onnx_models import make_model


#: the Dense head of this module's plain conv model: it reads the first feature, which tells the
#: cartoon lens (a ring) from the blob, so that scores span 0-1 (onnx_models.make_model)
SENSITIVE_HEAD = ([50.0, 0.0, 0.0, 0.0], -50 * 0.297)


@pytest.fixture(scope="module")
def conv_model(tmp_path_factory):
    """Here the plain conv test model has a sensitive head: the shared one scores every input
    0.31-0.39, so that a broken preprocessing could pass every check of this module."""
    return make_model(tmp_path_factory.mktemp("m") / "conv.onnx", arch="conv",
                      head=SENSITIVE_HEAD)


def test_the_test_model_reads_its_preprocessed_input(conv_model):
    """Cartoon lenses score about 0.8 and blobs about 0.2 (means measured 0.8093 and 0.1929):
    scores that depend on what the preprocessing makes of the pixels, not only on its
    invariances."""
    rng = np.random.default_rng(0)
    xs = np.stack([fake_cutout(rng, lens=k % 2 == 0) for k in range(20)])
    s = Scorer(conv_model).score(xs)
    assert s[::2].mean() == pytest.approx(0.8093, abs=0.01)
    assert s[1::2].mean() == pytest.approx(0.1929, abs=0.01)
    assert s[::2].min() > 0.74 and s[1::2].max() < 0.25


def test_metadata_and_info(rot_model):
    s = Scorer(rot_model)
    assert s.bands == ("g", "r", "i") and s.size == 72 and s.spec == DEFAULT_SPEC
    assert s.arch == "rot" and s.rotation_invariant
    info = s.info()
    assert info["bands"] == ["g", "r", "i"] and info["rotation_invariant"] is True
    assert s.providers == ["CPUExecutionProvider"]


def test_batch_size_and_neighbours_do_not_change_scores(conv_model, rng):
    xs = np.stack([fake_cutout(rng, lens=k % 2 == 0) * (1 + k) for k in range(37)])
    ref = Scorer(conv_model, batch_size=1).score(xs)
    for bs in (2, 7, 64):
        np.testing.assert_allclose(Scorer(conv_model, batch_size=bs).score(xs), ref, atol=1e-6)
    # a cutout scored alone or among others, in any order
    perm = rng.permutation(len(xs))
    np.testing.assert_allclose(Scorer(conv_model, batch_size=16).score(xs[perm]), ref[perm],
                               atol=1e-6)
    np.testing.assert_allclose(Scorer(conv_model, threads=1).score(xs), ref, atol=1e-6)


def test_scale_and_offset_invariance_of_scores(conv_model, rng):
    s = Scorer(conv_model)
    xs = np.stack([fake_cutout(rng) for _ in range(4)])
    ref = s.score(xs)
    np.testing.assert_allclose(s.score(xs * 1e-11), ref, atol=1e-6)
    np.testing.assert_allclose(s.score(xs * 10 ** 1.2), ref, atol=1e-6)
    np.testing.assert_allclose(s.score(xs + np.array([5, -2, 30.0])[:, None, None]), ref,
                               atol=1e-5)


def test_rotation_scores(conv_model, rot_model, rng):
    xs = np.stack([fake_cutout(rng, lens=True) + rng.normal(0, 3, (3, 72, 72)) for _ in range(5)])
    r = Scorer(rot_model).score_rotations(xs)
    assert r.shape == (5, 4)
    assert np.all(r == r[:, :1])  # exactly invariant, bit for bit
    c = Scorer(conv_model)
    rc = c.score_rotations(xs)
    np.testing.assert_allclose(rc[:, 0], c.score(xs), atol=1e-7)
    # the plain conv model is not invariant: measured max std 4.1e-4 over these 5 cutouts
    assert 3e-4 < rc.std(axis=1).max() < 6e-4
    rotated = np.rot90(xs, 1, axes=(2, 3))
    np.testing.assert_allclose(c.score(rotated), rc[:, 1], atol=1e-7)
    # the sampled check: every score, and the 8 transforms of the flagged cutouts only
    s, r = c.score_sampled_transforms(xs, [True, False, False, True, False])
    np.testing.assert_allclose(s, c.score(xs), atol=1e-6)
    np.testing.assert_allclose(r[[0, 3], :4], rc[[0, 3]], atol=1e-6)
    assert np.isnan(r[[1, 2, 4]]).all() and np.all(r[[0, 3], 0] == s[[0, 3]])
    # transforms 4..7: the mirror image (x reversed), then rotated
    np.testing.assert_allclose(r[[0, 3], 4 + 1], c.score(np.rot90(xs[[0, 3], :, :, ::-1], 1,
                                                                  axes=(2, 3))), atol=1e-6)


def test_transform_scores_and_d8(conv_model, rot_model, d4_model, rng):
    """A D4 model scores all 8 transforms alike, bit for bit; a C4 one only the rotations; tta
    d8 makes any model exactly invariant to both, rot4 only to rotations."""
    xs = np.stack([fake_cutout(rng, lens=True) + rng.normal(0, 3, (3, 72, 72)) for _ in range(4)])
    xs[:, :, 10:20, 40:60] += 30  # off-centre and chiral: no symmetry helps a model
    d = Scorer(d4_model).score_transforms(xs)
    assert d.shape == (4, 8) and np.all(d == d[:, :1])
    r = Scorer(rot_model).score_transforms(xs)
    assert np.all(r[:, :4] == r[:, :1]) and np.all(r[:, 4:] == r[:, 4:5])
    assert np.abs(r[:, 4] - r[:, 0]).max() > 1e-5  # the mirror image is another input
    c = Scorer(conv_model)
    mirrored = xs[..., ::-1]
    for tta, n in (("d8", 8), ("rot4", 4)):
        a, b = c.score(xs, tta=tta), c.score(mirrored, tta=tta)
        if n == 8:
            np.testing.assert_allclose(a, b, atol=1e-6)
        else:
            assert np.abs(a - b).max() > 1e-6
        np.testing.assert_allclose(a, c.score_transforms(xs)[:, :n].mean(1), atol=1e-6)
    assert Scorer(d4_model).invariance == "D4" and Scorer(rot_model).invariance == "C4"
    assert c.invariance == "none"


def test_a_short_tail_runs_with_the_batch_before_it(conv_model, rng):
    sc = Scorer(conv_model, batch_size=4)
    runs = []

    class Spy:
        def __init__(self, sess):
            self.sess = sess

        def run(self, names, feed):
            runs.append(len(next(iter(feed.values()))))
            return self.sess.run(names, feed)

    sc._session = Spy(sc._session)
    xs = np.stack([fake_cutout(rng) for _ in range(7)])
    for n, want in ((5, [5]), (6, [6]), (7, [4, 3]), (4, [4]), (9, [4, 5])):
        runs.clear()
        sc.score(xs[:n] if n <= 7 else np.concatenate([xs, xs[:2]]))
        assert runs == want, (n, runs)


def test_bad_models(tmp_path, rng):
    with pytest.raises(ModelError, match="not found"):
        Scorer(tmp_path / "missing.onnx")
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x01garbage" * 10)
    with pytest.raises(ModelError, match="not a usable ONNX model"):
        Scorer(tmp_path / "corrupt.onnx")
    bare = make_model(tmp_path / "bare.onnx", metadata=False)
    with pytest.raises(ModelError, match="--bands"):
        Scorer(bare)
    s = Scorer(bare, bands=["g", "r", "i"])  # size from the static input shape
    assert s.size == 72
    with pytest.raises(ModelError, match="input is 72x72"):
        Scorer(bare, bands=["g", "r", "i"], size=64)
    wrong = make_model(tmp_path / "wrong.onnx", size=72, input_size=64)
    with pytest.raises(ModelError, match="64x64"):
        Scorer(wrong)
    with pytest.raises(ModelError, match="bands"):
        Scorer(bare, bands=["g", "r"])
    with pytest.raises(ModelError, match="device"):
        Scorer(bare, bands="gri", device="tpu")
    # a two-class softmax head: two numbers per image is not a lens score
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(str(bare))
    old = m.graph.output[0].name
    m.graph.node.append(helper.make_node("Concat", [old, old], ["two"], axis=1))
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("two", TensorProto.FLOAT, ["N", 2]))
    onnx.save(m, str(tmp_path / "two.onnx"))
    with pytest.raises(ModelError, match=r"one float score per image"):
        Scorer(tmp_path / "two.onnx", bands="gri")


def test_one_cutout_gives_a_float(conv_model, rng):
    s = Scorer(conv_model)
    xs = np.stack([fake_cutout(rng) for _ in range(2)])
    one = s.score(xs[0])
    assert isinstance(one, float) and one == pytest.approx(float(s.score(xs)[0]), abs=1e-7)
    assert s.score_rotations(xs[0]).shape == (4,)


def test_cuda_unavailable_is_loud(rot_model):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA present")
    with pytest.raises(ModelError, match="CUDA"):
        Scorer(rot_model, device="cuda")
    assert Scorer(rot_model, device="auto").providers == ["CPUExecutionProvider"]


def test_wrong_image_shape(rot_model, rng):
    with pytest.raises(ValueError, match="FITS order"):
        Scorer(rot_model).score(np.zeros((2, 72, 72, 3)))
    sc = Scorer(rot_model)  # an empty batch (a pipeline's last chunk) has no scores, any TTA
    for tta in ("none", "rot4", "d8"):
        assert sc.score(np.zeros((0, 3, 72, 72)), tta=tta).shape == (0,)
    with pytest.raises(ValueError, match="FITS order"):
        sc.score(np.zeros((0, 2, 72, 72)))


def test_model_metadata_is_one_typed_object(tmp_path):
    """Export writes ModelMeta.to_props, the scorer reads ModelMeta.from_props: a round trip
    keeps every field, and a value of the wrong type is refused at load, naming the key."""
    from lensscore.modelmeta import EXPORT, REAL_METRICS, TRAINING, ModelMeta, meta_key

    m = ModelMeta(bands=("g", "r", "i", "z"), size=48, preprocess=DEFAULT_SPEC, arch="rot",
                  rotation_invariant=True, pixel_scale=0.258, zeropoint=25.0, survey="ps1",
                  version="9.9", extra={TRAINING: {"n": 3}, "source": "model.keras"})
    back = ModelMeta.from_props({**m.to_props(), "producer.key": "x"})
    assert back.other == {"producer.key": "x"} and dataclasses.replace(back, other={}) == m
    assert ModelMeta.from_props({}) == ModelMeta()  # no metadata: HSC grid, nothing else known
    # the records by their named keys: what export writes and stamp and the scan read
    assert meta_key(TRAINING) == "lensscore.training" in m.to_props()
    assert back.training == {"n": 3} and back.real_metrics == {} and back.export_info == {}
    assert ModelMeta(extra={REAL_METRICS: {"data": "x"}, EXPORT: "text"}).real_metrics == \
        {"data": "x"}

    path = make_model(tmp_path / "m.onnx", bands=("g", "r", "i", "z"), size=48,
                      extra_meta=m.to_props())
    sc = Scorer(path)
    assert sc.meta == m
    assert (sc.grid.pixel_scale, sc.grid.zeropoint, sc.grid.survey) == (0.258, 25.0, "ps1")
    assert sc.info()["training"] == {"n": 3}

    for key, bad in (("pixel_scale", "-1"), ("size", "big"), ("rotation_invariant", "yes"),
                     ("zeropoint", "nan"), ("preprocess", "{")):
        p = make_model(tmp_path / f"bad_{key}.onnx", extra_meta={f"lensscore.{key}": bad})
        with pytest.raises(ModelError, match=f"lensscore.{key} is not valid"):
            Scorer(p)


def test_session_built_ahead_is_taken_only_when_it_matches(conv_model, tmp_path, rng):
    from lensscore import _session
    from lensscore._entry import scan_models

    assert scan_models(["scan", "d", "-m", "a.onnx", "--threads", "2", "-o", "x.csv"]) == \
        (["a.onnx"], 2)
    assert scan_models(["scan", "d", "--model=a.onnx", "-m", "b.onnx", "--top", "0"]) == \
        (["a.onnx", "b.onnx"], None)
    assert scan_models(["scan", "--labels", "-m", "d"]) == ([], None)  # -m is --labels' value
    assert scan_models(["scan", "d", "--device", "cpu"]) == ([], None)
    for argv in (["info", "a.onnx"], ["scan", "--help"], ["scan", "-m", "a", "--device", "cuda"],
                 ["scan", "-ma.onnx"], ["scan", "-m"], ["scan", "--dask=local:2"], [],
                 ["scan", "--threads", "all"]):
        assert scan_models(argv) is None, argv

    x = fake_cutout(rng)[None]
    ref = Scorer(conv_model).score(x)
    _session.build_ahead(conv_model, ["CPUExecutionProvider"], 1)
    ((thread, box),) = _session._ahead.values()
    s = Scorer(conv_model, threads=1)  # the same file, providers and threads: taken
    assert not _session._ahead and s._session is box["session"] and not thread.is_alive()
    assert s.score(x) == ref
    _session.build_ahead(conv_model, ["CPUExecutionProvider"], 1)
    s = Scorer(conv_model, threads=2)  # other threads: built anew, the guess left for discard
    ((thread, box),) = _session._ahead.values()
    thread.join()
    assert s._session is not box["session"]
    _session.discard_ahead()
    assert not _session._ahead
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x01garbage" * 10)
    _session.build_ahead(tmp_path / "corrupt.onnx", ["CPUExecutionProvider"], None)
    with pytest.raises(ModelError, match="not a usable ONNX model"):  # raised where it is used
        Scorer(tmp_path / "corrupt.onnx")


@pytest.mark.parametrize("preset", [None, "2"])
def test_console_script_runs_numpys_blas_single_threaded_unless_told(monkeypatch, preset):
    from lensscore import _entry

    for var in _entry._BLAS_THREADS:
        monkeypatch.setenv(var, preset or "")  # recorded, so main()'s setting is undone after
        if preset is None:
            monkeypatch.delenv(var)
    monkeypatch.setattr(sys, "argv", ["lensscore", "--version"])
    with pytest.raises(SystemExit) as exc:
        _entry.main()
    assert exc.value.code in (0, None)
    assert all(os.environ[v] == (preset or "1") for v in _entry._BLAS_THREADS)


def test_console_scan_ends_without_teardown_and_loses_nothing(conv_model, tmp_path, rng):
    import subprocess

    d = tmp_path / "in"
    d.mkdir()
    for k in range(3):
        write_cube(d / f"c{k}.fits", fake_cutout(rng))
    (d / "bad.fits").write_bytes(b"not a FITS file")
    out = tmp_path / "cat.csv"
    p = subprocess.run([sys.executable, "-m", "lensscore", "scan", str(d), "-m", str(conv_model),
                        "-o", str(out), "--top", "0"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stderr[-2000:]  # some inputs failed: the scan's own exit code
    assert "scored 3 of 4 inputs, 1 failed" in p.stdout  # printed, and flushed into a pipe
    rows = out.read_text().splitlines()
    assert len(rows) == 5 and sum(",error," in r for r in rows) == 1  # header, 3 ok, 1 error
    p = subprocess.run([sys.executable, "-m", "lensscore", "scan", str(tmp_path / "none"), "-m",
                        str(conv_model), "-o", str(tmp_path / "x.csv")], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "none" in p.stderr  # a usage error still says why
