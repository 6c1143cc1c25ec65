import json

import numpy as np
import onnx
import pytest
from onnx import helper

from lensscore.scorer import Scorer
from onnx_models import make_model

from export.graph import compress_weights, control_flow_nodes, merge_metadata, \
    rotational_branches


def test_graph_walker_on_handmade_models(tmp_path):
    rot = onnx.load(make_model(tmp_path / "rot.onnx", arch="rot"))
    conv = onnx.load(make_model(tmp_path / "conv.onnx", arch="conv"))
    assert len(rotational_branches(rot)) == 1 and rotational_branches(conv) == []
    assert control_flow_nodes(rot) == []
    branch = helper.make_graph([helper.make_node("Identity", ["c"], ["d"])], "b", [],
                               [helper.make_tensor_value_info("d", onnx.TensorProto.BOOL, [])])
    rot.graph.node.append(helper.make_node("If", ["cond"], ["o"], then_branch=branch,
                                           else_branch=branch, name="guard"))
    assert control_flow_nodes(rot) == ["If:guard"]


def test_merge_metadata_never_overwrites(tmp_path):
    m = onnx.load(make_model(tmp_path / "m.onnx", extra_meta={"lensscore.arch": "mine"}))
    kept = merge_metadata(m, {"lensscore.arch": "rot", "lensscore.new": "1"})
    d = {p.key: p.value for p in m.metadata_props}
    assert kept == ["lensscore.arch"] and d["lensscore.arch"] == "mine" and d["lensscore.new"] == "1"


def test_export_tools_give_one_line_errors(tmp_path, capsys):
    """A corrupt or missing model file: one line naming it, exit code 1, for every tool."""
    from export.logit import main as logit_main
    from export.optimize import main as optimize_main
    from export.symmetrise import main as symmetrise_main

    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    for run in (lambda: logit_main([str(bad)]), lambda: optimize_main([str(bad)]),
                lambda: logit_main([str(tmp_path / "missing.onnx")])):
        assert run() == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and str(tmp_path) in err[0]
    with pytest.raises(SystemExit) as e:
        symmetrise_main([str(bad), str(tmp_path / "out.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and len(err) == 1 and str(bad) in err[0]


def test_compress_weights_only_weights(tmp_path, rng):
    """Compressed weights: scores close, still batch independent, rotation invariance exact."""
    import onnxruntime  # noqa: F401

    src = make_model(tmp_path / "rot.onnx", arch="rot", filters=64)
    x = rng.normal(size=(9, 3, 72, 72)).astype(np.float32)
    ref = Scorer(src).score(x)
    for mode in ("float16", "int8"):
        m = onnx.load(src)
        info = compress_weights(m, mode, min_size=64)
        assert info["tensors"] >= 1 and info["bytes_after"] < info["bytes_before"]
        onnx.checker.check_model(m)
        onnx.save(m, tmp_path / f"{mode}.onnx")
        sc = Scorer(tmp_path / f"{mode}.onnx")
        s = sc.score(x)
        assert np.abs(s - ref).max() < 0.05
        np.testing.assert_array_equal(sc.score(x[:1]), s[:1])  # no batch-neighbour effects
        r = sc.score_rotations(x)
        assert (r.max(1) - r.min(1)).max() <= 1e-6


# --- with TensorFlow ---------------------------------------------------------------------------

def _tf():
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")


@pytest.mark.tf
@pytest.mark.slow
def test_export_trained_rot_run_int8_cli_and_scan(train_dir, tmp_path):
    _tf()
    from typer.testing import CliRunner

    from export.cli import app
    from lensscore.cli import app as ls_app
    from train.fit import FitConfig, fit

    run = tmp_path / "run"
    fit(train_dir, run, FitConfig(arch="rot", epochs=1, batch_size=16, jit=False))
    out = tmp_path / "rot.onnx"
    r = CliRunner().invoke(app, [str(run / "model.keras"), str(out), "--weights", "int8",
                                 "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["n_parity"] >= 256 and rep["parity_source"].startswith("test split")
    assert rep["float32_max_abs_diff"] <= 1e-5 and rep["rotation_spread"] <= 1e-6
    assert rep["accuracy_keras"] is not None and rep["compression"]["tensors"] == 3  # dense1-3
    assert out.stat().st_size < 40e6  # ~27.5 M weights: 110 MB in float32

    m = onnx.load(out)
    assert control_flow_nodes(m) == [] and len(rotational_branches(m)) == 1
    info = Scorer(out).info()
    assert info["arch"] == "rot" and info["rotation_invariant"] is True
    assert info["bands"] == ["g", "r", "i"] and info["size"] == 72
    assert info["training"]["n"]["test"] == 12 and info["export"]["opset"] == 17
    assert info["export"]["weights"] == "int8"
    # the training data by name and content hash; no path of this machine in the model or report
    assert info["training"]["data"] == train_dir.name
    assert len(info["training"]["data_fingerprint"]) >= 16
    stored = {k: v for k, v in info.items() if k != "path"}  # "path": where it was loaded from
    assert str(tmp_path) not in json.dumps(stored) and str(train_dir) not in r.stdout

    r = CliRunner().invoke(ls_app, ["scan", str(train_dir), "--model", str(out),
                                    "--output", str(tmp_path / "cat.csv"), "--rotations"])
    assert r.exit_code == 0, r.output

    r = CliRunner().invoke(app, [str(run / "model.keras"), str(out)])
    assert r.exit_code == 1 and "--overwrite" in r.output


@pytest.mark.tf
@pytest.mark.slow
def test_export_untrained_baseline_float32(tmp_path, rng):
    _tf()
    from export import ExportError, export_model
    from train.models import build_model

    m = build_model("baseline", seed=3)
    m.save(tmp_path / "base.keras")
    res = export_model(tmp_path / "base.keras", tmp_path / "base.onnx", n_parity=256)
    assert res.max_abs_diff <= 1e-5 and res.parity_source == "synthetic" and res.n_parity == 256
    assert res.rotation_invariant is False and res.accuracy_keras is None
    proto = onnx.load(tmp_path / "base.onnx")
    assert control_flow_nodes(proto) == [] and rotational_branches(proto) == []
    assert proto.opset_import[0].version == 17
    sc = Scorer(tmp_path / "base.onnx")
    assert sc.arch == "baseline" and not sc.rotation_invariant

    # the ONNX scores are Keras's on new inputs too (not only those of the parity check)
    x = rng.normal(size=(5, 72, 72, 3)).astype(np.float32)
    np.testing.assert_allclose(sc.run(np.transpose(x, (0, 3, 1, 2))),
                               np.asarray(m(x)).ravel(), atol=1e-5)

    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ExportError, match="not a loadable Keras model"):
        export_model(tmp_path / "junk.keras", tmp_path / "junk.onnx")
    import keras

    odd = keras.Sequential([keras.Input((64, 32, 3)), keras.layers.Flatten(),
                            keras.layers.Dense(1, activation="sigmoid")])
    odd.save(tmp_path / "odd.keras")
    with pytest.raises(ExportError, match="expected \\(None, size, size, bands\\)"):
        export_model(tmp_path / "odd.keras", tmp_path / "odd.onnx")
    assert not (tmp_path / "odd.onnx").exists() and not (tmp_path / "junk.onnx").exists()


@pytest.mark.parametrize("fmt", ["csv", "ecsv"])
def test_real_metrics_give_each_nonlens_group_its_rate_and_auc(tmp_path, fmt):
    """From a catalog of any format lensscore writes (the CSV-only reader broke on ECSV)."""
    from astropy.table import MaskedColumn, Table

    from lensscore.catalog import read_catalog
    from lensscore.metrics import real_metrics

    rows = [("lenses/a", 1, 0.9), ("lenses/b", 1, 0.6), ("src/c", 0, 0.7), ("src/d", 0, 0.1),
            ("sky/e", 0, 0.2), ("sky/f", 0, 0.3), ("sky/g", 0, 0.95)]
    ids = [f"x/{i}" for i, _, _ in rows] + ["x/sky/h", "x/unlabelled"]
    t = Table({"id": ids, "status": ["ok"] * 7 + ["error", "ok"],  # an error row is not scored
               "label": MaskedColumn([r[1] for r in rows] + [0, 0], mask=[False] * 8 + [True]),
               "score": MaskedColumn([r[2] for r in rows] + [0.0, 0.5], mask=[False] * 7
                                     + [True, False])})
    cat = tmp_path / f"real.{fmt}"
    t.write(cat, format=f"ascii.{fmt}")
    m = real_metrics(read_catalog(cat), "toy")
    assert m["metrics"]["n"] == 7
    src, sky = m["nonlens_groups"]["src"], m["nonlens_groups"]["sky"]
    assert (src["n"], src["n_above"], src["above_threshold"]) == (2, 1, 0.5)
    assert src["auc_lenses_vs"] == 0.75  # 0.6 < 0.7: one of four pairs misordered
    assert (sky["n"], sky["n_above"]) == (3, 1)
    assert sky["auc_lenses_vs"] == 4 / 6
    # the reader derives a logit for a catalog without one: it ranks as the scores do, so the
    # method does not say "ranked by logit"
    assert "logit" in read_catalog(cat).colnames and "logit" not in m["method"]
    # a stored logit that breaks the float32 scores' ties at 1.0 ranks by itself, and says so
    t["score"][0] = t["score"][6] = 1.0  # lenses/a and sky/g
    t["logit"] = MaskedColumn([18.0, 0.4, 0.85, -2.2, -1.4, -0.85, 17.0, 0.0, 0.0],
                              mask=t["score"].mask)
    t.write(cat, format=f"ascii.{fmt}", overwrite=True)
    m = real_metrics(read_catalog(cat), "toy")
    assert m["method"].endswith("; ranked by logit")
    assert m["nonlens_groups"]["sky"]["auc_lenses_vs"] == 5 / 6  # by score: a and g tie, 4.5 / 6


@pytest.mark.tf
@pytest.mark.slow
def test_export_d4_unrolls_eight_branches_and_proves_mirror_invariance(tmp_path, rng):
    """Issue 30: the DihedralConv2D exports as 8 Conv branches into one Max (no control flow),
    the export proves invariance to all 8 transforms, and the metadata says D4."""
    _tf()
    from export import export_model
    from train.models import build_model

    m = build_model("d4", seed=5)
    m.get_layer("score").set_weights([w * 30 for w in m.get_layer("score").get_weights()])
    m.save(tmp_path / "d4.keras")
    res = export_model(tmp_path / "d4.keras", tmp_path / "d4.onnx", n_parity=64)
    assert res.invariance == "D4" and res.max_abs_diff <= 1e-5
    assert res.rotation_spread <= 1e-6 and res.mirror_spread <= 1e-6
    proto = onnx.load(tmp_path / "d4.onnx")
    assert control_flow_nodes(proto) == [] and len(rotational_branches(proto, 8)) == 1
    assert rotational_branches(proto, 4) == []
    sc = Scorer(tmp_path / "d4.onnx")
    assert sc.arch == "d4" and sc.invariance == "D4" and sc.rotation_invariant
    x = rng.normal(size=(3, 3, 72, 72)).astype(np.float32)
    x[:, :, 5:20, 40:60] += 3
    t = sc.score_transforms(x)
    assert np.ptp(t, axis=1).max() <= 1e-6 and np.ptp(t[:, 0]) > 1e-6  # invariant, not constant
    prep = np.transpose(sc.prepare(x), (0, 2, 3, 1))  # the scorer preprocesses; Keras not
    np.testing.assert_allclose(t[:, 0], np.asarray(m(prep)).ravel(), atol=1e-5)


def test_symmetrise_makes_a_c4_model_d4_and_refuses_others(tmp_path, rng, conv_model, rot_model,
                                                           d4_model):
    """export.symmetrise: the mean over the mirror of a C4 model is exactly D4-invariant and
    equals the mean of the source's two scores; a model that is not C4 is refused."""
    from export.symmetrise import main, symmetrise

    out = tmp_path / "sym.onnx"
    r = symmetrise(rot_model, out)
    assert r["transform_spread"] == 0 and r["max_abs_diff_to_mean"] <= 1e-6
    sym, base = Scorer(out), Scorer(rot_model)
    assert sym.invariance == "D4" and sym.meta.extra["symmetrised"]["source"] == "rot.onnx"
    assert "source_metrics" in sym.meta.extra["symmetrised"]
    x = rng.normal(size=(4, 3, 72, 72)).astype(np.float32)
    x[:, :, 5:20, 40:60] += 30
    t = sym.score_transforms(x)
    assert np.all(t == t[:, :1])
    want = (base.score(x).astype(np.float64) + base.score(x[..., ::-1]).astype(np.float64)) / 2
    np.testing.assert_allclose(t[:, 0], want, atol=1e-6)
    assert np.abs(base.score(x) - base.score(x[..., ::-1])).max() > 1e-5  # it did something
    for bad in (conv_model, d4_model):
        with pytest.raises(ValueError, match="invariance is"):
            symmetrise(bad, tmp_path / "no.onnx")
    assert not (tmp_path / "no.onnx").exists()
    with pytest.raises(SystemExit) as e:
        main([rot_model, str(out)])
    assert e.value.code == 2


def test_one_int8_rule_for_the_device_parts_and_the_onnx(tmp_path, rng):
    """The device's weight parts and export's int8 ONNX quantise the same kernels the same way:
    dense kernels of >= INT8_MIN_SIZE values, per output column; convolutions stay float32."""
    from train.device import unpack_weights
    from train.quantize import INT8_MIN_SIZE, dequantize_int8, int8_eligible, quantize_int8

    dense = rng.normal(size=(128, 64)).astype(np.float32)
    conv = rng.normal(size=(7, 7, 32, 64)).astype(np.float32)  # the baseline's second conv
    small = rng.normal(size=(16, 8)).astype(np.float32)
    assert dense.size >= INT8_MIN_SIZE and conv.size >= INT8_MIN_SIZE
    assert [int8_eligible(w) for w in (dense, conv, small)] == [True, False, False]
    q, scale = quantize_int8(dense)
    assert q.dtype == np.int8 and scale.shape == (64,) and np.abs(q).max() == 127
    back = dequantize_int8(q, scale)
    assert np.all(np.abs(back - dense) <= scale / 2 + 1e-7)

    class _W:
        def __init__(self, name):
            self.path = name

    class _Model:
        weights = [_W("dense"), _W("conv"), _W("small")]

        @staticmethod
        def get_weights():
            return [dense, conv, small]

    from train.device import pack_weights

    entry = pack_weights(_Model, tmp_path, "m")
    assert [w["dtype"] for w in entry["weights"]] == ["int8", "float32", "float32"]
    got = unpack_weights(entry, tmp_path)
    np.testing.assert_array_equal(got[0], back)
    np.testing.assert_array_equal(got[1], conv)
    # export's int8 ONNX: the same kernels, the same int8 values
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(w, n) for n, w in (("dense", dense), ("conv", conv))]
    g = helper.make_graph([], "g", [], [], initializer=inits)
    m = helper.make_model(g)
    compress_weights(m, "int8")
    stored = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    assert set(stored) == {"conv", "dense_q", "dense_scale", "dense_zp"}
    np.testing.assert_array_equal(stored["dense_q"], q)
    np.testing.assert_array_equal(stored["dense_scale"], scale)
