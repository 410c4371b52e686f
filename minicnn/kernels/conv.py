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

import numpy as np
from numba import njit, prange

# -- the NumPy twin: one strided slice of the padded input per kernel tap --------------------


def _out_size(size: int, pad: int, kernel: int, stride: int, dilation: int) -> int:
    return (size + pad - dilation * (kernel - 1) - 1) // stride + 1


def _tap(xpad, p, q, oH, oW, stride, dilation):
    """The pixels that kernel tap (p, q) meets at every output position: (..., oH, oW)."""
    (sH, sW), (dH, dW) = stride, dilation
    rows = slice(p * dH, p * dH + sH * (oH - 1) + 1, sH)
    cols = slice(q * dW, q * dW + sW * (oW - 1) + 1, sW)
    return xpad[..., rows, cols]


def conv2d_forward_numpy(x, weight, bias, stride, padding, dilation, groups, keep_columns=False):
    """out = conv2d(x, weight, bias), one kernel tap at a time (see the module docstring).

    The twin keeps nothing for the backward pass: ``keep_columns`` returns (out, None).
    """
    N, C, H, W = x.shape
    C_out, Cg, kH, kW = weight.shape
    G = groups
    top, bottom, left, right = padding
    oH = _out_size(H, top + bottom, kH, stride[0], dilation[0])
    oW = _out_size(W, left + right, kW, stride[1], dilation[1])

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
    return (out, None) if keep_columns else out


def conv2d_backward_numpy(grad_out, x, weight, stride, padding, dilation, groups, input_grad=True,
                          columns=None):  # fmt: skip
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


# -- the fast path: im2col + one matrix product per group -------------------------------------


@njit(cache=True)
def _valid(o_size, stride, offset, size):
    """The output positions j in [lo, hi) whose input position j*stride + offset is in
    [0, size): the taps outside read the zero padding."""
    lo = 0
    while lo < o_size and lo * stride + offset < 0:
        lo += 1
    hi = o_size
    while hi > lo and (hi - 1) * stride + offset >= size:
        hi -= 1
    return lo, hi


@njit(cache=True, parallel=True)
def im2col(x, kH, kW, sH, sW, pH, pW, dH, dW, oH, oW, groups, out):
    """Unfold x's receptive fields into the columns of a matrix.

        out[g, (c*kH + p)*kW + q, n*oH*oW + i*oW + j] = xpad[n, g*Cg + c, i*sH + p*dH, j*sW + q*dW]

    x (N, C, H, W); out (G, Cg*kH*kW, N*oH*oW); (pH, pW) is the top/left padding, and
    out-of-range pixels read as the zero padding.
    """
    N, C, H, W = x.shape
    Cg = C // groups
    L = oH * oW
    for n in prange(N):
        for c in range(C):
            g = c // Cg
            for p in range(kH):
                i_lo, i_hi = _valid(oH, sH, p * dH - pH, H)
                for q in range(kW):
                    j_lo, j_hi = _valid(oW, sW, q * dW - pW, W)
                    row = out[g, ((c - g * Cg) * kH + p) * kW + q, n * L : (n + 1) * L]
                    for i in range(oH):
                        base = i * oW
                        if i < i_lo or i >= i_hi:
                            row[base : base + oW] = 0
                            continue
                        h = i * sH + p * dH - pH
                        row[base : base + j_lo] = 0
                        row[base + j_hi : base + oW] = 0
                        w0 = q * dW - pW
                        for j in range(j_lo, j_hi):
                            row[base + j] = x[n, c, h, j * sW + w0]


@njit(cache=True, parallel=True)
def col2im(cols, kH, kW, sH, sW, pH, pW, dH, dW, oH, oW, out):
    """The adjoint of im2col: add every column entry back onto the pixel it came from.

    cols (G, Cg*kH*kW, N*oH*oW); out (N, C, H, W), zeroed here, then accumulated.
    """
    N, C, H, W = out.shape
    G = cols.shape[0]
    Cg = C // G
    L = oH * oW
    for n in prange(N):
        out[n] = 0
        for c in range(C):
            g = c // Cg
            for p in range(kH):
                i_lo, i_hi = _valid(oH, sH, p * dH - pH, H)
                for q in range(kW):
                    j_lo, j_hi = _valid(oW, sW, q * dW - pW, W)
                    row = cols[g, ((c - g * Cg) * kH + p) * kW + q, n * L : (n + 1) * L]
                    w0 = q * dW - pW
                    for i in range(i_lo, i_hi):
                        h = i * sH + p * dH - pH
                        base = i * oW
                        for j in range(j_lo, j_hi):
                            out[n, c, h, j * sW + w0] += row[base + j]


def _unfold(x, weight, stride, padding, dilation, groups, oH, oW):
    N, C, H, W = x.shape
    _, Cg, kH, kW = weight.shape
    cols = np.empty((groups, Cg * kH * kW, N * oH * oW), dtype=x.dtype)  # (G, K, N*L)
    im2col(x, kH, kW, stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1],
           oH, oW, groups, cols)  # fmt: skip
    return cols


def conv2d_forward_numba(x, weight, bias, stride, padding, dilation, groups, keep_columns=False):
    """out = conv2d(x, weight, bias) as im2col followed by a BLAS matrix product per group.

    ``keep_columns=True`` also returns the unfolded input, which the backward pass reuses.
    """
    N, C, H, W = x.shape
    C_out, Cg, kH, kW = weight.shape
    G = groups
    top, bottom, left, right = padding
    oH = _out_size(H, top + bottom, kH, stride[0], dilation[0])
    oW = _out_size(W, left + right, kW, stride[1], dilation[1])

    cols = _unfold(x, weight, stride, padding, dilation, groups, oH, oW)  # (G, K, N*L)
    wmat = weight.reshape(G, C_out // G, Cg * kH * kW)  # (G, Og, K)
    prod = np.matmul(wmat, cols)  # (G, Og, N*L)
    out = prod.reshape(G, C_out // G, N, oH, oW).transpose(2, 0, 1, 3, 4)  # (N, G, Og, oH, oW)
    out = np.ascontiguousarray(out).reshape(N, C_out, oH, oW)
    if bias is not None:
        out += bias[None, :, None, None]
    return (out, cols) if keep_columns else out


def conv2d_backward_numba(grad_out, x, weight, stride, padding, dilation, groups, input_grad=True,
                          columns=None):  # fmt: skip
    """(grad_x, grad_weight, grad_bias) as two matrix products and col2im.

    ``input_grad=False`` skips grad_x (``None``), as a network's first layer needs no more;
    ``columns`` is the forward pass's unfolded input, if it was kept.
    """
    N, C, H, W = x.shape
    C_out, Cg, kH, kW = weight.shape
    G = groups
    _, _, oH, oW = grad_out.shape

    if columns is None:
        columns = _unfold(x, weight, stride, padding, dilation, groups, oH, oW)  # (G, K, N*L)
    cols = columns
    gmat = grad_out.reshape(N, G, C_out // G, oH * oW).transpose(1, 2, 0, 3)  # (G, Og, N, L)
    gmat = np.ascontiguousarray(gmat).reshape(G, C_out // G, N * oH * oW)  # (G, Og, N*L)
    wmat = weight.reshape(G, C_out // G, Cg * kH * kW)  # (G, Og, K)

    grad_weight = np.matmul(gmat, cols.transpose(0, 2, 1)).reshape(weight.shape)
    grad_bias = grad_out.sum(axis=(0, 2, 3))
    if not input_grad:
        return None, grad_weight, grad_bias
    grad_cols = np.matmul(wmat.transpose(0, 2, 1), gmat)  # (G, K, N*L)
    grad_x = np.empty_like(x)  # (N, C, H, W)
    col2im(grad_cols, kH, kW, stride[0], stride[1], padding[0], padding[2], dilation[0],
           dilation[1], oH, oW, grad_x)  # fmt: skip
    return grad_x, grad_weight, grad_bias
