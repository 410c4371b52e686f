"""max_pool2d and avg_pool2d and their backwards, with torch's arguments and checks."""

from __future__ import annotations

import numpy as np

from minicnn import kernels
from minicnn.functional import _checks as check
from minicnn.kernels import avg_pool as A
from minicnn.kernels import pool as K
from minicnn.kernels.geometry import PoolGeometry


def pool_output_size(
    size: int,
    kernel: int,
    stride: int,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """``O = floor_or_ceil((I + 2P - D*(K - 1) - 1) / S) + 1``, torch's pooling rule.

    With ``ceil_mode`` the division rounds up, but the last window must still start inside
    the input or its left padding, so ``O`` drops by one when ``(O - 1) * S >= I + P``.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _check_pool(op, input, kernel_size, stride, padding, dilation, ceil_mode):
    x, batched = check.image_batch(input, op)
    geometry = pool_geometry(op, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return x, batched, *geometry


def pool_geometry(op, shape, kernel_size, stride, padding, dilation, ceil_mode) -> PoolGeometry:
    """The windows of a pool over inputs of ``shape`` (N, C, H, W), as pairs, checked as
    torch checks them."""
    kernel = check.positive_pair(kernel_size, "kernel_size", op)
    # torch treats stride=None (and an empty stride) as "same as the kernel"
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        stride = kernel  # (not ``stride == ()``: an array stride would compare elementwise)
    stride = check.positive_pair(stride, "stride", op)
    padding = check.non_negative_pair(padding, "padding", op)
    dilation = check.positive_pair(dilation, "dilation", op)
    ceil_mode = check.boolean(ceil_mode, "ceil_mode", op)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"{op}: pad should be at most half of kernel size, but got padding={padding} "
            f"for kernel_size={kernel}"
        )
    _, C, H, W = shape
    out_hw = tuple(
        pool_output_size(size, k, s, p, d, ceil_mode)
        for size, k, s, p, d in zip((H, W), kernel, stride, padding, dilation)
    )
    if min(out_hw) < 1:
        raise ValueError(
            f"{op}: given input of size ({C}x{H}x{W}), the calculated output size "
            f"({C}x{out_hw[0]}x{out_hw[1]}) is too small (kernel_size={kernel}, "
            f"stride={stride}, padding={padding}, dilation={dilation})"
        )
    return PoolGeometry(kernel, stride, padding, dilation, out_hw)


def max_pool2d(
    input: np.ndarray,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """The maximum of each (dilated) window, as ``torch.nn.functional.max_pool2d``.

    Padding is -inf (never wins); ties go to the first maximum in row-major order.

    Args:
        input: (N, C, H, W) or (C, H, W).
        kernel_size, stride (default: kernel_size), padding (at most half the kernel),
        dilation: ints or pairs.
        ceil_mode: round the output size up instead of down.
        return_indices: also return each maximum's flat position ``h * W + w`` in its plane.

    Shape:
        out: (N, C, oH, oW), ``oH = floor((H + 2*pH - dH*(kH - 1) - 1) / sH) + 1`` (ceil with
        ceil_mode, see ``pool_output_size``).
    """
    x, batched, kernel, stride, padding, dilation, out_hw = _check_pool(
        "max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode
    )
    forward = kernels.pick(K.max_pool2d_forward_numpy, K.max_pool2d_forward_numba)
    out, indices = forward(x, kernel, stride, padding, dilation, out_hw)  # (N, C, oH, oW) x2
    if not batched:
        out, indices = out[0], indices[0]
    return (out, indices) if check.boolean(return_indices, "return_indices", "max_pool2d") else out


def max_pool2d_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """Gradient of ``max_pool2d`` with respect to its input.

    Each window's gradient goes to the position that won it; give the forward's ``indices``
    to skip recomputing them.
    """
    op = "max_pool2d_backward"
    x, batched, kernel, stride, padding, dilation, out_hw = _check_pool(
        op, input, kernel_size, stride, padding, dilation, ceil_mode
    )
    N, C, H, W = x.shape
    expected = (N, C, *out_hw) if batched else (C, *out_hw)
    grad = check.gradient(grad_output, expected, x.dtype, op)
    if indices is None:
        forward = kernels.pick(K.max_pool2d_forward_numpy, K.max_pool2d_forward_numba)
        _, indices = forward(x, kernel, stride, padding, dilation, out_hw)
    else:
        if not isinstance(indices, np.ndarray) or indices.shape != expected:
            raise ValueError(f"{op}: expected indices of shape {expected} from max_pool2d")
        if not np.issubdtype(indices.dtype, np.integer):
            raise TypeError(f"{op}: expected integer indices, got {indices.dtype}")
        indices = np.ascontiguousarray(indices, dtype=np.int64)
    grad = grad if batched else grad[None]
    indices = indices if indices.ndim == 4 else indices[None]
    backward = kernels.pick(K.max_pool2d_backward_numpy, K.max_pool2d_backward_numba)
    grad_x = backward(grad, indices, (H, W))  # (N, C, H, W)
    return grad_x if batched else grad_x[0]


def _check_avg(
    op, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
):
    x, batched, kernel, stride, padding, _, out_hw = _check_pool(
        op, input, kernel_size, stride, padding, 1, ceil_mode
    )
    count_include_pad = check.boolean(count_include_pad, "count_include_pad", op)
    if divisor_override is not None:
        divisor_override = check.integer(divisor_override, "divisor_override", op)
        if divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must not be zero")
    return x, batched, kernel, stride, padding, out_hw, count_include_pad, divisor_override


def avg_pool2d(
    input: np.ndarray,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> np.ndarray:
    """The mean of each window, as ``torch.nn.functional.avg_pool2d``.

    Args:
        input: (N, C, H, W) or (C, H, W).
        kernel_size, stride (default: kernel_size), padding (at most half the kernel).
        ceil_mode: round the output size up instead of down.
        count_include_pad: divide by the window's area including zero padding (else by the
            number of real pixels in it).
        divisor_override: divide every window's sum by this instead.

    Shape:
        out: (N, C, oH, oW), ``oH = floor((H + 2*pH - kH) / sH) + 1`` (ceil with ceil_mode).
    """
    op = "avg_pool2d"
    x, batched, kernel, stride, padding, out_hw, include, divisor = _check_avg(
        op, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    forward = kernels.pick(A.avg_pool2d_forward_numpy, A.avg_pool2d_forward_numba)
    out = forward(x, kernel, stride, padding, out_hw, include, divisor)  # (N, C, oH, oW)
    return out if batched else out[0]


def avg_pool2d_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> np.ndarray:
    """Gradient of ``avg_pool2d`` with respect to its input: each window's gradient spread
    evenly (over its divisor) across the window's pixels."""
    op = "avg_pool2d_backward"
    x, batched, kernel, stride, padding, out_hw, include, divisor = _check_avg(
        op, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    N, C, H, W = x.shape
    expected = (N, C, *out_hw) if batched else (C, *out_hw)
    grad = check.gradient(grad_output, expected, x.dtype, op)
    grad = grad if batched else grad[None]
    backward = kernels.pick(A.avg_pool2d_backward_numpy, A.avg_pool2d_backward_numba)
    grad_x = backward(grad, (H, W), kernel, stride, padding, include, divisor)
    return grad_x if batched else grad_x[0]
