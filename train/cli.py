"""``python -m train``: fit, evaluate and predict with the HOLISMOKES CNNs (needs the [train] extra)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lensscore.config import ARCH_INVARIANCE, DEFAULT_THRESHOLD

from .finetune import FinetuneConfig
from .fit import FitConfig

#: the defaults of `fit`'s options: FitConfig's, the one place they are written
_FIT = FitConfig()
_FT = FinetuneConfig()

app = typer.Typer(name="train", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  # help texts are plain text: "[default: …]" must not be read as markup
                  rich_markup_mode=None,
                  help="Train and evaluate lens finders (HOLISMOKES CNN, RotationalConv2D) on "
                       "directories of FITS cutouts.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Log what each step does (INFO messages).")] = False):
    # TensorFlow's C++ log: without -v not even its errors, which on a CPU machine with CUDA
    # libraries are "failed call to cuInit" on every run; Python errors still surface
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if verbose else "3")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_time=False, show_path=False)],
                        force=True)


def _fail(msg: str, code: int = 1):
    err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def fit(
    data: Annotated[Path, typer.Option(help="Directory of labelled FITS cutouts "
                                            "(lenses/ and nonlenses/, or lens_*/nonlens_*).",
                                       exists=True, file_okay=False)],
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory to create (or resume).")],
    arch: Annotated[str, typer.Option(
        help="d4: exactly invariant to 90° rotations and mirror images (the default); rot: the "
             "seed's rotational network (rotations only); baseline: the HOLISMOKES CNN.")] = _FIT.arch,
    epochs: Annotated[Optional[int], typer.Option(
        min=1, help=f"Epoch limit [default: {_FIT.epochs}]; with --resume, raises the run's "
                    "limit.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = _FIT.batch_size,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = _FIT.lr,
    l2: Annotated[float, typer.Option(help="L2 weight decay.")] = _FIT.l2,
    conv_l2: Annotated[Optional[float], typer.Option(
        help="L2 on conv kernels if different (the seed's code: 1e-3).")] = None,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.99)] = _FIT.dropout,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs).",
                                          min=1)] = _FIT.patience,
    augment: Annotated[Optional[bool], typer.Option(
        help="Random 90° rotations and flips of the training cutouts [default: on unless the "
             "network is invariant to both, i.e. off for d4].")] = None,
    seed: Annotated[int, typer.Option()] = _FIT.seed,
    rot_mode: Annotated[str, typer.Option(help="RotationalConv2D computation: kernel|input "
                                               "(same function).")] = _FIT.rot_mode,
    jit: Annotated[bool, typer.Option(help="XLA-compile the training step.")] = _FIT.jit,
    survey: Annotated[str, typer.Option(
        help="Survey preset of the data (hsc, ps1, ...): its pixel scale, zero point and cutout "
             "size; export writes them into the model.")] = _FIT.survey,
    init_from: Annotated[Optional[Path], typer.Option(
        help="Start from these weights instead of a random initialisation: an exported .onnx "
             "model of the same --arch (e.g. models/d4.onnx; checked for parity) or a Keras "
             ".keras/.weights.h5 file.", exists=True, dir_okay=False)] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run.")] = False,
    stop_after: Annotated[Optional[int], typer.Option(
        help="Stop after this many epochs in this call (train in several sessions).")] = None,
):
    """Train a model with the seed's recipe; checkpoints every epoch (resume with --resume)."""
    from .data import SplitError
    from .fit import fit as run_fit

    if arch not in ARCH_INVARIANCE:
        _fail(f"unknown --arch {arch!r}: {', '.join(ARCH_INVARIANCE)}", 2)
    from .presets import preset

    try:
        size = preset(survey)["size"]
    except ValueError as exc:
        _fail(str(exc), 2)
    cfg = FitConfig(arch=arch, epochs=epochs or _FIT.epochs, batch_size=batch_size, lr=lr, l2=l2,
                    conv_l2=conv_l2, dropout=dropout, patience=patience, augment=augment,
                    seed=seed, rot_mode=rot_mode, jit=jit, survey=survey, size=size,
                    init_from=str(init_from) if init_from else None)
    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
                    console=err)
    task = prog.add_task("epoch", total=None, loss=float("nan"))

    def on_batch(epoch, b, n, loss):
        prog.update(task, description=f"epoch {epoch + 1}", completed=b, total=n, loss=loss)

    def on_epoch(row):
        prog.console.print(
            f"epoch {row['epoch']}: loss {row['loss']:.4f}, val_loss {row['val_loss']:.4f}, "
            f"val_acc {row['val_accuracy']:.4f}, {row['samples_per_s']:.1f} samples/s",
            highlight=False)

    try:
        with prog:
            hist = run_fit(data, out_dir, cfg, resume=resume, stop_after=stop_after,
                           epochs=epochs if resume else None, on_batch=on_batch, on_epoch=on_epoch)
    except (FileExistsError, FileNotFoundError, SplitError, ValueError) as exc:
        _fail(str(exc), 2 if isinstance(exc, FileExistsError) else 1)
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]: the last finished epoch is checkpointed in "
                  f"{out_dir}; continue with --resume", highlight=False)
        raise typer.Exit(130)
    if (Path(out_dir) / "model.keras").exists():
        out.print(f"trained {len(hist)} epochs; model: {Path(out_dir) / 'model.keras'}")
    else:
        out.print(f"stopped after epoch {len(hist)}; continue with --resume")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="Run directory made by `fit`.", exists=True,
                                            file_okay=False)],
    data: Annotated[Optional[Path], typer.Option(help="Data set [default: the run's].")] = None,
    truth: Annotated[Optional[Path], typer.Option(
        help="Truth catalog for completeness [default: DATA/truth.ecsv if present].")] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = DEFAULT_THRESHOLD,
):
    """Metrics on the test split (never trained on): accuracy, AUC, TPR@FPR, TPR0, rotations."""
    from .data import SplitError
    from .evaluate import evaluate as run_eval

    try:
        r = run_eval(run_dir, data, threshold=threshold, truth=truth)
    except (SplitError, FileNotFoundError) as exc:
        _fail(str(exc))
    m, s = r["metrics"], r["rotation_stability"]
    t = Table(title=f"{r['arch']} on the test split ({m['n']} cutouts)", title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k in ("accuracy", "roc_auc", "tpr_at_fpr_1pct", "tpr_at_fpr_0.1pct", "tpr0"):
        t.add_row(k, f"{m[k]:.4f}")
    t.add_row("confusion tp/fp/tn/fn", f"{m['tp']}/{m['fp']}/{m['tn']}/{m['fn']}")
    for k in ("std_mean", "std_p99", "std_max", "flip_fraction"):
        t.add_row(f"rotation {k}", f"{s[k]:.4g}")
    out.print(t)
    out.print(f"wrote {Path(run_dir) / 'metrics.json'} and {Path(run_dir) / 'report.md'}")


@app.command()
def plots(
    runs: Annotated[list[Path], typer.Argument(help="Evaluated run directories to compare.",
                                               metavar="RUN",
                                               exists=True, file_okay=False)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for the PNGs.")],
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = DEFAULT_THRESHOLD,
):
    """Figures comparing runs: training curves, ROC, score histograms, rotation std, completeness."""
    from .plots import plot_runs

    for r in runs:
        if not (r / "config.json").exists():
            _fail(f"{r}: not a run directory (no config.json)")
        if not (r / "test_scores.csv").exists():
            err.print(f"[yellow]{r}: not evaluated (no test_scores.csv); run `python -m train "
                      f"evaluate {r}` for the score plots[/]", highlight=False)
    for p in plot_runs(runs, out_dir, threshold=threshold):
        out.print(f"wrote {p}", highlight=False)


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="A .keras model (e.g. runs/NAME/model.keras).",
                                          exists=True, dir_okay=False)],
    files: Annotated[list[Path], typer.Argument(help="FITS cutouts.", exists=True,
                                                metavar="FILE")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
):
    """Score single FITS images with a Keras model (the seed's prediction function)."""
    import keras
    import numpy as np

    from lensscore.errors import CutoutError
    from lensscore.io import load_cutout
    from lensscore.preprocess import preprocess

    from . import models  # noqa: F401  (registers RotationalConv2D)

    m = keras.saving.load_model(model, compile=False)
    size = int(m.input_shape[1])
    spec, bands = _run_spec(model)
    results, failed = [], 0
    for f in files:
        try:
            c = load_cutout(f, bands, size)
            x = np.transpose(preprocess(c.data, spec), (1, 2, 0))[None]
            results.append({"path": str(f), "score": float(np.asarray(m(x)).reshape(-1)[0])})
        except CutoutError as exc:
            failed += 1
            results.append({"path": str(f), "error": exc.reason})
    if as_json:
        out.print_json(json.dumps(results))
    else:
        for r in results:
            out.print(f"{r['path']}\t" + (f"{r['score']:.6f}" if "score" in r else
                                          f"error: {r['error']}"), highlight=False)
    raise typer.Exit(3 if failed else 0)


@app.command()
def simulate(
    n: Annotated[int, typer.Option(min=2, help="Cutouts to make (half lenses, half not).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write (lenses/, "
                                                       "nonlenses/, truth.ecsv).")],
    seed: Annotated[int, typer.Option(help="Same seed, same files (whatever --workers).")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="Processes.")] = 1,
    preview_png: Annotated[Optional[Path], typer.Option(
        "--preview", help="Also write a Lupton-RGB grid of examples per subtype (PNG).")] = None,
    check: Annotated[bool, typer.Option(
        help="Measure back noise, PSF FWHM and a trivial classifier's accuracy.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Write into a directory that has cutouts.")]
    = False,
    survey: Annotated[str, typer.Option(
        help="Survey preset: hsc, ps1, des, lsst or kids (pixel scale, seeing, depth, zero "
             "point; the cutout covers ~12\").")] = "hsc",
    real: Annotated[Optional[Path], typer.Option(
        help="Real cutouts (lenses/, nonlenses/) to show next to simulated ones in "
             "OUT/real_vs_sim.jpg, at one stretch.", exists=True, file_okay=False)] = None,
    deflectors: Annotated[str, typer.Option(
        help="uniform: theta_E drawn in 0.75-2.5\" (the shipped models' sets); sis-vdf: "
             "theta_E from a velocity-dispersion function and redshifts, deflector light and "
             "source sizes consistent with them (train/population.py).")] = "uniform",
    los: Annotated[float, typer.Option(
        "--los", min=0.0, help="Line-of-sight field galaxies per arcmin^2 (i 20-25), anywhere in "
                               "the cutout, both classes; 0 for none.")] = 0.0,
    deflector_max_mag: Annotated[Optional[float], typer.Option(
        help="With sis-vdf: the faintest deflector (i mag), for lens and non-lens LRGs alike "
             "(a search starts from catalogued galaxies) [default: no limit].")] = None,
    handedness: Annotated[str, typer.Option(
        help="both: spiral arms wind either way, half each, as on the sky; one: all the same "
             "way (the sets of the models trained before issue 30).")] = "both",
):
    """Simulate survey-like (g, r, i) mock lenses and hard negatives with lenstronomy."""
    import time

    from .simulate import SimConfig, compare_real, preview, sim_check, simulate

    try:
        cfg = SimConfig.for_survey(survey, deflectors=deflectors, los_per_arcmin2=los,
                                   deflector_max_mag=deflector_max_mag, handedness=handedness)
    except ValueError as exc:
        _fail(str(exc), 2)

    if (out_dir / "truth.ecsv").exists() and not overwrite:
        _fail(f"{out_dir} holds a simulation already; use --overwrite or another --out", 2)
    prog = Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err)
    task = prog.add_task("sim", total=n)
    t0 = time.perf_counter()
    try:
        with prog:
            simulate(out_dir, n, seed=seed, workers=workers, cfg=cfg,
                     progress=lambda done, total: prog.update(task, completed=done))
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: files written so far are complete; rerun to finish",
                  highlight=False)
        raise typer.Exit(130)
    dt = time.perf_counter() - t0
    out.print(f"wrote {n} cutouts and {out_dir / 'truth.ecsv'} in {dt:.1f} s "
              f"({n / dt:.1f} cutouts/s, {workers} workers)", highlight=False)
    if preview_png is not None:
        out.print(f"preview: {preview(out_dir, preview_png)}", highlight=False)
    if real is not None:
        png = compare_real(real, out_dir / "real_vs_sim.jpg", cfg, seed=seed)
        out.print(f"real vs simulated: {png}", highlight=False)
    if check:
        rep = sim_check(out_dir)
        rep["cutouts_per_s"] = n / dt
        (out_dir / "simulation_check.json").write_text(json.dumps(rep, indent=1))
        out.print_json(json.dumps(rep))


@app.command()
def paint(
    data: Annotated[Path, typer.Argument(
        help="Real cutouts: a directory (lenses/, nonlenses/) or a scan catalog; the non-lenses "
             "are painted onto.", exists=True)],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write: lenses/ (painted), "
                                                       "nonlenses/ (the hosts unpainted), "
                                                       "truth.ecsv, painted.jpg.")],
    n: Annotated[int, typer.Option(min=1, help="Paintings to make, spread over the hosts.")]
    = 20000,
    survey: Annotated[str, typer.Option(help="Survey preset: the grid the cutouts are read "
                                             "onto, the PSF and noise of the arcs (hsc, ps1, "
                                             "des, lsst, kids).")] = "hsc",
    seed: Annotated[int, typer.Option(help="Each painting is a pure function of (host id, "
                                           "seed, its number).")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="Processes.")] = 1,
    detections: Annotated[bool, typer.Option(
        help="Also paint onto the sources detected around the lenses (per-band stamps).")]
    = False,
    labels: Annotated[Optional[Path], typer.Option(
        help="Labels by id (a CSV with id and label, or the gallery's grades CSV).",
        exists=True, dir_okay=False)] = None,
    overwrite: Annotated[bool, typer.Option(help="Write into a directory that has a "
                                                 "painting already.")] = False,
    max_mag: Annotated[float, typer.Option(
        help="Faintest host: i magnitude in a 2.5\" aperture (a deflector bright enough to "
             "lens visibly at the survey's seeing; a deeper survey's catalogue may go "
             "fainter).")] = _FT.paint_max_mag,
):
    """Paint simulated arcs onto real non-lens cutouts (HOLISMOKES): positives with real
    deflector light, neighbours, noise and sky, beside the same cutouts unpainted."""
    import time

    from .data import labelled_sources
    from .finetune import read_labels
    from .paint import PaintConfig, detections_around, preview, read_hosts, write_painted
    from .paint import paint as run_paint
    from .presets import read_options
    from .simulate import SimConfig

    if (out_dir / "truth.ecsv").exists() and not overwrite:
        _fail(f"{out_dir} holds a painting already; use --overwrite or another --out", 2)
    try:
        cfg = SimConfig.for_survey(survey)
        options = read_options(survey, cfg.bands, cfg.size)
        srcs = labelled_sources(data, cfg.bands, read_labels(labels) if labels else None)
    except (ValueError, OSError) as exc:
        _fail(str(exc), 2)
    lenses = [s for s in srcs if s.label == 1]
    hosts_src = [s for s in srcs if s.label == 0]
    if detections:
        hosts_src += detections_around(srcs, cfg.bands, options)
    with err.status(f"reading {len(hosts_src)} non-lenses"):
        hosts, skipped = read_hosts(hosts_src, cfg, options)
    pc = PaintConfig(max_mag=max_mag)
    ok = [h for h in hosts if h.paintable(pc)]
    err.print(f"{len(ok)} of {len(hosts)} non-lenses are galaxies of i <= {pc.max_mag:g} to "
              f"paint onto ({len(skipped)} unreadable)", highlight=False)
    if not ok:
        _fail("nothing to paint onto", 1)
    prog = Progress(TextColumn("painting"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err)
    task = prog.add_task("paint", total=n)
    t0 = time.perf_counter()
    try:
        with prog:
            rows = run_paint(ok, n, seed, cfg, pc, workers=workers,
                             progress=lambda done, total: prog.update(task, completed=done))
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: nothing written", highlight=False)
        raise typer.Exit(130)
    dt = time.perf_counter() - t0
    counts = write_painted(out_dir, rows, ok, cfg, overwrite=overwrite)
    used = len({hid for hid, _, img, _ in rows if img is not None})
    out.print(f"painted {counts['painted']} of {n} ({counts['failed']} failed the cuts) onto "
              f"{used} hosts in {dt:.1f} s ({n / dt:.0f}/s, {workers} workers): {out_dir}",
              highlight=False)
    real = _readable_lenses(lenses, cfg, options, 8)
    if real:
        png = preview(real, rows, ok, out_dir / "painted.jpg")
        out.print(f"real lenses beside painted cutouts: {png}", highlight=False)


def _readable_lenses(sources, cfg, options, n: int) -> list:
    """Up to ``n`` of the labelled lenses as read (for the picture); unreadable ones skipped."""
    from lensscore.errors import CutoutError
    from lensscore.io import load_source

    out = []
    for s in sources:
        try:
            out.append(load_source(s, cfg.bands, cfg.size, options).data)
        except (CutoutError, ValueError, OSError):
            continue
        if len(out) == n:
            break
    return out


@app.command("import-device")
def import_device(
    results: Annotated[Path, typer.Argument(help="results.json written by "
                                                 "scripts/device_train.py (weights beside it).",
                                            exists=True, dir_okay=False)],
    job: Annotated[str, typer.Argument(help="Job name in it, e.g. hsc_rot or ps1_rot.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory to write.")],
):
    """Turn a model trained on a GPU machine into a run directory (then `python -m export`)."""
    import json as _json

    from .device import import_run

    if (out_dir / "model.keras").exists():
        _fail(f"{out_dir} holds a model already", 2)
    jobs = _json.loads(results.read_text()).get("jobs", {})
    if job not in jobs or "weights" not in jobs[job]:
        _fail(f"{results}: no trained job {job!r} (has {', '.join(jobs) or 'none'})", 2)
    out.print(f"run directory: {import_run(results, job, out_dir)}", highlight=False)


@app.command()
def finetune(
    run_dir: Annotated[Path, typer.Argument(help="A finished run trained on simulations.",
                                            exists=True, file_okay=False)],
    real: Annotated[Path, typer.Option(
        help="Labelled real cutouts: a directory (lenses/, nonlenses/) or a scan catalog "
             "(with --labels, or its label column).", exists=True)],
    out_dir: Annotated[Path, typer.Option("--out", help="New run directory.")],
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds (grouped by sky "
                                                   "position: --group-radius).")] = 5,
    epochs: Annotated[int, typer.Option(min=1)] = 8,
    lr: Annotated[float, typer.Option()] = 1e-4,
    n_sim: Annotated[int, typer.Option(min=0, help="Simulated cutouts of the run mixed in.")]
    = _FT.n_sim,
    balance_nonlenses: Annotated[bool, typer.Option(
        help="Give each kind of real non-lens (nonlenses/src, nonlenses/sky) an equal share "
             "of the non-lenses' weight, however many of each there are.")] = False,
    labels: Annotated[Optional[Path], typer.Option(
        help="Labels by id: a CSV with id and label (0/1), or the gallery's grades CSV "
             "(grade 2-3 -> lens, 0 -> not, 1 left out).", exists=True, dir_okay=False)] = None,
    n_paint: Annotated[int, typer.Option(
        min=0, help="Arcs painted onto the real non-lenses (python -m train paint), mixed in; "
                    "each fold trains on its own hosts' paintings only.")] = 0,
    detections: Annotated[bool, typer.Option(
        help="Add the sources detected around each lens stamp as real non-lenses.")] = False,
    recentre_lenses: Annotated[bool, typer.Option(
        help="Cut each lens again centred on its detection (6 sigma in r+i, within 2\"), as "
             "non-lenses cut on detections are, not at its catalogued position.")] = False,
    group_radius: Annotated[float, typer.Option(
        min=0.0, help="Arcsec: cutouts closer than this share a fold (friends of friends).")]
    = 30.0,
    workers: Annotated[int, typer.Option(min=1, help="Processes for painting.")] = 1,
    paint_max_mag: Annotated[float, typer.Option(
        help="With --n-paint: the faintest host, as paint's --max-mag.")] = _FT.paint_max_mag,
):
    """Fine-tune on real cutouts; real-data metrics by k-fold cross-validation only, in folds
    grouped by sky position."""
    from .finetune import FinetuneConfig, read_labels
    from .finetune import finetune as run_ft

    prog = Progress(TextColumn("fine-tuning"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err)
    task = prog.add_task("ft", total=folds + 1)
    t0 = time.monotonic()

    def on_step(k, n):
        prog.update(task, completed=k)
        if not err.is_terminal:  # a log file shows no bar: a line per trained model instead
            what = f"fold {k} of {folds}" if k <= folds else "the final model (all cutouts)"
            err.print(f"fine-tuning: {what} done, {(time.monotonic() - t0) / 60:.1f} min",
                      highlight=False)
    try:
        with prog:
            fc = FinetuneConfig(folds=folds, epochs=epochs, lr=lr, n_sim=n_sim,
                                balance_nonlenses=balance_nonlenses, n_paint=n_paint,
                                detections=detections, group_radius=group_radius,
                                recentre_lenses=recentre_lenses,
                                paint_max_mag=paint_max_mag)
            r = run_ft(run_dir, real, out_dir, fc,
                       progress=on_step,
                       labels=read_labels(labels) if labels else None, workers=workers)
    except FileExistsError as exc:
        _fail(str(exc), 2)
    except ValueError as exc:
        _fail(str(exc), 2)
    t = Table(title=f"real data, {r['n_real']} cutouts: before vs {folds}-fold cross-validated",
              title_justify="left")
    for c in ("metric", "before", "fine-tuned (CV)", "mirror-averaged (CV)"):
        t.add_column(c)
    for k in ("roc_auc", "tpr_at_fpr_1pct", "tpr_at_fpr_0.1pct", "accuracy"):
        t.add_row(k, f"{r['before'][k]:.4f}", f"{r['cv'][k]:.4f}",
                  f"{r['cv_mirror_averaged'][k]:.4f}")
    fs = r["cv"].get("field_sources_above_threshold")
    if fs is not None:
        t.add_row("field sources >= threshold", "", f"{fs:.4f}")
    out.print(t)


def _run_spec(model_path: Path):
    """Preprocessing and bands of the run a model belongs to (defaults otherwise)."""
    from lensscore.config import DEFAULT_BANDS
    from lensscore.preprocess import DEFAULT_SPEC, PreprocessSpec

    from .fit import read_config

    if (model_path.parent / "config.json").exists():
        d = read_config(model_path.parent)
        return PreprocessSpec.from_json(d["preprocess"]), tuple(d["bands"])
    return DEFAULT_SPEC, DEFAULT_BANDS


def main():
    app()
