"""The ``lensscore`` command: thin typer layer over :mod:`lensscore.scan` and :mod:`lensscore.scorer`.

Results go to stdout; progress, warnings and errors to stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.markup import escape
from rich.table import Table

from ._version import __version__
from .config import DEFAULT_BATCH_SIZE, DEFAULT_THRESHOLD
from .grid import MAX_BAD_FRACTION
from .errors import LensscoreError, ModelError

app = typer.Typer(
    name="lensscore",
    help="Find strong gravitational lenses in multi-band FITS cutouts with ONNX CNNs "
         "(rotation-invariant, no TensorFlow needed).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # help texts are plain text: "[default: …]" and "[dask]" must not be read as markup
    rich_markup_mode=None,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _version(value: bool):
    if value:
        out.print(f"lensscore {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details to stderr.")]
    = False,
):
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_time=False, show_path=False)],
                        force=True)


def _fail(msg: str, code: int):
    # the message is text, not markup: "pip install 'lensscore[parquet]'" must keep its extra
    err.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


@app.command()
def scan(
    paths: Annotated[Optional[list[Path]], typer.Argument(
        metavar="PATH",
        help="FITS files and/or directories (searched recursively); or none, with --catalog.",
        exists=True, show_default=False)] = None,
    model: Annotated[Optional[list[Path]], typer.Option(
        "--model", "-m", metavar="<model>",
        help="ONNX model file, or a shipped model by name (`lensscore "
        "models` lists them: d4, ps1, rot, baseline) [default: the shipped d4, the HSC model "
        "invariant to rotations and mirror images, or $LENSSCORE_MODEL]; give it "
        "two or more times for a committee (scores combined by --combine, each model's in "
        "score_<name>).")] = None,
    combine: Annotated[str, typer.Option(
        help="How a committee's scores are combined: mean, median or min.")] = "mean",
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Catalog to write, one row per input, flushed every batch: "
        ".csv, .ecsv, .fits or .parquet.")] = None,
    labels: Annotated[Optional[Path], typer.Option(
        help="Table with id,label (1 lens, 0 non-lens); default: from directory names "
        "(lenses/, nonlenses/, lens_*/, nonlens_*/).", exists=True, dir_okay=False)] = None,
    rotations: Annotated[Optional[bool], typer.Option(
        "--rotations/--no-rotations",
        help="Score each cutout rotated by 90, 180, 270 degrees and mirrored too (the 8 "
        "transforms of the sky's symmetry) and report rotation and mirror stability (8x the "
        "work). Default (neither flag): all cutouts for models that are not invariant to both; "
        "for models whose metadata says they are (D4), a deterministic sample (every 256th by "
        "id hash; about 8 in small scans) that checks the claim.",
        show_default=False)] = None,
    tta: Annotated[str, typer.Option(
        help="Test-time augmentation: none; rot4 (the score is the mean over the four 90 "
             "degree rotations: exactly rotation-invariant with any model); d8 (the mean over "
             "the rotations and their mirror images: exactly invariant to both). Either scores "
             "all 8 transforms (8x the work) and writes them too.")] = "none",
    threshold: Annotated[float, typer.Option(
        help="Score at or above which a cutout counts as a lens.", min=0.0, max=1.0)]
    = DEFAULT_THRESHOLD,
    batch_size: Annotated[int, typer.Option(help="Images per inference batch.", min=1)]
    = DEFAULT_BATCH_SIZE,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    threads: Annotated[Optional[int], typer.Option(
        help="Inference threads [default: all cores].", min=1)] = None,
    workers: Annotated[int, typer.Option(
        help="FITS loaders beside inference (1: a thread; more: processes).", min=1)] = 1,
    resume: Annotated[bool, typer.Option(
        help="Continue an interrupted scan: skip inputs already in --output.")] = False,
    retry_errors: Annotated[bool, typer.Option(
        help="With --resume: score again the inputs whose rows are errors (e.g. a transient "
             "NFS failure); their new rows are appended.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --output.")] = False,
    top: Annotated[int, typer.Option(help="Rows of the top-score table printed.", min=0)] = 20,
    bands: Annotated[Optional[str], typer.Option(
        help="Bands, e.g. g,r,i, for a model without lensscore metadata.")] = None,
    size: Annotated[Optional[int], typer.Option(
        help="Cutout size in pixels, for a model without lensscore metadata.", min=1)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    gallery_html: Annotated[Optional[Path], typer.Option(
        "--gallery", help="Also write an HTML gallery of the top 100 scores at the end "
        "(replaced only with --overwrite or --resume).",
        dir_okay=False)] = None,
    shard: Annotated[Optional[str], typer.Option(
        help="Score only shard K of N (K/N, e.g. 3/8; ids hashed, independent of listing "
             "order); join the catalogs with `lensscore merge`.")] = None,
    dask: Annotated[Optional[str], typer.Option(
        help="Score on Dask: local:N (a LocalCluster of N processes), a scheduler address "
             "(tcp://host:8786, tls://host:8786) or a scheduler file (scheduler.json); needs "
             "the [dask] extra.")] = None,
    tls_ca_file: Annotated[Optional[Path], typer.Option(
        help="TLS for --dask: the CA certificate the scheduler's is signed by.",
        dir_okay=False)] = None,
    tls_cert: Annotated[Optional[Path], typer.Option(
        help="TLS for --dask: this client's certificate.", dir_okay=False)] = None,
    tls_key: Annotated[Optional[Path], typer.Option(
        help="TLS for --dask: this client's private key.", dir_okay=False)] = None,
    catalog: Annotated[Optional[Path], typer.Option(
        help="Object catalog (.csv/.ecsv/.fits/.parquet: an id column, ra, dec in degrees) "
             "to cut out of --images tiles instead of scanning cutout files.", exists=True,
        dir_okay=False)] = None,
    images: Annotated[Optional[str], typer.Option(
        help="Tiles for --catalog: a pattern with {band} (tiles/*_{band}.fits), a directory "
             "(bands from the headers) or a glob.")] = None,
    id_column: Annotated[Optional[str], typer.Option(
        help="--catalog's id column [default: the first of objectId, object_id, id, ID, "
             "name].")] = None,
    keep_columns: Annotated[Optional[str], typer.Option(
        help="--catalog columns to keep in the output, e.g. mag_i,z [default: all].")] = None,
    pixel_scale: Annotated[Optional[float], typer.Option(
        help="Input pixel scale in arcsec/px, for files whose header has no WCS or PIXSCALE "
             "(without it they are assumed to be on the model's scale).", min=0.0)] = None,
    zeropoint: Annotated[Optional[str], typer.Option(
        help="Zero points overriding the headers', e.g. g=27,r=27,i=27 (AB mag of one pixel "
             "unit).")] = None,
    max_bad_fraction: Annotated[float, typer.Option(
        help="A cutout whose field has a larger fraction of NaN, inf or masked pixels (in any "
             "band; a tile edge) gets an error row, not a score.", min=0.0, max=1.0)]
    = MAX_BAD_FRACTION,
    stream: Annotated[Optional[bool], typer.Option(
        "--stream/--keep-rows",
        help="--stream: keep summary statistics, not rows, in memory (rows go to --output "
             "only): for scans of 10^7-10^8 inputs. Memory per input: --keep-rows about 300 "
             "bytes; --stream 0 (8 bytes per labelled input, for ROC AUC; 8 per input whose "
             "transforms are scored). Default: --stream above 1,000,000 inputs with --output.",
        show_default=False)] = None,
):
    """Score every FITS cutout under PATHS and write a lens-score catalog.

    Exit codes: 0 all inputs scored; 3 finished, some inputs failed (each has an error row);
    1 nothing could be scored (bad model, no inputs, none readable); 2 usage error; 130 interrupted
    (rows written so far are kept; rerun with --resume).
    """
    from .scan import check_scan_options, scan_catalog
    from .scan import scan as run_scan

    try:
        _check_cli_options(retry_errors, resume, stream, output)
        check_scan_options(paths=paths, catalog=catalog, images=images, output=output,
                           resume=resume, overwrite=overwrite, shard=shard, tta=tta,
                           combine=combine, gallery=gallery_html, device=device)
    except (LensscoreError, ModelError) as exc:
        _fail(str(exc), EXIT_USAGE)
    from .distributed import close as _close_client

    client = _connect_dask(dask, tls_ca_file, tls_cert, tls_key)
    try:
        scorer = _load_scorer(output, paths, model=model or None, combine=combine, device=device,
                              threads=threads, batch_size=batch_size,
                              bands=bands.split(",") if bands else None, size=size)
        try:
            grid = scorer.read_options(pixel_scale, zeropoint).grid
        except ModelError as exc:
            _fail(str(exc), EXIT_USAGE)
        _print_model(scorer, grid)
        if output is None:
            err.print("[yellow]no --output given: scores are printed, not saved[/]")
        kw = dict(scorer=scorer, output=output,
                  rotations="auto" if rotations is None else rotations, labels=labels,
                  threshold=threshold, workers=workers, resume=resume, overwrite=overwrite,
                  shard=shard, client=client, pixel_scale=pixel_scale, zeropoints=zeropoint,
                  max_bad_fraction=max_bad_fraction, retry_errors=retry_errors, tta=tta,
                  keep_rows=None if stream is None else not stream)
        with _progress_bar(quiet) as progress:
            if catalog is None:
                res = run_scan(paths, progress=progress, **kw)
            else:
                res = scan_catalog(catalog, images, id_column=id_column,
                                   keep_columns=keep_columns.split(",") if keep_columns
                                   else None, progress=progress, **kw)
    except KeyboardInterrupt:
        from .catalog import rows_path

        where = (f"; rows so far are in {rows_path(output)} -- rerun with --resume"
                 if output else "")
        err.print(f"[bold yellow]interrupted[/]{where}", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED)
    except ModelError as exc:
        _fail(str(exc), EXIT_NOTHING)
    except (LensscoreError, FileNotFoundError) as exc:
        _fail(str(exc), EXIT_USAGE)
    finally:
        _close_client(client)

    _check_not_empty(res, shard, output, resume, catalog, paths)
    _print_summary(res, top)
    _print_notes(res, grid)
    if gallery_html is not None and res.n_scored:
        _write_gallery(res, gallery_html, scorer, overwrite or resume)
    raise typer.Exit(res.exit_code)


def _check_cli_options(retry_errors, resume, stream, output) -> None:
    """Options of the command line that only make sense with another (one-line errors)."""
    if retry_errors and not resume:
        raise LensscoreError("--retry-errors is for --resume: the catalog whose error rows "
                             "to score again")
    if stream and output is None:
        raise LensscoreError("--stream keeps no rows in memory: give -o/--output, where they go")


def _print_model(scorer, grid) -> None:
    """The banner: which model, its invariance, grid and execution providers."""
    inv = {"none": "nothing", "C4": "rotations", "D4": "rotations and mirror"}
    err.print(f"model {scorer.path} ({scorer.arch}, invariant to "
              f"{inv[scorer.invariance]}, bands {','.join(scorer.bands)}, "
              f"{scorer.size}px at {grid.pixel_scale:g}\"/px, zero point "
              f"{grid.zeropoint:g}) on {', '.join(scorer.providers)}", highlight=False,
              markup=False)


def _check_not_empty(res, shard, output, resume, catalog, paths) -> None:
    """End a scan that had nothing to score: an empty shard with its catalog (exit 0, what
    merge expects), else a one-line failure without a header-only catalog left behind."""
    if res.n_inputs == 0 and shard is not None and res.n_listed:
        # an empty shard is a shard: its (header-only) catalog is what merge expects
        out.print(f"shard {shard} holds none of the {res.n_listed} inputs"
                  + (f"; catalog: {res.output}" if res.output else ""), highlight=False)
        raise typer.Exit(EXIT_OK)
    if res.n_inputs == 0:
        if output is not None and not resume:  # a header alone would block the rerun
            from .catalog import remove_catalog

            remove_catalog(output)
        _fail(f"no objects in {catalog}" if catalog else
              f"no FITS files found under {', '.join(map(str, paths))}", EXIT_NOTHING)


def _write_gallery(res, html_path, scorer, overwrite: bool) -> None:
    """``--gallery``: the top 100 of the scan; a failure is said, the scan's exit code kept."""
    from .gallery import gallery

    try:
        g = gallery(res.output if res.output else res, html_path, top=100,
                    bands=scorer.bands, size=scorer.size, overwrite=overwrite)
        out.print(f"gallery: {g.html} ({g.n_shown} cutouts)", highlight=False)
    except LensscoreError as exc:
        err.print(f"[bold red]gallery failed:[/] {escape(str(exc))}", highlight=False)


def _connect_dask(dask, tls_ca_file, tls_cert, tls_key):
    """The Dask client of ``--dask`` (``None`` without), or a one-line failure."""
    if not dask:
        if any((tls_ca_file, tls_cert, tls_key)):
            _fail("--tls-* options are for --dask", EXIT_USAGE)
        return None
    from .distributed import connect

    try:
        client = connect(dask, tls_ca_file=tls_ca_file, tls_cert=tls_cert, tls_key=tls_key)
    except LensscoreError as exc:
        _fail(str(exc), EXIT_NOTHING if "cannot reach" in str(exc) else EXIT_USAGE)
    if dask.startswith("local"):
        err.print(f"dask: LocalCluster of {len(client.cluster.workers)} worker processes",
                  highlight=False)
    return client


def _load_scorer(output, paths, **kwargs):
    """The scorer (or committee), its ONNX session built in a thread while this one imports
    astropy (both take ~0.4 s; onnxruntime releases the GIL): a shorter cold start."""
    from .committee import make_scorer

    built: dict = {}

    def build():
        try:
            built["scorer"] = make_scorer(**kwargs)
        except BaseException as exc:  # handed to the main thread
            built["error"] = exc

    loader = threading.Thread(target=build, name="lensscore-model", daemon=True)
    loader.start()
    _warm_imports(output, paths)
    loader.join()
    from . import _session

    _session.discard_ahead()  # sessions guessed from argv (lensscore._entry) that went unused
    if "error" in built:
        raise built["error"]
    return built["scorer"]


@contextlib.contextmanager
def _progress_bar(quiet: bool):
    """A progress bar on stderr; yields the ``progress(done, total)`` callback of a scan."""
    bar = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                   console=err, disable=quiet, transient=False)
    task = bar.add_task("scan", total=None, rate="")
    t0 = time.perf_counter()

    def progress(done, total):
        rate = done / max(time.perf_counter() - t0, 1e-9)
        bar.update(task, completed=done, total=total, rate=f"{rate:,.0f} files/s")

    with bar:
        yield progress


def _print_notes(res, grid) -> None:
    """What the user should know about how inputs were read or labelled."""
    if res.n_scale_assumed:
        err.print(f"note: {res.n_scale_assumed} input(s) state no pixel scale (no WCS or "
                  f"PIXSCALE): read as {grid.pixel_scale:g}\"/px, the model's; give "
                  "--pixel-scale if that is wrong", highlight=False, markup=False)
    if res.n_zp_assumed:
        err.print(f"note: {res.n_zp_assumed} input(s) state no zero point in any band: their "
                  f"pixels were used as read, as if on the model's zero point "
                  f"({grid.zeropoint:g}); give --zeropoint if that is wrong", highlight=False,
                  markup=False)
    if res.n_band_position:
        err.print(f"note: {res.n_band_position} input(s) name no band: their planes were taken "
                  f"as {','.join(grid.bands)} in file order", highlight=False, markup=False)
    _note_other_grid(res, grid)
    if res.labels_unmatched:
        n, eg = len(res.labels_unmatched), ", ".join(res.labels_unmatched[:3])
        err.print(f"note: {n} id(s) of the labels file match no input (e.g. {eg}); a label "
                  "matches the catalog's id, or its last part", highlight=False, markup=False)


def _note_other_grid(res, grid) -> None:
    """When most inputs were resampled from another survey's grid, say so once, and name the
    shipped model made for that grid if there is one."""
    if not res.resampled_scales or not res.n_scored:
        return
    scale, n = max(res.resampled_scales.items(), key=lambda kv: kv[1])
    if n < res.n_scored / 2:
        return
    from ._session import DEFAULT_MODEL, shipped_models
    from .scorer import Scorer

    made = []
    shipped = shipped_models()
    order = sorted(shipped, key=lambda n: n != DEFAULT_MODEL)  # the default first, if it fits
    for name, path in ((n, shipped[n]) for n in order):
        try:
            g = Scorer(path, threads=1).grid
        except ModelError:
            continue
        if abs(g.pixel_scale / scale - 1) <= 0.01 and tuple(g.bands) == tuple(grid.bands):
            made.append(name)
    hint = f"; the shipped model made for that grid: -m {made[0]}" if made else ""
    err.print(f"note: {n} of {res.n_scored} inputs are on a {scale:g}\"/px grid and were "
              f"resampled to this model's {grid.pixel_scale:g}\"/px{hint}", highlight=False,
              markup=False)


def _warm_imports(output, paths=None) -> None:
    """Import what the scan will need, so that it happens while the model loads: astropy's FITS
    reader and WCS unless the first input is a plain cube (read without astropy:
    :mod:`lensscore.fastfits`), its tables for catalogs with metadata."""
    from .fastfits import read_simple_cube

    first = _first_fits(paths or ())
    if first is None or read_simple_cube(first) is None:
        import astropy.io.fits  # noqa: F401
        import astropy.wcs  # noqa: F401
    if output is not None and Path(output).suffix.lower() != ".csv":
        import astropy.table  # noqa: F401


def _first_fits(paths) -> str | None:
    """The first FITS file under ``paths`` (a peek: the scan lists them all later)."""
    from .sources import split_fits_suffix

    for p in paths:
        p = os.fspath(p)
        if os.path.isfile(p):
            return p
        for d, dirs, files in os.walk(p):
            dirs.sort()
            for f in sorted(files):
                if split_fits_suffix(f):
                    return os.path.join(d, f)
    return None


def _print_summary(res, top: int):
    """The top table, the counts and errors, the metrics (in-sample apart), stability."""
    if top and res.n_scored:
        out.print(_top_table(res, top))
    rate = res.n_inputs - res.n_skipped
    out.print(f"scored {res.n_scored} of {res.n_inputs} inputs, {res.n_failed} failed"
              + (f" ({res.n_skipped} resumed from the catalog)" if res.n_skipped else "")
              + f"; {rate / max(res.seconds, 1e-9):,.0f} files/s", highlight=False)
    for path, msg in res.errors[:10]:
        err.print(f"  [red]failed[/] {escape(path)}: {escape(msg)}", highlight=False,
                  soft_wrap=True)
    if res.n_errors > 10:
        err.print(f"  … and {res.n_errors - 10} more (status=error rows in the catalog)")
    _print_metrics(res)
    _print_stability(res)
    if res.output:
        out.print(f"catalog: {res.output} (rows in {res.row_order} order)", highlight=False)


def _top_table(res, top: int) -> Table:
    """The ``top`` highest-ranked inputs (by logit), with their stability where checked."""
    import numpy as np

    t = Table(title=f"top {min(top, res.n_scored)} lens scores", title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("id")
    t.add_column("score", justify="right")
    t.add_column("logit", justify="right")  # the ranking: it stays apart where scores are 1
    if res.rotation_scores is not None:
        t.add_column("rot std", justify="right")
        t.add_column("mirror |Δ|", justify="right")
    has_labels = bool((res.labels >= 0).any())
    if has_labels:
        t.add_column("label", justify="right")
    for rank, i in enumerate(res.top(top), 1):
        row = [str(rank), res.ids[i], f"{res.scores[i]:.4f}", f"{res.logits[i]:.2f}"]
        if res.rotation_scores is not None:
            ts = res.transform_scores[i]
            checked = np.isfinite(ts).all()  # not sampled: empty
            row.append(f"{ts[:4].std():.4f}" if checked else "")
            row.append(f"{np.abs(ts[4:] - ts[:4]).max():.4f}" if checked else "")
        if has_labels:
            row.append("" if res.labels[i] < 0 else str(res.labels[i]))
        t.add_row(*row)
    return t


def _print_metrics(res) -> None:
    """Test metrics over the labelled inputs the model was not trained on; in-sample ones
    apart and said to be so; a committee's members alone."""
    m = res.metrics()
    mm = res.member_metrics()
    if res.n_in_training:
        seen = res.metrics(in_training=True)
        err.print(f"[bold yellow]warning:[/] {res.n_in_training} of {res.n_scored} inputs are "
                  "cutouts this model was trained on (in_training in the catalog): their "
                  "metrics are in-sample, NOT a test, and are kept out of the metrics below",
                  highlight=False)
        if seen:
            out.print(f"in-sample only ({seen['n_lens']} lenses, {seen['n_nonlens']} "
                      f"non-lenses the model was trained on): accuracy {_pct(seen['accuracy'])}"
                      + (f", ROC AUC {seen['roc_auc']:.4f}" if seen["n_lens"] and
                         seen["n_nonlens"] else "") + " -- not a test", highlight=False)
        if m is None:
            out.print("no labelled input outside the model's training data: no test metrics",
                      highlight=False)
    if m and mm and m["n_lens"] and m["n_nonlens"]:
        out.print("committee members alone: " + "; ".join(
            f"{k} AUC {v['roc_auc']:.4f}, TPR@FPR1% {_pct(v['tpr_at_fpr_1pct'])}"
            for k, v in mm.items()), highlight=False)
    if m:
        if m["n_lens"] and m["n_nonlens"]:
            ranks = (f"ROC AUC {m['roc_auc']:.4f}, TPR@FPR1% {_pct(m['tpr_at_fpr_1pct'])}, "
                     f"TPR@FPR0.1% {_pct(m['tpr_at_fpr_0.1pct'])}, TPR0 {_pct(m['tpr0'])}")
        else:  # AUC and TPR at FPR need both classes
            ranks = "ROC AUC and TPR@FPR n/a (only one class is labelled)"
        unverified = m.get("n_unverified", 0)
        if unverified:
            why = ("this model records the cutouts it was trained on by their pixels only (no "
                   "sky positions)" if res.training_record == "pixels" else
                   f"{unverified} of these {m['n']} labelled inputs have no sky position (no WCS)")
            err.print(f"[bold yellow]warning:[/] {why}: the model's training objects read from other "
                      "files (another crop or resampling) are not recognised, so the metrics "
                      "below may include its training data", highlight=False)
        out.print(f"labels{' (not verified unseen)' if unverified else ''}: {m['n_lens']} "
                  f"lenses, {m['n_nonlens']} non-lenses; at threshold {m['threshold']:g}: "
                  f"accuracy {_pct(m['accuracy'])}, {ranks}", highlight=False)


def _print_stability(res) -> None:
    """The seed's rotation stability and its mirror twin, and a loud warning when a model
    breaks the invariance its metadata claims."""
    s, m = res.stability(), res.mirror()
    if not s or not s["n"]:
        if res.rotation_mode == "sample" and res.n_scored:
            # the sample is chosen by id hash (the same whatever the shards): about
            # ROTATION_SAMPLE_MIN cutouts of a whole scan, so a shard or a small scan can draw none
            out.print(f"invariance check: no scored cutout of this scan (or shard) was in the "
                      f"hash-chosen sample (the model claims {res.invariance_claimed}; "
                      "--rotations checks every cutout)", highlight=False)
        return
    if res.tta != "none":
        over = "the four rotations" if res.tta == "rot4" else "all 8 transforms"
        what = (f"scores are the mean over {over} (--tta {res.tta}); the model's own spread "
                f"over {s['n']} cutouts")
    elif res.rotation_mode == "sample":
        what = (f"invariance check on a sample of {s['n']} cutouts (the model claims "
                f"{res.invariance_claimed})")
    else:
        what = f"stability over {s['n']} cutouts"
    out.print(f"{what}: rotations std mean {_pct(s['std_mean'])}, median "
              f"{_pct(s['std_median'])}, p99 {_pct(s['std_p99'])}, max {_pct(s['std_max'])}, "
              f"class flips {_pct(s['flip_fraction'])}; mirror |Δ| mean {_pct(m['delta_mean'])}, "
              f"p99 {_pct(m['delta_p99'])}, max {_pct(m['delta_max'])}, class flips "
              f"{_pct(m['flip_fraction'])}", highlight=False)
    if res.invariance_violated:
        claim = "rotations and mirror images" if res.invariance_claimed == "D4" else "rotations"
        err.print(f"[bold red]warning:[/] this model's metadata says it is invariant to {claim}"
                  f", but transformed cutouts scored differently (rotations max std "
                  f"{s['std_max']:.3g}, mirror max |Δ| {m['delta_max']:.3g}); its scores depend "
                  "on orientation -- check the export", highlight=False)


@app.command()
def info(
    model: Annotated[Optional[Path], typer.Argument(
        help="ONNX model file or shipped model name [default: the shipped d4].",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
):
    """Show what a model says about itself: bands, size, preprocessing, arch, invariance,
    metrics."""
    from .scorer import Scorer

    try:
        d = Scorer(model, threads=1).info()
    except ModelError as exc:
        _fail(str(exc), EXIT_NOTHING)
    if as_json:
        out.print_json(json.dumps(d, default=str))
        return
    t = Table(show_header=False, title=str(d["path"]), title_justify="left",
              caption="numbers to 4 significant digits (from 10,000 up, to the unit); --json "
                      "gives them all",
              caption_justify="left")
    t.add_column("key", style="bold", no_wrap=True)
    t.add_column("value", overflow="fold")  # a hash whole, not cut
    for key, value in _info_rows({k: v for k, v in d.items() if k != "path"}):
        t.add_row(key, escape(value))
    out.print(t)


def _info_rows(d: dict, depth: int = 0):
    """(key, value) rows of a model's self-description: a nested record as indented keys, a
    list of plain values on one line, numbers to 4 significant digits."""
    for k, v in d.items():
        key = "  " * depth + str(k)
        if isinstance(v, dict) and v:
            yield key, ""
            yield from _info_rows(v, depth + 1)
        elif isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v):
            yield key, ", ".join(_info_value(x) for x in v)
        else:
            yield key, _info_value(v)


def _info_value(v) -> str:
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float) and math.isfinite(v):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    return v if isinstance(v, str) else json.dumps(v)


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
):
    """List the shipped models, by the names -m takes: survey grid, invariance, size."""
    from ._session import DEFAULT_MODEL, shipped_models
    from .scorer import Scorer

    rows = []
    for name, path in shipped_models().items():
        try:
            sc = Scorer(path, threads=1)
        except ModelError as exc:  # list what is there; say what is wrong with it
            rows.append({"name": name, "path": str(path), "error": str(exc)})
            continue
        g = sc.grid
        rows.append({"name": name, "path": str(path), "default": name == DEFAULT_MODEL,
                     "survey": g.survey, "bands": ",".join(sc.bands), "size": sc.size,
                     "pixel_scale": g.pixel_scale, "arch": sc.arch, "invariance": sc.invariance,
                     "mib": round(path.stat().st_size / 2**20, 1)})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    if not rows:
        _fail("no shipped models in this installation; pass -m FILE.onnx", EXIT_NOTHING)
    t = Table(title="shipped models (use the name with -m)", title_justify="left")
    for col in ("name", "survey grid", "invariance", "arch", "MiB"):
        t.add_column(col)
    for r in rows:
        if "error" in r:
            t.add_row(r["name"], r["error"], "", "", "")
            continue
        t.add_row(r["name"] + (" (default)" if r["default"] else ""),
                  f"{r['survey']} {r['bands']}, {r['size']} px at {r['pixel_scale']:g}\"",
                  r["invariance"], r["arch"], f"{r['mib']:g}")
    out.print(t)


@app.command()
def merge(
    catalogs: Annotated[list[Path], typer.Argument(help="Shard catalogs (scan --shard K/N).",
                                                   metavar="CATALOG",
                                                   exists=True, dir_okay=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Merged catalog.",
                                         dir_okay=False)],
    inputs: Annotated[Optional[list[Path]], typer.Option(
        "--inputs", metavar="<path>",
        help="The FITS files/directories scanned: report inputs without a row (repeatable).",
        exists=True)] = None,
    shards: Annotated[Optional[int], typer.Option(
        help="N of --shard K/N, for catalogs that do not record it (.csv).", min=1)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --output.")] = False,
):
    """Join shard catalogs; report missing or repeated shards, duplicate ids and gaps.

    Exit codes: 0 complete; 3 written, but shards, ids or inputs are missing or repeated
    (of a repeated id the first row is kept); 2 unreadable or incompatible catalogs.
    """
    from .merge import merge as run_merge

    try:
        r = run_merge(catalogs, output, inputs=inputs, shards=shards, overwrite=overwrite)
    except LensscoreError as exc:
        _fail(str(exc), EXIT_USAGE)
    shards = f", {r.shards} shards" if r.shards else ""
    out.print(f"merged {r.n_catalogs} catalogs{shards}: {r.n_rows} rows ({r.n_errors} error "
              f"rows) -> {r.output}", highlight=False)

    def show(what, items):
        if items:
            more = f" … (+{len(items) - 10})" if len(items) > 10 else ""
            err.print(f"[bold red]{what} ({len(items)}):[/] "
                      + ", ".join(map(str, items[:10])) + more, highlight=False)

    show("missing shards", [f"{k}/{r.shards}" for k in r.missing_shards])
    show("shards given twice", [f"{k}/{r.shards}" for k in r.duplicate_shards])
    show("ids in more than one row (first kept)", r.duplicate_ids)
    show("inputs with no row", r.missing_ids)
    show("rows for ids not among the inputs", r.unexpected_ids)
    raise typer.Exit(EXIT_OK if r.ok else EXIT_SOME_FAILED)


@app.command()
def gallery(
    catalog: Annotated[Path, typer.Argument(help="Catalog written by `lensscore scan` "
                                                 "(.csv, .ecsv, .fits, .parquet).",
                                            exists=True, dir_okay=False)],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="HTML file [default: CATALOG with .html; none with --png "
        "alone].", dir_okay=False)] = None,
    top: Annotated[int, typer.Option(help="Highest scores shown (0: all).", min=0)] = 100,
    min_score: Annotated[Optional[float], typer.Option(
        help="Only scores at or above this.", min=0.0, max=1.0)] = None,
    png: Annotated[Optional[Path], typer.Option(
        help="Also a static PNG grid with labels (needs matplotlib).", dir_okay=False)] = None,
    bands: Annotated[Optional[str], typer.Option(
        help="Bands of the cutouts, blue to red [default: the catalog's, else g,r,i].")] = None,
    rgb: Annotated[Optional[str], typer.Option(
        help="Three bands shown as blue,green,red [default: the three reddest].")] = None,
    q: Annotated[Optional[float], typer.Option("--q", help="Lupton asinh softening Q "
                                                           "[default: 8].", min=0.0)] = None,
    stretch: Annotated[Optional[float], typer.Option(
        help="Lupton linear stretch [default: from the data].", min=0.0)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing HTML/PNG files.")] = False,
):
    """Colour thumbnails of the top candidates in one self-contained HTML page to grade."""
    from .gallery import gallery as make_gallery

    html_out = output or (None if png is not None else catalog.with_suffix(".html"))
    if html_out is not None and html_out.resolve() == catalog.resolve():
        _fail(f"{html_out}: would overwrite the catalog; give -o FILE.html", EXIT_USAGE)
    try:
        g = make_gallery(catalog, html_out, top=top or None, min_score=min_score, png=png,
                         bands=bands.split(",") if bands else None,
                         rgb_bands=rgb.split(",") if rgb else None, q=q, stretch=stretch,
                         overwrite=overwrite)
    except LensscoreError as exc:
        _fail(str(exc), EXIT_USAGE)
    what = f"gallery: {g.html}" if g.html else f"grid: {g.png}"
    out.print(f"{what} ({g.n_shown} cutouts, Lupton Q {g.q:g}, stretch {g.stretch:.3g})"
              + (f"; grid: {g.png}" if g.png and g.html else ""), highlight=False)
    if g.n_failed:
        err.print(f"[yellow]{g.n_failed} cutouts could not be read again for thumbnails[/]")
    if not g.n_shown:
        err.print("[yellow]no scored rows matched[/]")


def main():  # console script entry point
    try:
        app()
    except KeyboardInterrupt:  # before the scan loop got going
        err.print("[bold yellow]interrupted[/]")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
