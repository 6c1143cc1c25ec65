"""``python -m bench.ab OLD_DIR NEW_DIR``: two sets of the same models, side by side.

Each model's img/s through :class:`lensscore.Scorer` and its fraction of the FLOP limit (the
numpy GEMM rate measured in the same round), for two versions of the same files (e.g. before and
after ``python -m export.optimize``), in one process, alternating, ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .flops import gemm_gflops, onnx_flops
from .run import model_throughput


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--names", default="baseline,rot,d4,ps1")
    ap.add_argument("--batches", default="32,128")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    batches = [int(b) for b in a.batches.split(",")]
    models = {}
    for name in a.names.split(","):
        models[name] = a.old / f"{name}.onnx"
        models[name + "_new"] = a.new / f"{name}.onnx"
    flops = {k: onnx_flops(p)["total"] for k, p in models.items()}
    for _ in range(a.rounds):
        g = gemm_gflops(2048)["median"]
        t = model_throughput(models, batches, reps=2, min_time=1.0)
        row = {f"{k}@{b}": [round(t[k][b]), round(t[k][b] * flops[k] / 1e9 / g, 3)]
               for k in models for b in batches}
        print(json.dumps({"gemm_gflops": round(g), **row}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
