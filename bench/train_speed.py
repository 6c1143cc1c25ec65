"""Training throughput (samples/s) of the HOLISMOKES CNNs on this machine, side by side.

    python bench/train_speed.py [--batches 6] [--batch-size 128] [--out bench/out/train_speed.json]

Each variant trains ``--batches`` steps of ``train_on_batch`` on random 72x72x3 inputs after two
warm-up steps (compilation); variants are interleaved over ``--repeats`` rounds and the median is
reported, since the machine is shared and noisy. ``tf.image.rot90`` is the slow reference the
issue mentions: the rotational layer as the seed wrote it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def _variants():
    return {
        "baseline": dict(arch="baseline", jit=False),
        "baseline+xla": dict(arch="baseline", jit=True),
        "rot kernel+xla": dict(arch="rot", rot_mode="kernel", jit=True),
        "rot input+xla": dict(arch="rot", rot_mode="input", jit=True),
        "rot kernel": dict(arch="rot", rot_mode="kernel", jit=False),
        "rot input": dict(arch="rot", rot_mode="input", jit=False),
        "d4 kernel+xla": dict(arch="d4", rot_mode="kernel", jit=True),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="variant names to run")
    ap.add_argument("--out", default="bench/out/train_speed.json")
    a = ap.parse_args(argv)

    import keras
    import tensorflow as tf

    from train.fit import FitConfig, compiled_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(a.batch_size, 72, 72, 3)).astype(np.float32)
    y = rng.integers(0, 2, (a.batch_size, 1)).astype(np.float32)
    variants = {k: v for k, v in _variants().items() if not a.only or k in a.only}
    models = {}
    for name, kw in variants.items():
        keras.utils.set_random_seed(0)
        models[name] = m = compiled_model(FitConfig(**kw))
        for _ in range(2):  # trace / XLA-compile
            m.train_on_batch(x, y)
    times = {k: [] for k in variants}
    for _ in range(a.repeats):
        for name, m in models.items():
            t0 = time.perf_counter()
            for _ in range(a.batches):
                m.train_on_batch(x, y)
            times[name].append(a.batch_size * a.batches / (time.perf_counter() - t0))
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "tensorflow": tf.__version__, "batch_size": a.batch_size,
           "samples_per_s": {k: float(np.median(v)) for k, v in times.items()}}
    base = res["samples_per_s"].get("baseline+xla")
    for k, v in res["samples_per_s"].items():
        rel = f"  ({v / base:.2f}x baseline+xla)" if base else ""
        print(f"{k:16s} {v:7.1f} samples/s{rel}")
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
