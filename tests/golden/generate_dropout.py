#!/usr/bin/python3
"""Writes eigenet's golden data for the Dropout variants: channel dropout (PyTorch
Dropout1d/2d/3d), Keras noise_shape by its published formula, AlphaDropout and
FeatureAlphaDropout. The files land beside this script; run

    /usr/bin/python3 tests/golden/generate_dropout.py

It uses the helpers, the file format and the float64 / float32-rounded-inputs conventions
of generate.py (read its docstring). Deterministic: fixed seeds, one thread.

PyTorch's masks come from its own generator, so the C++ tests cannot match them element by
element; they check what is convention: the identity at p = 0 and in inference, zeros at
p = 1, the scale (and AlphaDropout's offset and dropped value) of every element, which
elements drop together, and equality with PyTorch wherever both masks keep an element.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import DTYPE, Writer, f32, prepare_torch, randn  # noqa: E402

SCRIPT = "tests/golden/generate_dropout.py"


def writer(name, description):
    return Writer(name, description, script=SCRIPT)


def away_from_zero(t, floor=0.25):
    """|t| >= floor, so y == 0 (or dx == 0) exactly marks a dropped element."""
    return torch.where(t.abs() < floor, torch.where(t < 0, -floor, floor) * torch.ones_like(t), t)


def run(fn, x, dy, dtype=DTYPE):
    xi = x.detach().to(dtype).clone().requires_grad_(True)
    y = fn(xi)
    y.backward(dy.to(dtype))
    return y, xi.grad


def write_train_and_eval(w, fn, p, x, dy, seed):
    """p, x, dy, and fn's float64 output and input gradient in training (generator seeded
    with seed + 1) and in inference: {train,eval}_{y,dx}."""
    w.array("p", p)
    w.array("x", x)
    w.array("dy", dy)
    torch.manual_seed(seed + 1)
    y, dx = run(lambda t: fn(t, p=p, training=True), x, dy)
    w.array("train_y", y)
    w.array("train_dx", dx)
    y, dx = run(lambda t: fn(t, p=p, training=False), x, dy)
    w.array("eval_y", y)
    w.array("eval_dx", dx)


def keep_scale(fn, p, shape, dtype):
    """The one value a kept 1.0 becomes under fn (PyTorch's 1/(1 - p) rounded to dtype)."""
    kept = fn(torch.ones(*shape, dtype=dtype), p)
    values = kept[kept != 0].unique()
    assert values.numel() == 1, values
    return values[0]


# --- channel dropout ---------------------------------------------------------------------

def channel_dropout_case(name, fn, shape, p, seed):
    torch.manual_seed(seed)
    x = away_from_zero(randn(*shape))
    dy = away_from_zero(randn(*shape))
    w = writer(name, f"torch.nn.functional.{fn.__name__}(x, p={p}) on {tuple(shape)} (whole channels of dim 1 "
                     "drop together)")
    w.comment("x, dy: inputs (|x|, |dy| >= 0.25); {train,eval}_y, {train,eval}_dx: PyTorch's output and input")
    w.comment("gradient in float64; for 0 < p < 1 also PyTorch's keep scale in float64 and float32 and its")
    w.comment("float32 training output and gradient for the same x, dy (its own mask)")
    write_train_and_eval(w, fn, p, x, dy, seed)
    if 0.0 < p < 1.0:
        big = (200, 500) + (1,) * (len(shape) - 2)
        for dtype, key in [(torch.float64, "scale_float64"), (torch.float32, "scale_float32")]:
            w.array(key, keep_scale(lambda t, q: fn(t, p=q, training=True), p, big, dtype))
        torch.manual_seed(seed + 2)
        y32, dx32 = run(lambda t: fn(t, p=p, training=True), x, dy, torch.float32)
        w.array("train_y_float32", y32)
        w.array("train_dx_float32", dx32)
    w.write()


# --- Keras noise_shape -------------------------------------------------------------------

def noise_shape_case(name, shape, noise_shape, p, seed):
    """Keras Dropout(rate=p, noise_shape) by its published formula (tf.nn.dropout, which
    Keras' Dropout calls): keep = uniform(noise_shape) >= rate; y = x * (1 / (1 - rate)) * keep,
    keep broadcast over the axes where noise_shape is 1. Evaluated and differentiated with
    PyTorch in float64, and in float32 with the same mask."""
    torch.manual_seed(seed)
    x = away_from_zero(randn(*shape))
    dy = away_from_zero(randn(*shape))
    keep = (torch.rand(*noise_shape, dtype=DTYPE) >= p).to(DTYPE)
    w = writer(name, f"Keras Dropout(rate={p}, noise_shape={tuple(noise_shape)}) formula on {tuple(shape)}")
    w.comment("noise_shape: Keras' (extent 1 on the shared axes); keep: the mask drawn for it;")
    w.comment("y = x * (1 / (1 - p)) * keep broadcast, dx = dy * (1 / (1 - p)) * keep; *_float32: the same in float32")
    w.array("p", p)
    w.array("noise_shape", torch.tensor(noise_shape, dtype=DTYPE))
    w.array("x", x)
    w.array("dy", dy)
    w.array("keep", keep)
    for dtype, suffix in [(torch.float64, ""), (torch.float32, "_float32")]:
        y, dx = run(lambda t: t * (1.0 / (1.0 - p)) * keep.to(dtype), x, dy, dtype)
        w.array(f"train_y{suffix}", y)
        w.array(f"train_dx{suffix}", dx)
    w.write()


# --- AlphaDropout ------------------------------------------------------------------------

def alpha_dropout_case(name, fn, shape, p, seed):
    torch.manual_seed(seed)
    x = randn(*shape)
    dy = away_from_zero(randn(*shape))
    w = writer(name, f"torch.nn.functional.{fn.__name__}(x, p={p}) on {tuple(shape)}")
    w.comment("x: standard-normal input; dy: upstream gradient (|dy| >= 0.25, so dx == 0 marks a dropped element);")
    w.comment("{train,eval}_y, {train,eval}_dx: PyTorch's output and input gradient in float64")
    write_train_and_eval(w, fn, p, x, dy, seed)
    w.write()


def main():
    prepare_torch()
    for p, tag in [(0.0, "p0"), (1.0, "p1"), (0.4, "p0_4")]:
        channel_dropout_case(f"dropout2d_{tag}", F.dropout2d, (3, 4, 2, 3), p, seed=600)
    channel_dropout_case("dropout2d_rank3_p0_4", F.dropout1d, (3, 5, 4), 0.4, seed=610)
    channel_dropout_case("dropout2d_rank5_p0_4", F.dropout3d, (2, 4, 2, 2, 3), 0.4, seed=620)
    noise_shape_case("dropout_noise_shape_axis1", (4, 3, 5), (4, 1, 5), 0.3, seed=630)
    noise_shape_case("dropout_noise_shape_axis0", (6, 8), (1, 8), 0.5, seed=631)
    noise_shape_case("dropout_noise_shape_axes23", (3, 4, 2, 3), (3, 4, 1, 1), 0.4, seed=632)
    for p, tag in [(0.0, "p0"), (1.0, "p1"), (0.2, "p0_2"), (0.5, "p0_5")]:
        alpha_dropout_case(f"alpha_dropout_{tag}", F.alpha_dropout, (8, 40), p, seed=640)
    alpha_dropout_case("alpha_dropout_feature_p0_3", F.feature_alpha_dropout, (4, 6, 2, 3), 0.3, seed=650)


if __name__ == "__main__":
    main()
