"""The direct 3x3 conv (``minicnn.kernels.fastconv.direct``): against torch and the twin, fused with
relu and the 2x2 pool bit for bit as the three ops, and odd filter counts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn import functional as F
from minicnn import use_backend
from minicnn.kernels import conv
from tests.helpers import assert_close, compare_with_torch, direct_for_any_channels, term_scales
from tests.strategies import winograd_conv2d_cases

POOL = dict(kernel_size=2, pool_stride=2)  # the deck's pool, which the fused kernels take


@given(case=winograd_conv2d_cases())
def test_fast_direct_conv_matches_torch(case):
    x, w, b, kwargs = case
    with direct_for_any_channels(), use_backend("numba"):
        plan = conv.make_plan(x.shape, w, b, (1, 1), (0,) * 4, (1, 1), 1, x.dtype)
        assert isinstance(plan, conv.DirectPlan)
        compare_with_torch("conv2d", x, w, b, **kwargs)


@given(case=winograd_conv2d_cases().filter(lambda case: case[0].dtype == np.float64))
def test_fast_direct_conv_matches_the_twin(case):
    x, w, b, kwargs = case
    with use_backend("numpy"):
        expected = F.conv2d(x, w, b, **kwargs)
        grad = np.random.default_rng(1).standard_normal(expected.shape)
        expected_grads = F.conv2d_backward(grad, x, w, **kwargs)
        scales = term_scales("conv2d", (x, w, b), grad, kwargs)  # a sum cancelling to ~0
    with direct_for_any_channels(), use_backend("numba"):
        out = F.conv2d(x, w, b, **kwargs)
        grads = F.conv2d_backward(grad, x, w, **kwargs)
    assert_close(out, expected, "forward", 1e-13, scales[0])  # is only as exact as its terms
    for name, mine, twin, scale in zip(
        ("input", "weight", "bias"), grads, expected_grads, scales[1:]
    ):
        assert_close(mine, twin, f"gradient of {name}", 1e-13, scale)


@pytest.mark.parametrize("input_grad", [True, False])
@given(case=winograd_conv2d_cases(), seed=st.integers(0, 2**16))
def test_fused_direct_pool_equals_the_three_ops_bit_for_bit(input_grad, case, seed):
    x, w, b, kwargs = case
    with direct_for_any_channels(), use_backend("numba"):
        y = F.conv2d(x, w, b, **kwargs)
        if min(y.shape[2:]) < 2:
            return  # no 2x2 window fits
        r = F.relu(y)
        out3, indices3 = F.max_pool2d(r, 2, return_indices=True)
        out, indices = F.conv2d_relu_max_pool2d(x, w, b, **kwargs, **POOL)
        grad = np.random.default_rng(seed).standard_normal(out.shape).astype(x.dtype)
        grad_y = F.relu_backward(F.max_pool2d_backward(grad, r, 2, indices=indices3), y)
        grads3 = F.conv2d_backward(grad_y, x, w, **kwargs)
        mask = (input_grad, True, True)
        grads = F.conv2d_relu_max_pool2d_backward(
            grad, x, w, b, out, indices, **kwargs, **POOL, output_mask=mask
        )
    np.testing.assert_array_equal(out, out3)
    np.testing.assert_array_equal(indices, indices3)
    assert (grads[0] is None) == (not input_grad)
    for name, mine, theirs in zip(("input", "weight", "bias"), grads, grads3):
        if mine is not None:
            np.testing.assert_array_equal(mine, theirs, err_msg=f"gradient of {name}")


@pytest.mark.parametrize("fused", [False, True])
def test_direct_conv_with_an_odd_filter_count_keeps_infinities_apart(fused):
    """The kernels make two planes at a time, the last of an odd count beside a zero filter:
    an infinite gradient of one plane must not reach the input through that filter (0 * inf
    is NaN). With positive weights the input gradient is +inf where the twin's is."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1, (2, 1, 6, 6))
    w, b = rng.uniform(0.1, 1, (3, 1, 3, 3)), rng.uniform(0.1, 1, 3)
    kwargs = dict(padding=1, **POOL) if fused else dict(padding=1)
    op = "conv2d_relu_max_pool2d" if fused else "conv2d"
    with use_backend("numba"):
        out = getattr(F, op)(x, w, b, **kwargs)
    saved = out if fused else (None, None)
    out = out[0] if fused else out
    grad = rng.uniform(0.1, 1, out.shape)
    grad[0, 1, 1, 1] = np.inf  # image 0's second plane, before the pair (2, zero filter)
    grads = {}
    for backend in ("numba", "numpy"):
        with use_backend(backend):
            args = (grad, x, w, b, *saved) if fused else (grad, x, w)
            grads[backend] = getattr(F, f"{op}_backward")(*args, **kwargs)
    assert np.isinf(grads["numpy"][0]).any() and not np.isnan(grads["numpy"][0]).any()
    np.testing.assert_allclose(grads["numba"][0], grads["numpy"][0], rtol=1e-13)
