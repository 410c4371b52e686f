"""Hypothesis strategies for op arguments: shapes and hyperparameters are drawn, the array
values come from a NumPy generator seeded by hypothesis (fast, and still shrinkable)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

dtypes = st.sampled_from([np.float64, np.float32])
batch = st.integers(1, 4)
channels = st.integers(1, 6)
kernel_sizes = st.tuples(st.integers(1, 5), st.integers(1, 5))
strides = st.integers(1, 3) | st.tuples(st.integers(1, 3), st.integers(1, 3))
dilations = st.integers(1, 3) | st.tuples(st.integers(1, 3), st.integers(1, 3))


def arrays(draw, shape, dtype, distinct: bool = False) -> np.ndarray:
    """A standard-normal array; ``distinct`` makes every value unique (no max-pool ties)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if distinct:
        values = rng.permutation(int(np.prod(shape))) * 0.01 - 1.0
        return values.reshape(shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _pair(value):
    return value if isinstance(value, tuple) else (value, value)


@st.composite
def conv2d_cases(draw):
    """(x, weight, bias or None, kwargs) for conv2d: groups, every padding form, dilation."""
    dtype = draw(dtypes)
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 6 // groups))
    c_out = groups * draw(st.integers(1, 6 // groups))
    kH, kW = draw(kernel_sizes)
    dilation = draw(dilations)
    stride = draw(strides)
    padding_forms = [
        st.integers(0, 3),
        st.tuples(st.integers(0, 3), st.integers(0, 3)),
        st.just("valid"),
    ]
    if _pair(stride) == (1, 1):
        padding_forms.append(st.just("same"))
    padding = draw(st.one_of(padding_forms))
    pad = (0, 0) if isinstance(padding, str) else _pair(padding)
    dH, dW = _pair(dilation)
    min_h = max(1, dH * (kH - 1) + 1 - 2 * pad[0])  # the kernel must fit the padded input
    min_w = max(1, dW * (kW - 1) + 1 - 2 * pad[1])
    H = min_h + draw(st.integers(0, 6))
    W = min_w + draw(st.integers(0, 6))
    N = draw(batch)
    x = arrays(draw, (N, c_in, H, W), dtype)
    w = arrays(draw, (c_out, c_in // groups, kH, kW), dtype)
    b = arrays(draw, (c_out,), dtype) if draw(st.booleans()) else None
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x, w, b, kwargs


@st.composite
def pool_cases(draw, kind: str):
    """(x, kwargs) for max_pool2d or avg_pool2d: padding up to half the kernel, ceil_mode."""
    dtype = draw(dtypes)
    kH, kW = draw(kernel_sizes)
    stride = draw(st.none() | strides)
    padding = (draw(st.integers(0, kH // 2)), draw(st.integers(0, kW // 2)))
    kwargs = dict(
        kernel_size=(kH, kW), stride=stride, padding=padding, ceil_mode=draw(st.booleans())
    )
    dH = dW = 1
    if kind == "max":
        dilation = draw(dilations)
        dH, dW = _pair(dilation)
        kwargs["dilation"] = dilation
    else:
        kwargs["count_include_pad"] = draw(st.booleans())
        kwargs["divisor_override"] = draw(st.none() | st.integers(1, 9))
    min_h = max(1, dH * (kH - 1) + 1 - 2 * padding[0])
    min_w = max(1, dW * (kW - 1) + 1 - 2 * padding[1])
    shape = (
        draw(batch),
        draw(channels),
        min_h + draw(st.integers(0, 7)),
        min_w + draw(st.integers(0, 7)),
    )
    return arrays(draw, shape, dtype, distinct=kind == "max"), kwargs


@st.composite
def any_arrays(draw, min_dims: int = 1, max_dims: int = 4):
    """A standard-normal float array of 1 to 4 small dimensions."""
    ndim = draw(st.integers(min_dims, max_dims))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    return arrays(draw, shape, draw(dtypes))


@st.composite
def linear_cases(draw):
    """(x (*, in), weight (out, in), bias or None)."""
    dtype = draw(dtypes)
    lead = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 3))))
    n_in, n_out = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    x = arrays(draw, (*lead, n_in), dtype)
    w = arrays(draw, (n_out, n_in), dtype)
    b = arrays(draw, (n_out,), dtype) if draw(st.booleans()) else None
    return x, w, b


@st.composite
def cross_entropy_cases(draw):
    """(logits, target, kwargs): class indices (some ignored) or probabilities, weights,
    every reduction and label smoothing, for (N, C), (C,) and (N, C, d) logits."""
    dtype = draw(dtypes)
    C = draw(st.integers(1, 10))
    layout = draw(st.sampled_from(["NC", "C", "NCd"]))
    N = draw(st.integers(1, 6))
    shape = {"NC": (N, C), "C": (C,), "NCd": (N, C, draw(st.integers(1, 3)))}[layout]
    logits = arrays(draw, shape, dtype) * draw(st.sampled_from([1.0, 10.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kwargs = dict(
        reduction=draw(st.sampled_from(["mean", "sum", "none"])),
        label_smoothing=draw(st.sampled_from([0.0, 0.1, 0.5])),
    )
    if draw(st.booleans()):
        kwargs["weight"] = rng.uniform(0.1, 2.0, size=C).astype(dtype)
    target_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    if draw(st.booleans()) and layout != "C":
        probs = rng.uniform(size=shape)
        target = (probs / probs.sum(axis=1, keepdims=True)).astype(dtype)
    else:
        target = rng.integers(0, C, size=target_shape)
        if draw(st.booleans()) and target.ndim:
            kwargs["ignore_index"] = int(target.reshape(-1)[0])  # at least one row ignored
    return logits.astype(dtype), np.asarray(target), kwargs


@st.composite
def winograd_conv2d_cases(draw):
    """(x, weight, bias or None, kwargs) for a 3x3 conv2d at stride 1: Winograd's kind, odd
    and even output sizes, every padding form."""
    dtype = draw(dtypes)
    padding = draw(
        st.integers(0, 3)
        | st.tuples(st.integers(0, 3), st.integers(0, 3))
        | st.sampled_from(["same", "valid"])
    )
    pad = {"same": (1, 1), "valid": (0, 0)}.get(padding) if isinstance(padding, str) else None
    pad = pad or _pair(padding)
    H = max(1, 3 - 2 * pad[0]) + draw(st.integers(0, 8))
    W = max(1, 3 - 2 * pad[1]) + draw(st.integers(0, 8))
    N, c_in, c_out = draw(batch), draw(channels), draw(channels)
    x = arrays(draw, (N, c_in, H, W), dtype)
    w = arrays(draw, (c_out, c_in, 3, 3), dtype)
    b = arrays(draw, (c_out,), dtype) if draw(st.booleans()) else None
    return x, w, b, dict(padding=padding)
