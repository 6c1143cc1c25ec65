"""``python -m export.stamp MODEL.onnx --real CATALOG --name DATA``: record real-data metrics.

Adds ``lensscore.real_metrics`` to a model's metadata (merge, never overwrite; weights untouched)
from a ``lensscore scan`` catalog (any format it writes) of labelled real cutouts:
:func:`lensscore.metrics.real_metrics`, i.e. ROC AUC of lenses against all non-lenses, TPR at FPR
1 % and 0.1 %, accuracy, and for each non-lens group (``src``: field sources, ``sky``: random sky
positions) its false-positive rate at the threshold and the ROC AUC of the lenses against it.
For a model that was trained or fine-tuned on those cutouts, use the cross-validated numbers
instead (``train.finetune``): this command refuses a model whose metadata says it saw the data.

``python -m export.stamp MODEL.onnx --trained-on DIR --name DATA`` records instead what the model
was trained on (``lensscore.trained_on``: each cutout's digest and the sky position of its centre),
so that a scan marks those cutouts ``in_training``; ``--update`` adds to a record made before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lensscore.catalog import read_catalog
from lensscore.metrics import real_metrics
from lensscore.modelmeta import REAL_METRICS, TRAINED_ON, ModelMeta, meta_key

__all__ = ["stamp", "stamp_trained_on", "training_digests"]


def stamp(model_path, catalog, name: str) -> dict:
    """Write ``lensscore.real_metrics`` into ``model_path`` (atomically); return the metrics."""
    import onnx

    from .graph import merge_metadata

    model = onnx.load(model_path)
    meta = ModelMeta.from_props({p.key: p.value for p in model.metadata_props}, str(model_path))
    if meta.training.get("finetune"):
        raise ValueError(f"{model_path} was fine-tuned on real cutouts: its real-data numbers must "
                         "be the cross-validated ones (train.finetune), not a scan of its own data")
    m = real_metrics(read_catalog(catalog), name)
    kept = merge_metadata(model, {meta_key(REAL_METRICS): json.dumps(m)})
    if kept:
        raise ValueError(f"{model_path} has real_metrics already; not overwritten")
    tmp = Path(str(model_path) + ".tmp")
    onnx.save_model(model, tmp)
    os.replace(tmp, model_path)
    return m


def training_digests(model_path, data) -> tuple[list[str], list[tuple[float, float]]]:
    """The digests (:func:`lensscore.trained.cutout_digest`) of every readable cutout under
    ``data`` as a scan with ``model_path`` reads it (its grid, zero points, orientation), and
    their centres' sky positions (ra, dec in degrees; NaN without a WCS)."""
    from lensscore.errors import CutoutError
    from lensscore.io import find_sources, load_source
    from lensscore.scorer import Scorer
    from lensscore.trained import cutout_digest

    sc = Scorer(model_path, threads=1)
    opts = sc.read_options()
    out, pos = [], []
    for src in find_sources(data, sc.bands):
        try:
            c = load_source(src, sc.bands, sc.size, opts, wcs=False)
        except CutoutError:
            continue  # a scan gives it an error row: it was not trained on either
        out.append(cutout_digest(c.data))
        pos.append((float(c.ra), float(c.dec)))  # NaN without a WCS
    return out, pos


def stamp_trained_on(model_path, data, name: str, *, update: bool = False) -> dict:
    """Write ``lensscore.trained_on`` (the digests and sky positions of the cutouts under
    ``data``, which the model was trained or fine-tuned on) into ``model_path``, atomically; a
    scan then marks those rows ``in_training`` and keeps them out of its metrics.

    ``update``: the model records ``trained_on`` already; keep its digests, positions and
    radius, add those of ``data`` (for a record made before positions were kept); the record's
    name becomes ``OLD + name`` where the two differ. A malformed old record is refused."""
    import onnx

    from lensscore.trained import (SAME_OBJECT_ARCSEC, trained_digests, trained_on_record,
                                   trained_positions)

    from .graph import merge_metadata

    digests, positions = training_digests(model_path, data)
    if not digests:
        raise ValueError(f"{data}: no readable cutouts")
    model = onnx.load(model_path)
    key = meta_key(TRAINED_ON)
    old = [p for p in model.metadata_props if p.key == key]
    if old and not update:
        raise ValueError(f"{model_path} records trained_on already; not overwritten")
    kept, radius = None, SAME_OBJECT_ARCSEC
    if old:
        was = {TRAINED_ON: json.loads(old[0].value)}
        try:
            kept = trained_positions(was)
        except ValueError as exc:
            raise ValueError(f"{model_path}: {exc}; not updated") from None
        known = sorted(trained_digests(was))
        digests += known
        positions += [(float("nan"), float("nan"))] * len(known)
        radius = kept.radius_arcsec if kept is not None else radius
        was_name = was[TRAINED_ON].get("data")
        name = name if was_name in (None, name) else f"{was_name} + {name}"
        model.metadata_props.remove(old[0])
    rec = trained_on_record(digests, name, positions, radius,
                            kept=kept.radec() if kept is not None else ())
    merge_metadata(model, {key: json.dumps(rec)})
    tmp = Path(str(model_path) + ".tmp")
    onnx.save_model(model, tmp)
    os.replace(tmp, model_path)
    return {k: v for k, v in rec.items() if k not in ("digests", "positions")}


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m export.stamp", description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--real", help="lensscore scan catalog (.csv, .ecsv, ...) with labels: "
                                   "record its metrics (real_metrics) for a model never "
                                   "trained on it")
    ap.add_argument("--trained-on", help="directory of the real cutouts the model was trained "
                                         "or fine-tuned on: record their digests (trained_on)")
    ap.add_argument("--name", required=True, help="name of the real data set")
    ap.add_argument("--update", action="store_true",
                    help="with --trained-on: the model records trained_on already; keep its "
                         "digests, add those and the sky positions of DIR")
    a = ap.parse_args(argv)
    if bool(a.real) == bool(a.trained_on):
        ap.error("give one of --real CATALOG or --trained-on DIR")
    if a.trained_on:
        print(json.dumps(stamp_trained_on(a.model, a.trained_on, a.name, update=a.update),
                         indent=1))
    else:
        print(json.dumps(stamp(a.model, a.real, a.name), indent=1))
    return 0


if __name__ == "__main__":
    from train._extra import run

    raise SystemExit(run(main))
