"""What a user would otherwise write: the same Keras network scoring the same FITS files.

    python -m bench.peer_tf loop|tfdata DIR [--arch rot] [--keras MODEL.keras] [--batch 128]

``loop``: astropy reads every file in a Python loop, lensscore's numpy preprocessing, then
``model.predict``. ``tfdata``: TensorFlow's own best on this input: a ``tf.data`` pipeline
reading the files in parallel (``numpy_function`` + AUTOTUNE), batched and prefetched into
``model.predict``. Prints one JSON line: files, seconds from process start to the first score
(``first_score_s``) and to the last (``total_s``), and the scores' checksum.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

T0 = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _files(root):
    from lensscore.io import split_fits_suffix

    out = []
    for d, _, names in os.walk(root):
        out += [os.path.join(d, n) for n in names if split_fits_suffix(n)]
    return sorted(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("loop", "tfdata"))
    ap.add_argument("data")
    ap.add_argument("--arch", default="rot")
    ap.add_argument("--keras", help="a trained .keras model (default: the architecture, "
                                    "randomly initialised: the same work)")
    ap.add_argument("--batch", type=int, default=128)
    a = ap.parse_args(argv)

    import numpy as np
    import tensorflow as tf
    from astropy.io import fits

    from lensscore.preprocess import DEFAULT_SPEC, preprocess

    if a.keras:
        import keras

        from train import models  # noqa: F401  (registers RotationalConv2D)

        model = keras.saving.load_model(a.keras, compile=False)
    else:
        from train.models import build_model

        model = build_model(a.arch)
    files = _files(a.data)

    def load(path):
        x = np.asarray(fits.getdata(path), np.float32)[None]
        return np.transpose(preprocess(x, DEFAULT_SPEC), (0, 2, 3, 1))[0]

    first = None
    if a.mode == "loop":
        x = np.stack([load(f) for f in files[:1]])
        model.predict(x, batch_size=a.batch, verbose=0)
        first = time.perf_counter() - T0
        x = np.stack([load(f) for f in files])
        scores = model.predict(x, batch_size=a.batch, verbose=0).reshape(-1)
    else:
        def tf_load(path):
            return tf.numpy_function(lambda p: load(p.decode()), [path], tf.float32,
                                     stateful=False)

        def dataset(paths):
            ds = tf.data.Dataset.from_tensor_slices(paths)
            ds = ds.map(tf_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            ds = ds.map(lambda t: tf.ensure_shape(t, [None, None, None]))
            return ds.batch(a.batch).prefetch(tf.data.AUTOTUNE)

        model.predict(dataset(files[:1]), verbose=0)
        first = time.perf_counter() - T0
        scores = model.predict(dataset(files), verbose=0).reshape(-1)
    total = time.perf_counter() - T0
    print(json.dumps({"mode": a.mode, "files": len(scores), "first_score_s": first,
                      "total_s": total, "checksum": float(np.sum(scores, dtype=np.float64))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
