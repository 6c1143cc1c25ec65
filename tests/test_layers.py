"""The Keras layers and the training configuration, quickly (the default test run): the seed's
RotationalConv2D and the D4 DihedralConv2D, exact invariance and the two computation modes."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from lensscore.config import TRANSFORMS  # noqa: E402
from lensscore.geometry import transform  # noqa: E402
from train.fit import FitConfig  # noqa: E402
from train.models import build_model  # noqa: E402

pytestmark = pytest.mark.tf


def _scores(model, x):
    return np.stack([np.asarray(model(np.ascontiguousarray(transform(x, k, m,
                                                                     channels_last=True)),
                                      training=False)).ravel() for k, m in TRANSFORMS])


@pytest.fixture(scope="module")
def x():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 48, 48, 3)).astype(np.float32)
    x[:, 5:15, 25:40] += 2  # off-centre and chiral
    return x


def _sharpened(arch, mode="kernel"):
    m = build_model(arch, size=48, rot_mode=mode, seed=1)
    m.get_layer("score").set_weights([w * 30 for w in m.get_layer("score").get_weights()])
    return m


def test_d4_layer_is_invariant_to_all_eight_transforms(x):
    exact = _scores(_sharpened("d4", "input"), x)
    assert np.all(exact == exact[0])  # input mode: the same set of inputs, bit for bit
    fast = _scores(_sharpened("d4", "kernel"), x)
    assert np.ptp(fast, axis=0).max() <= 1e-6  # kernel mode: the same function to rounding
    np.testing.assert_allclose(fast[0], exact[0], atol=1e-6)
    assert np.ptp(exact[0]) > 1e-4  # not a constant function


def test_rot_layer_is_blind_to_rotations_not_to_the_mirror(x):
    s = _scores(_sharpened("rot"), x)
    assert np.ptp(s[:4], axis=0).max() <= 1e-6 and np.ptp(s[4:], axis=0).max() <= 1e-6
    assert np.abs(s[4] - s[0]).max() > 1e-4
    b = _scores(_sharpened("baseline"), x)
    assert np.ptp(b[:4], axis=0).max() > 1e-4


def test_d4_layer_saves_and_reloads(tmp_path, x):
    m = _sharpened("d4")
    m.save(tmp_path / "d4.keras")
    m2 = keras.saving.load_model(tmp_path / "d4.keras")  # registered: no custom_objects
    assert type(m2.get_layer("conv1")).__name__ == "DihedralConv2D"
    np.testing.assert_allclose(np.asarray(m2(x)), np.asarray(m(x)), atol=1e-7)


def test_parameter_counts_and_augmentation_defaults():
    assert build_model("d4").count_params() == 27_467_905  # the same weights as rot
    assert FitConfig(arch="baseline").augment and FitConfig(arch="rot").augment
    assert not FitConfig(arch="d4").augment and FitConfig().arch == "d4"
    assert FitConfig(arch="d4", augment=True).augment
    with pytest.raises(ValueError, match="unknown arch"):
        FitConfig(arch="c8")


@pytest.mark.slow  # two TensorFlow start-ups in subprocesses: ~20 s
def test_train_and_export_keep_tensorflow_quiet_without_verbose(tmp_path):
    """Issue 32: TensorFlow's start-up lines ('I0000 ... oneDNN custom operations are on',
    'cudart_stub.cc ... Could not find cuda drivers', 'failed call to cuInit') printed on every
    CPU run of `python -m train` / `python -m export`: TF_CPP_MIN_LOG_LEVEL does not reach
    the lines TensorFlow's import prints (tensorflow#100442), so the entry points filter them."""
    import os
    import subprocess
    import sys

    (tmp_path / "m.keras").write_bytes(b"not a model")
    (tmp_path / "x.fits").write_bytes(b"not a fits file")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    # each command imports TensorFlow, then fails on the bogus model: one line of ours. The
    # two run side by side (each is mostly TensorFlow's import, ~6 s).
    cmds = (["train", "predict", "m.keras", "x.fits"], ["export", "m.keras", "o.onnx"])
    procs = [subprocess.Popen([sys.executable, "-m", *cmd], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
             for cmd in cmds]
    try:
        errs = [p.communicate(timeout=300)[1] for p in procs]
    finally:  # a timeout or a failed assertion leaves no process behind
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for cmd, p, err in zip(cmds, procs, errs):
        assert p.returncode != 0 and "error" in err.lower(), err[-2000:]
        for noise in ("I0000", "E0000", "oneDNN", "cudart_stub", "cuInit",
                      "absl::InitializeLog"):
            assert noise not in err, (cmd, err[-2000:])


def test_tf_log_filter_keeps_what_the_level_keeps():
    from train._tflog import drop_tf_lines

    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR\n"
            "I0000 00:00:1796402831.585217   30073 port.cc:153] oneDNN custom operations are on\n"
            "W0000 00:00:1796402831.6   30073 x.cc:1] a warning\n"
            "E0000 00:00:1796402833.084807   30073 cuda_platform.cc:52] failed call to cuInit\n"
            "UserWarning: something of Python's\n")
    assert drop_tf_lines(text, 0) == text
    assert drop_tf_lines(text, 2) == ("E0000 00:00:1796402833.084807   30073 cuda_platform.cc:52]"
                                      " failed call to cuInit\nUserWarning: something of "
                                      "Python's\n")
    assert drop_tf_lines(text, 3) == "UserWarning: something of Python's\n"


def test_tf_log_filter_lets_a_fatal_line_through_when_the_import_aborts(tmp_path):
    """The lines a TensorFlow that aborts while loading wrote reach stderr (not lost in a
    buffer of the dead process), less those the level hides."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os\n"
        "os.write(2, b'I0000 00:00:1.0 1 port.cc:1] oneDNN custom operations are on\\n')\n"
        "os.write(2, b'F0000 00:00:1.0 1 check.cc:1] Check failed: boom\\n')\n"
        "os.abort()\n")
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{root}",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    p = subprocess.run([sys.executable, "-c", "from train._tflog import "
                        "filter_tensorflow_import as f; f(); import tensorflow"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode != 0
    assert "Check failed: boom" in p.stderr and "oneDNN" not in p.stderr, p.stderr
