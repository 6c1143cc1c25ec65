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


def test_train_cli_keeps_tensorflow_quiet_without_verbose():
    """Issue 32: 'failed call to cuInit ... (303)' printed on every CPU run of train/export."""
    import os
    import subprocess
    import sys

    code = ("from train.cli import _main; _main(verbose=False); import tensorflow as tf; "
            "tf.config.list_physical_devices('GPU')")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    # no error lines (E0000 ...: cuInit's among them); TensorFlow 2.21 still prints its I0000
    # start-up lines (oneDNN, "Could not find cuda drivers") before its log level applies
    assert "cuInit" not in p.stderr and "E0000" not in p.stderr, p.stderr[-2000:]
