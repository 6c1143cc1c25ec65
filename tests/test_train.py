import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from typer.testing import CliRunner  # noqa: E402

from conftest import fake_cutout, write_cube  # noqa: E402
from train.cli import app  # noqa: E402
from train.data import SplitError, load_dataset, make_split  # noqa: E402
from train.fit import FitConfig, fit  # noqa: E402
from train.models import build_model  # noqa: E402

# the layers, splits and weights are checked in the default run (about 2 s after TensorFlow's
# import, which test_layers pays anyway); training itself takes minutes and GBs, so those tests
# are marked slow, out of the default run (.ci/run runs them after)
pytestmark = pytest.mark.tf
runner = CliRunner()
MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture
def data_dir(train_dir):
    return train_dir


def test_parameter_counts_match_design():
    for arch in ("baseline", "rot"):
        n = build_model(arch).count_params()
        assert n == 27_467_905, (arch, n)  # ~27.5 M (DESIGN.md, Cañameras et al. 2020)


def test_split_stratified_disjoint_stable():
    y = np.r_[np.ones(400), np.zeros(600)].astype(int)
    s = make_split(y, seed=3)
    assert {k: len(v) for k, v in s.items()} == {"train": 560, "val": 140, "test": 300}
    assert not (set(s["train"]) & set(s["test"])) and not (set(s["val"]) & set(s["test"]))
    assert len(set(np.concatenate(list(s.values())))) == 1000
    assert y[s["test"]].mean() == pytest.approx(0.4) and y[s["val"]].mean() == pytest.approx(0.4)
    s2 = make_split(y, seed=3)
    assert all(np.array_equal(s[k], s2[k]) for k in s)
    assert not np.array_equal(make_split(y, seed=4)["test"], s["test"])


def test_one_rotation_everywhere(rng):
    """The Keras graph's rotation, the exported graph's and training's augmentation are
    lensscore's one definition (lensscore.scorer.rotate), in both layouts."""
    import tensorflow as tf

    from export.convert import _rot90_slices
    from lensscore.scorer import rotate
    from train.fit import augment
    from train.models import rot90

    x = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)  # not square: axes mix-ups show
    xs = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    for k in range(4):
        want = rotate(x, k, channels_last=True)
        np.testing.assert_array_equal(np.asarray(rot90(keras.ops.convert_to_tensor(x), k)), want)
        np.testing.assert_array_equal(_rot90_slices(tf.constant(x), k).numpy(), want)
        np.testing.assert_array_equal(rotate(np.moveaxis(x, -1, 1), k),
                                      np.moveaxis(want, -1, 1))
        flip = np.array([False, True])
        got = augment(xs, np.full(2, k), flip, channels_last=True)
        np.testing.assert_array_equal(got[0], rotate(xs[0], k, channels_last=True))
        np.testing.assert_array_equal(got[1], rotate(xs[1], k, channels_last=True)[:, ::-1])


def test_rot_model_saved_reloads_invariant(tmp_path, rng):
    x = rng.normal(size=(6, 72, 72, 3)).astype(np.float32)
    for arch in ("rot", "baseline"):
        m = build_model(arch, seed=1)
        # make the network less trivial than its init: scale up the dense weights
        m.get_layer("score").set_weights([w * 30 for w in m.get_layer("score").get_weights()])
        m.save(tmp_path / f"{arch}.keras")
        m2 = keras.saving.load_model(tmp_path / f"{arch}.keras")  # no custom_objects needed
        p = np.stack([np.asarray(m2(np.rot90(x, k, axes=(1, 2)))).ravel() for k in range(4)])
        spread = np.abs(p - p[0]).max()
        if arch == "rot":  # kernel mode: invariant to float rounding (1.6e-6 measured here)
            assert spread <= 1e-5
        else:
            assert spread > 1e-4


def test_dataset_cache(data_dir, tmp_path):
    a = load_dataset(data_dir, cache_dir=tmp_path / "cache")
    assert a.x.shape == (40, 3, 72, 72) and a.y.sum() == 20
    b = load_dataset(data_dir, cache_dir=tmp_path / "cache")
    assert isinstance(b.x, np.memmap) and b.fingerprint == a.fingerprint
    np.testing.assert_array_equal(np.asarray(b.x), a.x)


@pytest.mark.slow
def test_fit_without_checkpoints_keeps_the_best_epoch_and_ends_when_asked(data_dir, tmp_path):
    """``checkpoint=False`` (one call trains the whole run, as on a lent GPU) writes no
    checkpoint files yet ends with the same model as a checkpointed run: the best epoch's
    weights, also when ``on_epoch`` ends the run early."""
    from train.data import load_split
    from train.fit import _bce, predict_scores

    cfg = FitConfig(arch="rot", epochs=4, batch_size=8, jit=False, patience=5)
    ds = load_dataset(data_dir, cache_dir=tmp_path / "cache")
    hist = {}
    for name, ckpt in (("ckpt", True), ("mem", False)):
        hist[name] = fit(data_dir, tmp_path / name, cfg, dataset=ds, checkpoint=ckpt,
                         on_epoch=lambda row: row["epoch"] == 3)
        assert len(hist[name]) == 3 and (tmp_path / name / "model.keras").exists()
    assert (tmp_path / "ckpt" / "checkpoint.keras").exists()
    assert not list((tmp_path / "mem").glob("*.h5")) + list((tmp_path / "mem").glob("ch*"))
    # TensorFlow on CPU repeats a run to ~1e-5 here, not bit for bit (test_resume_... is luckier)
    assert [r["val_loss"] for r in hist["ckpt"]] == pytest.approx(
        [r["val_loss"] for r in hist["mem"]], abs=1e-4)
    with pytest.raises(ValueError, match="checkpoint=True"):
        fit(data_dir, tmp_path / "x", cfg, dataset=ds, checkpoint=False, stop_after=1)
    model = keras.saving.load_model(tmp_path / "mem" / "model.keras", compile=False)
    va = load_split(tmp_path / "mem" / "split.json", ds)["val"]
    val_loss = _bce(ds.y[va].astype(np.float32), predict_scores(model, ds, va))
    assert val_loss == pytest.approx(min(r["val_loss"] for r in hist["mem"]), abs=1e-5)
    w1 = keras.saving.load_model(tmp_path / "ckpt" / "model.keras", compile=False).get_weights()
    assert max(float(np.abs(a - b).max()) for a, b in zip(w1, model.get_weights())) < 1e-4


@pytest.mark.slow
def test_resume_equals_one_shot_and_evaluate(data_dir, tmp_path):
    cfg = FitConfig(arch="rot", epochs=2, batch_size=8, jit=False, patience=5)
    ds = load_dataset(data_dir, cache_dir=tmp_path / "cache")
    h1 = fit(data_dir, tmp_path / "one", cfg, dataset=ds)
    fit(data_dir, tmp_path / "two", cfg, dataset=ds, stop_after=1)
    assert not (tmp_path / "two" / "model.keras").exists()
    h2 = fit(data_dir, tmp_path / "two", resume=True, dataset=ds)
    assert len(h1) == len(h2) == 2
    assert h1[1]["val_loss"] == pytest.approx(h2[1]["val_loss"], abs=1e-6)
    w1 = keras.saving.load_model(tmp_path / "one" / "model.keras").get_weights()
    w2 = keras.saving.load_model(tmp_path / "two" / "model.keras").get_weights()
    assert max(float(np.abs(a - b).max()) for a, b in zip(w1, w2)) < 1e-6
    split = json.loads((tmp_path / "one" / "split.json").read_text())
    assert len(split["test"]) == 12 and not set(split["test"]) & set(split["train"])

    # a fresh interpreter, as a user runs it (the custom layer must register itself)
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "train", "evaluate", str(tmp_path / "one"),
                        "--data", str(data_dir)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "tpr0" in p.stdout
    m = json.loads((tmp_path / "one" / "metrics.json").read_text())
    for k in ("accuracy", "roc_auc", "tpr_at_fpr_1pct", "tpr_at_fpr_0.1pct", "tpr0", "tp"):
        assert k in m["metrics"]
    assert m["metrics"]["n"] == 12 and m["rotation_stability"]["std_max"] <= 1e-6
    assert (tmp_path / "one" / "report.md").read_text().startswith("# Evaluation")
    from train.plots import read_test_scores

    ids, lab, rot = read_test_scores(tmp_path / "one" / "test_scores.csv")
    assert len(ids) == 12 and rot.shape == (12, 4) and set(ids) == set(split["test"])
    assert np.allclose(rot.std(axis=1), 0, atol=1e-6)  # rot model
    from matplotlib.image import imread

    for name in ("training", "roc", "scores", "rotation_std"):
        img = imread(tmp_path / "one" / "plots" / f"{name}.png")
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, name
    assert "![roc](plots/roc.png)" in (tmp_path / "one" / "report.md").read_text()
    r = runner.invoke(app, ["plots", str(tmp_path / "one"), str(tmp_path / "two"), "-o",
                            str(tmp_path / "figs")])
    assert r.exit_code == 0, r.output
    assert "not evaluated" in r.output and (tmp_path / "figs" / "rotation_std.png").exists()

    # another data set: evaluate refuses
    other = tmp_path / "other"
    for cls in ("lenses", "nonlenses"):
        (other / cls).mkdir(parents=True)
        for k in range(3):
            write_cube(other / cls / f"x{k}.fits", fake_cutout(np.random.default_rng(k)))
    r = runner.invoke(app, ["evaluate", str(tmp_path / "one"), "--data", str(other)])
    assert r.exit_code == 1 and "another data set" in r.output
    with pytest.raises(SplitError):
        from train.evaluate import evaluate

        evaluate(tmp_path / "one", other)

    r = runner.invoke(app, ["predict", str(tmp_path / "one" / "model.keras"),
                            str(data_dir / "lenses" / "o00.fits")])
    assert r.exit_code == 0 and "o00.fits" in r.stdout


@pytest.mark.slow
def test_cli_fit_help_and_refuses_existing_run(data_dir, tmp_path):
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and all(c in r.stdout for c in ("fit", "evaluate", "predict"))
    r = runner.invoke(app, ["fit", "--data", str(data_dir), "--out", str(tmp_path / "r"),
                            "--epochs", "1", "--batch-size", "16", "--no-jit", "--arch",
                            "baseline"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r" / "history.csv").exists() and (tmp_path / "r" / "model.keras").exists()
    r = runner.invoke(app, ["fit", "--data", str(data_dir), "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "--resume" in r.output
    # a finished run continues in a later session with a raised epoch limit
    r = runner.invoke(app, ["fit", "--data", str(data_dir), "--out", str(tmp_path / "r"),
                            "--resume", "--epochs", "2"])
    assert r.exit_code == 0, r.output
    assert "trained 2 epochs" in r.stdout
    assert json.loads((tmp_path / "r" / "config.json").read_text())["epochs"] == 2
    r = runner.invoke(app, ["fit", "--data", str(data_dir), "--out", str(tmp_path / "q"),
                            "--arch", "resnet"])
    assert r.exit_code == 2


@pytest.mark.slow
def test_finetune_mixes_in_the_runs_own_training_cutouts(data_dir, tmp_path):
    from train.finetune import FinetuneConfig, finetune, run_sims
    from train.fit import RunDir

    cfg = FitConfig(arch="baseline", epochs=1, batch_size=8, jit=False)
    ds = load_dataset(data_dir)
    fit(data_dir, tmp_path / "run", cfg)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    xs, ys = run_sims(RunDir(tmp_path / "run"), 10)
    # cutouts of the training split only, read from the run's data directory
    train_x = {ds.x[ds.ids.index(i)].tobytes(): i for i in split["train"]}
    assert len(xs) == 10 and all(x.tobytes() in train_x for x in xs)
    assert list(ys) == [int(ds.y[ds.ids.index(train_x[x.tobytes()])]) for x in xs]

    real = tmp_path / "real"  # "real" cutouts of four fields, a lens and a sky position each
    rng = np.random.default_rng(3)
    for k in range(4):  # fields 6 arcmin apart, the sky position 20" from its lens
        for cls, name, lens, dra in (("lenses", f"f{k}", True, 0.0),
                                     ("nonlenses/sky", f"f{k}-s", False, 20 / 3600)):
            (real / cls).mkdir(parents=True, exist_ok=True)
            write_cube(real / cls / f"{name}.fits", fake_cutout(rng, lens=lens),
                       ra=150.0 + 0.1 * k + dra)
    r = finetune(tmp_path / "run", real, tmp_path / "ft",
                 FinetuneConfig(folds=2, epochs=1, n_sim=10, batch_size=8))
    assert r["n_real"] == 8 and r["cv"]["n"] == 8
    assert (tmp_path / "ft" / "split.json").read_text() == (tmp_path / "run" / "split.json") \
        .read_text()
    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())["real_data"]
    assert m["cv"] == r["cv"] and "2-fold" in m["method"] and "4 lenses" in m["data"]
    from train.evaluate import evaluate

    evaluate(tmp_path / "ft", data_dir, plots=False)  # the base run's test split; CV kept
    m2 = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert m2["real_data"] == m and m2["metrics"]["n"] == 12
    head, *rows = (tmp_path / "ft" / "cv_scores.csv").read_text().split()
    assert head.endswith(",score_cv_mirror") and r["cv_mirror_averaged"]["n"] == 8
    assert m["cv_mirror_averaged"] == r["cv_mirror_averaged"]
    mirror = np.array([float(row.split(",")[6]) for row in rows])
    assert np.isfinite(mirror).all() and ((0 <= mirror) & (mirror <= 1)).all()
    by_field = {}
    for row in rows:
        obj, _, fold = row.split(",")[:3]
        by_field.setdefault(obj.split("/")[-1].removesuffix("-s"), set()).add(fold)
    assert len(rows) == 8 and len(by_field) == 4  # a field's cutouts in one fold, both used
    assert all(len(f) == 1 for f in by_field.values()) and len(set().union(*by_field.values())) == 2
    # the balanced recipe trains through the same path, with per-cutout weights
    rb = finetune(tmp_path / "run", real, tmp_path / "ftb",
                  FinetuneConfig(folds=2, epochs=1, n_sim=10, batch_size=8,
                                 balance_nonlenses=True))
    assert rb["cv"]["n"] == 8 and rb["config"]["balance_nonlenses"] is True
    # the command line: the CV table, the same folds' models averaged over the mirror beside it
    rc = runner.invoke(app, ["finetune", str(tmp_path / "run"), "--real", str(real), "--out",
                             str(tmp_path / "ftc"), "--folds", "2", "--epochs", "1",
                             "--n-sim", "10"])
    assert rc.exit_code == 0, rc.output
    assert "mirror-averaged" in rc.output and "roc_auc" in rc.output
    # not a terminal: a line per trained model, not a bar that only shows at the end
    assert "fine-tuning: fold 1 of 2 done" in rc.output
    assert "fine-tuning: the final model (all cutouts) done" in rc.output


@pytest.mark.slow
def test_finetune_from_a_scan_catalog_and_grades_with_painted_arcs(data_dir, tmp_path,
                                                                   monkeypatch):
    """The survey team's loop: scan -> gallery grades -> fine-tune; each fold trains only on
    the paintings (and their unpainted hosts) of its own training groups."""
    from lensscore.cli import app as scan_app
    from train import finetune as ft
    from train.fit import RunDir

    fit(data_dir, tmp_path / "run", FitConfig(arch="baseline", epochs=1, batch_size=8,
                                              jit=False))
    real = tmp_path / "cut"  # unlabelled cutouts, four fields 6' apart, a lens-ish and a galaxy
    real.mkdir()
    rng = np.random.default_rng(5)
    for k in range(4):
        for name, lens, dra in (("l", True, 0.0), ("g", False, 20 / 3600)):
            img = fake_cutout(rng, lens=lens)  # an i ~ 18 galaxy at zero point 27
            write_cube(real / f"f{k}{name}.fits", img, ra=150.0 + 0.1 * k + dra)
    cat = tmp_path / "scan.ecsv"
    r = CliRunner().invoke(scan_app, ["scan", str(real), "-m", "baseline", "-o", str(cat),
                                      "--zeropoint", "g=27,r=27,i=27"])
    assert r.exit_code == 0, r.output
    grades = tmp_path / "scan_grades.csv"  # as the gallery exports them
    grades.write_text("id,score,score_std,label,grade\n" + "".join(
        f"f{k}{n},0.5,,,{g}\n" for k in range(4) for n, g in (("l", 3), ("g", 0))))
    seen = []
    real_train = ft._train

    def spy(model_path, x_real, y_real, x_sim, y_sim, *a, **kw):
        seen.append((x_real.copy(), x_sim.copy(), y_sim.copy()))
        return real_train(model_path, x_real, y_real, x_sim, y_sim, *a, **kw)

    monkeypatch.setattr(ft, "_train", spy)
    fc = ft.FinetuneConfig(folds=2, epochs=1, n_sim=4, batch_size=8, n_paint=8)
    cfg = ft.load_config(RunDir(tmp_path / "run"))
    real_set = ft.load_real(cat, cfg, labels=ft.read_labels(grades), hosts=True)
    assert sorted(h.id for h in real_set.hosts) == [f"f{k}g" for k in range(4)]
    xp, hp = ft.paint_real(real_set, cfg, fc)
    assert len(hp) >= 6 and set(hp) <= {f"f{k}g" for k in range(4)}
    # each painting marked by its host's number, to see which fold trained on which
    marked = np.stack([np.full(xp.shape[1:], 100 + int(h[1]), np.float32) for h in hp])
    res = ft.finetune(tmp_path / "run", cat, tmp_path / "ft", fc, real=real_set,
                      painted=(marked, hp))
    assert res["n_real"] == 8 and res["cv"]["n_lens"] == 4 and res["n_groups"] == 4
    assert res["n_painted"] == len(hp)
    rows = [r.split(",") for r in (tmp_path / "ft" / "cv_scores.csv").read_text().split()[1:]]
    fold = {r[0]: int(r[2]) for r in rows}
    assert all(fold[f"f{k}l"] == fold[f"f{k}g"] for k in range(4))  # a field shares a fold
    for k, (_, xs_, ys_) in enumerate(seen[:2]):
        # fold k's extra data: 4 simulated, then the paintings of the other fold's hosts
        # only, then those hosts unpainted (the pairs)
        trained = {int(v[0, 0, 0]) - 100 for v, lab in zip(xs_[4:], ys_[4:]) if lab == 1}
        assert trained == {j for j in range(4) if fold[f"f{j}g"] != k and f"f{j}g" in hp}
        assert int((ys_[4:] == 1).sum()) == int((ys_[4:] == 0).sum()) > 0
    assert len(seen) == 3 and int((seen[2][2][4:] == 1).sum()) == len(hp)  # the final: all
    meta = json.loads((tmp_path / "ft" / "metrics.json").read_text())["real_data"]
    assert "grouped by sky position" in meta["method"] and "painted" in meta["method"]
    rec = json.loads((tmp_path / "ft" / "trained_on.json").read_text())
    assert rec["n"] == 8  # the digests of the 8 real cutouts, for export to stamp
    assert (rec["n_positions"], rec["radius_arcsec"]) == (8, 2.0)  # and their places on the sky


def test_balanced_finetune_weights_give_each_kind_of_nonlens_an_equal_share():
    from train.finetune import kind_of, sample_weights

    ids = ([f"lenses/L{k}/L{k}" for k in range(3)] + [f"nonlenses/src/S{k}/S{k}" for k in range(2)]
           + [f"nonlenses/sky/K{k}" for k in range(6)])
    y = np.array([1] * 3 + [0] * 8)
    assert [kind_of(i) for i in ids[2:4]] == ["lenses", "src"] and kind_of("nonlenses/x") == \
        "nonlenses"
    w = sample_weights(ids, y)
    assert np.array_equal(w[:3], np.ones(3))  # lenses untouched
    assert w[3:5].sum() == pytest.approx(4) and w[5:].sum() == pytest.approx(4)  # 8 split 4 + 4
    assert np.allclose(w[3:5], 2) and np.allclose(w[5:], 2 / 3)


@pytest.mark.slow
def test_device_train_script_round_trips_through_import_device(tmp_path):
    """``scripts/device_train.py`` (here on the TensorFlow backend, at toy size) writes weights
    and results that ``import-device`` rebuilds into the model it trained, within int8 steps."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from train.device import import_run

    root = Path(__file__).resolve().parent.parent
    out, runs = tmp_path / "out", tmp_path / "runs"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow",
           "PYTHONPATH": str(root)}
    p = subprocess.run([sys.executable, str(root / "scripts" / "device_train.py"),
                        "--jobs", "hsc:rot", "--n", "120", "--epochs", "2", "--workers", "1",
                        "--budget", "900", "--out", str(out), "--runs", str(runs)],
                       capture_output=True, text=True, timeout=900, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    e = json.loads((out / "results.json").read_text())["jobs"]["hsc_rot"]
    assert len(e["history"]) == 2 and not e["cut_by_budget"] and not e["early_stopped"]
    assert sum(e["n_split"].values()) == 120
    assert len(e["test_scores"]) == len(e["test_index"]) == e["n_split"]["test"]
    assert any(w["dtype"] == "int8" for w in e["weights"])
    assert not list(runs.glob("*/checkpoint.keras"))  # the GPU path saves no checkpoints
    run = import_run(out / "results.json", "hsc_rot", tmp_path / "imported")
    # compile=False: only the weights matter, and a model compiled for XLA warns on load
    # where an earlier test turned TensorFlow's op determinism on
    trained = keras.saving.load_model(runs / "hsc_rot" / "model.keras", compile=False)
    rebuilt = keras.saving.load_model(run / "model.keras", compile=False)
    trained, rebuilt = trained.get_weights(), rebuilt.get_weights()
    for a, b in zip(trained, rebuilt):
        assert np.abs(a - b).max() <= np.abs(a).max() / 254 + 1e-7
    assert json.loads((run / "state.json").read_text())["best_epoch"] == e["best_epoch"]


@pytest.mark.slow  # three 28 MB models into Keras: ~18 s
def test_shipped_model_weights_read_back_into_keras_and_a_wrong_network_refused(data_dir,
                                                                                 tmp_path):
    """``train.from_onnx``: the shipped d4 model's weights (int8 dense kernels through their
    DequantizeLinear) put into a d4 network score as onnxruntime scores the file; the same
    weights in a network of other shapes, or a rot file's weights in a d4 network (same shapes,
    other function), are refused."""
    from train.from_onnx import MAX_PARITY, load_onnx_weights, onnx_weights

    d4 = MODELS / "d4.onnx"
    found = onnx_weights(d4)
    assert [k for k, _, _ in found] == ["conv"] * 3 + ["dense"] * 4
    assert found[0][1].shape == (11, 11, 3, 32) and found[3][1].shape == (12800, 2048)
    model = build_model("d4")
    assert load_onnx_weights(model, d4) <= MAX_PARITY
    assert np.array_equal(model.get_layer("conv2").get_weights()[0], found[1][1])
    with pytest.raises(ValueError, match="shapes"):
        load_onnx_weights(build_model("d4", size=48), d4)
    with pytest.raises(ValueError, match="scores differently"):
        load_onnx_weights(build_model("d4"), MODELS / "rot.onnx")
    r = runner.invoke(app, ["fit", "--data", str(data_dir), "--out", str(tmp_path / "run"),
                            "--no-jit", "--init-from", str(MODELS / "ps1.onnx")])
    assert r.exit_code == 1 and "shapes" in r.output, r.output
    assert not (tmp_path / "run" / "split.json").exists()  # refused before any split is made
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file at all")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        load_onnx_weights(build_model("d4"), bad)
    # files without a logit output are checked on scores only, on inputs that do not saturate
    import onnx

    for name in ("d4", "rot"):
        m = onnx.load(str(MODELS / f"{name}.onnx"))
        keep = [o for o in m.graph.output if o.name != "logit"]
        del m.graph.output[:]
        m.graph.output.extend(keep)
        onnx.save(m, str(tmp_path / f"{name}_nologit.onnx"))
    from train.from_onnx import MAX_PARITY_FROM_SCORES

    assert load_onnx_weights(build_model("d4"), tmp_path / "d4_nologit.onnx") \
        <= MAX_PARITY_FROM_SCORES
    with pytest.raises(ValueError, match="scores differently"):
        load_onnx_weights(build_model("d4"), tmp_path / "rot_nologit.onnx")


def test_a_split_made_with_another_seed_is_refused(data_dir, tmp_path):
    """A run directory left by an attempt with another seed does not lend its split.json."""
    from train.data import load_split, save_split

    ds = load_dataset(data_dir, cache_dir=tmp_path / "cache")
    save_split(tmp_path / "split.json", ds, make_split(ds.y, seed=1), 1)
    assert len(load_split(tmp_path / "split.json", ds, seed=1)["test"]) > 0
    with pytest.raises(SplitError, match="seed 1.*seed 2"):
        load_split(tmp_path / "split.json", ds, seed=2)


@pytest.mark.slow
def test_fit_init_from_a_shipped_model_starts_from_its_weights(data_dir, tmp_path):
    """A run started ``init_from`` an exported model begins where that model is (its first
    step moves the weights by about the learning rate, not from a random start) and records
    the file's sha256."""
    import hashlib

    src = MODELS / "d4.onnx"
    cfg = FitConfig(arch="d4", epochs=1, batch_size=8, jit=False, lr=1e-6, init_from=str(src))
    fit(data_dir, tmp_path / "run", cfg)
    conf = json.loads((tmp_path / "run" / "config.json").read_text())
    assert conf["init_from"] == str(src)
    assert conf["init_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    w = keras.saving.load_model(tmp_path / "run" / "model.keras", compile=False)
    ref = build_model("d4")
    from train.from_onnx import load_onnx_weights

    load_onnx_weights(ref, src)
    k_new, k_ref = w.get_layer("conv2").get_weights()[0], ref.get_layer("conv2").get_weights()[0]
    assert float(np.abs(k_new - k_ref).max()) < 1e-3 < float(np.abs(k_ref).max())
    from export.convert import _run_metadata
    from lensscore.modelmeta import TRAINING

    init = json.loads(_run_metadata(tmp_path / "run")[TRAINING])["init"]
    assert init == {"name": "d4.onnx", "sha256": conf["init_sha256"]}  # a name, not a path


def test_onnx_weights_read_constant_nodes_and_refuse_sparse_ones(tmp_path):
    """A Conv bias made by a Constant node's value_floats is read; a sparse or string Constant
    is refused with one line, not a traceback."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from train.from_onnx import onnx_weights

    def save(bias_node, name):
        w = numpy_helper.from_array(np.full((2, 1, 1, 1), 0.25, np.float32), "w")
        g = helper.make_graph(
            [bias_node, helper.make_node("Conv", ["x", "w", "b"], ["y"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
        onnx.save(helper.make_model(g), str(tmp_path / name))
        return tmp_path / name

    dense = save(helper.make_node("Constant", [], ["b"], value_floats=[0.5, -1.5]), "c.onnx")
    (kind, w, b), = onnx_weights(dense)
    assert kind == "conv" and w.shape == (1, 1, 1, 2) and b.tolist() == [0.5, -1.5]
    sparse = helper.make_sparse_tensor(
        helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5]),
        helper.make_tensor("i", TensorProto.INT64, [1], [0]), [2])
    bad = save(helper.make_node("Constant", [], ["b"], sparse_value=sparse), "s.onnx")
    with pytest.raises(ValueError, match="holds a sparse_value"):
        onnx_weights(bad)
    text = save(helper.make_node("Constant", [], ["b"], value_string="bias"), "t.onnx")
    with pytest.raises(ValueError, match="holds a value_string"):
        onnx_weights(text)
