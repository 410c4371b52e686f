"""conv2d against torch, its NumPy twin and a central-difference gradient check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given

from minicnn import functional as F
from minicnn import use_backend
from minicnn.kernels.fastconv import im2col as unfold
from minicnn.teach.gradcheck import numerical_gradient  # central differences
from tests.helpers import assert_close, compare_with_torch, term_scales
from tests.strategies import conv2d_cases

BACKENDS = ["numpy", "numba"]


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=conv2d_cases())
def test_conv2d_matches_torch(backend, case):
    x, w, b, kwargs = case
    with use_backend(backend):
        compare_with_torch("conv2d", x, w, b, **kwargs)


@given(case=conv2d_cases())
def test_fast_conv2d_matches_its_numpy_twin(case):
    x, w, b, kwargs = case
    with use_backend("numpy"):
        expected = F.conv2d(x, w, b, **kwargs)
        grad = np.random.default_rng(0).standard_normal(expected.shape).astype(x.dtype)
        expected_grads = F.conv2d_backward(grad, x, w, **kwargs)
        scales = term_scales("conv2d", (x, w, b), grad, kwargs)
    with use_backend("numba"):
        assert_close(F.conv2d(x, w, b, **kwargs), expected, "forward", scale=scales[0])
        ours = F.conv2d_backward(grad, x, w, **kwargs)
        for name, mine, twin, scale in zip(
            ("input", "weight", "bias"), ours, expected_grads, scales[1:]
        ):
            assert_close(mine, twin, f"gradient of {name}", scale=scale)


def test_same_padding_with_even_kernel_pads_bottom_right_like_torch():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 5, 6))
    w = rng.standard_normal((3, 2, 2, 4))
    out = F.conv2d(x, w, padding="same")
    assert out.shape == (1, 3, 5, 6)
    compare_with_torch("conv2d", x, w, None, padding="same")


def test_unbatched_input_like_torch():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((3, 7, 7)), rng.standard_normal((4, 3, 3, 3))
    compare_with_torch("conv2d", x, w, None, padding=1)


def test_input_grad_can_be_skipped():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 1, 6, 6)), rng.standard_normal((4, 1, 3, 3))
    grad = np.ones((2, 4, 4, 4))
    for backend in BACKENDS:
        with use_backend(backend):
            gx, gw, gb = F.conv2d_backward(grad, x, w, output_mask=(False, True, True))
            assert gx is None and gw.shape == w.shape and gb.shape == (4,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_is_kept_float32(backend):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    with use_backend(backend):
        assert F.conv2d(x, w).dtype == np.float32
        assert all(
            g.dtype == np.float32
            for g in F.conv2d_backward(np.ones((2, 5, 6, 6), np.float32), x, w)
        )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(stride=2, padding=1),
        dict(padding=(2, 1), dilation=(2, 1)),
        dict(groups=2, padding="same"),
        dict(stride=(1, 2), padding="valid", dilation=2),
    ],
)
def test_conv2d_gradcheck(backend, kwargs):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 6, 5))
    w = rng.standard_normal((2, 4 // kwargs.get("groups", 1), 3, 2))
    b = rng.standard_normal(2)
    with use_backend(backend):
        out = F.conv2d(x, w, b, **kwargs)
        r = rng.standard_normal(out.shape)

        def loss():
            return float((F.conv2d(x, w, b, **kwargs) * r).sum())

        analytic = F.conv2d_backward(r, x, w, **kwargs)
        for array, grad in zip((x, w, b), analytic):
            assert np.allclose(grad, numerical_gradient(loss, array), rtol=1e-6, atol=1e-7)


def test_torch_convention_is_cross_correlation_not_convolution():
    # an asymmetric kernel tells the two apart: torch (and minicnn) do not flip it
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 0.0], [0.0, 0.0]]]])  # picks the top-left pixel of each window
    np.testing.assert_array_equal(F.conv2d(x, w)[0, 0], [[0.0, 1.0], [3.0, 4.0]])
    expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w)).numpy()
    np.testing.assert_array_equal(F.conv2d(x, w), expected)


@pytest.mark.parametrize("unit", [False, True])
def test_im2col_and_col2im_are_adjoint(unit):
    # <im2col(x), c> == <x, col2im(c)> for every x and c: col2im is im2col's transpose
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 4, 7, 6))
    kH, kW, G = 3, 2, 2
    s, p, d = ((1, 1), (1, 0), (1, 1)) if unit else ((2, 1), (1, 1), (1, 2))
    oH = (7 + 2 * p[0] - d[0] * (kH - 1) - 1) // s[0] + 1
    oW = (6 + 2 * p[1] - d[1] * (kW - 1) - 1) // s[1] + 1
    cols = np.empty((G, 2 * kH * kW, 2, oH * oW))  # (G, Cg*kH*kW, N, oH*oW)
    c = rng.standard_normal(cols.shape)
    back = np.empty_like(x)
    if unit:
        pad = np.empty((4, oH + kH - 1, oW + kW - 1))
        unfold.im2col_unit(x, kH, kW, *p, oH, oW, pad, cols)
        unfold.col2im_unit(c, kH, kW, *p, oH, oW, pad, back)
    else:
        unfold.im2col(x, kH, kW, *s, *p, *d, oH, oW, cols)
        unfold.col2im(c, kH, kW, *s, *p, *d, oH, oW, back)
    assert np.isclose((cols * c).sum(), (x * back).sum(), rtol=1e-12)
