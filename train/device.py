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

__all__ = ["import_run", "unpack_weights", "regenerate"]


def unpack_weights(entry: dict, parts_dir) -> list[np.ndarray]:
    """The float32 weight arrays of one job, in ``model.weights`` order."""
    blob = b"".join((Path(parts_dir) / p).read_bytes() for p in entry["parts"])
    out = []
    for w in entry["weights"]:
        raw = blob[w["offset"]:w["offset"] + w["nbytes"]]
        if w["dtype"] == "int8":
            q = np.frombuffer(raw, np.int8).astype(np.float32)
            scale = np.asarray(w["scale"], np.float32)
            out.append((q.reshape(-1, len(scale)) * scale).reshape(w["shape"]))
        else:
            out.append(np.frombuffer(raw, np.float32).reshape(w["shape"]).copy())
    return out


def data_name(results: dict, survey: str) -> str:
    return f"train simulate --survey {survey} --seed {results['seed']} --n {results['n']}"


def import_run(results_json, job: str, out_dir) -> Path:
    """Write the run directory of ``job`` (e.g. ``ps1_rot``) from a device results file."""
    import keras

    from .fit import RunDir, _write_history
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
    cfg["data_dir"] = data_name(results, e["survey"])
    cfg["data_fingerprint"] = e["fingerprint"]
    cfg["n"] = e["n_split"]
    cfg["trained_on"] = "device (Keras JAX backend); weights int8 per channel for kernels > 1e5"
    run.config.write_text(json.dumps(cfg, indent=1))
    run.state.write_text(json.dumps({"epoch": len(e["history"]), "best_epoch": e["best_epoch"],
                                     "best_val_loss": min(r["val_loss"] for r in e["history"]),
                                     "stopped": e["early_stopped"],
                                     "cut_by_time_budget": e["cut_by_budget"],
                                     "history": e["history"]}, indent=1))
    _write_history(run.history, e["history"])
    run.metrics.write_text(json.dumps({"metrics": e["test_metrics"], "threshold": 0.5,
                                       "source": "device, float32 Keras (JAX) on the test split"},
                                      indent=1))
    with open(run.path / "test_scores_device.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "score"])
        w.writerows(zip(e["test_index"], e["test_scores"]))
    del keras
    return run.path


def regenerate(survey: str, seed: int, indices, spec=None, workers: int = 1):
    """Simulate the cutouts ``indices`` again (pure in ``(seed, index)``), preprocessed.

    Returns ``(x (n, bands, size, size) float32, y (n,) int)``.
    """
    from lensscore.preprocess import DEFAULT_SPEC, preprocess

    from .simulate import SimConfig, simulate_one

    cfg = SimConfig.for_survey(survey)
    spec = spec or DEFAULT_SPEC
    xs, ys = [], []
    for i in indices:
        img, t = simulate_one(int(i), seed, cfg)
        xs.append(preprocess(img, spec))
        ys.append(t["label"])
    return np.stack(xs), np.array(ys, int)
