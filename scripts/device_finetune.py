"""Fine-tune a run on real cutouts by grouped k-fold cross-validation, on a GPU machine.

The machine has no ../shared: the real cutouts travel as ``--real FILE.npz`` (x, y, ids, made
here by :func:`train.finetune.load_real`, i.e. by the scorer's own reader and preprocessing).
Simulated cutouts to mix in (the run's training indices) and a sample of the run's simulated test
split are made again on the CPU cores (pure in seed and index). Writes to ``$OUT``: the final
model's weights (``<name>.part0``, :func:`train.device.pack_weights`), ``results.json`` (CV metrics, the
config, simulated-test metrics of the fine-tuned model), ``cv_scores.csv``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
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
    ap.add_argument("--seed", type=int, default=0,
                    help="training seed (shuffles, augmentation); the folds stay the same")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--out", default=os.environ.get("OUT", "device-out"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    from lensscore.preprocess import DEFAULT_SPEC

    from train.device import gather, pack_weights, simulate_async
    from train.finetune import sim_indices
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
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    from lensscore.metrics import classification_summary
    from train.finetune import FinetuneConfig, finetune

    log(f"keras {keras.__version__} backend {keras.backend.backend()}")
    d = np.load(a.real, allow_pickle=False)
    real = (d["x"].astype(np.float32), d["y"].astype(int), [str(i) for i in d["ids"]])
    xs, ys = gather(r_sim)
    log(f"{len(ys)} simulated cutouts to mix in; {len(real[1])} real")
    fc = FinetuneConfig(folds=a.folds, epochs=a.epochs, lr=a.lr, n_sim=a.n_sim,
                        oversample=a.oversample, balance_nonlenses=a.balance_nonlenses,
                        seed=a.seed)
    kept = {}

    def save(model, d):
        kept["model"] = model
        kept.update(pack_weights(model, out, a.name))

    res = finetune(run.path, None, f"/tmp/ft-{a.name}", fc, real=real, sim=(xs, ys), save=save,
                   progress=lambda k, n: log(f"fold {k}/{n} done"))
    log(f"cv {json.dumps({k: res['cv'][k] for k in ('roc_auc', 'tpr_at_fpr_1pct', 'accuracy')})}")
    xt, yt = gather(r_test)
    st = np.asarray(kept["model"].predict(np.transpose(xt, (0, 2, 3, 1)), batch_size=512,
                                          verbose=0)).reshape(-1)
    sim_test = classification_summary(yt.astype(int), st)
    log(f"fine-tuned model on {len(yt)} simulated test cutouts: accuracy "
        f"{sim_test['accuracy']:.4f} AUC {sim_test['roc_auc']:.4f}")
    pool.terminate()
    conf = json.loads(Path(f"/tmp/ft-{a.name}/config.json").read_text())
    results = {"jobs": {a.name: {"weights": kept["weights"], "parts": kept["parts"],
                                 "config": {**conf, "bands": list(cfg.bands)},
                                 "survey": cfg.survey, "history": [], "best_epoch": None,
                                 "early_stopped": False, "cut_by_budget": False,
                                 "fingerprint": conf.get("data_fingerprint"),
                                 "n_split": conf.get("n"), "test_metrics": sim_test,
                                 "test_index": test_idx, "test_scores": [], "real_data_cv": res}},
               "seed": cfg.seed, "n": None, "argv": sys.argv}
    (out / "results.json").write_text(json.dumps(results))
    shutil.copy(f"/tmp/ft-{a.name}/cv_scores.csv", out / "cv_scores.csv")
    log("all done")


if __name__ == "__main__":
    main()
