"""Which simulator change moves the real-data numbers? A small, equal-budget ablation (issue 16).

Each arm simulates a PS1-preset training set with one simulator option changed, trains the same
network on it from scratch with the same seed and budget, exports it to ONNX, scans the real PS1
development cutouts as a user would (``lensscore scan RAW``) and records the real-data metrics and
the simulated test-split metrics. Nothing real is trained on, so the real numbers are honest
held-out numbers of each arm; with one training seed per arm, repeat the base arm with another
seed (``--arms base,base@2``) to see how far training noise alone moves them.

    python scripts/ablate_sim.py --n 14000 --epochs 15 --out runs/ablate \\
        --arms base,vdf,vdf+los,base@2,vdf+cut

Arms: ``base`` (the shipped sets' simulator), ``vdf`` (``--deflectors sis-vdf``), ``vdf+los``
(plus ``--los 30``), ``vdf+cut`` (plus ``--deflector-max-mag 21.5``), ``los`` (line of sight
only); ``:ARCH`` trains another architecture on the same data (``vdf+cut:d4``: the
D4-invariant network; default ``rot``) and ``@SEED`` sets the training seed (the data are
the same for every architecture and seed). Results go to OUT/results.json, one entry per
arm, written as each arm finishes (a rerun skips arms already there).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata" / "ps1-sled-dev" / "raw"
ARMS = {"base": [], "vdf": ["--deflectors", "sis-vdf"], "los": ["--los", "30"],
        "vdf+los": ["--deflectors", "sis-vdf", "--los", "30"],
        # PS1's 5-sigma i depth 23.1 less 1.6 mag: deflectors a galaxy catalogue would hold
        "vdf+cut": ["--deflectors", "sis-vdf", "--deflector-max-mag", "21.5"]}


def _run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        r = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    if r.returncode not in (0, 3):
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}; see {log}")


def table(out: Path) -> str:
    """Markdown table of the arms in OUT/results.json (group numbers from each real.csv)."""
    from lensscore.catalog import read_catalog
    from lensscore.metrics import real_metrics

    res = json.loads((out / "results.json").read_text())
    head = ("| arm | simulator options | epochs (best) | sim. test AUC | real AUC, all | "
            "lenses vs field sources | lenses vs sky | TPR at FPR 1 % | lenses ≥ 0.5 | "
            "field sources ≥ 0.5 | sky ≥ 0.5 |\n" + "| --- " * 2 + "| ---: " * 9 + "|")
    lines = [head]
    for name, r in res.items():
        real = real_metrics(read_catalog(out / f"run_{name}" / "real.csv"), "real")
        m, g = real["metrics"], real["nonlens_groups"]
        state = json.loads((out / f"run_{name}" / "state.json").read_text())
        lines.append(
            f"| {name} | {' '.join(r['simulate']) or '(defaults)'} | {r['epochs_run']} "
            f"({state.get('best_epoch')}) | {r['sim_test']['roc_auc']:.4f} | {m['roc_auc']:.3f} | "
            f"{g['src']['auc_lenses_vs']:.3f} | {g['sky']['auc_lenses_vs']:.3f} | "
            f"{m['tpr_at_fpr_1pct']:.3f} | {m['tp']}/{m['n_lens']} | "
            + " | ".join(f"{g[k]['n_above']}/{g[k]['n']}" for k in ("src", "sky")) + " |")
    return "\n".join(lines)


def parse_arm(name: str) -> tuple[str, str, str]:
    """``SIM[:ARCH][@SEED]`` -> (simulator arm, training seed, architecture)."""
    from lensscore.config import ARCH_INVARIANCE

    rest, _, seed = name.partition("@")
    sim, _, arch = rest.partition(":")
    if sim not in ARMS:
        raise ValueError(f"unknown arm {name!r}: choose from {', '.join(ARMS)} "
                         "(optionally :ARCH and @SEED)")
    if arch and arch not in ARCH_INVARIANCE:
        raise ValueError(f"unknown architecture in arm {name!r}: "
                         f"{', '.join(ARCH_INVARIANCE)}")
    if seed and not (seed.isascii() and seed.isdigit()):
        raise ValueError(f"the seed of arm {name!r} is not a whole number")
    return sim, seed or "16", arch or "rot"


def arm_key(name: str) -> str:
    """The one name of an arm's experiment: ``vdf``, ``vdf:rot`` and ``vdf@16`` are the same
    run, so they share a run directory and a result."""
    sim, seed, arch = parse_arm(name)
    return sim + (f":{arch}" if arch != "rot" else "") + (f"@{seed}" if seed != "16" else "")


def arm(name: str, a, out: Path) -> dict:
    from lensscore.catalog import read_catalog
    from lensscore.metrics import real_metrics

    sim, seed, arch = parse_arm(name)
    data = out / f"data_{sim}"
    run = out / f"run_{name}"
    log = out / f"{name}.log"
    py = sys.executable
    t0 = time.perf_counter()
    if not (data / "truth.ecsv").exists():
        _run([py, "-m", "train", "simulate", "--n", str(a.n), "--out", str(data), "--survey",
              "ps1", "--seed", "16", "--workers", str(a.workers), "--overwrite", *ARMS[sim]], log)
    t_sim = time.perf_counter() - t0
    if not (run / "model.keras").exists():
        _run([py, "-m", "train", "fit", "--data", str(data), "--out", str(run), "--arch", arch,
              "--survey", "ps1", "--epochs", str(a.epochs), "--seed", seed, "--jit",
              *(["--resume"] if (run / "config.json").exists() else [])], log)
    if not (run / "metrics.json").exists():
        _run([py, "-m", "train", "evaluate", str(run)], log)
    onnx = run / "model.onnx"
    if not onnx.exists():
        _run([py, "-m", "export", str(run / "model.keras"), str(onnx), "--json"], log)
    cat = run / "real.csv"
    _run([py, "-m", "lensscore", "scan", str(a.real), "-m", str(onnx), "-o", str(cat),
          "--overwrite", "--quiet", "--top", "0"], log)
    epochs_run = len((run / "history.csv").read_text().splitlines()) - 1
    test = json.loads((run / "metrics.json").read_text())
    real = real_metrics(read_catalog(cat), str(a.real))
    return {"arm": name, "simulate": ARMS[sim], "arch": arch, "train_seed": int(seed), "n": a.n,
            "epochs_max": a.epochs, "epochs_run": epochs_run,
            "sim_test": test["metrics"], "real": real,
            # the field sources (galaxies and stars) are the harder, more telling half; most
            # sky positions are empty, which any network that sees a galaxy separates
            "real_auc_lenses_vs_field_sources": real["nonlens_groups"]["src"]["auc_lenses_vs"],
            "real_auc_lenses_vs_sky": real["nonlens_groups"]["sky"]["auc_lenses_vs"],
            "seconds": {"simulate": round(t_sim), "total": round(time.perf_counter() - t0)}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arms", default="base,vdf,vdf+los,base@2,vdf+cut")
    ap.add_argument("--n", type=int, default=14000, help="cutouts per simulated set")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--real", type=Path, default=REAL)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "ablate")
    ap.add_argument("--table", action="store_true", help="print OUT's results as Markdown")
    a = ap.parse_args(argv)
    if a.table:
        print(table(a.out))
        return
    if not a.real.is_dir():
        sys.exit(f"{a.real}: the real PS1 development cutouts are not there")
    try:
        names = list(dict.fromkeys(arm_key(n) for n in a.arms.split(",")))
    except ValueError as exc:
        sys.exit(str(exc))
    a.out.mkdir(parents=True, exist_ok=True)
    res_path = a.out / "results.json"
    results = json.loads(res_path.read_text()) if res_path.exists() else {}
    for name in names:
        if name in results:
            continue
        results[name] = arm(name, a, a.out)
        res_path.write_text(json.dumps(results, indent=1))
        m = results[name]["real"]["metrics"]
        print(f"{name}: real AUC {m['roc_auc']:.3f} (vs field sources only "
              f"{results[name]['real_auc_lenses_vs_field_sources']:.3f}), "
              f"TPR@FPR1% {m['tpr_at_fpr_1pct']:.3f}; "
              f"sim test AUC {results[name]['sim_test']['roc_auc']:.4f}", flush=True)


if __name__ == "__main__":
    main()
