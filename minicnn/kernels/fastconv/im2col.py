"""im2col and col2im: a batch's receptive fields unfolded into matrices, and back.

conv2d as one matrix product per group: with the input's receptive fields laid out as the
columns of a matrix (im2col), ``out = weight (C_out, Cg*kH*kW) @ cols``; the input's gradient
is ``col2im(weight.T @ grad)``, col2im adding each column entry back onto the pixel it came
from (im2col's adjoint). The layout keeps a chunk's images side by side, (G, K, N, L), so one
product covers them all (``minicnn.kernels.fastconv.plans.ConvPlan``). The ``*_unit`` kernels do the
stride-1, dilation-1 case, the deck's, through a zero-padded copy of each image.
"""

from __future__ import annotations

from numba import njit

from minicnn.kernels.runtime.cache import CACHE


def conv_out_hw(in_hw, kernel, stride, padding, dilation) -> tuple[int, int]:
    """(oH, oW) = conv2d's output size: ``(H + top + bottom - dH*(kH - 1) - 1) // sH + 1``
    and the same across, with ``padding = (top, bottom, left, right)``."""
    (H, W), (kH, kW), (top, bottom, left, right) = in_hw, kernel, padding
    oH = (H + top + bottom - dilation[0] * (kH - 1) - 1) // stride[0] + 1
    oW = (W + left + right - dilation[1] * (kW - 1) - 1) // stride[1] + 1
    return oH, oW


@njit(cache=CACHE, nogil=True)
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


@njit(cache=CACHE, nogil=True)
def im2col(x, kH, kW, sH, sW, pH, pW, dH, dW, oH, oW, out):
    """Unfold x's receptive fields into one matrix per group, the images side by side.

        out[g, (c*kH + p)*kW + q, n, i*oW + j] = xpad[n, g*Cg + c, i*sH + p*dH, j*sW + q*dW]

    x (N, C, H, W); out (G, Cg*kH*kW, N, oH*oW); (pH, pW) is the top/left padding, and
    out-of-range pixels read as the zero padding.
    """
    N, C, H, W = x.shape
    G = out.shape[0]
    Cg = C // G
    for n in range(N):
        for c in range(C):
            g = c // Cg
            for p in range(kH):
                i_lo, i_hi = _valid(oH, sH, p * dH - pH, H)
                for q in range(kW):
                    j_lo, j_hi = _valid(oW, sW, q * dW - pW, W)
                    row = out[g, ((c - g * Cg) * kH + p) * kW + q, n]
                    w0 = q * dW - pW
                    for i in range(oH):
                        base = i * oW
                        if i < i_lo or i >= i_hi:
                            row[base : base + oW] = 0
                            continue
                        h = i * sH + p * dH - pH
                        row[base : base + j_lo] = 0
                        row[base + j_hi : base + oW] = 0
                        for j in range(j_lo, j_hi):
                            row[base + j] = x[n, c, h, j * sW + w0]


@njit(cache=CACHE, nogil=True)
def col2im(cols, kH, kW, sH, sW, pH, pW, dH, dW, oH, oW, out):
    """The adjoint of im2col: add every column entry back onto the pixel it came from.

    cols (G, Cg*kH*kW, N, oH*oW); out (N, C, H, W), zeroed here, then accumulated.
    """
    N, C, H, W = out.shape
    G = cols.shape[0]
    Cg = C // G
    for n in range(N):
        out[n] = 0
        for c in range(C):
            g = c // Cg
            for p in range(kH):
                i_lo, i_hi = _valid(oH, sH, p * dH - pH, H)
                for q in range(kW):
                    j_lo, j_hi = _valid(oW, sW, q * dW - pW, W)
                    row = cols[g, ((c - g * Cg) * kH + p) * kW + q, n]
                    w0 = q * dW - pW
                    for i in range(i_lo, i_hi):
                        h = i * sH + p * dH - pH
                        base = i * oW
                        for j in range(j_lo, j_hi):
                            out[n, c, h, j * sW + w0] += row[base + j]


@njit(cache=CACHE, nogil=True)
def pad_image(x, n, top, left, xpad):
    """xpad (C, Hp, Wp) = image n of x (N, C, H, W) with ``top`` rows and ``left`` columns of
    zeros before it and zeros after: the plane the unit-stride kernels (and Winograd's
    tiles) read without bounds tests."""
    _, C, H, W = x.shape
    xpad[:] = 0
    for c in range(C):
        for h in range(H):
            for w in range(W):
                xpad[c, h + top, w + left] = x[n, c, h, w]


@njit(cache=CACHE, nogil=True)
def unpad_image(gpad, top, left, out, n):
    """out[n] = gpad's (H, W) window at (top, left): ``pad_image``'s adjoint, which drops
    the padding's gradient."""
    _, C, H, W = out.shape
    for c in range(C):
        for h in range(H):
            for w in range(W):
                out[n, c, h, w] = gpad[c, h + top, w + left]


@njit(cache=CACHE, nogil=True)
def im2col_unit(x, kH, kW, pH, pW, oH, oW, xpad, out):
    """im2col for stride 1 and dilation 1, the deck's case, through a zero-padded copy
    ``xpad`` (C, H + 2pH', W + 2pW') of each image: no bounds tests in the inner loop, which
    the compiler then vectorises (where the general ``im2col`` tests every tap).
    """
    N, C = x.shape[:2]
    G = out.shape[0]
    Cg = C // G
    for n in range(N):
        pad_image(x, n, pH, pW, xpad)
        for c in range(C):
            g = c // Cg
            for p in range(kH):
                for q in range(kW):
                    row = out[g, ((c - g * Cg) * kH + p) * kW + q, n]
                    for i in range(oH):
                        for j in range(oW):
                            row[i * oW + j] = xpad[c, i + p, j + q]


@njit(cache=CACHE, nogil=True)
def col2im_unit(cols, kH, kW, pH, pW, oH, oW, gpad, out):
    """col2im for stride 1 and dilation 1: accumulate into the zero-padded ``gpad``
    (C, Hp, Wp), then copy its interior out (see ``im2col_unit``)."""
    N, C = out.shape[:2]
    G = cols.shape[0]
    Cg = C // G
    for n in range(N):
        gpad[:] = 0
        for c in range(C):
            g = c // Cg
            for p in range(kH):
                for q in range(kW):
                    row = cols[g, ((c - g * Cg) * kH + p) * kW + q, n]
                    for i in range(oH):
                        for j in range(oW):
                            gpad[c, i + p, j + q] += row[i * oW + j]
        unpad_image(gpad, pH, pW, out, n)


# -- the products' companions: from the columns' layout to NCHW and back ---------------------


@njit(cache=CACHE, nogil=True)
def products_to_images(prod, bias, out):
    """out[n, g*Og + o, m] = prod[g, o, n*L + m] + bias[g*Og + o] (no bias when it is empty):
    the per-group products of a chunk, (G, Og, N*L), back in NCHW order, out (N, C_out, L)."""
    G, Og, _ = prod.shape
    N, _, L = out.shape
    for n in range(N):
        for g in range(G):
            for o in range(Og):
                src, dst = prod[g, o, n * L : (n + 1) * L], out[n, g * Og + o]
                if bias.size > 0:
                    b = bias[g * Og + o]
                    for m in range(L):
                        dst[m] = src[m] + b
                else:
                    dst[:] = src


@njit(cache=CACHE, nogil=True, fastmath={"reassoc"})  # the row products' sums vectorise
def weight_grad_from_columns(grad, cols, out):
    """out[g, o, k] = sum_{n, m} grad[n, g*Og + o, m] * cols[g, k, n, m]: conv2d's weight
    gradient from a chunk's output gradient, (N, C_out, L), and its unfolded input, for the
    convs with few taps (K < 16), where BLAS's (Og, N*L) @ (N*L, K) product runs slowly, and
    would need the gradient copied into the columns' layout first. out (G, Og, K), written."""
    N, C_out, L = grad.shape
    G, K = cols.shape[:2]
    Og = C_out // G
    out[:] = 0
    for n in range(N):
        for g in range(G):
            for o in range(Og):
                row = grad[n, g * Og + o]
                for k in range(K):
                    col = cols[g, k, n]
                    total = out[g, o, k]  # (in out's precision, summed lane by lane)
                    for m in range(L):
                        total += row[m] * col[m]
                    out[g, o, k] = total
