"""``python -m bench.prefetch DIR``: the scan with the loader a batch ahead, against the old
prefetch (``workers x PREFETCH`` chunks only), in one process, interleaved.

Each round scans the same files twice (old and new, the order alternating) with one
:class:`lensscore.Scorer`, and prints the wall times; at the end, the medians and the median of
the paired ratios. ``--threads 1`` leaves the loader a core of its own on a 2-core machine (as
beside a GPU). ``--make N`` first writes N survey-like files into an empty or missing DIR
(72 px with a WCS and MAGZERO: :func:`bench.run.write_cutouts`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from pathlib import Path

import lensscore.pipeline as pipeline


def _old(workers: int, batch_size: int) -> int:
    return max(2, workers * pipeline.PREFETCH)


def main(argv=None) -> int:
    from lensscore import Scorer
    from lensscore.scan import scan
    from lensscore.sources import find_sources

    ap = argparse.ArgumentParser(prog="python -m bench.prefetch",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("--model", default="models/d4.onnx")
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--make", type=int, default=0, metavar="N",
                    help="first write N survey-like files into DIR (empty or missing)")
    a = ap.parse_args(argv)
    if a.make:
        from lensscore.config import DEFAULT_SIZE, PIXEL_SCALE_ARCSEC

        from .run import write_cutouts

        root = Path(a.data)
        if root.exists() and any(root.iterdir()):
            ap.error(f"--make writes into an empty directory; {root} holds files")
        write_cutouts(root, a.make, DEFAULT_SIZE, pixel_scale=PIXEL_SCALE_ARCSEC)
    sc = Scorer(a.model, threads=a.threads)
    srcs = find_sources([a.data], sc.bands)[:a.files]
    scan(None, scorer=sc, sources=srcs[:200], rotations=False)  # warm up
    arms = {"old": _old, "new": pipeline._in_flight}
    wall = {k: [] for k in arms}
    try:
        for r in range(a.rounds):
            for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
                pipeline._in_flight = arms[name]
                t0 = time.perf_counter()
                scan(None, scorer=sc, sources=srcs, rotations=False)
                wall[name].append(time.perf_counter() - t0)
            print(json.dumps({k: round(v[-1], 3) for k, v in wall.items()}), flush=True)
    finally:
        pipeline._in_flight = arms["new"]
    paired = [o / n for o, n in zip(wall["old"], wall["new"])]
    print(json.dumps({"files": len(srcs), "threads": a.threads,
                      "median_s": {k: round(statistics.median(v), 3) for k, v in wall.items()},
                      "old_over_new_median": round(statistics.median(paired), 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
