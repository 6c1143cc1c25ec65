"""Bring models trained on a GPU machine (``scripts/device_train.py``) back as run directories.

The device writes weights as int8/float32 parts and a ``results.json``; :func:`import_run` turns
one job of it into an ordinary run directory (``config.json``, ``state.json``, ``history.csv``,
``metrics.json``, ``model.keras``) that ``python -m export`` converts like any other. The data
set is recorded by name and content fingerprint, never by a local path.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from lensscore.config import DEFAULT_THRESHOLD

from .quantize import dequantize_int8, int8_eligible, quantize_int8

__all__ = ["import_run", "pack_weights", "unpack_weights", "regenerate", "recorded_sim",
           "simulate_async", "gather"]


def pack_weights(model, out: Path, name: str, part_bytes: int = 15 << 20) -> dict:
    """Write a Keras model's weights as ``out/<name>.partK`` files of at most ``part_bytes``:
    int8 where :mod:`train.quantize`'s rule says, float32 else.

    Returns
    -------
    dict
        ``{"weights": [per weight: name, shape, offset, nbytes, dtype (, scale)], "parts":
        [file names]}``, what :func:`unpack_weights` reads back.
    """
    blob, index = bytearray(), []
    for w, v in zip(model.weights, model.get_weights()):
        v = np.asarray(v, np.float32)
        ent = {"name": w.path, "shape": list(v.shape), "offset": len(blob)}
        if int8_eligible(v):
            q, scale = quantize_int8(v)
            ent.update(dtype="int8", scale=scale.tolist())
            blob += q.tobytes()
        else:
            ent.update(dtype="float32")
            blob += v.tobytes()
        ent["nbytes"] = len(blob) - ent["offset"]
        index.append(ent)
    parts = []
    for k in range(0, len(blob), part_bytes):
        p = Path(out) / f"{name}.part{k // part_bytes}"
        p.write_bytes(bytes(blob[k:k + part_bytes]))
        parts.append(p.name)
    return {"weights": index, "parts": parts}


def unpack_weights(entry: dict, parts_dir) -> list[np.ndarray]:
    """The float32 weight arrays of one job, in ``model.weights`` order."""
    blob = b"".join((Path(parts_dir) / p).read_bytes() for p in entry["parts"])
    out = []
    for w in entry["weights"]:
        raw = blob[w["offset"]:w["offset"] + w["nbytes"]]
        if w["dtype"] == "int8":
            out.append(dequantize_int8(np.frombuffer(raw, np.int8), w["scale"], w["shape"]))
        else:
            out.append(np.frombuffer(raw, np.float32).reshape(w["shape"]).copy())
    return out


def _sim_chunk(args):
    """Simulated, preprocessed cutouts ``indices`` (a range or a list) of a survey preset."""
    from lensscore.preprocess import PreprocessSpec

    survey, seed, indices, spec_json, sim = args
    x, y = regenerate(survey, seed, indices, PreprocessSpec.from_json(spec_json), sim=sim)
    return int(indices[0]), x.astype(np.float32), y.astype(np.int8)


def simulate_async(pool, survey: str, n: int, seed: int, spec_json: str, chunk: int = 100,
                   indices=None, sim: dict | None = None):
    """Simulate ``range(n)`` (or ``indices``) of a survey preset, preprocessed, in the
    ``multiprocessing`` ``pool``; :func:`gather` collects the result."""
    idx = list(range(n)) if indices is None else list(indices)
    jobs = [(survey, seed, idx[s:s + chunk], spec_json, sim) for s in range(0, len(idx), chunk)]
    return pool.map_async(_sim_chunk, jobs, chunksize=1)


def gather(res) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of a :func:`simulate_async` result, in the order the indices were given."""
    parts = res.get()
    return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


#: SimConfig options and the `train simulate` flags that set them
_SIM_FLAGS = {"deflectors": "--deflectors", "los_per_arcmin2": "--los",
              "deflector_max_mag": "--deflector-max-mag", "handedness": "--handedness"}


def recorded_sim(sim: dict | None) -> dict:
    """The SimConfig options a device run recorded, for making its cutouts again. Runs from
    before issue 30 recorded no ``handedness``: their spirals all wound one way."""
    return {"handedness": "one", **(sim or {})}


def data_name(results: dict, survey: str) -> str:
    flags = "".join(f" {_SIM_FLAGS.get(k, k)} {v}" for k, v in (results.get("sim") or {}).items())
    return f"train simulate --survey {survey} --seed {results['seed']} --n {results['n']}{flags}"


def import_run(results_json, job: str, out_dir) -> Path:
    """Write the run directory of ``job`` (e.g. ``ps1_rot``) from a device results file."""
    import keras

    from .fit import RunDir, write_history
    from .models import build_model

    results_json = Path(results_json)
    results = json.loads(results_json.read_text())
    e = results["jobs"][job]
    cfg = dict(e["config"])
    cfg["survey"] = e["survey"]
    run = RunDir(out_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg["arch"], size=cfg["size"], n_bands=len(cfg["bands"]), l2=cfg["l2"],
                        conv_l2=cfg["conv_l2"], dropout=cfg["dropout"], rot_mode=cfg["rot_mode"],
                        seed=cfg["seed"])
    ws = unpack_weights(e, results_json.parent)
    if [tuple(v.shape) for v in ws] != [tuple(w.shape) for w in model.weights]:
        raise ValueError(f"{job}: weight shapes do not match the {cfg['arch']} model")
    model.set_weights(ws)
    model.save(run.model)
    if results.get("n") is not None:  # trained from scratch on simulations made there
        cfg["data_dir"] = data_name(results, e["survey"])
    cfg["data_fingerprint"] = e["fingerprint"]
    cfg["n"] = e["n_split"]
    int8 = [w["name"] for w in e["weights"] if w["dtype"] == "int8"]
    # results files before the backend was recorded all came from the GPU machine's JAX
    where = results.get("trained_on", "device (Keras JAX backend)")
    cfg["trained_on"] = (f"{where}; weights int8 per output channel: "
                         + (", ".join(int8) or "none"))
    run.config.write_text(json.dumps(cfg, indent=1))
    if results.get("n") is not None:  # the simulator options its data were made with
        (run.path / "sim.json").write_text(json.dumps(recorded_sim(results.get("sim"))))
    run.state.write_text(json.dumps({"epoch": len(e["history"]), "best_epoch": e["best_epoch"],
                                     "best_val_loss": min((r["val_loss"] for r in e["history"]),
                                                          default=None),
                                     "stopped": e["early_stopped"],
                                     "cut_by_time_budget": e["cut_by_budget"],
                                     "history": e["history"]}, indent=1))
    if e["history"]:
        write_history(run.history, e["history"])
    run.metrics.write_text(json.dumps({"metrics": e["test_metrics"], "threshold": DEFAULT_THRESHOLD,
                                       "source": f"{where}, float32, on the test split"},
                                      indent=1))
    with open(run.path / "test_scores_device.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "score"])
        w.writerows(zip(e["test_index"], e["test_scores"]))
    del keras
    return run.path


def regenerate(survey: str, seed: int, indices, spec=None, return_truth: bool = False,
               sim: dict | None = None):
    """Simulate the cutouts ``indices`` again (pure in ``(seed, index)``), preprocessed;
    ``sim``: SimConfig options over the survey preset (e.g. ``{"deflectors": "sis-vdf"}``).

    Returns ``(x (n, bands, size, size) float32, y (n,) int)``.
    """
    from lensscore.preprocess import DEFAULT_SPEC, preprocess

    from .simulate import SimConfig, simulate_one

    cfg = SimConfig.for_survey(survey, **(sim or {}))
    spec = spec or DEFAULT_SPEC
    xs, ys, truths = [], [], []
    for i in indices:
        img, t = simulate_one(int(i), seed, cfg)
        xs.append(preprocess(img, spec))
        ys.append(t["label"])
        truths.append(t)
    if return_truth:
        return np.stack(xs), np.array(ys, int), truths
    return np.stack(xs), np.array(ys, int)


def verify(results_json, job: str, onnx_path, n: int = 1000) -> dict:
    """Score the first ``n`` cutouts of a job's simulated test split, made again here, with the
    exported ONNX model, against the device's float32 Keras scores of the same cutouts.

    Returns the max and mean |difference| and the ONNX model's metrics on those cutouts.
    """
    from lensscore.metrics import classification_summary
    from lensscore.scorer import Scorer

    results = json.loads(Path(results_json).read_text())
    e = results["jobs"][job]
    idx = e["test_index"][:n]
    sc = Scorer(onnx_path)
    x, y = regenerate(e["survey"], results["seed"], idx, sc.spec,
                      sim=recorded_sim(results.get("sim")))
    s = sc.score(x, preprocessed=True).astype(np.float64)
    out = {"n": len(idx), "metrics_onnx": classification_summary(y, s)}
    if e["test_scores"]:
        d = np.abs(s - np.asarray(e["test_scores"][:n]))
        out.update(max_abs_diff=float(d.max()), mean_abs_diff=float(d.mean()))
    return out


def evaluate_onnx(results_json, job: str, onnx_path, run_dir, n: int = 4000) -> dict:
    """The shipped ONNX model on the first ``n`` cutouts of the job's simulated test split, made
    again here, with all four rotations: metrics, rotation stability, ``test_scores.csv`` (for
    ``python -m train plots``) and a truth table for completeness, in ``run_dir``."""
    from astropy.table import Table

    from lensscore.metrics import classification_summary, rotation_stability
    from lensscore.scorer import Scorer

    from .plots import write_test_scores

    results = json.loads(Path(results_json).read_text())
    e = results["jobs"][job]
    idx = e["test_index"][:n]
    sc = Scorer(onnx_path)
    x, y, truths = regenerate(e["survey"], results["seed"], idx, sc.spec, return_truth=True,
                              sim=recorded_sim(results.get("sim")))
    rot = sc.score_rotations(x, preprocessed=True).astype(np.float64)
    ids = [f"{'lenses' if lab else 'nonlenses'}/sim_{i:06d}" for i, lab in zip(idx, y)]
    run = Path(run_dir)
    write_test_scores(run / "test_scores.csv", ids, y, rot)
    cols = ["theta_e", "src_mag_i", "subtype"]
    Table(rows=[[i] + [t[c] for c in cols] for i, t in zip(ids, truths)],
          names=["id"] + cols).write(run / "truth_subset.ecsv", overwrite=True)
    out = {"n": len(idx), "model": Path(onnx_path).name,
           "metrics": classification_summary(y, rot[:, 0]),
           "rotation_stability": rotation_stability(rot)}
    (run / "onnx_eval.json").write_text(json.dumps(out, indent=1))
    return out
