"""``python -m export MODEL.keras OUT.onnx``: convert, describe, prove parity (needs [train])."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

app = typer.Typer(name="export", add_completion=False, pretty_exceptions_enable=False,
                  # help texts are plain text: "[default: …]" must not be read as markup
                  rich_markup_mode=None,
                  no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="Keras model, e.g. runs/NAME/model.keras.")],
    output: Annotated[Path, typer.Argument(help="ONNX file to write, e.g. models/rot.onnx.")],
    run: Annotated[Optional[Path], typer.Option(
        help="Run directory [default: the model's directory if it is one].")] = None,
    data: Annotated[Optional[Path], typer.Option(
        help="The run's data set, if it moved (parity runs on its test split).")] = None,
    weights: Annotated[str, typer.Option(
        help="Weight storage: float32, float16 or int8 (dense layers; compute stays "
             "float32).")] = "float32",
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    n_parity: Annotated[int, typer.Option(min=1, help="Cutouts in the parity check (at least).")]
    = 256,
    max_diff: Annotated[Optional[float], typer.Option(
        help="Bound on max |Δscore| vs Keras [default: 1e-5; 0.02 for compressed weights].")]
    = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Log what each step does (INFO messages).")] = False,
):
    """Export a Keras lens finder to ONNX; the file is written only if parity holds.

    The RotationalConv2D becomes four Conv branches into Max (no control flow). Parity: Keras vs
    onnxruntime on the run's test split (or synthetic cutouts), max |Δscore| <= 1e-5, and for
    rotational models the four rotations' scores agree to <= 1e-6.
    """
    # TensorFlow's C++ log: without -v not even its errors, which on a CPU machine with CUDA
    # libraries are "failed call to cuInit" on every run; Python errors still surface
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if verbose else "3")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_time=False, show_path=False)],
                        force=True)
    from .convert import ExportError, export_model

    try:
        with err.status(f"exporting {model} (conversion takes ~20 s) ..."):
            r = export_model(model, output, run_dir=run, data_dir=data, weights=weights,
                             opset=opset, n_parity=n_parity, max_diff=max_diff,
                             overwrite=overwrite)
    except ExportError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if as_json:
        out.print_json(json.dumps(r.summary()))
        return
    t = Table(title=f"export {r.arch} -> {r.path}", title_justify="left")
    t.add_column("check")
    t.add_column("value", justify="right")
    t.add_row("opset / weights / size", f"{r.opset} / {r.weights} / {_fmt_bytes(r.size_bytes)}")
    t.add_row("parity inputs", f"{r.n_parity} ({r.parity_source})")
    t.add_row("max |Δscore| float32 graph", f"{r.float32_max_abs_diff:.2e}")
    if r.weights != "float32":
        t.add_row(f"max |Δscore| {r.weights} weights", f"{r.max_abs_diff:.2e}")
        t.add_row(f"mean |Δscore| {r.weights} weights", f"{r.mean_abs_diff:.2e}")
    t.add_row("invariance claimed", r.invariance)
    t.add_row("rotation spread (onnxruntime)", f"{r.rotation_spread:.2e}"
              + ("" if r.rotation_invariant else " (not a rotational model)"))
    t.add_row("mirror spread (onnxruntime)", f"{r.mirror_spread:.2e}"
              + ("" if r.invariance == "D4" else " (not mirror-invariant)"))
    if r.accuracy_keras is not None:
        t.add_row("test accuracy keras / onnx", f"{r.accuracy_keras:.4f} / {r.accuracy_onnx:.4f}")
    out.print(t)
    out.print(f"wrote {r.path}; `lensscore info {r.path}` shows its metadata", highlight=False)


def main():
    app()
