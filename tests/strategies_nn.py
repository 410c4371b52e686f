"""Hypothesis strategies for whole calls: fuzzed functional calls (a valid call with some of its
arguments swapped for wrong ones) and small Sequential stacks (a layer list plus an input)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from minicnn import functional as F
from tests.strategies import (
    any_arrays,
    arrays,
    conv2d_cases,
    cross_entropy_cases,
    dtypes,
    linear_cases,
    pool_cases,
)


def _grad(out) -> np.ndarray:
    return np.ones(np.shape(out), dtype=out.dtype)


@st.composite
def valid_calls(draw, name: str) -> dict:
    """Keyword arguments of a valid call of ``F.<name>``."""
    base = name.removesuffix("_backward")
    if base == "conv2d":
        x, w, b, kwargs = draw(conv2d_cases())
        call = dict(input=x, weight=w, **kwargs)
        if name == "conv2d":
            return dict(call, bias=b)
        return dict(call, grad_output=_grad(F.conv2d(x, w, **kwargs)))
    if base in ("max_pool2d", "avg_pool2d"):
        x, kwargs = draw(pool_cases(base[:3]))
        call = dict(input=x, **kwargs)
        if name == base:
            return call
        out = getattr(F, base)(x, **kwargs)
        if base == "max_pool2d" and draw(st.booleans()):
            call["indices"] = F.max_pool2d(x, **kwargs, return_indices=True)[1]
        return dict(call, grad_output=_grad(out))
    if base == "linear":
        x, w, b = draw(linear_cases())
        if name == "linear":
            return dict(input=x, weight=w, bias=b)
        return dict(input=x, weight=w, grad_output=_grad(F.linear(x, w, b)))
    if base in ("softmax", "log_softmax"):
        x = draw(any_arrays())
        dim = draw(st.integers(-x.ndim, x.ndim - 1))
        if name == base:
            return dict(input=x, dim=dim)
        return dict(output=getattr(F, base)(x, dim), grad_output=_grad(x), dim=dim)
    if base == "cross_entropy":
        logits, target, kwargs = draw(cross_entropy_cases())
        call = dict(input=logits, target=target, **kwargs)
        if name == base:
            return call
        return dict(call, grad_output=_grad(F.cross_entropy(logits, target, **kwargs)))
    x = draw(any_arrays())
    p = draw(st.sampled_from([0.0, 0.3, 1.0]))
    if name == "relu":
        return dict(input=x)
    if name == "relu_backward":
        return dict(input=x, grad_output=_grad(x))
    if name == "flatten":
        return dict(input=x, start_dim=draw(st.integers(-x.ndim, 0)), end_dim=-1)
    if name == "dropout":
        return dict(input=x, p=p, mask=x > 0) if draw(st.booleans()) else dict(input=x, p=p)
    if name == "dropout_backward":
        return dict(grad_output=x, mask=x > 0, p=p)
    assert name == "dropout_mask", name
    return dict(shape=x.shape, p=p)


_WITH_BACKWARD = (
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "relu",
    "linear",
    "dropout",
    "softmax",
    "log_softmax",
    "cross_entropy",
)
OPS = [*_WITH_BACKWARD, *(f"{base}_backward" for base in _WITH_BACKWARD), "flatten", "dropout_mask"]

# wrong values of every kind: sizes out of range (also past 32 and 64 bits), bools posing as
# ints, floats, strings, containers of the wrong length, NaN and infinities, objects
JUNK = [
    -1,
    0,
    1,
    2,
    7,
    1.5,
    -0.5,
    float("nan"),
    float("inf"),
    -float("inf"),
    10**6,
    -(10**6),
    2**31,
    2**63,
    10**400,
    (1,),
    (2, 1),
    (1, 2, 3),
    (0, 2),
    (2**40, 1),
    [2, 2],
    (),
    "same",
    "valid",
    "full",
    "",
    "mean",
    b"2",
    None,
    True,
    False,
    1j,
    np.int64(2),
    np.float32(0.5),
    np.array(2),
    np.array([2, 2]),
    object(),
]
ODD_DTYPES = [
    np.float16,
    np.float32,
    np.float64,
    np.int64,
    np.int32,
    np.uint8,
    np.bool_,
    np.complex128,
    np.longdouble,
    ">f8",
    object,
]


def strided(value: np.ndarray) -> np.ndarray:
    """The same values in a non-contiguous view (every other element of a larger array)."""
    if value.ndim == 0:
        return value
    holder = np.zeros((*value.shape[:-1], 2 * value.shape[-1]), dtype=value.dtype)
    view = holder[..., ::2]
    view[...] = value
    return view


@st.composite
def wrong(draw, value):
    """Something ``value`` should not be: another shape, dtype, kind or range; or the same
    values in a form that must work as well (a non-contiguous view)."""
    if not isinstance(value, np.ndarray):
        if draw(st.booleans()):
            return draw(st.sampled_from(JUNK))
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=5)))
        return arrays(draw, shape, draw(dtypes))
    how = draw(
        st.sampled_from(
            ["dtype", "drop", "add", "resize", "list", "0-d", "values", "T", "strided", "empty"]
        )
    )
    if how == "dtype":
        return value.astype(draw(st.sampled_from(ODD_DTYPES)))
    if how == "drop" and value.ndim and value.shape[0]:
        return value[0]
    if how == "add":
        return value[None]
    if how == "resize" and value.ndim:
        shape = list(value.shape)
        shape[draw(st.integers(0, value.ndim - 1))] = draw(st.integers(0, 5))
        return arrays(draw, tuple(shape), np.float64).astype(value.dtype)
    if how == "list":
        return value.tolist()
    if how == "0-d" and value.size:
        return np.asarray(value.reshape(-1)[0])
    if how == "values":
        if value.dtype.kind == "f":
            special = [np.nan, np.inf, -np.inf, -1.0, 1e6, 3e38]
            return np.full_like(value, draw(st.sampled_from(special)))
        if value.dtype.kind in "iu":
            return np.full_like(value, draw(st.sampled_from([-1, 10**6, np.iinfo(np.int64).max])))
        return ~value
    if how == "strided":
        return strided(value)
    if how == "empty" and value.ndim:
        return value[:0]
    return value.T


@st.composite
def op_calls(draw):
    """(name, F.<name>, kwargs): a valid call with none, one or two arguments made wrong."""
    name = draw(st.sampled_from(OPS))
    kwargs = draw(valid_calls(name))
    for key in draw(st.lists(st.sampled_from(sorted(kwargs)), max_size=2, unique=True)):
        kwargs[key] = draw(wrong(kwargs[key]))
    return name, getattr(F, name), kwargs


@st.composite
def sequential_cases(draw):
    """(layers, x): Conv2d → ReLU → MaxPool2d or AvgPool2d → Flatten → Linear, as a list of
    (class name, args, kwargs) that builds the same stack in torch.nn and minicnn.nn."""
    x, w, b, conv = draw(conv2d_cases())
    C_out, Cg, kH, kW = w.shape
    conv_layer = ("Conv2d", (Cg * conv["groups"], C_out, (kH, kW)), dict(conv, bias=b is not None))
    _, _, oH, oW = F.conv2d(x, w, b, **conv).shape  # (N, C_out, oH, oW)
    kernel = (draw(st.integers(1, min(oH, 3))), draw(st.integers(1, min(oW, 3))))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    pool = dict(
        kernel_size=kernel,
        stride=draw(st.none() | st.integers(1, 2)),
        padding=padding,
        ceil_mode=draw(st.booleans()),
    )
    kind = draw(st.sampled_from(["MaxPool2d", "AvgPool2d"]))
    pooled = getattr(F, "max_pool2d" if kind == "MaxPool2d" else "avg_pool2d")(
        np.zeros((1, 1, oH, oW)), **pool
    )  # (1, 1, pH, pW)
    features = C_out * pooled.shape[2] * pooled.shape[3]
    layers = [
        conv_layer,
        ("ReLU", (), {}),
        (kind, (), pool),
        ("Flatten", (), {}),
        ("Linear", (features, draw(st.integers(1, 6))), {}),
    ]
    return layers, x
