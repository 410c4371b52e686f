"""avg_pool2d over NCHW batches, and its gradient, as torch computes them.

Window (i, j) of a pool with kernel (kH, kW), stride (sH, sW) and padding (pH, pW) covers
input rows ``i*sH - pH`` to ``i*sH - pH + kH - 1`` (columns alike), clipped to the input.
The output size (oH, oW) is decided by the caller (``minicnn.functional`` applies torch's
ceil_mode rule) and read off the output arrays here.

The window's sum divided by ``divisor_override``, or by the window area measured on the
padded input (``count_include_pad``, the area clipped to ``H + pH``), or by the number of
real pixels in it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.runtime.cache import CACHE
from minicnn.kernels.runtime.parallel import parallel_for

# -- the NumPy twins: a loop over output positions, vectorised over the (N, C) planes -------


@njit(cache=CACHE, inline="always")  # the twins' and the kernels' (compiled into them) alike
def _avg_window(start: int, kernel: int, size: int, pad: int) -> tuple[int, int, int]:
    """(first, end, padded_extent) of one window along one axis, as torch clips it."""
    end = min(start + kernel, size + pad)  # the window may cover the padding, not beyond it
    return max(start, 0), min(end, size), end - start


def _windows(in_hw, out_hw, kernel, stride, padding, count_include_pad, divisor_override):
    """(i, j, rows, cols, divisor) for each output position whose window holds real pixels:
    its rows and columns of the input as slices, and its divisor. A window entirely in the
    padding is left out: it averages to 0 and passes no gradient."""
    (H, W), (oH, oW) = in_hw, out_hw
    for i in range(oH):
        h0, h1, area_h = _avg_window(i * stride[0] - padding[0], kernel[0], H, padding[0])
        for j in range(oW):
            w0, w1, area_w = _avg_window(j * stride[1] - padding[1], kernel[1], W, padding[1])
            if h0 >= h1 or w0 >= w1:
                continue
            divisor = _avg_divisor(
                area_h * area_w, (h1 - h0) * (w1 - w0), count_include_pad, divisor_override or 0
            )
            yield i, j, slice(h0, h1), slice(w0, w1), divisor


def avg_pool2d_forward_numpy(
    x, kernel, stride, padding, out_hw, count_include_pad, divisor_override
):
    """out (N, C, oH, oW): each window's sum over its divisor."""
    N, C, H, W = x.shape
    out = np.zeros((N, C, *out_hw), dtype=x.dtype)
    for i, j, rows, cols, divisor in _windows(
        (H, W), out_hw, kernel, stride, padding, count_include_pad, divisor_override
    ):
        out[:, :, i, j] = x[:, :, rows, cols].sum(axis=(2, 3)) / divisor
    return out


def avg_pool2d_backward_numpy(
    grad_out, input_hw, kernel, stride, padding, count_include_pad, divisor_override
):
    """grad_x (N, C, H, W): each output's gradient spread evenly over its window's pixels."""
    N, C, oH, oW = grad_out.shape
    grad_x = np.zeros((N, C, *input_hw), dtype=grad_out.dtype)
    for i, j, rows, cols, divisor in _windows(
        input_hw, (oH, oW), kernel, stride, padding, count_include_pad, divisor_override
    ):
        grad_x[:, :, rows, cols] += (grad_out[:, :, i, j] / divisor)[:, :, None, None]
    return grad_x


@njit(cache=CACHE, inline="always")
def _avg_divisor(padded_area, real_area, count_include_pad, divisor_override):
    """A window's divisor; ``divisor_override`` 0 for none."""
    if divisor_override:
        return divisor_override
    return padded_area if count_include_pad else real_area


# -- the fast path: the same loops compiled, the batch's images split across threads -------


@njit(cache=CACHE, nogil=True)
def avg_pool2d_kernel(x, kH, kW, sH, sW, pH, pW, count_include_pad, divisor_override, out):
    """out[n, c, i, j] = sum of window (i, j) / its divisor (see the module docstring)."""
    N, C, H, W = x.shape
    _, _, oH, oW = out.shape
    for plane in range(N * C):
        n = plane // C
        c = plane % C
        for i in range(oH):
            h0, h1, area_h = _avg_window(i * sH - pH, kH, H, pH)
            for j in range(oW):
                w0, w1, area_w = _avg_window(j * sW - pW, kW, W, pW)
                if h0 >= h1 or w0 >= w1:
                    out[n, c, i, j] = 0
                    continue
                divisor = _avg_divisor(
                    area_h * area_w, (h1 - h0) * (w1 - w0), count_include_pad, divisor_override
                )
                total = 0.0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        total += x[n, c, h, w]
                out[n, c, i, j] = total / divisor


@njit(cache=CACHE, nogil=True)
def avg_pool2d_backward_kernel(
    grad_out, kH, kW, sH, sW, pH, pW, count_include_pad, divisor_override, out
):
    """out[n, c] (zeroed here) += grad_out[n, c, i, j] / divisor over window (i, j)."""
    N, C, H, W = out.shape
    _, _, oH, oW = grad_out.shape
    for plane in range(N * C):
        n = plane // C
        c = plane % C
        out[n, c] = 0
        for i in range(oH):
            h0, h1, area_h = _avg_window(i * sH - pH, kH, H, pH)
            for j in range(oW):
                w0, w1, area_w = _avg_window(j * sW - pW, kW, W, pW)
                if h0 >= h1 or w0 >= w1:
                    continue
                divisor = _avg_divisor(
                    area_h * area_w, (h1 - h0) * (w1 - w0), count_include_pad, divisor_override
                )
                share = grad_out[n, c, i, j] / divisor
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        out[n, c, h, w] += share


def avg_pool2d_forward_numba(
    x, kernel, stride, padding, out_hw, count_include_pad, divisor_override
):
    N, C, _, _ = x.shape
    out = np.empty((N, C, *out_hw), dtype=x.dtype)

    def task(a, b):
        avg_pool2d_kernel(
            x[a:b], *kernel, *stride, *padding, count_include_pad, divisor_override or 0, out[a:b]
        )

    parallel_for(N, task)
    return out


def avg_pool2d_backward_numba(
    grad_out, input_hw, kernel, stride, padding, count_include_pad, divisor_override
):
    N, C, _, _ = grad_out.shape
    grad_x = np.empty((N, C, *input_hw), dtype=grad_out.dtype)

    def task(a, b):
        avg_pool2d_backward_kernel(
            grad_out[a:b],
            *kernel,
            *stride,
            *padding,
            count_include_pad,
            divisor_override or 0,
            grad_x[a:b],
        )

    parallel_for(N, task)
    return grad_x
