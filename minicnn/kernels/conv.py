"""conv2d: cross-correlation of an NCHW batch with a bank of filters, and its gradients.

    out[n, o, i, j] = bias[o] + sum_{c, p, q} xpad[n, g*Cg + c, i*sH + p*dH, j*sW + q*dW]
                                             * weight[o, c, p, q]

with ``g = o // (C_out / groups)`` the group of output channel ``o``, ``Cg = C / groups`` the
input channels each filter sees and ``xpad`` the input zero-padded by
``padding = (top, bottom, left, right)``. No kernel flip: this is torch's convolution.

Shapes: x (N, C, H, W), weight (C_out, Cg, kH, kW), bias (C_out,) or None,
out (N, C_out, oH, oW) with oH = (H + top + bottom - dH*(kH - 1) - 1) // sH + 1.
"""

from __future__ import annotations

import math

import numpy as np

from minicnn.kernels.fastconv import winograd
from minicnn.kernels.fastconv.im2col import conv_out_hw
from minicnn.kernels.fastconv.plans import (
    ConvPlan,
    DirectPlan,
    Winograd2Plan,
    Winograd4Plan,
    WinogradPlan,
)
from minicnn.kernels.runtime import parallel

# -- the NumPy twin: one strided slice of the padded input per kernel tap --------------------


def _tap(xpad, p, q, oH, oW, stride, dilation):
    """The pixels that kernel tap (p, q) meets at every output position: (..., oH, oW)."""
    (sH, sW), (dH, dW) = stride, dilation
    rows = slice(p * dH, p * dH + sH * (oH - 1) + 1, sH)
    cols = slice(q * dW, q * dW + sW * (oW - 1) + 1, sW)
    return xpad[..., rows, cols]


def conv2d_forward_numpy(x, weight, bias, stride, padding, dilation, groups):
    """out = conv2d(x, weight, bias), one kernel tap at a time (see the module docstring)."""
    N, C, H, W = x.shape
    C_out, Cg, kH, kW = weight.shape
    G = groups
    top, bottom, left, right = padding
    oH, oW = conv_out_hw((H, W), (kH, kW), stride, padding, dilation)

    xpad = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))  # (N, C, Hp, Wp)
    xg = xpad.reshape(N, G, Cg, *xpad.shape[2:])  # (N, G, Cg, Hp, Wp)
    wg = weight.reshape(G, C_out // G, Cg, kH, kW)  # (G, Og, Cg, kH, kW)
    out = np.zeros((N, G, C_out // G, oH, oW), dtype=x.dtype)  # (N, G, Og, oH, oW)
    for p in range(kH):
        for q in range(kW):
            patch = _tap(xg, p, q, oH, oW, stride, dilation)  # (N, G, Cg, oH, oW)
            out += np.einsum("ngchw,goc->ngohw", patch, wg[:, :, :, p, q])
    out = out.reshape(N, C_out, oH, oW)
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv2d_backward_numpy(grad_out, x, weight, stride, padding, dilation, groups, input_grad=True):
    """(grad_x, grad_weight, grad_bias): each tap's contribution to the forward, reversed.

    A tap added ``patch * w`` to the output, so it sends ``grad_out * w`` back to the patch's
    pixels and ``grad_out * patch`` to ``w``.
    """
    N, C, H, W = x.shape
    C_out, Cg, kH, kW = weight.shape
    G = groups
    top, bottom, left, right = padding
    _, _, oH, oW = grad_out.shape

    xpad = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))  # (N, C, Hp, Wp)
    xg = xpad.reshape(N, G, Cg, *xpad.shape[2:])  # (N, G, Cg, Hp, Wp)
    wg = weight.reshape(G, C_out // G, Cg, kH, kW)  # (G, Og, Cg, kH, kW)
    gog = grad_out.reshape(N, G, C_out // G, oH, oW)  # (N, G, Og, oH, oW)
    grad_xg = np.zeros_like(xg)  # (N, G, Cg, Hp, Wp)
    grad_wg = np.zeros_like(wg)  # (G, Og, Cg, kH, kW)
    for p in range(kH):
        for q in range(kW):
            patch = _tap(xg, p, q, oH, oW, stride, dilation)  # (N, G, Cg, oH, oW)
            grad_wg[:, :, :, p, q] += np.einsum("ngohw,ngchw->goc", gog, patch)
            grad_patch = _tap(grad_xg, p, q, oH, oW, stride, dilation)  # a view to add into
            grad_patch += np.einsum("ngohw,goc->ngchw", gog, wg[:, :, :, p, q])
    grad_x = grad_xg.reshape(N, C, *xpad.shape[2:])[:, :, top : top + H, left : left + W]
    grad_x = np.ascontiguousarray(grad_x) if input_grad else None
    grad_bias = grad_out.sum(axis=(0, 2, 3))
    return grad_x, grad_wg.reshape(weight.shape), grad_bias


# -- the fast path: a plan per conv (``fastconv.plans``), images split across threads -----------

# From this many input channels on, Winograd: with fewer its products get too thin to beat
# im2col + BLAS (benchmarks/README.md, "What we measured")
WINOGRAD_MIN_CHANNELS = 8

# Up to this many input channels, direct loops: nine taps per output are too few for BLAS
# (benchmarks/README.md, "What we measured")
DIRECT_MAX_CHANNELS = 1


# F(4x4, 3x3) where it needs at most this share of F(2x2, 3x3)'s products: its costlier
# transforms win where its 4x4 blocks fit the output, not where they overhang it
# (benchmarks/README.md, "What we measured")
WINOGRAD4_MAX_SHARE = 0.6


def winograd_kind(out_hw) -> type[WinogradPlan]:
    """F(2x2, 3x3) or F(4x4, 3x3) for a conv2d whose output is ``out_hw``, by their products
    per image: (m + 2)**2 for each m x m block of outputs (or part of one at the edge)."""
    products = {
        kind: (kind.m + 2) ** 2 * math.prod(winograd.tiles_for(out_hw, kind.m))
        for kind in (Winograd2Plan, Winograd4Plan)
    }
    if products[Winograd4Plan] <= WINOGRAD4_MAX_SHARE * products[Winograd2Plan]:
        return Winograd4Plan
    return Winograd2Plan


def make_plan(x_shape, weight, bias, stride, padding, dilation, groups, dtype) -> ConvPlan:
    """The faster plan for this conv2d. For 3x3 kernels at stride and dilation 1 without
    groups: Winograd with channels enough (the deck's convs after the first; F(4x4, 3x3) for
    the DeepCNN's third), direct loops with very few (one: the first); im2col + BLAS for the
    rest."""
    three_by_three = (
        weight.shape[2:] == (3, 3) and stride == (1, 1) and dilation == (1, 1) and groups == 1
    )
    if three_by_three and x_shape[1] >= WINOGRAD_MIN_CHANNELS:
        kind = winograd_kind(conv_out_hw(x_shape[2:], (3, 3), stride, padding, dilation))
    elif three_by_three and x_shape[1] <= DIRECT_MAX_CHANNELS:
        kind = DirectPlan
    else:
        kind = ConvPlan
    return kind(x_shape, weight, bias, stride, padding, dilation, groups, dtype)


def conv2d_forward_numba(x, weight, bias, stride, padding, dilation, groups):
    """out = conv2d(x, weight, bias): per chunk of images, by the plan ``make_plan`` picks."""
    x = np.ascontiguousarray(x)
    plan = make_plan(x.shape, weight, bias, stride, padding, dilation, groups, x.dtype)
    out = np.empty(plan.out_shape, dtype=x.dtype)  # (N, C_out, oH, oW)

    def task(start, stop):
        for n0, n1 in plan.chunks(start, stop):
            plan.forward(x[n0:n1], out[n0:n1])

    parallel.parallel_for(x.shape[0], task)
    return out


def conv2d_backward_numba(grad_out, x, weight, stride, padding, dilation, groups, input_grad=True):
    """(grad_x, grad_weight, grad_bias): per chunk of images, the plan's backward (im2col
    again, two BLAS products and col2im; or Winograd's adjoint), see ``ConvPlan.backward_batch``.

    ``input_grad=False`` skips grad_x (``None``), as a network's first layer needs no more.
    """
    x = np.ascontiguousarray(x)
    grad_out = np.ascontiguousarray(grad_out)
    plan = make_plan(x.shape, weight, None, stride, padding, dilation, groups, x.dtype)

    def chunk_backward(n0, n1, grad_w, grad_b, grad_x):
        plan.backward(grad_out[n0:n1], x[n0:n1], grad_w, grad_b, grad_x)

    return plan.backward_batch(x, input_grad, chunk_backward)
