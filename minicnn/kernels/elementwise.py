"""ReLU and dropout: elementwise ops on arrays of any shape.

    relu(x) = max(x, 0)                      relu'(x) = 0 where x <= 0, else 1
    dropout(x) = x * mask * 1/(1 - p)        dropout'(x) = mask * 1/(1 - p)

A NaN input stays NaN through relu and passes its gradient on, as in torch, whose backward
zeroes the gradient only where the output is <= 0 (a comparison NaN fails).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.runtime.cache import CACHE
from minicnn.kernels.runtime.parallel import parallel_for

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


# -- the fast path: flat loops over contiguous arrays, cut into one slice per thread ---------


@njit(cache=CACHE, nogil=True)
def relu_kernel(x, out):
    """out[k] = x[k] if x[k] > 0 (or NaN) else 0, over flat arrays."""
    for k in range(x.size):
        value = x[k]
        out[k] = value if value > 0 or value != value else 0


@njit(cache=CACHE, nogil=True)
def relu_backward_kernel(grad_out, x, out):
    """out[k] = 0 if x[k] <= 0 else grad_out[k] (NaN passes it), over flat arrays."""
    for k in range(x.size):
        out[k] = 0 if x[k] <= 0 else grad_out[k]


@njit(cache=CACHE, nogil=True)
def masked_scale_kernel(x, mask, scale, out):
    """out[k] = x[k] * mask[k] * scale, over flat arrays (mask is boolean)."""
    for k in range(x.size):
        out[k] = x[k] * mask[k] * scale


def _flat(kernel, out, *arrays):
    """``kernel(*arrays, out)`` over flat views, one slice per thread (small arrays in one)."""
    flats = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    flat_out = out.reshape(-1)
    parallel_for(
        flat_out.size, lambda a, b: kernel(*(f[a:b] for f in flats), flat_out[a:b]), grain=1 << 16
    )
    return out


def relu_forward_numba(x):
    return _flat(relu_kernel, np.empty_like(x), x)


def relu_backward_numba(grad_out, x):
    return _flat(relu_backward_kernel, np.empty_like(grad_out), grad_out, x)


def dropout_forward_numba(x, mask, scale):
    scale = x.dtype.type(scale)
    return _flat(lambda x, m, out: masked_scale_kernel(x, m, scale, out), np.empty_like(x), x, mask)


def dropout_backward_numba(grad_out, mask, scale):
    return dropout_forward_numba(grad_out, mask, scale)
