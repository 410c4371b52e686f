"""conv2d → relu → max_pool2d in one call, and its backward (see ``minicnn.kernels.fused``)."""

from __future__ import annotations

import numpy as np

from minicnn import kernels
from minicnn.functional import _checks as check
from minicnn.functional.conv import Padding, check_conv, output_hw
from minicnn.functional.pool import pool_geometry
from minicnn.kernels import fused as K

OP = "conv2d_relu_max_pool2d"


def _check(
    input,
    weight,
    bias,
    stride,
    padding,
    dilation,
    groups,
    kernel_size,
    pool_stride,
    pool_padding,
    pool_dilation,
    ceil_mode,
    op=OP,
):
    x, batched, weight, bias, conv = check_conv(
        input, weight, bias, stride, padding, dilation, groups, op=op
    )
    conv_shape = (x.shape[0], weight.shape[0], *output_hw(x, weight, conv))
    pool = pool_geometry(
        op, conv_shape, kernel_size, pool_stride, pool_padding, pool_dilation, ceil_mode
    )
    return x, batched, weight, bias, conv, pool


def conv2d_relu_max_pool2d(
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride=1,
    padding: Padding = 0,
    dilation=1,
    groups: int = 1,
    kernel_size=2,
    pool_stride=None,
    pool_padding=0,
    pool_dilation=1,
    ceil_mode: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``max_pool2d(relu(conv2d(input, weight, bias, ...)), kernel_size, ...)`` in one pass,
    equal to the three calls bit for bit; returns (out, indices) as ``max_pool2d`` with
    ``return_indices=True`` does.

    Args: those of ``conv2d``, then those of ``max_pool2d`` (its ``stride``, ``padding`` and
    ``dilation`` as ``pool_stride``, ``pool_padding`` and ``pool_dilation``).

    Shape:
        out and indices: (N, C_out, oH', oW'), the pool's output size over the conv's.
    """
    x, batched, weight, bias, conv, pool = _check(
        input,
        weight,
        bias,
        stride,
        padding,
        dilation,
        groups,
        kernel_size,
        pool_stride,
        pool_padding,
        pool_dilation,
        ceil_mode,
    )
    forward = kernels.pick(K.conv2d_relu_max_pool2d_numpy, K.conv2d_relu_max_pool2d_numba)
    out, indices = forward(x, weight, bias, conv, pool)  # (N, C_out, oH', oW') x2
    return (out, indices) if batched else (out[0], indices[0])


def conv2d_relu_max_pool2d_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    out: np.ndarray,
    indices: np.ndarray,
    stride=1,
    padding: Padding = 0,
    dilation=1,
    groups: int = 1,
    kernel_size=2,
    pool_stride=None,
    pool_padding=0,
    pool_dilation=1,
    ceil_mode: bool = False,
    output_mask: tuple[bool, bool, bool] = (True, True, True),
) -> tuple[np.ndarray | None, ...]:
    """Gradients of ``conv2d_relu_max_pool2d`` with respect to (input, weight, bias), given
    its ``out`` and ``indices`` (and ``bias``: a pool window wholly in the padding makes the
    conv's output necessary again); masked-out ones come back None."""
    op = f"{OP}_backward"
    x, batched, weight, bias, conv, pool = _check(
        input,
        weight,
        bias,
        stride,
        padding,
        dilation,
        groups,
        kernel_size,
        pool_stride,
        pool_padding,
        pool_dilation,
        ceil_mode,
        op=op,
    )
    N, C_out = x.shape[0], weight.shape[0]
    expected = (N, C_out, *pool.out_hw) if batched else (C_out, *pool.out_hw)
    grad = check.gradient(grad_output, expected, x.dtype, op)
    for name, array in (("out", out), ("indices", indices)):
        if not isinstance(array, np.ndarray) or array.shape != expected:
            raise ValueError(f"{op}: expected {name} of shape {expected} from the forward pass")
    if not batched:
        grad, out, indices = grad[None], out[None], indices[None]
    backward = kernels.pick(
        K.conv2d_relu_max_pool2d_backward_numpy, K.conv2d_relu_max_pool2d_backward_numba
    )
    grad_x, grad_w, grad_b = backward(
        grad, x, weight, bias, conv, pool, out, indices, input_grad=bool(output_mask[0])
    )
    if grad_x is not None and not batched:
        grad_x = grad_x[0]
    return (
        grad_x,
        grad_w if output_mask[1] else None,
        grad_b if output_mask[2] else None,
    )
