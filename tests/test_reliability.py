"""Reliability: hostile inputs, interrupted scans, bounded memory, bad models, no unsafe calls.

The long parts (random kill/resume cycles, 100,000 files, a large hypothesis run) are marked
``slow``: ``python -m pytest -m slow`` (README).
"""

import ast
import gzip
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from typer.testing import CliRunner

from conftest import fake_cutout, write_cube, write_mef
from lensscore import scan
from lensscore.catalog import read_catalog
from lensscore.cli import app
from lensscore.errors import CutoutError
from lensscore.io import load_cutout

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
BLOCK = 2880


def _cube(rng, dtype=">f4", n=72):
    return fake_cutout(rng, n=n).astype(dtype)


def _header_only(path, cards):
    """A FITS header (no data) padded to a block, from ``(key, value)`` cards."""
    h = fits.Header()
    for k, v in cards:
        h[k] = v
    path.write_bytes(h.tostring(padding=True).encode("ascii"))


def hostile_corpus(root: Path, rng) -> dict[str, str]:
    """Write every kind of broken (and some odd but valid) input; return name -> expectation
    (``ok`` or ``error``)."""
    root.mkdir(parents=True, exist_ok=True)
    exp = {}

    def put(name, kind):
        exp[name] = kind

    # valid references of each layout
    write_cube(root / "good_cube.fits", fake_cutout(rng))
    put("good_cube", "ok")
    write_mef(root / "good_mef.fits", fake_cutout(rng))
    put("good_mef", "ok")
    mef = (root / "good_mef.fits").read_bytes()
    # truncated at every HDU boundary and inside the data of every HDU
    with fits.open(root / "good_mef.fits") as h:
        info = [(hdu.fileinfo()["hdrLoc"], hdu.fileinfo()["datLoc"],
                 hdu.fileinfo()["datLoc"] + hdu.fileinfo()["datSpan"]) for hdu in h]
    cuts = set()
    for hdr, dat, end in info:
        cuts |= {hdr, dat, (dat + end) // 2, dat + 100, end - 1}
    for c in sorted(cuts):
        if 0 < c < len(mef):
            (root / f"trunc_{c:06d}.fits").write_bytes(mef[:c])
            put(f"trunc_{c:06d}", "error")
    (root / "trunc_header_mid.fits").write_bytes(mef[:1000])
    put("trunc_header_mid", "error")
    # not FITS at all
    (root / "random.fits").write_bytes(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    put("random", "error")
    (root / "zero.fits").write_bytes(b"")
    put("zero", "error")
    (root / "text.fits").write_text("SIMPLE? no, this is a text file\n" * 100)
    put("text", "error")
    # FITS without an image
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column("a", "E", array=np.arange(5.0))])]).writeto(root / "table_only.fits")
    put("table_only", "error")
    _header_only(root / "header_only.fits", [("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0)])
    put("header_only", "error")
    # shapes
    fits.PrimaryHDU(np.zeros(100, np.float32)).writeto(root / "one_d.fits")
    put("one_d", "error")
    fits.PrimaryHDU(np.zeros((2, 3, 72, 72), np.float32)).writeto(root / "four_d.fits")
    put("four_d", "error")
    fits.PrimaryHDU(np.zeros((1, 3, 72, 72), np.float32) + _cube(rng)).writeto(
        root / "four_d_degenerate.fits")
    put("four_d_degenerate", "ok")  # a leading axis of length 1 is harmless
    write_cube(root / "two_bands.fits", fake_cutout(rng, nb=2), bands=("g", "r"))
    put("two_bands", "error")
    write_cube(root / "unknown_bands.fits", fake_cutout(rng), bands=("u", "v", "w"))
    put("unknown_bands", "error")
    write_cube(root / "small.fits", fake_cutout(rng, n=40))
    put("small", "error")
    # pixel types
    d = fake_cutout(rng)
    hdr = fits.Header()
    hdr["BANDS"] = "gri"
    fits.PrimaryHDU((d * 100).astype(np.int16), header=hdr).writeto(root / "int16.fits")
    put("int16", "ok")
    hdu = fits.PrimaryHDU(d.astype(np.float32), header=hdr.copy())
    hdu.scale("int16", bscale=0.01, bzero=10.0)
    hdu.writeto(root / "bscale_bzero.fits")
    put("bscale_bzero", "ok")
    ints = (d * 100).astype(np.int32)
    ints[0, :5, :5] = -999
    h2 = hdr.copy()
    h2["BLANK"] = -999
    fits.PrimaryHDU(ints, header=h2).writeto(root / "blank.fits")
    put("blank", "ok")
    for tag, dt in (("be_f4", ">f4"), ("le_f4", "<f4"), ("be_f8", ">f8"), ("le_f8", "<f8")):
        fits.PrimaryHDU(d.astype(dt), header=hdr.copy()).writeto(root / f"{tag}.fits")
        put(tag, "ok")
    nan = d.copy()
    nan[1] = np.nan
    fits.PrimaryHDU(nan, header=hdr.copy()).writeto(root / "all_nan_band.fits")
    put("all_nan_band", "error")
    fits.PrimaryHDU(np.zeros_like(d), header=hdr.copy()).writeto(root / "all_zero.fits")
    put("all_zero", "error")
    inf = d.copy()
    inf[0, 3, 3] = np.inf
    fits.PrimaryHDU(inf, header=hdr.copy()).writeto(root / "one_inf.fits")
    put("one_inf", "ok")
    # enormous NAXIS in a tiny file: refused before allocating
    _header_only(root / "huge_naxis.fits", [("SIMPLE", True), ("BITPIX", -32), ("NAXIS", 3),
                                            ("NAXIS1", 100000), ("NAXIS2", 100000),
                                            ("NAXIS3", 3)])
    put("huge_naxis", "error")
    _header_only(root / "negative_naxis.fits", [("SIMPLE", True), ("BITPIX", -32),
                                                ("NAXIS", 2), ("NAXIS1", -5), ("NAXIS2", 72)])
    put("negative_naxis", "error")
    # gzip: a bomb of modest size (64 MiB of zeros), a FITS header that decompresses huge, junk
    with gzip.open(root / "bomb.fits.gz", "wb", compresslevel=9) as fh:
        for _ in range(64):
            fh.write(b"\0" * (1 << 20))
    put("bomb", "error")
    with gzip.open(root / "bomb_header.fits.gz", "wb") as fh:
        h = fits.Header([("SIMPLE", True), ("BITPIX", -32), ("NAXIS", 3), ("NAXIS1", 30000),
                         ("NAXIS2", 30000), ("NAXIS3", 3)])
        fh.write(h.tostring(padding=True).encode())
        for _ in range(16):
            fh.write(b"\0" * (1 << 20))
    put("bomb_header", "error")
    (root / "bad.fits.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 100)
    put("bad", "error")
    good = gzip.compress((root / "good_cube.fits").read_bytes())
    (root / "trunc_gz.fits.gz").write_bytes(good[: len(good) // 2])
    put("trunc_gz", "error")
    # directory tree oddities
    (root / "loop").mkdir()
    os.symlink("..", root / "loop" / "up")  # a loop: walked once
    os.symlink(root / "does-not-exist.fits", root / "dangling.fits")
    put("dangling", "error")
    (root / "dir.fits").mkdir()  # a directory named like a file: walked into, not read
    return exp


def _rows(path):
    t = read_catalog(path)
    return {str(r["id"]): r for r in t}


def test_hostile_corpus(tmp_path, rng, conv_model):
    root = tmp_path / "corpus"
    exp = hostile_corpus(root, rng)
    out = tmp_path / "c.ecsv"
    r = runner.invoke(app, ["scan", str(root), "-m", conv_model, "-o", str(out), "-q",
                            "--workers", "2"])
    assert r.exit_code == 3, r.output
    assert "Traceback" not in r.output
    rows = _rows(out)
    assert set(rows) == set(exp), set(rows) ^ set(exp)
    for name, want in exp.items():
        row = rows[name]
        assert str(row["status"]) == want, (name, str(row["error"]))
        if want == "error":
            msg = str(row["error"])
            assert 5 < len(msg) < 300 and "\n" not in msg, (name, msg)
            assert "Traceback" not in msg
    # the reasons are specific
    assert "truncated" in str(rows[min(k for k in exp if k.startswith("trunc_0"))]["error"]) \
        or "unreadable" in str(rows[min(k for k in exp if k.startswith("trunc_0"))]["error"])
    assert re.search("too large|truncated", str(rows["huge_naxis"]["error"]))
    assert "empty file" in str(rows["zero"]["error"])
    assert "not a FITS file" in str(rows["random"]["error"])
    assert "band" in str(rows["two_bands"]["error"])


def test_a_chunk_is_read_as_its_files_one_by_one(tmp_path, rng, conv_model):
    """The loader preprocesses a chunk's cutouts together: the same float32 arrays and row
    fields as one file at a time, and a cutout without signal or a broken file fails alone."""
    from lensscore.pipeline import load_chunk, load_one
    from lensscore.scorer import Scorer
    from lensscore.sources import find_sources

    sc = Scorer(conv_model)
    for k in range(5):
        write_cube(tmp_path / f"a{k}.fits", fake_cutout(rng, lens=k % 2 == 1))
    flat = np.full((3, 72, 72), 7.0, np.float32)
    flat[:, 3, 5] = 9.0  # not constant, but no signal: fewer than 0.5 % of pixels off the sky
    write_cube(tmp_path / "a2_flat.fits", flat)
    (tmp_path / "a3_broken.fits").write_bytes(b"SIMPLE  = T" + b" " * 100)
    opts = sc.read_options()
    src = find_sources([tmp_path], sc.bands)
    assert len(src) == 7
    for chunk in (src, src[:1], [s for s in src if "flat" not in s.path]):
        got = load_chunk(chunk, opts, sc.spec)
        want = [load_one(s, opts, sc.spec) for s in chunk]
        assert [g[0] for g in got] == [w[0] for w in want]
        for s, g, w in zip(chunk, got, want):
            if not w[0]:
                assert g == w
                continue
            assert g[0] and g[1][0].dtype == np.float32 and g[1][1] == w[1][1]
            np.testing.assert_array_equal(g[1][0], w[1][0], err_msg=s.path)
    got = dict(zip((s.path for s in src), load_chunk(src, opts, sc.spec)))
    assert [p for p, g in got.items() if not g[0]] == \
        [str(tmp_path / "a2_flat.fits"), str(tmp_path / "a3_broken.fits")]
    assert "no signal" in got[str(tmp_path / "a2_flat.fits")][1]


def test_the_loader_reads_the_next_batch_while_one_is_scored(tmp_path, rng, conv_model,
                                                            monkeypatch):
    """When a batch goes to the network, the chunks of the whole next batch (and PREFETCH more)
    are with the loader already: with fewer, a scan at batch 128 waited for half of each batch
    after each run."""
    import lensscore.pipeline as pl
    from lensscore.scorer import Scorer
    from lensscore.sources import find_sources

    sc = Scorer(conv_model, batch_size=32)
    for k in range(12 * pl.CHUNK):
        write_cube(tmp_path / f"a{k:03d}.fits", fake_cutout(rng, lens=k % 2 == 1))
    src = find_sources([tmp_path], sc.bands)
    submitted = []
    real = pl._make_executor

    def counting(workers):
        ex = real(workers)
        sub = ex.submit
        ex.submit = lambda *a, **k: (submitted.append(1), sub(*a, **k))[1]
        return ex

    monkeypatch.setattr(pl, "_make_executor", counting)
    stream = pl.score_stream(src, sc, [False] * len(src), 1, sc.read_options())
    rows, _, _ = next(stream)
    per_batch = -(-sc.batch_size // pl.CHUNK)
    assert len(rows) == sc.batch_size
    # consumed: one batch; handed out beyond it: the next batch and PREFETCH chunks
    assert len(submitted) == 2 * per_batch + pl.PREFETCH
    # a batch that is not a whole number of chunks; a big batch reads at most AHEAD_CHUNKS ahead
    assert pl._in_flight(1, 40) == 3 + pl.PREFETCH
    assert pl._in_flight(2, 4096) == pl.AHEAD_CHUNKS + 2 * pl.PREFETCH
    assert len([r for b in [rows, *(r for r, _, _ in stream)] for r in b]) == len(src)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_is_an_error_row(tmp_path, rng, conv_model):
    write_cube(tmp_path / "a.fits", fake_cutout(rng))
    write_cube(tmp_path / "b.fits", fake_cutout(rng))
    os.chmod(tmp_path / "b.fits", 0)
    res = scan(tmp_path, conv_model, output=tmp_path / "c.csv")
    assert res.n_failed == 1 and "permission denied" in res.errors[0][1]


def test_unlistable_directory_is_an_error_row_and_nothing_readable_exits_1(tmp_path, rng,
                                                                            conv_model,
                                                                            monkeypatch):
    d = tmp_path / "d"
    (d / "ok").mkdir(parents=True)
    (d / "locked").mkdir()
    write_cube(d / "ok" / "a.fits", fake_cutout(rng))
    write_cube(d / "locked" / "b.fits", fake_cutout(rng))
    real = os.scandir

    def scandir(path="."):  # what a directory without read permission does (root reads all)
        if os.path.basename(os.fspath(path)) == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "c.csv"
    r = runner.invoke(app, ["scan", str(d), "-m", conv_model, "-o", str(out), "-q"])
    assert r.exit_code == 3, r.output
    rows = {str(x["id"]): x for x in read_catalog(out)}
    assert set(rows) == {"ok/a", "locked/"}
    assert rows["locked/"]["status"] == "error"
    assert rows["locked/"]["error"] == "cannot list directory (Permission denied)"
    monkeypatch.setattr(os, "scandir", real)
    # no input could be scored: exit 1, with the error rows written
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.fits").write_bytes(b"not a fits file" * 10)
    (bad / "y.fits").write_bytes(b"")
    r = runner.invoke(app, ["scan", str(bad), "-m", conv_model, "-o", str(tmp_path / "b.csv"),
                            "-q"])
    assert r.exit_code == 1, r.output
    assert list(read_catalog(tmp_path / "b.csv")["status"]) == ["error", "error"]


def test_astropy_test_files_never_crash(tmp_path, conv_model):
    import astropy

    src = Path(astropy.__file__).parent / "io" / "fits" / "tests" / "data"
    files = [p for p in src.rglob("*") if p.is_file()]
    if not files:
        pytest.skip("astropy's FITS test data are not installed")
    root = tmp_path / "astropy"
    for p in files:
        dst = root / p.relative_to(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dst)
    out = tmp_path / "a.csv"
    r = runner.invoke(app, ["scan", str(root), "-m", conv_model, "-o", str(out), "-q"])
    t = read_catalog(out)
    # none is a g,r,i cutout: every one is an error row, and nothing scored is exit 1
    assert r.exit_code == (3 if "ok" in set(t["status"]) else 1), r.output
    assert "Traceback" not in r.output
    assert len(t) >= 20 and set(t["status"]) <= {"ok", "error"}
    assert all("\n" not in str(e) for e in t["error"])


def _fits_bytes(header_cards, data_len: int) -> bytes:
    h = fits.Header()
    for k, v in header_cards:
        h[k] = v
    head = h.tostring(padding=True).encode("ascii")
    return head + bytes(data_len)


def _check_any(path: Path):
    try:
        c = load_cutout(path)
    except CutoutError as exc:
        assert "\n" not in exc.reason and len(exc.reason) < 400
        return "error"
    assert c.data.shape == (3, 72, 72) and np.isfinite(c.data).all()
    return "ok"


def _hypothesis_header_space(max_examples):
    hyp = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")

    dims = st.one_of(st.integers(0, 80), st.sampled_from([1, 3, 72, 4096, 10 ** 6, 2 ** 31 - 1]))

    # database=None: derandomized runs need no example database, and none is written into the
    # repository (.hypothesis/, issue 33)
    @hyp.settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(hyp.HealthCheck))
    @hyp.given(bitpix=st.sampled_from([8, 16, 32, 64, -32, -64]),
               shape=st.lists(dims, min_size=0, max_size=5),
               bands=st.one_of(st.none(), st.sampled_from(["gri", "g,r,i", "xyz", "", "gr"])),
               keep=st.floats(0.0, 1.2),
               extra=st.sampled_from([(), (("BSCALE", 0.5), ("BZERO", 3.0)), (("BLANK", 0),),
                                      (("BSCALE", 0.0),), (("NAXIS", 99),)]))
    def check(tmp, bitpix, shape, bands, keep, extra):
        cards = [("SIMPLE", True), ("BITPIX", bitpix), ("NAXIS", len(shape))]
        cards += [(f"NAXIS{k + 1}", n) for k, n in enumerate(reversed(shape))]
        if bands is not None:
            cards.append(("BANDS", bands))
        cards += list(extra)
        npix = int(np.prod(shape, dtype=np.float64)) if shape else 0
        nbytes = npix * abs(bitpix) // 8
        nbytes = min(nbytes, 200_000)  # the file is small whatever the header claims
        body = _fits_bytes(cards, int(nbytes * keep))
        p = tmp / "h.fits"
        p.write_bytes(body)
        _check_any(p)

    return check


def test_hypothesis_headers_and_shapes(tmp_path):
    _hypothesis_header_space(150)(tmp_path)


@pytest.mark.slow
def test_hypothesis_headers_and_shapes_long(tmp_path):
    _hypothesis_header_space(3000)(tmp_path)


# ----------------------------------------------------------------------------- interruption
def _catalog_valid_prefix(path: Path, complete: list[str]):
    """The catalog on disk: every full line is a row of the final catalog, in order."""
    text = path.read_text()
    lines = [ln for ln in text.split("\n")[:-1] if ln and not ln.startswith("#")]
    body = lines[1:]  # header line
    assert body == complete[:len(body)], "rows on disk differ from the one-shot scan"
    return len(body)


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _kill_cycles(tmp_path, conv_model, rng, n_files, cycles, seed):
    d = tmp_path / "many"
    d.mkdir()
    write_cube(d / "seed.fits", fake_cutout(rng))
    for k in range(n_files - 1):
        os.link(d / "seed.fits", d / f"o{k:05d}.fits")
    one = tmp_path / "one.csv"
    scan(d, conv_model, output=one, rotations=False, batch_size=8)
    complete = [ln for ln in one.read_text().split("\n")[1:] if ln]
    out = tmp_path / "killed.csv"
    rnd = random.Random(seed)
    code = ("import sys; from lensscore.cli import main; sys.argv=['lensscore','scan',"
            f"{str(d)!r},'-m',{conv_model!r},'-o',{str(out)!r},'-q','--no-rotations',"
            "'--batch-size','8'] + sys.argv[1:]; main()")
    survived = 0
    for cycle in range(cycles):
        sig = signal.SIGKILL if cycle % 2 == 0 else signal.SIGINT
        args = ["--resume"] if out.exists() else []
        # SIGINT as a terminal sends it: an earlier test (Dask) may leave it ignored in this
        # process, and an ignored SIGINT is inherited (a scan in the background ignores Ctrl-C)
        p = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
        before = _catalog_valid_prefix(out, complete) if out.exists() else 0
        # stop well before the end: a signal sent after the last row would find the scan done
        target = before + rnd.randint(8, max(9, n_files // (2 * (cycles + 1))))
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            if out.exists() and out.read_text().count("\n") - 1 >= target:
                break
            time.sleep(0.002)
        if p.poll() is not None:
            break  # finished before the kill
        time.sleep(rnd.random() * 0.05)
        p.send_signal(sig)
        _, errtext = p.communicate(timeout=60)
        if sig == signal.SIGINT:
            assert p.returncode == 130, errtext[-2000:]
            assert "Traceback" not in errtext
        survived += 1
        if out.exists():
            _catalog_valid_prefix(out, complete)  # may end in a partial line: repaired later
    r = runner.invoke(app, ["scan", str(d), "-m", conv_model, "-o", str(out), "-q",
                            "--no-rotations", "--resume", "--batch-size", "8"])
    assert r.exit_code == 0, r.output
    a, b = read_catalog(one), read_catalog(out)
    assert list(a["path"]) == list(b["path"]) and len(set(b["path"])) == n_files
    np.testing.assert_array_equal(np.asarray(a["score"]), np.asarray(b["score"]))
    return survived


def test_sigint_and_sigkill_then_resume(tmp_path, conv_model, rng):
    assert _kill_cycles(tmp_path, conv_model, rng, n_files=400, cycles=2, seed=1) == 2


@pytest.mark.slow
def test_random_kill_resume_cycles(tmp_path, conv_model, rng):
    assert _kill_cycles(tmp_path, conv_model, rng, n_files=3000, cycles=10, seed=2) >= 8


# ----------------------------------------------------------------------------- scale
def _scan_measured(d, model, out, *args):
    """Peak RSS (MiB) and the most open file descriptors of a CLI scan of ``d``."""
    p = subprocess.Popen([sys.executable, "-m", "lensscore", "scan", str(d), "-m", model, "-o",
                          str(out), "-q", "--no-rotations", "--top", "0", *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    fds, hwm = [], [0]

    def watch():
        # the peak from /proc (VmHWM: this process image's own), not wait4's ru_maxrss, which
        # Linux carries over fork and exec from the parent: a pytest that ran TensorFlow
        # before hands every scan its 10 GB
        while p.poll() is None:
            try:
                fds.append(len(os.listdir(f"/proc/{p.pid}/fd")))
                status = Path(f"/proc/{p.pid}/status").read_text()
                hwm[0] = max(hwm[0], int(status.split("VmHWM:")[1].split()[0]))
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.05)

    t = threading.Thread(target=watch)
    t.start()
    _, status, _ = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    t.join()
    errtext = p.stderr.read()
    p.stderr.close()
    assert p.returncode == 0, errtext[-2000:]
    return hwm[0] / 1024, max(fds) if fds else 0


@pytest.mark.slow
def test_100k_files_bounded_memory_and_fds(tmp_path, conv_model, rng):
    d = tmp_path / "big"
    for j in range(4):  # ext4 allows 65,000 links to a file
        write_cube(tmp_path / f"seed{j}.fits", fake_cutout(rng))
    for k in range(100_000):  # hard links: 100,000 inputs in the disk space of 4 files
        sub = d / f"d{k // 1000:03d}"
        if k % 1000 == 0:
            sub.mkdir(parents=True)
        os.link(tmp_path / f"seed{k % 4}.fits", sub / f"o{k:06d}.fits")
    small = tmp_path / "small"
    for k in range(10_000):
        sub = small / f"d{k // 1000:03d}"
        if k % 1000 == 0:
            sub.mkdir(parents=True)
        os.link(tmp_path / f"seed{k % 4}.fits", sub / f"o{k:06d}.fits")
    rss_small, fd_small = _scan_measured(small, conv_model, tmp_path / "s.csv")
    rss_big, fd_big = _scan_measured(d, conv_model, tmp_path / "b.csv")
    assert len(read_catalog(tmp_path / "b.csv")) == 100_000
    per_row = (rss_big - rss_small) * 2 ** 20 / 90_000
    print(f"peak RSS 10k {rss_small:.0f} MiB, 100k {rss_big:.0f} MiB ({per_row:.0f} B/row); "
          f"open fds {fd_small} / {fd_big}")
    assert per_row < 2000, "memory grows faster than the catalog rows"
    # --stream keeps no rows: what grows is the listing (the Source of each input), not the
    # result (issue 32; ~300 bytes a row kept, measured by tests/test_stream.py)
    rss_s_small, _ = _scan_measured(small, conv_model, tmp_path / "ss.csv", "--stream")
    rss_s_big, _ = _scan_measured(d, conv_model, tmp_path / "sb.csv", "--stream")
    per_row_s = (rss_s_big - rss_s_small) * 2 ** 20 / 90_000
    print(f"--stream: peak RSS 10k {rss_s_small:.0f} MiB, 100k {rss_s_big:.0f} MiB "
          f"({per_row_s:.0f} B/row)")
    assert (tmp_path / "sb.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert per_row_s < per_row
    # a leak grows with the inputs (one descriptor per 1,000 files would be +90 here); a few
    # come and go at any moment (the catalog, its lock, a file being read, an atomic write)
    assert fd_big <= fd_small + 4 and fd_big < 64


# ----------------------------------------------------------------------------- bad models, options
def test_bad_model_and_options_fail_before_work(tmp_path, rng, conv_model):
    from onnx_models import make_model

    d = tmp_path / "d"
    d.mkdir()
    write_cube(d / "a.fits", fake_cutout(rng))
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07garbage" * 50)
    wrong = make_model(tmp_path / "wrong.onnx", size=64)
    nometa = make_model(tmp_path / "nometa.onnx", metadata=False)
    out = tmp_path / "cat.csv"
    cases = [
        (["-m", str(tmp_path / "missing.onnx")], 1, "not found"),
        (["-m", str(tmp_path / "corrupt.onnx")], 1, "not a usable ONNX model"),
        (["-m", str(tmp_path)], 1, "directory"),
        (["-m", wrong, "--size", "72"], 1, "64x64"),
        (["-m", nometa], 1, "--bands"),
        (["-m", conv_model, "--device", "cuda"], 1, "cuda"),
        (["-m", conv_model, "--workers", "0"], 2, "workers"),
        (["-m", conv_model, "--batch-size", "0"], 2, "batch"),
        (["-m", conv_model, "-o", str(tmp_path / "nodir" / "c.csv")], 2, "does not exist"),
        (["-m", conv_model, "-o", str(tmp_path / "c.txt")], 2, "format"),
        (["-m", conv_model, "--resume"], 2, "--output"),
        (["-m", conv_model, "--shard", "0/2"], 2, "shard"),
    ]
    for args, code, text in cases:
        r = runner.invoke(app, ["scan", str(d), *args])
        assert r.exit_code == code, (args, r.exit_code, r.output)
        assert text.lower() in r.output.lower(), (args, r.output)
        assert "Traceback" not in r.output
        lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
        assert len(lines) <= 1, r.output
    assert not out.exists() and not (tmp_path / "nodir").exists()
    # a model without metadata works with --bands/--size
    r = runner.invoke(app, ["scan", str(d), "-m", nometa, "--bands", "g,r,i", "--size", "72",
                            "-q"])
    assert r.exit_code == 0, r.output


# ----------------------------------------------------------------------------- security
def _sources():
    for pkg in ("lensscore", "train", "export", "bench"):
        yield from (ROOT / pkg).rglob("*.py")


def test_nothing_unpickled_and_no_shell():
    bad = []
    for f in _sources():
        tree = ast.parse(f.read_text(), str(f))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "shelve", "marshal")
                       for n in names):
                    bad.append(f"{f}: imports {names}")
            if isinstance(node, ast.Call):
                fn = ast.unparse(node.func)
                kws = {k.arg: ast.unparse(k.value) for k in node.keywords}
                if fn in ("eval", "exec", "os.system", "os.popen"):
                    bad.append(f"{f}:{node.lineno}: {fn}")
                if kws.get("shell") == "True":
                    bad.append(f"{f}:{node.lineno}: shell=True")
                if kws.get("allow_pickle") == "True" or kws.get("safe_mode") == "False":
                    bad.append(f"{f}:{node.lineno}: {fn} unsafe")
                if fn.endswith("np.load") and kws.get("allow_pickle") != "False":
                    bad.append(f"{f}:{node.lineno}: np.load without allow_pickle=False")
    assert not bad, "\n".join(bad)


def test_labels_file_cannot_reach_outside_the_scan_root(tmp_path, rng, conv_model):
    d = tmp_path / "d"
    d.mkdir()
    write_cube(d / "a.fits", fake_cutout(rng))
    secret = tmp_path / "outside.fits"
    write_cube(secret, fake_cutout(rng))
    labels = tmp_path / "labels.csv"
    labels.write_text(f"id,label\na,1\n../outside,1\n{secret},0\n/etc/passwd,1\n")
    res = scan(d, conv_model, output=tmp_path / "c.csv", labels=str(labels))
    assert res.ids == ["a"] and list(res.labels) == [1]  # only inputs under the root
    assert all(Path(p).resolve().is_relative_to(d.resolve()) for p in res.paths)
    assert not re.search("outside|passwd", (tmp_path / "c.csv").read_text())
    # ...and the labels that name no input are reported, not silently dropped
    assert res.labels_unmatched == ["../outside", str(secret), "/etc/passwd"]
    r = runner.invoke(app, ["scan", str(d), "-m", conv_model, "--labels", str(labels), "-q"])
    assert r.exit_code == 0 and "3 id(s) of the labels file match no input" in r.output, r.output
