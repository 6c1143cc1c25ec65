"""Paper-scale simulate + train on a GPU machine without TensorFlow (Keras 3, JAX backend).

Run by ``scripts/device-train.sh`` on the device machine (see models/README.md). For every job
(``survey:arch``) it simulates ``--n`` cutouts with the survey preset (the same pure function of
``(seed, index)`` as ``python -m train simulate``, so the split and every test cutout can be
remade on any machine), preprocesses them with :func:`lensscore.preprocess.preprocess`, trains with
:func:`train.fit.fit` (the 56/14/30 split, early stopping), scores the test split, and writes:

* ``OUT/<job>.partK`` -- the trained weights (:func:`train.device.pack_weights`: int8 per
  output channel for large dense kernels, by the rule export's int8 ONNX follows too, float32
  otherwise), split into <= 15 MiB parts;
* ``OUT/results.json`` -- per job: the weight index, config, split ids' fingerprint, history,
  test-split metrics and scores, timings.

Jobs of the same survey share one simulated data set. The next survey's simulation runs on the
CPU cores while the GPU trains. A job is skipped (and says so) when the time left is too short.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path


T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def collect(res, n):
    from train.data import Dataset, fingerprint
    from train.device import gather

    x, y = gather(res)
    assert len(x) == n
    ids = [f"{'lenses' if y[i] else 'nonlenses'}/sim_{i:06d}" for i in range(n)]
    return Dataset(x, y, ids, fingerprint(ids, y), [])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", default="ps1:rot,hsc:rot,hsc:baseline")
    ap.add_argument("--n", type=int, default=80_400)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--budget", type=float, default=540, help="seconds for everything")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--epochs", type=int, default=35)
    ap.add_argument("--lr", type=float, default=None, help="Adam learning rate [the recipe's]")
    ap.add_argument("--machine", default="device",
                    help="what trains, as the imported run and its model will say (e.g. 'CPU')")
    ap.add_argument("--init-from", default=None,
                    help="start every job from this exported model of its architecture "
                         "(FitConfig.init_from: a warm start) instead of a random one")
    ap.add_argument("--out", default=os.environ.get("OUT", "device-out"))
    ap.add_argument("--runs", default="/tmp/device-runs")
    ap.add_argument("--sim", type=json.loads, default=None,
                    help='SimConfig options over the presets, JSON, e.g. '
                         '\'{"deflectors": "sis-vdf", "los_per_arcmin2": 30}\' (recorded in '
                         'results.json, so the test splits regenerate the same)')
    a = ap.parse_args()
    # recorded in full, so that the test splits can be made again whatever the defaults become
    a.sim = {"handedness": "both", **(a.sim or {})}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = T0 + a.budget

    from lensscore.preprocess import DEFAULT_SPEC
    from train.device import pack_weights, simulate_async

    spec_json = DEFAULT_SPEC.to_json()
    jobs = [tuple(j.split(":")) for j in a.jobs.split(",")]
    surveys = list(dict.fromkeys(s for s, _ in jobs))
    ctx = mp.get_context("spawn")  # workers never touch JAX
    pool = ctx.Pool(a.workers)
    pending = {surveys[0]: simulate_async(pool, surveys[0], a.n, a.seed, spec_json,
                                                  sim=a.sim)}
    log(f"simulating {surveys[0]} ({a.n}) on {a.workers} workers")

    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    from lensscore.metrics import classification_summary
    from train.fit import FitConfig, RunDir, fit, predict_scores, read_config
    from train.data import make_split
    from train.presets import preset

    log(f"keras {keras.__version__} backend {keras.backend.backend()}")
    results = {"seed": a.seed, "n": a.n, "jobs": {}, "argv": sys.argv, "sim": a.sim,
               "trained_on": f"{a.machine} (Keras {keras.backend.backend()} backend)"}
    data = {}
    for j, (survey, arch) in enumerate(jobs):
        name = f"{survey}_{arch}"
        if survey not in data:
            t = time.time()
            data[survey] = collect(pending.pop(survey), a.n)
            log(f"{survey}: {a.n} cutouts ready ({time.time() - t:.0f}s waited), "
                f"{int(data[survey].y.sum())} lenses")
            nxt = [s for s in surveys if s not in data and s not in pending]
            if nxt:  # simulate the next survey while the GPU trains
                pending[nxt[0]] = simulate_async(pool, nxt[0], a.n, a.seed, spec_json,
                                                  sim=a.sim)
                log(f"simulating {nxt[0]} in the background")
        ds = data[survey]
        left = deadline - time.time()
        if left < 45:
            log(f"{name}: skipped, {left:.0f}s left")
            results["jobs"][name] = {"skipped": f"{left:.0f}s left"}
            continue
        p = preset(survey)
        cfg = FitConfig(arch=arch, epochs=a.epochs, seed=a.seed, size=p["size"],
                        init_from=a.init_from, **({"lr": a.lr} if a.lr is not None else {}))
        run = RunDir(Path(a.runs) / name)
        # leave time for the jobs after this one
        share = left / (len(jobs) - j) if j < len(jobs) - 1 else left - 15
        stop_at = time.time() + share

        asked = {"stop": False}  # set when the budget ends the run

        def on_epoch(row, stop_at=stop_at, name=name, asked=asked):
            log(f"{name} epoch {row['epoch']}: loss {row['loss']:.4f} val_loss "
                f"{row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f} "
                f"{row['samples_per_s']:.0f}/s")
            asked["stop"] = time.time() + row["seconds"] * 1.2 > stop_at
            return asked["stop"]  # True ends the run, with the best epoch's weights

        t = time.time()
        # no per-epoch checkpoints: this call trains the whole run, and saving model and
        # optimizer (~2 s each, 330 MB) would add a third to every ~6 s epoch here
        fit(None, run.path, cfg, dataset=ds, on_epoch=on_epoch, checkpoint=False)
        state = json.loads(run.state.read_text())
        cut = asked["stop"] and not state["stopped"]
        if cut:
            log(f"{name}: stopped by the time budget")
        model = keras.saving.load_model(run.model)
        hist = state["history"]
        split = make_split(ds.y, seed=cfg.seed)
        te = split["test"]
        s = predict_scores(model, ds, te)
        m = classification_summary(ds.y[te].astype(int), s, 0.5)
        log(f"{name}: test {json.dumps({k: m[k] for k in ('accuracy', 'roc_auc', 'tpr0')})}")
        entry = pack_weights(model, out, name)
        conf = {**cfg.__dict__, "bands": list(cfg.bands),
                "init_sha256": read_config(run).get("init_sha256")}
        entry.update(config=conf, survey=survey,
                     preset=p, history=hist, best_epoch=state["best_epoch"],
                     early_stopped=bool(state.get("stopped")), cut_by_budget=cut,
                     fingerprint=ds.fingerprint, n_split={k: int(len(v)) for k, v in split.items()},
                     test_metrics=m, test_index=te.tolist(),
                     test_scores=[round(float(v), 6) for v in s], train_seconds=time.time() - t)
        results["jobs"][name] = entry
        (out / "results.json").write_text(json.dumps(results))
        log(f"{name}: done in {time.time() - t:.0f}s")
    pool.terminate()
    (out / "results.json").write_text(json.dumps(results))
    log("all done")


if __name__ == "__main__":
    main()
