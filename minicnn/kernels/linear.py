"""linear: an affine map of the last axis, and its gradients.

    out[..., o] = bias[o] + sum_i x[..., i] * weight[o, i]

Shapes: x (*, in), weight (out, in) as torch stores it, bias (out,) or None, out (*, out).
"""

from __future__ import annotations

import math

import numpy as np

from minicnn.kernels.runtime.parallel import parallel_for

# -- the NumPy twin: the sums written out with einsum ----------------------------------------


def linear_forward_numpy(x, weight, bias):
    out = np.einsum("...i,oi->...o", x, weight)
    if bias is not None:
        out = out + bias
    return out


def _rows(a: np.ndarray) -> np.ndarray:
    """(M, features) view of a (*, features) array; M is spelled out, as -1 is ambiguous when
    the feature axis is empty."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def linear_backward_numpy(grad_out, x, weight, input_grad=True):
    """(grad_x, grad_weight, grad_bias) for grad_out (*, out)."""
    grad_x = np.einsum("...o,oi->...i", grad_out, weight) if input_grad else None
    # every leading position m contributes grad_out[m, o] * x[m, i] to weight[o, i]
    grad_weight = np.einsum("mo,mi->oi", _rows(grad_out), _rows(x))
    grad_bias = _rows(grad_out).sum(axis=0)
    return grad_x, grad_weight, grad_bias


# -- the fast path: BLAS products, split across threads ----------------------------------------
#
# Each thread multiplies a slice of the larger operand: the rows of x when they outweigh the
# weight (the deck's 10-output layers), or else the weight's output features, so that each
# thread streams half of a weight too large for its cache rather than all of it, and owns
# its features' weight gradient outright instead of adding a partial sum the weight's size
# (benchmarks/README.md, "Which algorithm for which layer", has the times).


# Below this many multiply-adds a product runs on one thread: handing half of it to another
# costs a thread wakeup each way, and OpenBLAS ran two small products at once slower than one
# after the other. The deck's fc (3.1M multiply-adds) stays on one thread, DeepCNN's fc1 (128M)
# splits (benchmarks/README.md#what-we-measured).
MIN_SPLIT = 1 << 24


def _by_features(rows: np.ndarray, weight: np.ndarray) -> bool:
    """Whether to split a product by the weight's features rather than by rows."""
    return weight.size > rows.size


def _grain(rows: np.ndarray, weight: np.ndarray, grain: int) -> int:
    """``parallel_for``'s grain for a product: ``grain``, or everything for one thread when
    the product is small."""
    if rows.shape[0] * weight.size < MIN_SPLIT:
        return max(rows.shape[0], weight.shape[0], weight.shape[1], 1)
    return grain


def linear_forward_numba(x, weight, bias):
    rows = _rows(x)  # (M, in)
    M, n_out = rows.shape[0], weight.shape[0]
    if _by_features(rows, weight):
        out_t = np.empty((n_out, M), dtype=x.dtype)  # (out, M): a thread's features contiguous

        def task(a, b):
            np.matmul(weight[a:b], rows.T, out=out_t[a:b])
            if bias is not None:
                out_t[a:b] += bias[a:b, None]

        parallel_for(n_out, task, grain=_grain(rows, weight, 16))
        return np.ascontiguousarray(out_t.T).reshape(*x.shape[:-1], n_out)
    out = np.empty((M, n_out), dtype=x.dtype)  # (M, out)

    def task(a, b):
        np.matmul(rows[a:b], weight.T, out=out[a:b])
        if bias is not None:
            out[a:b] += bias

    parallel_for(M, task, grain=_grain(rows, weight, 8))
    return out.reshape(*x.shape[:-1], n_out)


def linear_backward_numba(grad_out, x, weight, input_grad=True):
    grad_rows = _rows(grad_out)  # (M, out)
    rows = _rows(x)  # (M, in)
    if _by_features(rows, weight):
        return _backward_by_features(grad_rows, rows, weight, input_grad, x.shape)
    grad_x = np.empty_like(rows) if input_grad else None  # (M, in)

    def task(a, b):  # this slice's weight and bias gradients, and its rows' input gradient
        if grad_x is not None:
            np.matmul(grad_rows[a:b], weight, out=grad_x[a:b])
        return grad_rows[a:b].T @ rows[a:b], grad_rows[a:b].sum(axis=0)

    partials = parallel_for(rows.shape[0], task, grain=_grain(rows, weight, 8))
    grad_weight, grad_bias = partials[0]  # (out, in), (out,)
    for grad_w, grad_b in partials[1:]:  # in slice order: the same sum on every run
        grad_weight += grad_w
        grad_bias += grad_b
    return None if grad_x is None else grad_x.reshape(x.shape), grad_weight, grad_bias


def _backward_by_features(grad_rows, rows, weight, input_grad, x_shape):
    """linear's gradients with each thread on a slice of the output features (their weight
    and bias gradients), then on a slice of the input features (their input gradient)."""
    n_out, n_in = weight.shape
    grad_weight = np.empty_like(weight)  # (out, in)
    grad_bias = np.empty(n_out, dtype=weight.dtype)  # (out,)

    def task(a, b):
        np.matmul(grad_rows[:, a:b].T, rows, out=grad_weight[a:b])
        grad_bias[a:b] = grad_rows[:, a:b].sum(axis=0)

    parallel_for(n_out, task, grain=_grain(rows, weight, 16))
    if not input_grad:
        return None, grad_weight, grad_bias
    grad_x_t = np.empty((n_in, rows.shape[0]), dtype=rows.dtype)  # (in, M)

    def task_x(a, b):
        np.matmul(weight[:, a:b].T, grad_rows.T, out=grad_x_t[a:b])

    parallel_for(n_in, task_x, grain=_grain(rows, weight, 16))
    return np.ascontiguousarray(grad_x_t.T).reshape(x_shape), grad_weight, grad_bias
