"""Keras models: the HOLISMOKES CNN (Cañameras et al. 2020) and the seed's rotational variant."""

from __future__ import annotations

import keras
from keras import layers, ops, regularizers

from lensscore.config import ARCH_INVARIANCE, DEFAULT_BANDS, DEFAULT_SIZE

__all__ = ["RotationalConv2D", "DihedralConv2D", "build_model", "ARCHS", "rot90",
           "transform"]

ARCHS = tuple(ARCH_INVARIANCE)


def _rot_axes(x, k: int, a: int, b: int, perm):
    """Rotate ``x`` by ``k`` x 90° in axes ``(a, b)`` like ``np.rot90``; ``perm`` swaps a and b."""
    k %= 4
    if k == 0:
        return x
    if k == 2:
        return ops.flip(ops.flip(x, axis=a), axis=b)
    t = ops.transpose(x, perm)
    return ops.flip(t, axis=a) if k == 1 else ops.flip(t, axis=b)


def rot90(x, k: int):
    """Rotate NHWC tensors by ``k`` x 90° like ``np.rot90(x, k, axes=(1, 2))``.

    Transpose + reverse only: ``tf.image.rot90`` is slower here and exports as If/Assert nodes.
    """
    return _rot_axes(x, k, 1, 2, (0, 2, 1, 3))


def _rot_kernel(w, k: int):
    """Rotate an HWIO kernel by ``k`` x 90° in its spatial axes (like ``np.rot90(w, k)``)."""
    return _rot_axes(w, k, 0, 1, (1, 0, 2, 3))


def transform(x, k: int, mirror: bool):
    """The dihedral transform ``(k, mirror)`` of NHWC tensors: mirrored in x (``x[:, :, ::-1]``)
    first if ``mirror``, then rotated by ``k`` x 90° (:func:`lensscore.scorer.transform`)."""
    return rot90(ops.flip(x, axis=2) if mirror else x, k)


@keras.saving.register_keras_serializable(package="lensscore")
class RotationalConv2D(layers.Conv2D):
    """The seed's rotational convolution (Ivashkov 2022, §5.2).

    ``out = act(max_k conv(rot90(x, k), W) + b)`` over ``k = 0..3``: the same kernel on the input
    rotated by 0/90/180/270°, element-wise maximum, then bias and activation. The set of rotated
    inputs is the same for every rotation of ``x``, so the layer -- and a network built on it -- is
    invariant to 90° rotations. Unlike the seed's published code the activation is applied (its
    overridden ``call`` dropped it; the text says every layer has a ReLU).

    Parameters
    ----------
    mode : {"kernel", "input"}
        How the four convolutions are computed; the function is the same. ``input`` rotates
        the input (the seed's code, bit-exact invariance); ``kernel`` runs one convolution with
        the four rotated kernels stacked and rotates the outputs back (faster to train,
        invariant to float rounding, ~1e-7). Only ``valid`` padding, square inputs and kernels.
    """

    #: the transforms ``(k, mirror)`` the layer maximises over: the four rotations (C4)
    TRANSFORMS = tuple((k, False) for k in range(4))
    GROUP = "C4"

    def __init__(self, *args, mode: str = "kernel", **kwargs):
        super().__init__(*args, **kwargs)
        if mode not in ("kernel", "input"):
            raise ValueError(f"mode must be 'kernel' or 'input', got {mode!r}")
        if self.padding != "valid" or tuple(self.strides) != (1, 1):
            raise ValueError("RotationalConv2D supports padding='valid', strides=1 only")
        if self.kernel_size[0] != self.kernel_size[1]:
            raise ValueError("RotationalConv2D needs a square kernel")
        self.mode = mode

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}

    def call(self, inputs):
        ts = self.TRANSFORMS
        if self.mode == "input":
            outs = [self.convolution_op(transform(inputs, k, m), self.kernel) for k, m in ts]
        else:
            # conv(rot_k(F x), W) = rot_k(F(conv(x, F(rot_-k(W))))), F the mirror in x
            def kern(k, m):
                w = _rot_kernel(self.kernel, -k)
                return ops.flip(w, axis=1) if m else w

            stacked = ops.concatenate([kern(k, m) for k, m in ts], axis=-1)
            y = self.convolution_op(inputs, stacked)
            outs = [transform(part, k, m)
                    for (k, m), part in zip(ts, ops.split(y, len(ts), axis=-1))]
        while len(outs) > 1:  # a balanced tree of binary maxima
            outs = [ops.maximum(a, b) for a, b in zip(outs[::2], outs[1::2])]
        result = outs[0]
        if self.use_bias:
            result = result + self.bias
        if self.activation is not None:
            result = self.activation(result)
        return result


@keras.saving.register_keras_serializable(package="lensscore")
class DihedralConv2D(RotationalConv2D):
    """:class:`RotationalConv2D` over the 8 transforms of the dihedral group D4.

    ``out = act(max_T conv(T x, W) + b)`` over the four rotations of ``x`` and of its mirror
    image: the set ``{T x}`` is the same for every rotation or reflection of ``x``, so the layer
    and a network built on it are invariant to both -- the sky has no handedness.
    """

    TRANSFORMS = tuple((k, m) for m in (False, True) for k in range(4))
    GROUP = "D4"


def build_model(
    arch: str = "baseline",
    size: int = DEFAULT_SIZE,
    n_bands: int = len(DEFAULT_BANDS),
    l2: float = 1e-4,
    conv_l2: float | None = None,
    dropout: float = 0.5,
    rot_mode: str = "kernel",
    seed: int = 0,
) -> keras.Model:
    """The HOLISMOKES CNN, or its rotational variant.

    Conv 11x11x32 -> MaxPool 2 -> Conv 7x7x64 -> MaxPool 2 -> Conv 3x3x128 -> Flatten ->
    Dropout -> Dense 2048 -> 512 -> 32 -> 1 (sigmoid); ReLU, valid padding (~27.5 M parameters
    at 72x72x3). ``rot`` replaces the first Conv by :class:`RotationalConv2D` (invariant to 90°
    rotations), ``d4`` by :class:`DihedralConv2D` (to rotations and mirror images).

    Parameters
    ----------
    arch : {"baseline", "rot", "d4"}
    l2 : float
        L2 weight decay on every kernel (the seed's table: 1e-4).
    conv_l2 : float, optional
        Separate L2 for the convolution kernels (the seed's code used 1e-3 on those alone).
    dropout : float
        Before the first dense layer.
    seed : int
        Weight initialisation and dropout seed.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}: choose one of {', '.join(ARCHS)}")
    creg = regularizers.L2(l2 if conv_l2 is None else conv_l2) if (conv_l2 or l2) else None
    dreg = regularizers.L2(l2) if l2 else None
    init = lambda k: keras.initializers.GlorotUniform(seed=seed + k)  # noqa: E731
    inp = keras.Input((size, size, n_bands), name="image")
    conv1 = {"rot": RotationalConv2D, "d4": DihedralConv2D}.get(arch, layers.Conv2D)
    extra = {"mode": rot_mode} if arch != "baseline" else {}
    x = conv1(32, 11, activation="relu", kernel_regularizer=creg, kernel_initializer=init(0),
              name="conv1", **extra)(inp)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 7, activation="relu", kernel_regularizer=creg,
                      kernel_initializer=init(1), name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Conv2D(128, 3, activation="relu", kernel_regularizer=creg,
                      kernel_initializer=init(2), name="conv3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, seed=seed, name="dropout")(x)
    for k, n in enumerate((2048, 512, 32)):
        x = layers.Dense(n, activation="relu", kernel_regularizer=dreg,
                         kernel_initializer=init(3 + k), name=f"dense{k + 1}")(x)
    out = layers.Dense(1, activation="sigmoid", kernel_initializer=init(6), name="score")(x)
    return keras.Model(inp, out, name=f"holismokes_{arch}")
