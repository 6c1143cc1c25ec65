"""The README's Python example runs as written, from the repository root."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_readme_python_example_runs(tmp_path):
    if not (ROOT / "models" / "rot.onnx").exists():
        pytest.skip("models/rot.onnx not in this checkout")
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    # run from a copy of the paths it names, so the catalog it writes stays out of the tree
    os.symlink(ROOT / "examples", tmp_path / "examples")
    os.symlink(ROOT / "models", tmp_path / "models")
    env = {k: v for k, v in os.environ.items() if k != "LENSSCORE_MODEL"}
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    first = p.stdout.splitlines()[0].split()
    assert 0.0 <= float(first[2]) <= 1.0  # a float printed for one cutout, not an array
    assert (tmp_path / "candidates.ecsv").exists()
    # catalog mode gives the cutout files' scores (the tiles hold their pixels)
    tiles = ast.literal_eval(p.stdout.splitlines()[-1])  # the printed {id: score}
    from lensscore import scan

    files = scan([ROOT / "examples" / "cutouts" / f"{c}.fits" for c in
                  ("lenses/sim_000000", "nonlenses/sim_000001", "lenses/sim_000002",
                   "nonlenses/sim_000003")], rotations=False)
    assert sorted(tiles) == sorted(files.ids)
    for i, s in zip(files.ids, files.scores):
        assert abs(tiles[i] - s) < 1e-6, i
