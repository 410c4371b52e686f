"""Winograd F(2x2, 3x3) and F(4x4, 3x3): their twin against the direct twin, the fast kernels
against torch and the twin, the transforms' adjoints, and which convs take which."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn import functional as F
from minicnn import use_backend
from minicnn.kernels import conv
from minicnn.kernels.fastconv import tiles, winograd_f2x2, winograd_f4x4
from minicnn.kernels.fastconv import winograd as K
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


KIND = {2: conv.Winograd2Plan, 4: conv.Winograd4Plan}  # m: the plan of F(m x m, 3x3)
KERNELS = {2: winograd_f2x2, 4: winograd_f4x4}


@pytest.mark.parametrize("m", [2, 4])
@given(case=winograd_conv2d_cases())
def test_winograd_twin_equals_the_direct_twin(m, case):
    x, w, b, kwargs = case
    pads = _pads(x, w, kwargs)
    with use_backend("numpy"):
        expected = F.conv2d(x, w, b, **kwargs)
        grad = np.random.default_rng(0).standard_normal(expected.shape).astype(x.dtype)
        expected_grads = F.conv2d_backward(grad, x, w, **kwargs)
        scales = term_scales("conv2d", (x, w, b), grad, kwargs)
    assert_close(K.conv2d_forward_numpy(x, w, b, pads, m=m), expected, "forward", scale=scales[0])
    grads = K.conv2d_backward_numpy(grad, x, w, pads, m=m)
    for name, mine, twin, scale in zip(
        ("input", "weight", "bias"), grads, expected_grads, scales[1:]
    ):
        assert_close(mine, twin, f"gradient of {name}", scale=scale)


@pytest.mark.parametrize("m", [2, 4])
@given(case=winograd_conv2d_cases())
def test_fast_winograd_matches_torch(m, case):
    x, w, b, kwargs = case
    with winograd_for_any_channels(m), use_backend("numba"):
        pads = _pads(x, w, kwargs)
        plan = conv.make_plan(x.shape, w, b, (1, 1), pads, (1, 1), 1, x.dtype)
        assert type(plan) is KIND[m]
        compare_with_torch("conv2d", x, w, b, **kwargs)


def _fast_equals_twin(x, w, b, kwargs, m):
    pads = _pads(x, w, kwargs)
    expected = K.conv2d_forward_numpy(x, w, b, pads, m=m)
    grad = np.random.default_rng(1).standard_normal(expected.shape)
    with winograd_for_any_channels(m), use_backend("numba"):
        out = F.conv2d(x, w, b, **kwargs)
        grads = F.conv2d_backward(grad, x, w, **kwargs)
        scales = term_scales("conv2d", (x, w, b), grad, kwargs)  # a sum cancelling to ~0
    assert_close(out, expected, "forward", 1e-13, scales[0])  # is only as exact as its terms
    for name, mine, twin, scale in zip(
        ("input", "weight", "bias"),
        grads,
        K.conv2d_backward_numpy(grad, x, w, pads, m=m),
        scales[1:],
    ):
        assert_close(mine, twin, f"gradient of {name}", 1e-13, scale)


@pytest.mark.parametrize("m", [2, 4])
@given(case=winograd_conv2d_cases().filter(lambda case: case[0].dtype == np.float64))
def test_fast_winograd_matches_its_twin(m, case):
    _fast_equals_twin(*case, m)


@pytest.mark.parametrize("m", [2, 4])
def test_fast_winograd_matches_its_twin_over_many_blocks_of_tiles(m):
    """The output transform's adjoint runs over blocks of ``TILES`` tiles: 26x26 outputs of
    3 images make 507 tiles of 2x2 (7 blocks and 59 tiles) or 147 of 4x4 (2 and 19)."""
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((3, 5, 26, 26)), rng.standard_normal((7, 5, 3, 3)), None
    tiles_per_chunk = 3 * K.tiles_for((26, 26), m)[0] ** 2
    assert tiles_per_chunk % KERNELS[m].TILES > 0 and tiles_per_chunk > KERNELS[m].TILES
    _fast_equals_twin(x, w, b, dict(padding=1), m)


def _grad_output_transform(m, dY, dM, grad_b):
    """The output transform's adjoint, from the gradient in the tiles' blocks."""
    D = np.empty((m * m, dM.shape[1] * dM.shape[2]))
    tiles.output_grad_blocks(dY, D)
    KERNELS[m].grad_output_transform(D, dM, grad_b)


@pytest.mark.parametrize("m", [2, 4])
@given(
    seed=st.integers(0, 2**16),
    shape=st.tuples(
        st.integers(1, 3),
        st.integers(1, 4),
        st.integers(1, 4),
        st.integers(1, 9),
        st.integers(1, 9),
    ),
)
def test_each_backward_transform_is_its_forward_transforms_adjoint(m, seed, shape):
    """<transform(a), b> == <a, adjoint(b)> for random a and b: the backward pass sends
    gradients back along exactly the paths the forward pass took."""
    N, C, C_out, oH, oW = shape
    kernels, planes = KERNELS[m], (m + 2) ** 2
    rng = np.random.default_rng(seed)
    tH, tW = K.tiles_for((oH, oW), m)
    top, left = rng.integers(0, 2, size=2)
    H, W = oH + 2 - top - rng.integers(0, 2), oW + 2 - left - rng.integers(0, 2)
    pad_shape, V_shape, M_shape, _ = tiles.scratch_shapes(m, N, C, C_out, tH, tW)
    pad = np.empty(pad_shape)

    w, dU = rng.standard_normal((C_out, C, 3, 3)), rng.standard_normal((planes, C_out, C))
    U, grad_w = np.empty((planes, C_out, C)), np.empty((C_out, C, 3, 3))
    kernels.filter_transform(w, U)
    kernels.grad_filter_transform(dU, grad_w)
    assert np.isclose(np.vdot(U, dU), np.vdot(w, grad_w), rtol=1e-12)

    x, dV = rng.standard_normal((N, C, H, W)), rng.standard_normal(V_shape)
    V, grad_x = np.empty(V_shape), np.empty((N, C, H, W))
    kernels.input_transform(x, top, left, pad, V)
    kernels.grad_input_transform(dV, top, left, pad, grad_x)
    assert np.isclose(np.vdot(V, dV), np.vdot(x, grad_x), rtol=1e-12)

    M = rng.standard_normal(M_shape)
    dY = rng.standard_normal((N, C_out, oH, oW))
    Y, dM = np.empty((N, C_out, oH, oW)), np.empty(M_shape)
    kernels.output_transform(M, np.zeros(C_out), Y)
    grad_b = np.full(C_out, 0.5)
    _grad_output_transform(m, dY, dM, grad_b)
    assert np.isclose(np.vdot(Y, dY), np.vdot(M, dM), rtol=1e-12)
    np.testing.assert_allclose(grad_b, 0.5 + dY.sum(axis=(0, 2, 3)), rtol=1e-12)  # added in


@pytest.mark.parametrize("C, C_out, size, kind", [(32, 64, 14, 2), (64, 128, 7, 4)])
def test_the_decks_float32_convs_match_float64_torch(C, C_out, size, kind):
    """At the deck's sizes (conv2: 32 -> 64 channels, 14x14; the DeepCNN's conv3: 64 -> 128,
    7x7; a batch of 100) float32 Winograd is as exact as float32 allows: within 1e-5 of the
    float64 result, relative to its terms. F(4x4, 3x3)'s larger coefficients leave it about
    ten times further than F(2x2, 3x3) (measured: 5e-6 against 4e-7 of the largest output)."""
    rng = np.random.default_rng(7)
    x = np.maximum(rng.standard_normal((100, C, size, size)), 0).astype(np.float32)
    w = (rng.standard_normal((C_out, C, 3, 3)) * 0.06).astype(np.float32)
    b = (rng.standard_normal(C_out) * 0.06).astype(np.float32)
    grad = rng.standard_normal((100, C_out, size, size)).astype(np.float32) * 1e-3
    with use_backend("numba"):
        plan = conv.make_plan(x.shape, w, b, (1, 1), (1,) * 4, (1, 1), 1, x.dtype)
        assert type(plan) is KIND[kind]
        out = F.conv2d(x, w, b, padding=1)
        grads = F.conv2d_backward(grad, x, w, padding=1)
    wide = [a.astype(np.float64) for a in (x, w, b, grad)]
    with use_backend("numpy"):
        expected = F.conv2d(*wide[:3], padding=1)
        expected_grads = F.conv2d_backward(wide[3], *wide[:2], padding=1)
        scales = term_scales("conv2d", wide[:3], wide[3], dict(padding=1))
    assert_close(out.astype(np.float64), expected, "forward", 1e-5, scales[0])
    for name, mine, exact, scale in zip(
        ("input", "weight", "bias"), grads, expected_grads, scales[1:]
    ):
        assert_close(mine.astype(np.float64), exact, f"gradient of {name}", 1e-5, scale)


@pytest.mark.parametrize(
    "x_shape, w_shape, stride, dilation, groups, expected",
    [
        ((100, 32, 14, 14), (64, 32, 3, 3), (1, 1), (1, 1), 1, conv.Winograd2Plan),  # conv2
        ((100, 64, 7, 7), (128, 64, 3, 3), (1, 1), (1, 1), 1, conv.Winograd4Plan),  # conv3
        ((2, 8, 28, 28), (8, 8, 3, 3), (1, 1), (1, 1), 1, conv.Winograd4Plan),  # 4x4 fits
        ((2, 8, 5, 5), (8, 8, 3, 3), (1, 1), (1, 1), 1, conv.Winograd2Plan),  # 144 products each
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
