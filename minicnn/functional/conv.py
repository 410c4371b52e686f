"""conv2d and its backward, with torch's arguments and checks."""

from __future__ import annotations

import numpy as np

from minicnn import kernels
from minicnn.functional import _checks as check
from minicnn.kernels import conv as K
from minicnn.kernels.geometry import ConvGeometry

Padding = int | tuple[int, int] | str


def conv_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """``O = floor((I + 2P - D*(K - 1) - 1) / S) + 1``; with D = 1 the deck's
    ``O = floor((I - K + 2P) / S) + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _padding(padding: Padding, kernel, stride, dilation, op: str) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) for an int, a pair, 'valid' or 'same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding != "same":
            raise ValueError(
                f"{op}: padding must be 'valid', 'same', an int or a pair, got {padding!r}"
            )
        if stride != (1, 1):
            raise ValueError(f"{op}: padding='same' is not supported for strided convolutions")
        pads = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)  # the output keeps the input's size; an odd total pads
            pads += [total // 2, total - total // 2]  # the extra pixel at the bottom/right
        return tuple(pads)
    pH, pW = check.non_negative_pair(padding, "padding", op)
    return pH, pH, pW, pW


def output_hw(x: np.ndarray, weight: np.ndarray, geometry: ConvGeometry) -> tuple[int, int]:
    """(oH, oW) of a checked conv2d's output."""
    stride, padding, dilation = geometry.stride, geometry.padding, geometry.dilation
    return K.conv_out_hw(x.shape[2:], weight.shape[2:], stride, padding, dilation)


def check_conv(input, weight, bias, stride, padding, dilation, groups, op="conv2d"):
    """(x, batched, weight, bias, geometry): conv2d's arguments checked as torch checks them,
    x (N, C, H, W) and ``geometry`` a ``ConvGeometry`` (padding as (top, bottom, left,
    right))."""
    x, batched = check.image_batch(input, op)
    weight = check.float_array(weight, "weight", op)
    if weight.ndim != 4:
        raise ValueError(
            f"{op}: expected weight of shape (C_out, C_in/groups, kH, kW), got "
            f"{check.describe(weight)}"
        )
    if bias is not None:
        bias = check.float_array(bias, "bias", op)
        if bias.shape != (weight.shape[0],):
            raise ValueError(
                f"{op}: expected bias of shape ({weight.shape[0]},) for {weight.shape[0]} output "
                f"channels, got {check.describe(bias)}"
            )
    check.same_dtype(op, x, weight=weight, bias=bias)
    groups = check.integer(groups, "groups", op)
    if groups < 1:
        raise ValueError(f"{op}: groups must be a positive integer, got {groups}")
    N, C, H, W = x.shape
    C_out, Cg, kH, kW = weight.shape
    if C_out % groups != 0:
        raise ValueError(f"{op}: out_channels ({C_out}) must be divisible by groups ({groups})")
    if C % groups != 0:
        raise ValueError(f"{op}: input channels ({C}) must be divisible by groups ({groups})")
    if Cg * groups != C:
        raise ValueError(
            f"{op}: weight of shape {weight.shape} with groups={groups} expects input with "
            f"{Cg * groups} channels, got {C} channels (input of shape {tuple(input.shape)})"
        )
    if min(weight.shape) < 1:
        raise ValueError(f"{op}: weight has an empty dimension: shape {weight.shape}")
    stride = check.positive_pair(stride, "stride", op)
    dilation = check.positive_pair(dilation, "dilation", op)
    pads = _padding(padding, (kH, kW), stride, dilation, op)
    padded = (H + pads[0] + pads[1], W + pads[2] + pads[3])
    extent = (dilation[0] * (kH - 1) + 1, dilation[1] * (kW - 1) + 1)
    if padded[0] < extent[0] or padded[1] < extent[1]:
        raise ValueError(
            f"{op}: calculated padded input size per channel: ({padded[0]} x {padded[1]}). "
            f"Kernel size: ({extent[0]} x {extent[1]}). Kernel size can't be greater than the "
            f"padded input size"
        )
    oH = (padded[0] - extent[0]) // stride[0] + 1
    oW = (padded[1] - extent[1]) // stride[1] + 1
    check.allocatable((N, C_out, oH, oW), x.dtype, op)
    check.allocatable((N, C, *padded), x.dtype, op, "padded input")
    check.allocatable((C * kH * kW, N * oH * oW), x.dtype, op, "unfolded input")
    bias = None if bias is None else np.ascontiguousarray(bias)
    geometry = ConvGeometry(stride, pads, dilation, groups)
    return x, batched, np.ascontiguousarray(weight), bias, geometry


def conv2d(
    input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride=1,
    padding: Padding = 0,
    dilation=1,
    groups: int = 1,
) -> np.ndarray:
    """2-D cross-correlation of a batch of images with a bank of filters, as ``torch.conv2d``.

    Args:
        input: (N, C_in, H, W) or unbatched (C_in, H, W), float32 or float64.
        weight: (C_out, C_in / groups, kH, kW), the same dtype.
        bias: (C_out,) or None.
        stride, dilation: an int or a pair (sH, sW), positive.
        padding: an int, a pair (pH, pW), ``'valid'`` (no padding) or ``'same'`` (output as
            large as the input; stride 1 only; an odd total puts the extra pixel bottom/right).
        groups: input and output channels split into this many independent groups.

    Shape:
        out: (N, C_out, oH, oW) with ``oH = floor((H + 2*pH - dH*(kH - 1) - 1) / sH) + 1``
        (oW alike); for dilation 1 that is the deck's ``O = floor((I - K + 2P) / S) + 1``.
    """
    x, batched, weight, bias, geometry = check_conv(
        input, weight, bias, stride, padding, dilation, groups
    )
    forward = kernels.pick(K.conv2d_forward_numpy, K.conv2d_forward_numba)
    out = forward(x, weight, bias, *geometry)  # (N, C_out, oH, oW)
    return out if batched else out[0]


def conv2d_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    weight: np.ndarray,
    stride=1,
    padding: Padding = 0,
    dilation=1,
    groups: int = 1,
    output_mask: tuple[bool, bool, bool] = (True, True, True),
) -> tuple[np.ndarray | None, ...]:
    """Gradients of ``conv2d`` with respect to (input, weight, bias).

    Args:
        grad_output: the gradient of the loss with respect to conv2d's output.
        input, weight, stride, padding, dilation, groups: as given to ``conv2d``.
        output_mask: which of the three gradients to compute; the others come back as None.

    Shape:
        grad_input like input, grad_weight like weight, grad_bias (C_out,).
    """
    x, batched, weight, _, geometry = check_conv(
        input, weight, None, stride, padding, dilation, groups, op="conv2d_backward"
    )
    N, C_out = x.shape[0], weight.shape[0]
    oH, oW = output_hw(x, weight, geometry)
    expected = (N, C_out, oH, oW) if batched else (C_out, oH, oW)
    grad = check.gradient(grad_output, expected, x.dtype, "conv2d_backward")
    grad = grad if batched else grad[None]
    output_mask = check.output_mask(output_mask, "conv2d_backward")
    backward = kernels.pick(K.conv2d_backward_numpy, K.conv2d_backward_numba)
    grad_x, grad_w, grad_b = backward(grad, x, weight, *geometry, input_grad=bool(output_mask[0]))
    if grad_x is not None and not batched:
        grad_x = grad_x[0]
    return (
        grad_x,
        grad_w if output_mask[1] else None,
        grad_b if output_mask[2] else None,
    )
