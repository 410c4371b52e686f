"""ReLU and dropout: elementwise ops on arrays of any shape.

    relu(x) = max(x, 0)                      relu'(x) = 0 where x <= 0, else 1
    dropout(x) = x * mask * 1/(1 - p)        dropout'(x) = mask * 1/(1 - p)

A NaN input stays NaN through relu and passes its gradient on, as in torch, whose backward
zeroes the gradient only where the output is <= 0 (a comparison NaN fails).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# -- the NumPy twins ----------------------------------------------------------------------------


def relu_forward_numpy(x):
    return np.asarray(np.maximum(x, 0))  # asarray: NumPy makes a 0-d array's result a scalar


def relu_backward_numpy(grad_out, x):
    # a select, not a product: an infinite gradient where x <= 0 must give 0, not NaN
    return np.where(x <= 0, 0, grad_out).astype(grad_out.dtype)


def dropout_forward_numpy(x, mask, scale):
    return np.asarray(x * mask * x.dtype.type(scale))


def dropout_backward_numpy(grad_out, mask, scale):
    return np.asarray(grad_out * mask * grad_out.dtype.type(scale))


# -- the fast path: flat loops over contiguous arrays -------------------------------------------


@njit(cache=True, parallel=True)
def relu_kernel(x, out):
    """out[k] = x[k] if x[k] > 0 (or NaN) else 0, over flat arrays."""
    for k in prange(x.size):
        value = x[k]
        out[k] = value if value > 0 or value != value else 0


@njit(cache=True, parallel=True)
def relu_backward_kernel(grad_out, x, out):
    """out[k] = 0 if x[k] <= 0 else grad_out[k] (NaN passes it), over flat arrays."""
    for k in prange(x.size):
        out[k] = 0 if x[k] <= 0 else grad_out[k]


@njit(cache=True, parallel=True)
def masked_scale_kernel(x, mask, scale, out):
    """out[k] = x[k] * mask[k] * scale, over flat arrays (mask is boolean)."""
    for k in prange(x.size):
        out[k] = x[k] * mask[k] * scale


def relu_forward_numba(x):
    out = np.empty_like(x)
    relu_kernel(x.reshape(-1), out.reshape(-1))
    return out


def relu_backward_numba(grad_out, x):
    out = np.empty_like(grad_out)
    relu_backward_kernel(grad_out.reshape(-1), x.reshape(-1), out.reshape(-1))
    return out


def dropout_forward_numba(x, mask, scale):
    out = np.empty_like(x)
    masked_scale_kernel(x.reshape(-1), mask.reshape(-1), x.dtype.type(scale), out.reshape(-1))
    return out


def dropout_backward_numba(grad_out, mask, scale):
    return dropout_forward_numba(grad_out, mask, scale)
