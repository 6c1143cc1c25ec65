"""``python -m export.symmetrise IN.onnx OUT.onnx``: make a rotation-invariant model exactly
invariant to mirror images too, by averaging it over the mirror.

For a network ``f`` that is invariant to the four 90° rotations (C4, the seed's rotational
layer), ``g(x) = (f(x) + f(F x)) / 2``, with ``F`` the mirror in x, is invariant to all 8
transforms of D4: ``F R^k F = R^-k``, so for ``T = R^k F`` the pair ``{T x, F T x}`` is
``{R^k F x, R^-k x}``, whose scores are those of ``{F x, x}``. The sum of two floats does not
depend on their order, so the invariance is exact in floating point too (tested). The cost is
two passes of the network, against eight for ``--tta d8`` of an unconstrained model.

The new graph feeds the cutouts and their mirror images as one batch of ``2N`` (each image is
scored on its own: scores stay batch-independent), then averages the two halves. The
``lensscore.*`` metadata is kept, but the source's measured numbers (test and real-data metrics,
export parity) move under ``symmetrised.source_metrics``: they are not this model's.
``invariance`` becomes D4 and ``symmetrised`` records what was done and the source's sha256.
Weights are copied as they are.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from lensscore.config import INVARIANCE_TOLERANCE, LOGIT_OUTPUT
from lensscore.modelmeta import EXPORT, REAL_METRICS, SYMMETRISED, TEST_METRICS, ModelMeta, \
    meta_key

__all__ = ["symmetrise_mirror", "symmetrise", "SOURCE_KEYS"]

#: metadata of the source model that describe what was measured of it (its test and real-data
#: metrics, its export's parity): moved under ``symmetrised.source_metrics``
SOURCE_KEYS = (TEST_METRICS, REAL_METRICS, EXPORT)


def symmetrise_mirror(model):
    """The ``onnx.ModelProto`` of ``(f(x) + f(mirror x)) / 2`` for a one-input, one-output
    NHWC model ``f`` (``image`` ``[N, H, W, C]`` -> ``score``)."""
    import onnx
    from onnx import helper, numpy_helper

    from .logit import add_logit_output, prune

    g = model.graph
    had_logit = [o for o in g.output if o.name == LOGIT_OUTPUT]
    for o in had_logit:  # the source's logit is not the average's: made again at the end
        g.output.remove(o)
    prune(g)
    if len(g.input) != 1 or len(g.output) != 1:
        raise ValueError("expected a model with one input and one output (and a logit)")
    inp, outp = g.input[0].name, g.output[0].name
    both, pair = inp + "__and_mirror", outp + "__pair"
    for n in g.node:
        n.input[:] = [both if i == inp else i for i in n.input]
        n.output[:] = [pair if o == outp else o for o in n.output]
    consts = [numpy_helper.from_array(np.array([-1], np.int64), "sym_start"),
              numpy_helper.from_array(np.array([np.iinfo(np.int64).min], np.int64), "sym_end"),
              numpy_helper.from_array(np.array([2], np.int64), "sym_axis"),  # W of NHWC
              numpy_helper.from_array(np.array([-1], np.int64), "sym_step"),
              numpy_helper.from_array(np.array(0.5, np.float32), "sym_half")]
    pre = [helper.make_node("Slice", [inp, "sym_start", "sym_end", "sym_axis", "sym_step"],
                            ["sym_mirrored"], name="sym_mirror"),
           helper.make_node("Concat", [inp, "sym_mirrored"], [both], axis=0, name="sym_concat")]
    post = [helper.make_node("Split", [pair], ["sym_a", "sym_b"], axis=0, name="sym_split"),
            helper.make_node("Add", ["sym_a", "sym_b"], ["sym_sum"], name="sym_add"),
            helper.make_node("Mul", ["sym_sum", "sym_half"], [outp], name="sym_mean")]
    nodes = pre + list(g.node) + post
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(consts)
    del g.value_info[:]  # shapes inside now hold 2N: let onnxruntime infer them again
    if had_logit:
        add_logit_output(model)
    onnx.checker.check_model(model)
    return model


def symmetrise(src, dst, *, n_check: int = 64, seed: int = 0) -> dict:
    """Write ``dst``: ``src`` averaged over the mirror, checked.

    Checks, on ``n_check`` synthetic cutouts through onnxruntime: the new score equals the mean
    of the source's scores of the cutout and its mirror image, and all 8 transforms of a cutout
    score the same (both to :data:`lensscore.config.INVARIANCE_TOLERANCE`). Refuses a source
    that is not rotation-invariant (the average over the mirror alone would not make it
    D4-invariant).

    Returns a summary (the measured differences).
    """
    import onnx

    from lensscore.scorer import Scorer

    src, dst = Path(src), Path(dst)
    base = Scorer(src)
    if base.invariance != "C4":
        raise ValueError(f"{src}: invariance is {base.invariance}; averaging over the mirror "
                         "makes only a rotation-invariant (C4) model invariant to D4")
    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    symmetrise_mirror(model)
    meta = ModelMeta.from_props(props, str(src))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    # the source's measured numbers are the source's: kept, but under its name, not shown as
    # this model's (the average over the mirror is another function)
    measured = {k: meta.extra[k] for k in SOURCE_KEYS if k in meta.extra}
    for k in SOURCE_KEYS:
        props.pop(meta_key(k), None)
    note = {"method": "mean of the scores of the cutout and of its mirror image",
            "source": src.name, "source_sha256": sha, "source_arch": meta.arch,
            "source_metrics": measured}
    props.update({meta_key("invariance"): "D4", meta_key("rotation_invariant"): "true",
                  meta_key(SYMMETRISED): json.dumps(note)})
    del model.metadata_props[:]
    for k, v in props.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    tmp = dst.with_name(dst.name + ".tmp")
    onnx.save_model(model, str(tmp))
    try:
        sym = Scorer(tmp)
        rng = np.random.default_rng(seed)
        x = rng.normal(0, 1, (n_check, len(sym.bands), sym.size, sym.size)).astype(np.float32)
        x[:, :, 2:sym.size // 3, sym.size // 2:] += 5  # off-centre and chiral
        prep = sym.prepare(x)
        want = 0.5 * (base.run(prep).astype(np.float64)
                      + base.run(np.ascontiguousarray(prep[..., ::-1])).astype(np.float64))
        got = sym.score_transforms(prep, preprocessed=True).astype(np.float64)
        d_mean = float(np.abs(got[:, 0] - want).max())
        spread = float(np.ptp(got, axis=1).max())
        if d_mean > INVARIANCE_TOLERANCE or spread > INVARIANCE_TOLERANCE:
            raise ValueError(f"the symmetrised model failed its checks: |score - mean| "
                             f"{d_mean:.3g}, spread over the 8 transforms {spread:.3g}")
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": str(dst), "source": str(src), "max_abs_diff_to_mean": d_mean,
            "transform_spread": spread, "n_check": n_check}


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m export.symmetrise",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="a rotation-invariant (C4) ONNX model")
    ap.add_argument("dst", help="the ONNX file to write")
    ap.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    a = ap.parse_args(argv)
    if Path(a.dst).exists() and not a.overwrite:
        ap.exit(2, f"error: {a.dst} exists; pass --overwrite to replace it\n")
    from .graph import error_line

    try:
        r = symmetrise(a.src, a.dst)
    except Exception as exc:  # noqa: BLE001 -- protobuf, checker, onnxruntime: one line each
        ap.exit(1, error_line(a.src, exc) + "\n")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    from train._extra import run

    raise SystemExit(run(main))
