"""Candidate galleries: self-contained HTML, one thumbnail per row, PNGs of the right size."""

import base64
import io
import re
import shutil
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import fake_cutout, write_cube, write_mef, write_per_band
from lensscore import scan
from lensscore.cli import app
from lensscore.errors import LensscoreError
from lensscore.gallery import gallery, png_bytes

runner = CliRunner()


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        return np.asarray(im)


def test_png_roundtrip(rng):
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(png_bytes(img)), img)


@pytest.fixture
def catalog(tmp_path, rng, rot_model):
    root = tmp_path / "d"
    (root / "lenses").mkdir(parents=True)
    (root / "nonlenses").mkdir()
    for k in range(5):
        write_cube(root / "lenses" / f"c{k}.fits", fake_cutout(rng, lens=True))
        write_mef(root / "nonlenses" / f"m{k}.fits", fake_cutout(rng, n=80))
    write_per_band(root / "lenses", "pb", fake_cutout(rng, lens=True))
    (root / "nonlenses" / "broken.fits").write_bytes(b"SIMPLE  = T" + b"\0" * 50)
    out = tmp_path / "cat.ecsv"
    res = scan(root, rot_model, output=out)
    assert res.n_scored == 11 and res.n_failed == 1
    return out


def test_gallery_html_self_contained(catalog, tmp_path):
    html_path = tmp_path / "g.html"
    g = gallery(catalog, html_path, top=8)
    text = html_path.read_text()
    assert g.n_shown == 8 and g.n_failed == 0 and g.stretch > 0
    bare = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"\b(https?|ftp):", bare, re.I), "external URL in the page"
    assert not re.search(r"""(src|href)\s*=\s*["']?//""", bare, re.I)
    assert not re.search(r"<(link|iframe)\b|@import|url\(", bare)
    srcs = re.findall(r'<img src="([^"]+)"', text)
    assert len(srcs) == text.count('<figure class="card"') == 8
    for s in srcs:
        assert s.startswith("data:image/png;base64,")
        assert decode_png(base64.b64decode(s.split(",", 1)[1])).shape == (72, 72, 3)
    scores = [float(x) for x in re.findall(r'data-score="([\d.]+)"', text)]
    assert scores == sorted(scores, reverse=True)
    assert "export grades" in text and "grade" in text

    with pytest.raises(LensscoreError, match="--overwrite"):
        gallery(catalog, html_path, top=0)
    g = gallery(catalog, html_path, top=0, min_score=0.0, overwrite=True)
    assert g.n_shown == 11  # every scored row, the broken file is not one
    assert g.n_failed == 0 and "lenses/pb" in html_path.read_text()  # per-band files reload


def test_gallery_cli_and_png(catalog, tmp_path):
    pytest.importorskip("matplotlib")
    r = runner.invoke(app, ["gallery", str(catalog), "--top", "4", "--png",
                            str(tmp_path / "grid.png"), "--q", "5", "--stretch", "2"])
    assert r.exit_code == 0, r.output
    # --png alone writes the grid, no page (issue 32)
    assert not (tmp_path / "cat.html").exists() and "Lupton Q 5, stretch 2" in r.stdout
    from matplotlib.image import imread

    img = imread(tmp_path / "grid.png")
    assert img.ndim == 3 and img.shape[1] > 4 * 100

    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    r = runner.invoke(app, ["gallery", str(tmp_path / "bad.csv")])
    assert r.exit_code == 2 and "not a lensscore catalog" in r.output
    r = runner.invoke(app, ["gallery", str(catalog), "--rgb", "g,r,z", "--overwrite"])
    assert r.exit_code == 2 and "colour bands" in r.output
    # one rule with scan: an existing page is replaced only with --overwrite
    r = runner.invoke(app, ["gallery", str(catalog), "--top", "4"])
    assert r.exit_code == 0 and (tmp_path / "cat.html").exists(), r.output
    r = runner.invoke(app, ["gallery", str(catalog), "--top", "4"])
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = runner.invoke(app, ["gallery", str(catalog), "--top", "4", "--overwrite"])
    assert r.exit_code == 0, r.output


def test_gallery_escapes_what_reaches_the_page(tmp_path):
    rows = [{"id": f"deep/</script>/<b>x{k}", "path": f"deep/dir/x{k}.fits", "score": 0.9,
             "score_std": float("nan"), "ra": float("nan"), "dec": float("nan"), "label": None,
             "status": "ok"} for k in range(2)]
    page = tmp_path / "g.html"
    gallery(rows, page, bands=["g", "r", "i<b>"], rgb_bands=["g", "r", "i<b>"],
            title="</title><script>")
    text = page.read_text()
    script = text[text.index("const INFO"):]
    assert "</script>/" not in text and "<b>x" not in text and "i<b>" not in text
    assert script.count("</script>") == 1  # the page's own closing tag only
    # the part that tells cards apart is shown in full, the directories before it may be cut
    assert '<bdi class="name">&lt;b&gt;x1</bdi>' in text
    assert '<bdi class="dir">deep/&lt;/script&gt;/</bdi>' in text


def test_catalog_name_cannot_close_the_script(tmp_path, rng, rot_model):
    d = tmp_path / "x<" / "script>"  # the catalog's path holds "</script>"
    d.mkdir(parents=True)
    write_cube(d / "a.fits", fake_cutout(rng))
    cat = d / "<!--<script>.csv"  # and its name what makes a script swallow the page
    scan(d, rot_model, output=cat)
    gallery(cat, tmp_path / "g.html")
    text = (tmp_path / "g.html").read_text()
    assert text.count("</script") == text.count("<script") and "<!--" not in text


def test_gallery_missing_file_is_a_card(catalog, tmp_path):
    (catalog.parent / "d" / "lenses" / "c0.fits").unlink()
    g = gallery(catalog, tmp_path / "g.html", top=0)
    assert g.n_failed == 1 and g.n_shown == 11
    assert 'class="noimg"' in (tmp_path / "g.html").read_text()
    with pytest.raises(LensscoreError):
        gallery(tmp_path / "nope.ecsv", tmp_path / "x.html")


def test_scan_writes_gallery(tmp_path, rng, rot_model):
    root = tmp_path / "d"
    root.mkdir()
    for k in range(3):
        write_cube(root / f"c{k}.fits", fake_cutout(rng))
    r = runner.invoke(app, ["scan", str(root), "-m", str(rot_model), "-q", "--gallery",
                            str(tmp_path / "s.html")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.html").read_text().count('<figure class="card"') == 3


CHROMIUM = next((shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(c)), None)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed")
def test_gallery_renders_in_chromium(catalog, tmp_path):
    html_path = tmp_path / "g.html"
    gallery(catalog, html_path, top=8)
    shot = tmp_path / "shot.png"
    p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--window-size=1000,700",
                        f"--screenshot={shot}", html_path.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert shot.exists(), p.stderr[-2000:]
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[:2] == (700, 1000)
    # the page drew something: dark background with bright thumbnails and text
    assert img[..., :3].std() > 0.02


def test_gallery_reads_files_not_display_paths(tmp_path, rng, rot_model):
    """Per-band files in a directory whose name looks like the display form `{g,r,i}`: the
    gallery reads the catalog's `files` field, never re-parses `path` (#18)."""
    from lensscore.sources import Source

    d = tmp_path / "odd{x,y}dir"
    d.mkdir()
    write_per_band(d, "pb", fake_cutout(rng, lens=True))
    write_per_band(d, "qq", fake_cutout(rng), bands=("G", "R", "I"))
    out = tmp_path / "c.csv"
    res = scan(d, rot_model, output=out, rotations=False)
    assert res.n_scored == 2
    src = Source.from_row({"id": res.ids[0], "path": res.paths[0], "files": res.files[0]})
    assert dict(src.files) == {b: str(d / f"{res.ids[0]}_{b}.fits") for b in "gri"} or \
        dict(src.files) == {b: str(d / f"{res.ids[0]}_{b.upper()}.fits") for b in "gri"}
    g = gallery(out, tmp_path / "g.html", top=0, min_score=0.0)
    assert g.n_shown == 2 and g.n_failed == 0
    g = gallery(res, tmp_path / "h.html", top=0, min_score=0.0)  # from the result itself
    assert g.n_shown == 2 and g.n_failed == 0


def test_gallery_ranks_by_logit_where_scores_are_all_one():
    from astropy.table import Table

    from lensscore.gallery import _select, catalog_rows

    t = Table({"id": ["a", "b", "c", "d"], "path": ["a", "b", "c", "d"],
               "score": [1.0, 1.0, 1.0, 0.2], "logit": [18.0, 25.0, 21.0, -1.4]})
    assert [r["id"] for r in _select(catalog_rows(t), 3, None)] == ["b", "c", "a"]
    t.remove_column("logit")  # a catalog of an older version: by score, then id
    assert [r["id"] for r in _select(catalog_rows(t), None, None)] == ["a", "b", "c", "d"]
