"""The fused Adam kernel against its twin, ``kernels.adam.adam_update_numpy``: bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn.kernels.adam import adam_update_numba, adam_update_numpy


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN and infinity on purpose
@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    amsgrad=st.booleans(),
    maximize=st.booleans(),
    decoupled=st.booleans(),
    weight_decay=st.sampled_from([0.0, 0.01, 0.5]),
    beta1=st.sampled_from([0.9, 0.3, 0.0]),
    lr=st.sampled_from([1e-3, 0.5]),
    eps=st.sampled_from([1e-8, 0.0]),
    size=st.integers(0, 70_000),
    order=st.sampled_from("CF"),
    seed=st.integers(0, 2**16),
)
def test_fused_adam_is_the_twin_bit_for_bit(
    dtype, amsgrad, maximize, decoupled, weight_decay, beta1, lr, eps, size, order, seed
):
    rng = np.random.default_rng(seed)
    shape = (size // 7, 7) if order == "F" else (size,)
    arrays = [np.asarray(rng.standard_normal(shape), dtype=dtype, order=order) for _ in range(5)]
    arrays[3], arrays[4] = np.abs(arrays[3]), np.abs(arrays[4])  # second moments
    if arrays[1].size > 5:
        arrays[1].reshape(-1, order="A")[:5] = [np.nan, np.inf, -np.inf, 0, 0]
        for moment in arrays[2:]:  # zero moments under zero gradients: 0 / 0 when eps is 0
            moment.reshape(-1, order="A")[3:5] = 0
    twin, fast = [a.copy(order="K") for a in arrays], [a.copy(order="K") for a in arrays]
    kwargs = dict(
        lr=lr,
        beta1=beta1,
        beta2=0.999,
        eps=eps,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled,
        maximize=maximize,
    )
    for step in (1.0, 2.0, 3.0):
        adam_update_numpy(*twin[:4], twin[4] if amsgrad else None, step, **kwargs)
        adam_update_numba(*fast[:4], fast[4] if amsgrad else None, step, **kwargs)
    for name, a, b in zip(("param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"), twin, fast):
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN and infinity on purpose
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_adam_through_its_vectorised_loop_is_the_twin_bit_for_bit(dtype):
    """torch's default Adam (the deck's) runs a loop of its own (``adam._plain_adam``)."""
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(40_000).astype(dtype) for _ in range(4)]
    arrays[1][:5] = [np.nan, np.inf, -np.inf, 0, 0]
    arrays[3] = np.abs(arrays[3])
    twin, fast = [a.copy() for a in arrays], [a.copy() for a in arrays]
    kwargs = dict(
        lr=1e-3,
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
        weight_decay=0.0,
        decoupled_weight_decay=False,
        maximize=False,
    )
    for step in (1.0, 2.0, 3.0):
        adam_update_numpy(*twin, None, step, **kwargs)
        adam_update_numba(*fast, None, step, **kwargs)
    for name, a, b in zip(("param", "grad", "exp_avg", "exp_avg_sq"), twin, fast):
        np.testing.assert_array_equal(a, b, err_msg=name)
