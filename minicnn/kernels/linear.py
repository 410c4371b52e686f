"""linear: an affine map of the last axis, and its gradients.

    out[..., o] = bias[o] + sum_i x[..., i] * weight[o, i]

Shapes: x (*, in), weight (out, in) as torch stores it, bias (out,) or None, out (*, out).
"""

from __future__ import annotations

import numpy as np

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


# -- the fast path: the same sums as BLAS matrix products on a (rows, features) view ---------


def linear_forward_numba(x, weight, bias):
    rows = _rows(x)  # (M, in)
    out = rows @ weight.T  # (M, out)
    if bias is not None:
        out += bias
    return out.reshape(*x.shape[:-1], weight.shape[0])


def linear_backward_numba(grad_out, x, weight, input_grad=True):
    grad_rows = _rows(grad_out)  # (M, out)
    rows = _rows(x)  # (M, in)
    grad_weight = grad_rows.T @ rows  # (out, in)
    grad_bias = grad_rows.sum(axis=0)
    grad_x = (grad_rows @ weight).reshape(x.shape) if input_grad else None
    return grad_x, grad_weight, grad_bias
