"""Conv2d → ReLU → MaxPool2d as one pass over each chunk of images.

The deck's blocks are ``Conv2d, ReLU, MaxPool2d``. Run one layer at a time, a batch of 100
writes the conv's 10 MB output to memory, reads it back for the ReLU, writes that, reads it
back for the pool, and the backward pass does the same in reverse. Fused, each thread runs
the three on a chunk of a few images whose conv output stays in its L2 cache, and only the
pooled output and the winners' positions reach memory:

    y = conv2d(x)                 # a chunk's conv output, in scratch space
    out, indices = max_pool2d(relu(y))

Backward, per chunk: the pooled gradient goes to each window's winner unless the winner was
0 or less (relu's gradient: 0 there, 1 above 0 and, as in torch, at a NaN), giving the conv
output's gradient in scratch space, then the conv's backward.

Some plans go one step further (``ConvPlan.pooling``): the direct 3x3 conv (one input
channel) pools each conv plane as soon as it is computed, and builds its gradient from the
pooled one, while it is in L1 (``minicnn.kernels.fastconv.direct``); the Winograd plans pool
their output blocks before they are put in place (``minicnn.kernels.fastconv.tile_pool``).

The result is the three layers' result bit for bit: the conv is the same plan on the same
chunks, relu and max are exact, and the winners are chosen by the same scan (torch's: the
first maximum in row-major order, a NaN over numbers). The twin is the three NumPy twins one
after another.
"""

from __future__ import annotations

import numpy as np

from minicnn.kernels import conv, elementwise, pool
from minicnn.kernels.geometry import ConvGeometry, PoolGeometry
from minicnn.kernels.relu_pool import (
    relu_max_pool2d_2x2_backward_kernel,
    relu_max_pool2d_backward_kernel,
)
from minicnn.kernels.runtime import parallel

# -- the NumPy twin: the three layers' twins in a row -----------------------------------------


def conv2d_relu_max_pool2d_numpy(
    x, weight, bias, conv_geometry: ConvGeometry, pool_geometry: PoolGeometry
):
    """(out, indices) of max_pool2d(relu(conv2d(x)))."""
    y = conv.conv2d_forward_numpy(x, weight, bias, *conv_geometry)  # (N, C_out, oH, oW)
    return pool.max_pool2d_forward_numpy(elementwise.relu_forward_numpy(y), *pool_geometry)


def conv2d_relu_max_pool2d_backward_numpy(
    grad_out, x, weight, bias, conv_geometry, pool_geometry, out, indices, input_grad=True
):
    """(grad_x, grad_weight, grad_bias): the pool's, relu's and conv's backward in a row (the
    twin recomputes the conv's output rather than keep it)."""
    y = conv.conv2d_forward_numpy(x, weight, bias, *conv_geometry)  # (N, C_out, oH, oW)
    grad_y = pool.max_pool2d_backward_numpy(grad_out, indices, y.shape[2:])
    grad_y = elementwise.relu_backward_numpy(grad_y, y)
    return conv.conv2d_backward_numpy(grad_y, x, weight, *conv_geometry, input_grad=input_grad)


# -- the fast path: chunk by chunk -----------------------------------------------------------


def _has_empty_windows(in_hw, pool_geometry: PoolGeometry) -> bool:
    """Whether a pool window lies wholly in the padding (possible with dilation): its max is
    -inf, yet its index names a real pixel, whose relu gradient only the conv output knows."""
    kernel, stride, padding, dilation, out_hw = pool_geometry
    for size, k, s, p, d, o in zip(in_hw, kernel, stride, padding, dilation, out_hw):
        for i in range(o):
            if not any(0 <= i * s - p + t * d < size for t in range(k)):
                return True
    return False


def _plan_pooling(plan, pool_geometry):
    """The plan's own pooling of these windows (``ConvPlan.pooling``), or None: also where a
    window lies wholly in the padding, whose gradient needs the conv's output."""
    if _has_empty_windows(plan.out_shape[2:], pool_geometry):
        return None
    return plan.pooling(pool_geometry)


def conv2d_relu_max_pool2d_numba(x, weight, bias, conv_geometry, pool_geometry):
    """(out, indices) of max_pool2d(relu(conv2d(x))), fused (see the module docstring)."""
    x = np.ascontiguousarray(x)
    plan = conv.make_plan(x.shape, weight, bias, *conv_geometry, x.dtype)
    N, C_out, oH, oW = plan.out_shape
    out = np.empty((N, C_out, *pool_geometry.out_hw), dtype=x.dtype)  # (N, C_out, oH', oW')
    indices = np.empty((N, C_out, *pool_geometry.out_hw), dtype=np.int64)
    pooling = _plan_pooling(plan, pool_geometry)

    def task(start, stop):
        for n0, n1 in plan.chunks(start, stop):
            if pooling is not None:  # the conv's output pooled as it is made
                pooling.forward(x[n0:n1], out[n0:n1], indices[n0:n1])
                continue
            y = parallel.scratch("conv_out", (n1 - n0, C_out, oH, oW), x.dtype)
            plan.forward(x[n0:n1], y)
            pool.max_pool2d_into(y, pool_geometry, out[n0:n1], indices[n0:n1], relu=True)

    parallel.parallel_for(N, task)
    return out, indices


def conv2d_relu_max_pool2d_backward_numba(
    grad_out, x, weight, bias, conv_geometry, pool_geometry, out, indices, input_grad=True
):
    """(grad_x, grad_weight, grad_bias), chunk by chunk (see the module docstring)."""
    x = np.ascontiguousarray(x)
    grad_out = np.ascontiguousarray(grad_out)
    plan = conv.make_plan(x.shape, weight, None, *conv_geometry, x.dtype)
    pooling = _plan_pooling(plan, pool_geometry)
    if pooling is not None:  # the conv output's gradient made from the pooled one as needed

        def pooled_backward(n0, n1, grad_w, grad_b, grad_x):
            pooling.backward(
                grad_out[n0:n1], indices[n0:n1], out[n0:n1], x[n0:n1], grad_w, grad_b, grad_x
            )

        return plan.backward_batch(x, input_grad, pooled_backward)

    _, C_out, oH, oW = plan.out_shape
    recompute = _has_empty_windows((oH, oW), pool_geometry)
    if recompute:  # (rare) the conv's output is needed: it will be computed again, with bias
        forward_plan = conv.make_plan(x.shape, weight, bias, *conv_geometry, x.dtype)
    nothing = np.empty((0, 0, 0, 0), dtype=x.dtype)
    clipped = pool_geometry.is_clipped_2x2() and not recompute  # the plain ones too

    def grad_y(n0, n1):  # the conv output's gradient for images n0..n1, in scratch space
        g = parallel.scratch("conv_grad", (n1 - n0, C_out, oH, oW), x.dtype)
        if clipped:
            relu_max_pool2d_2x2_backward_kernel(
                grad_out[n0:n1], indices[n0:n1], out[n0:n1], *pool_geometry.padding, g
            )
            return g
        y = nothing
        if recompute:
            conv_out = parallel.scratch("conv_out", (n1 - n0, C_out, oH, oW), x.dtype)
            forward_plan.forward(x[n0:n1], conv_out)
            y = conv_out
        relu_max_pool2d_backward_kernel(grad_out[n0:n1], indices[n0:n1], out[n0:n1], y, g)
        return g

    def chunk_backward(n0, n1, grad_w, grad_b, grad_x):
        plan.backward(grad_y(n0, n1), x[n0:n1], grad_w, grad_b, grad_x)

    return plan.backward_batch(x, input_grad, chunk_backward)
