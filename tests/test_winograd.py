"""Winograd F(2x2, 3x3): its twin against the direct twin, the fast kernels against torch and
the twin, the transforms' adjoints, and which convs take it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn import functional as F
from minicnn import use_backend
from minicnn.kernels import conv
from minicnn.kernels import winograd as K
from tests.helpers import assert_close, compare_with_torch, term_scales, winograd_for_any_channels
from tests.strategies import winograd_conv2d_cases


def _pads(x, w, kwargs):
    """conv2d's (top, bottom, left, right) padding for a case."""
    padding = kwargs["padding"]
    if padding == "same":
        return (1, 1, 1, 1)
    if padding == "valid":
        return (0, 0, 0, 0)
    pH, pW = padding if isinstance(padding, tuple) else (padding, padding)
    return (pH, pH, pW, pW)


@given(case=winograd_conv2d_cases())
def test_winograd_twin_equals_the_direct_twin(case):
    x, w, b, kwargs = case
    pads = _pads(x, w, kwargs)
    with use_backend("numpy"):
        expected = F.conv2d(x, w, b, **kwargs)
        grad = np.random.default_rng(0).standard_normal(expected.shape).astype(x.dtype)
        expected_grads = F.conv2d_backward(grad, x, w, **kwargs)
        scales = term_scales("conv2d", (x, w, b), grad, kwargs)
    assert_close(K.conv2d_forward_numpy(x, w, b, pads), expected, "forward", scale=scales[0])
    grads = K.conv2d_backward_numpy(grad, x, w, pads)
    for name, mine, twin, scale in zip(("input", "weight", "bias"), grads, expected_grads,
                                       scales[1:]):  # fmt: skip
        assert_close(mine, twin, f"gradient of {name}", scale=scale)


@given(case=winograd_conv2d_cases())
def test_fast_winograd_matches_torch(case):
    x, w, b, kwargs = case
    with winograd_for_any_channels(), use_backend("numba"):
        pads = _pads(x, w, kwargs)
        plan = conv.make_plan(x.shape, w, b, (1, 1), pads, (1, 1), 1, x.dtype)
        assert isinstance(plan, conv.WinogradPlan)
        compare_with_torch("conv2d", x, w, b, **kwargs)


@given(case=winograd_conv2d_cases().filter(lambda case: case[0].dtype == np.float64))
def test_fast_winograd_matches_its_twin(case):
    x, w, b, kwargs = case
    pads = _pads(x, w, kwargs)
    expected = K.conv2d_forward_numpy(x, w, b, pads)
    grad = np.random.default_rng(1).standard_normal(expected.shape)
    with winograd_for_any_channels(), use_backend("numba"):
        out = F.conv2d(x, w, b, **kwargs)
        grads = F.conv2d_backward(grad, x, w, **kwargs)
    assert_close(out, expected, "forward", tolerance=1e-13)
    for name, mine, twin in zip(("input", "weight", "bias"), grads,
                                K.conv2d_backward_numpy(grad, x, w, pads)):  # fmt: skip
        assert_close(mine, twin, f"gradient of {name}", tolerance=1e-13)


@given(seed=st.integers(0, 2**16), shape=st.tuples(st.integers(1, 3), st.integers(1, 4),
                                                   st.integers(1, 4), st.integers(1, 9),
                                                   st.integers(1, 9)))  # fmt: skip
def test_each_backward_transform_is_its_forward_transforms_adjoint(seed, shape):
    """<transform(a), b> == <a, adjoint(b)> for random a and b: the backward pass sends
    gradients back along exactly the paths the forward pass took."""
    N, C, C_out, oH, oW = shape
    rng = np.random.default_rng(seed)
    tH, tW = K.tiles_for((oH, oW))
    top, left = rng.integers(0, 2, size=2)
    H, W = oH + 2 - top - rng.integers(0, 2), oW + 2 - left - rng.integers(0, 2)
    pad = np.empty((C, 2 * tH + 2, 2 * tW + 2))

    w, dU = rng.standard_normal((C_out, C, 3, 3)), rng.standard_normal((16, C_out, C))
    U, grad_w = np.empty((16, C_out, C)), np.empty((C_out, C, 3, 3))
    K.filter_transform(w, U)
    K.grad_filter_transform(dU, grad_w)
    assert np.isclose(np.vdot(U, dU), np.vdot(w, grad_w), rtol=1e-12)

    x, dV = rng.standard_normal((N, C, H, W)), rng.standard_normal((16, C, N * tH * tW))
    V, grad_x = np.empty((16, C, N * tH * tW)), np.empty((N, C, H, W))
    K.input_transform(x, top, left, pad, V)
    K.grad_input_transform(dV, top, left, pad, grad_x)
    assert np.isclose(np.vdot(V, dV), np.vdot(x, grad_x), rtol=1e-12)

    M, dY = rng.standard_normal((16, C_out, N * tH * tW)), rng.standard_normal((N, C_out, oH, oW))
    Y, dM = np.empty((N, C_out, oH, oW)), np.empty((16, C_out, N * tH * tW))
    K.output_transform(M, np.zeros(C_out), Y)
    grad_b = np.full(C_out, 0.5)
    K.grad_output_transform(dY, dM, grad_b)
    assert np.isclose(np.vdot(Y, dY), np.vdot(M, dM), rtol=1e-12)
    np.testing.assert_allclose(grad_b, 0.5 + dY.sum(axis=(0, 2, 3)), rtol=1e-12)  # added in


def test_the_decks_float32_conv2_matches_float64_torch():
    """At the deck's size (32 -> 64 channels, 14x14, a batch of 100) float32 Winograd is as
    exact as float32 allows: within 1e-5 of the float64 result, relative to its terms."""
    rng = np.random.default_rng(7)
    x = np.maximum(rng.standard_normal((100, 32, 14, 14)), 0).astype(np.float32)
    w = (rng.standard_normal((64, 32, 3, 3)) * 0.06).astype(np.float32)
    b = (rng.standard_normal(64) * 0.06).astype(np.float32)
    grad = rng.standard_normal((100, 64, 14, 14)).astype(np.float32) * 1e-3
    with use_backend("numba"):
        assert isinstance(conv.make_plan(x.shape, w, b, (1, 1), (1,) * 4, (1, 1), 1,
                                         x.dtype), conv.WinogradPlan)  # fmt: skip
        out = F.conv2d(x, w, b, padding=1)
        grads = F.conv2d_backward(grad, x, w, padding=1)
    wide = [a.astype(np.float64) for a in (x, w, b, grad)]
    with use_backend("numpy"):
        expected = F.conv2d(*wide[:3], padding=1)
        expected_grads = F.conv2d_backward(wide[3], *wide[:2], padding=1)
        scales = term_scales("conv2d", wide[:3], wide[3], dict(padding=1))
    assert_close(out.astype(np.float64), expected, "forward", 1e-5, scales[0])
    for name, mine, exact, scale in zip(("input", "weight", "bias"), grads, expected_grads,
                                        scales[1:]):  # fmt: skip
        assert_close(mine.astype(np.float64), exact, f"gradient of {name}", 1e-5, scale)


@pytest.mark.parametrize(
    "x_shape, w_shape, stride, dilation, groups, expected",
    [
        ((100, 32, 14, 14), (64, 32, 3, 3), (1, 1), (1, 1), 1, conv.WinogradPlan),  # conv2
        ((100, 64, 7, 7), (128, 64, 3, 3), (1, 1), (1, 1), 1, conv.WinogradPlan),  # conv3
        ((100, 1, 28, 28), (32, 1, 3, 3), (1, 1), (1, 1), 1, conv.DirectPlan),  # one channel
        ((2, 1, 28, 28), (32, 1, 5, 5), (1, 1), (1, 1), 1, conv.ConvPlan),
        ((2, 32, 14, 14), (64, 32, 3, 3), (2, 2), (1, 1), 1, conv.ConvPlan),
        ((2, 32, 14, 14), (64, 32, 3, 3), (1, 1), (2, 2), 1, conv.ConvPlan),
        ((2, 32, 14, 14), (64, 16, 3, 3), (1, 1), (1, 1), 2, conv.ConvPlan),
        ((2, 32, 14, 14), (64, 32, 5, 5), (1, 1), (1, 1), 1, conv.ConvPlan),
    ],
)
def test_winograd_takes_3x3_stride_1_convs_with_channels_enough(
    x_shape, w_shape, stride, dilation, groups, expected
):
    w = np.zeros(w_shape, np.float32)
    plan = conv.make_plan(x_shape, w, None, stride, (1,) * 4, dilation, groups, np.float32)
    assert type(plan) is expected
