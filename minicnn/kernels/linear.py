"""linear: an affine map of the last axis, and its gradients.

    out[..., o] = bias[o] + sum_i x[..., i] * weight[o, i]

Shapes: x (*, in), weight (out, in) as torch stores it, bias (out,) or None, out (*, out).
"""

from __future__ import annotations

import numpy as np

from minicnn.kernels.parallel import parallel_for

# -- the NumPy twin: the sums written out with einsum ----------------------------------------


def linear_forward_numpy(x, weight, bias):
    out = np.einsum("...i,oi->...o", x, weight)
    if bias is not None:
        out = out + bias
    return out


def _rows(a: np.ndarray) -> np.ndarray:
    """(M, features) view of a (*, features) array; M is spelled out, as -1 is ambiguous when
    the feature axis is empty."""
    return a.reshape(int(np.prod(a.shape[:-1])), a.shape[-1])


def linear_backward_numpy(grad_out, x, weight, input_grad=True):
    """(grad_x, grad_weight, grad_bias) for grad_out (*, out)."""
    grad_x = np.einsum("...o,oi->...i", grad_out, weight) if input_grad else None
    # every leading position m contributes grad_out[m, o] * x[m, i] to weight[o, i]
    grad_weight = np.einsum("mo,mi->oi", _rows(grad_out), _rows(x))
    grad_bias = _rows(grad_out).sum(axis=0)
    return grad_x, grad_weight, grad_bias


# -- the fast path: BLAS products on a (rows, features) view, rows split across threads ------


def linear_forward_numba(x, weight, bias):
    rows = _rows(x)  # (M, in)
    out = np.empty((rows.shape[0], weight.shape[0]), dtype=x.dtype)  # (M, out)

    def task(a, b):
        np.matmul(rows[a:b], weight.T, out=out[a:b])
        if bias is not None:
            out[a:b] += bias

    parallel_for(rows.shape[0], task, grain=8)
    return out.reshape(*x.shape[:-1], weight.shape[0])


def linear_backward_numba(grad_out, x, weight, input_grad=True):
    grad_rows = _rows(grad_out)  # (M, out)
    rows = _rows(x)  # (M, in)
    grad_x = np.empty_like(rows) if input_grad else None  # (M, in)

    def task(a, b):  # this slice's weight and bias gradients, and its rows' input gradient
        if grad_x is not None:
            np.matmul(grad_rows[a:b], weight, out=grad_x[a:b])
        return grad_rows[a:b].T @ rows[a:b], grad_rows[a:b].sum(axis=0)

    partials = parallel_for(rows.shape[0], task, grain=8)
    grad_weight, grad_bias = partials[0]  # (out, in), (out,)
    for grad_w, grad_b in partials[1:]:  # in slice order: the same sum on every run
        grad_weight += grad_w
        grad_bias += grad_b
    return None if grad_x is None else grad_x.reshape(x.shape), grad_weight, grad_bias
