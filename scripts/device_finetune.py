"""Fine-tune a run on real cutouts by grouped k-fold cross-validation, on a GPU machine.

The machine has no ../shared: the real cutouts travel as ``--real FILE.npz``
(:func:`train.finetune.save_real`: made here by :func:`train.finetune.load_real`, i.e. by the
scorer's own reader and preprocessing, with positions for the folds and the hosts to paint onto).
Simulated cutouts to mix in (the run's training indices) and a sample of the run's simulated test
split are made again on the CPU cores (pure in seed and index); paintings (``--paint``) too, pure
in host id, seed and number. Every variant (``--paint`` values) x seed (``--seeds``) is one
fine-tune with the same folds. Writes to ``$OUT``: the final model's weights of each variant's
first seed (``<name>.part0``, :func:`train.device.pack_weights`), ``results.json`` (CV metrics, config,
simulated-test metrics of each fine-tuned model), ``cv_<name>.csv``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/ps1_rot")
    ap.add_argument("--real", default="realdata-ps1.npz")
    ap.add_argument("--name", default="ps1_rot_ft")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--n-sim", type=int, default=8000)
    ap.add_argument("--n-test", type=int, default=8000)
    ap.add_argument("--oversample", type=int, default=4)
    ap.add_argument("--balance-nonlenses", action="store_true",
                    help="each kind of real non-lens (src, sky) weighted equally in total")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="training seeds (shuffles, augmentation); the folds stay the same")
    ap.add_argument("--paint", type=int, nargs="+", default=[0],
                    help="variants: arcs painted onto the real non-lenses, mixed in")
    ap.add_argument("--no-pairs", action="store_true",
                    help="paintings without their hosts unpainted beside them")
    ap.add_argument("--no-detections", action="store_true",
                    help="leave out the real non-lenses detected around the lenses")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--out", default=os.environ.get("OUT", "device-out"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    from lensscore.preprocess import DEFAULT_SPEC

    from train.device import gather, pack_weights, simulate_async
    from train.finetune import FinetuneConfig, finetune, paint_real, read_real, sim_indices
    from train.fit import RunDir, load_config

    run = RunDir(a.run)
    cfg = load_config(run)
    spec = cfg.preprocess if cfg.preprocess else DEFAULT_SPEC.to_json()
    test_idx = [int(r.split(",")[0]) for r in
                (run.path / "test_scores_device.csv").read_text().split()[1:]][:a.n_test]
    pool = mp.get_context("spawn").Pool(a.workers)
    sim = json.loads((run.path / "sim.json").read_text()) if (run.path / "sim.json").exists() \
        else None  # the simulator options of the base run's data (train.device.import_run)
    r_sim = simulate_async(pool, cfg.survey, 0, cfg.seed, spec, indices=sim_indices(run, a.n_sim),
                           sim=sim)
    r_test = simulate_async(pool, cfg.survey, 0, cfg.seed, spec, indices=test_idx, sim=sim)
    real = read_real(a.real)
    if a.no_detections:
        keep = np.array([not i.startswith("nonlenses/det/") for i in real.ids])
        real.x, real.y, real.ra, real.dec = real.x[keep], real.y[keep], real.ra[keep], \
            real.dec[keep]
        real.ids = [i for i, k in zip(real.ids, keep) if k]
        real.digests = [d for d, k in zip(real.digests, keep) if k]
        real.hosts = [h for h in real.hosts if not h.id.startswith("nonlenses/det/")]
    painted = {}
    for n in sorted(set(a.paint) - {0}):
        painted[n] = paint_real(real, cfg, FinetuneConfig(n_paint=n), workers=a.workers)
        log(f"{len(painted[n][1])} of {n} paintings passed the cuts")
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    from lensscore.metrics import classification_summary

    log(f"keras {keras.__version__} backend {keras.backend.backend()}")
    xs, ys = gather(r_sim)
    xt, yt = gather(r_test)
    pool.terminate()
    log(f"{len(ys)} simulated cutouts to mix in; {len(real.y)} real "
        f"({int(real.y.sum())} lenses); {len(real.hosts)} hosts")
    jobs = {}
    for n in a.paint:
        for j, seed in enumerate(a.seeds):
            name = f"{a.name}_p{n}_s{seed}"
            fc = FinetuneConfig(folds=a.folds, epochs=a.epochs, lr=a.lr, n_sim=a.n_sim,
                                oversample=a.oversample, balance_nonlenses=a.balance_nonlenses,
                                seed=seed, n_paint=n, detections=not a.no_detections,
                                paint_pairs=not a.no_pairs)
            kept = {}

            def save(model, d, kept=kept, name=name, first=j == 0):
                kept["model"] = model
                if first:  # the weights of each variant's first seed come back
                    kept.update(pack_weights(model, out, name))

            res = finetune(run.path, None, f"/tmp/ft-{name}", fc, real=real, sim=(xs, ys),
                           save=save, painted=painted.get(n),
                           progress=lambda k, m, name=name: log(f"{name}: fold {k}/{m} done"))
            log(f"{name} cv " + json.dumps({k: res["cv"][k] for k in (
                "roc_auc", "tpr_at_fpr_1pct", "accuracy", "field_sources_above_threshold")}))
            st = np.asarray(kept["model"].predict(np.transpose(xt, (0, 2, 3, 1)), batch_size=512,
                                                  verbose=0)).reshape(-1)
            sim_test = classification_summary(yt.astype(int), st)
            log(f"{name} on {len(yt)} simulated test cutouts: accuracy "
                f"{sim_test['accuracy']:.4f} AUC {sim_test['roc_auc']:.4f}")
            conf = json.loads(Path(f"/tmp/ft-{name}/config.json").read_text())
            jobs[name] = {"weights": kept.get("weights"), "parts": kept.get("parts", []),
                          "config": {**conf, "bands": list(cfg.bands)},
                          "survey": cfg.survey, "history": [], "best_epoch": None,
                          "early_stopped": False, "cut_by_budget": False,
                          "fingerprint": conf.get("data_fingerprint"),
                          "n_split": conf.get("n"), "test_metrics": sim_test,
                          "test_index": test_idx, "test_scores": [], "real_data_cv": res}
            # what the run directory holds, inside results.json: a machine returns <= 8 files
            for f in ("cv_scores.csv", "trained_on.json"):
                if Path(f"/tmp/ft-{name}/{f}").exists():
                    jobs[name][f] = Path(f"/tmp/ft-{name}/{f}").read_text()
            (out / "results.json").write_text(json.dumps(
                {"jobs": jobs, "seed": cfg.seed, "n": None, "argv": sys.argv}))
    log("all done")


if __name__ == "__main__":
    main()
