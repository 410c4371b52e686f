"""Direct 3x3 convolution over flat, zero-padded planes: conv2d's first layer on grayscale.

A 3x3 conv of one input channel has nine taps per output, too few for a matrix product to
pay: im2col writes nine copies of the image for BLAS to read back, and the product, nine
deep, runs far below the core's peak. Computed directly, each output plane is nine
multiply-adds of the padded input plane, shifted. Laid out flat, a zero-padded plane
(Hp, Wp) makes every tap a constant offset: output (i, j) is at m = i*Wp + j and tap (p, q)
reads the padded input at m + p*Wp + q, so one loop over m, with the nine weights in
registers, computes a whole plane. The columns j >= oW of each row are computed and thrown
away (they wrap into the next row): the price of a loop without bounds tests, which the
compiler vectorises.

    out[n, o, i, j] = bias[o] + sum_{c, p, q} xpad[n, c, i + p, j + q] * weight[o, c, p, q]

Two output channels are computed in one loop, each of the nine shifted input values loaded
serving both (eighteen weights in registers); the weight gradient's eighteen sums share
their loads the same way. Measured, the forward loop runs no faster for it than with one
channel (~0.9 cycles per output either way: its multiplies bound it, not its loads).

The backward pass is the same picture reversed: the weight gradient is nine dot products of
the output gradient, laid out the same flat way (zeros in the thrown-away columns), with the
shifted input; the input gradient gathers ``grad * weight`` from the nine shifted outputs
that read each pixel. Given a 2x2 pool's indices, both kernels fuse the deck's ReLU and
pool: the forward pools each plane while it is in L1, the backward builds each plane's
gradient from the pooled one there (see ``minicnn.kernels.fused``).

The readable twin is ``conv.conv2d_forward_numpy`` and its backward, one tap at a time over
the whole batch; these kernels take stride 1 and dilation 1 only, and weights with an even
number of filters (``DirectPlan`` pads with a zero filter).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.im2col import pad_image, unpad_image
from minicnn.kernels.pool import max_pool_row_2x2
from minicnn.kernels.relu_pool import relu_max_pool2d_backward_kernel, unpool_2x2

# -- the shared loops: two output planes, their gradients, the input's gradient ---------------


@njit(inline="always")
def _two_planes(flat, weight, bias, o, Wp, p0, p1):
    """p0, p1 (M,) = output planes o and o + 1, flat (rows Wp apart), from ``flat``
    (C, (oH + 3) * Wp), the zero-padded input planes. The first channel's sums are written
    with the bias, the others added: adding onto the planes from the start (set to the
    bias) took 9.1 us an image of the deck's first conv against 5.7 (same values)."""
    M = p0.size
    for c in range(flat.shape[0]):
        xc, u, v = flat[c], weight[o, c], weight[o + 1, c]
        # the nine shifted planes, sliced first so that the loop indexes from 0
        x0, x1, x2 = xc[0:M], xc[1 : M + 1], xc[2 : M + 2]
        x3, x4, x5 = xc[Wp : Wp + M], xc[Wp + 1 : Wp + M + 1], xc[Wp + 2 : Wp + M + 2]
        x6, x7 = xc[2 * Wp : 2 * Wp + M], xc[2 * Wp + 1 : 2 * Wp + M + 1]
        x8 = xc[2 * Wp + 2 : 2 * Wp + M + 2]
        u0, u1, u2, u3, u4 = u[0, 0], u[0, 1], u[0, 2], u[1, 0], u[1, 1]
        u5, u6, u7, u8 = u[1, 2], u[2, 0], u[2, 1], u[2, 2]
        v0, v1, v2, v3, v4 = v[0, 0], v[0, 1], v[0, 2], v[1, 0], v[1, 1]
        v5, v6, v7, v8 = v[1, 2], v[2, 0], v[2, 1], v[2, 2]
        b0, b1 = bias[o], bias[o + 1]
        for m in range(M):
            a0, a1, a2, a3, a4 = x0[m], x1[m], x2[m], x3[m], x4[m]
            a5, a6, a7, a8 = x5[m], x6[m], x7[m], x8[m]
            s0 = (u0 * a0 + u1 * a1 + u2 * a2 + u3 * a3 + u4 * a4
                  + u5 * a5 + u6 * a6 + u7 * a7 + u8 * a8)  # fmt: skip
            s1 = (v0 * a0 + v1 * a1 + v2 * a2 + v3 * a3 + v4 * a4
                  + v5 * a5 + v6 * a6 + v7 * a7 + v8 * a8)  # fmt: skip
            if c == 0:
                p0[m], p1[m] = b0 + s0, b1 + s1
            else:
                p0[m] += s0
                p1[m] += s1


@njit(inline="always")
def _weight_grads(flat, g0, g1, o, Wp, zero, grad_w):
    """grad_w[o], grad_w[o + 1] (C, 3, 3) += the nine dot products of the flat output
    gradients g0, g1 (M,) with the shifted input planes, summed from ``zero`` (a zero in the
    arrays' precision: the sums run lane by lane in it)."""
    M = g0.size
    for c in range(flat.shape[0]):
        xc = flat[c]
        x0, x1, x2 = xc[0:M], xc[1 : M + 1], xc[2 : M + 2]
        x3, x4, x5 = xc[Wp : Wp + M], xc[Wp + 1 : Wp + M + 1], xc[Wp + 2 : Wp + M + 2]
        x6, x7 = xc[2 * Wp : 2 * Wp + M], xc[2 * Wp + 1 : 2 * Wp + M + 1]
        x8 = xc[2 * Wp + 2 : 2 * Wp + M + 2]
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = zero
        t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = t8 = zero
        for m in range(M):
            a0, a1, a2, a3, a4 = x0[m], x1[m], x2[m], x3[m], x4[m]
            a5, a6, a7, a8 = x5[m], x6[m], x7[m], x8[m]
            e, f = g0[m], g1[m]
            s0 += e * a0
            s1 += e * a1
            s2 += e * a2
            s3 += e * a3
            s4 += e * a4
            s5 += e * a5
            s6 += e * a6
            s7 += e * a7
            s8 += e * a8
            t0 += f * a0
            t1 += f * a1
            t2 += f * a2
            t3 += f * a3
            t4 += f * a4
            t5 += f * a5
            t6 += f * a6
            t7 += f * a7
            t8 += f * a8
        u, v = grad_w[o, c], grad_w[o + 1, c]
        u[0, 0] += s0
        u[0, 1] += s1
        u[0, 2] += s2
        u[1, 0] += s3
        u[1, 1] += s4
        u[1, 2] += s5
        u[2, 0] += s6
        u[2, 1] += s7
        u[2, 2] += s8
        v[0, 0] += t0
        v[0, 1] += t1
        v[0, 2] += t2
        v[1, 0] += t3
        v[1, 1] += t4
        v[1, 2] += t5
        v[2, 0] += t6
        v[2, 1] += t7
        v[2, 2] += t8


@njit(inline="always")
def _input_grad(gext, E, Wp, k, d):
    """d (P,) += the gradient that one output plane (flat in ``gext`` at offset E, zeros
    around it) sends through one filter plane k (3, 3) to the flat padded input plane d:
    pixel m gathers from the outputs at m - p*Wp - q."""
    P = d.size
    g0, g1, g2 = gext[E : E + P], gext[E - 1 : E + P - 1], gext[E - 2 : E + P - 2]
    g3, g4 = gext[E - Wp : E + P - Wp], gext[E - Wp - 1 : E + P - Wp - 1]
    g5, g6 = gext[E - Wp - 2 : E + P - Wp - 2], gext[E - 2 * Wp : E + P - 2 * Wp]
    g7, g8 = gext[E - 2 * Wp - 1 : E + P - 2 * Wp - 1], gext[E - 2 * Wp - 2 : E + P - 2 * Wp - 2]
    k0, k1, k2, k3, k4 = k[0, 0], k[0, 1], k[0, 2], k[1, 0], k[1, 1]
    k5, k6, k7, k8 = k[1, 2], k[2, 0], k[2, 1], k[2, 2]
    for m in range(P):
        d[m] += (k0 * g0[m] + k1 * g1[m] + k2 * g2[m] + k3 * g3[m] + k4 * g4[m]
                 + k5 * g5[m] + k6 * g6[m] + k7 * g7[m] + k8 * g8[m])  # fmt: skip


# -- the kernels ------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def conv3x3_forward(x, weight, bias, top, left, xpad, planes, out, indices):
    """out = conv2d(x, weight, bias) at stride 1 with (top, left) padding, two planes at a
    time (see the module docstring); or, when ``indices`` is not empty, out, indices =
    max_pool2d(relu(conv2d(x, weight, bias)), 2), each conv plane pooled as soon as it is
    computed (``max_pool_row_2x2``: indices are positions in the conv's (oH, oW) plane).

    x (N, C, H, W); weight (C_out', C, 3, 3) and bias (C_out',), zeros for none, with C_out'
    even, C_out or one more; xpad (C, oH + 3, oW + 2), scratch (a row more than the taps
    reach: the thrown-away columns of the last row read past it); planes (2, oH * (oW + 2)),
    scratch; out (N, C_out, oH, oW), or out and indices (N, C_out, pH, pW) with 2pH <= oH and
    2pW <= oW.
    """
    N, C = x.shape[:2]
    C_out = out.shape[1]
    oH, oW, Wp = xpad.shape[1] - 3, xpad.shape[2] - 2, xpad.shape[2]
    flat = xpad.reshape(C, xpad.shape[1] * Wp)
    pooled = indices.size > 0
    for n in range(N):
        pad_image(x, n, top, left, xpad)
        for o in range(0, C_out, 2):
            _two_planes(flat, weight, bias, o, Wp, planes[0], planes[1])
            for k in range(min(2, C_out - o)):
                plane = planes[k]
                if pooled:
                    for i in range(out.shape[2]):
                        top_row = plane[2 * i * Wp : (2 * i + 1) * Wp]
                        bottom_row = plane[(2 * i + 1) * Wp : (2 * i + 2) * Wp]
                        max_pool_row_2x2(top_row, bottom_row, oW, 2 * i * oW, out[n, o + k, i],
                                         indices[n, o + k, i], True)  # fmt: skip
                    continue
                for i in range(oH):  # (loops: a slice assignment costs more than a row here)
                    row, src = out[n, o + k, i], plane[i * Wp : i * Wp + oW]
                    for j in range(oW):
                        row[j] = src[j]


@njit(inline="always")
def _backward_planes(flat, weight, o, Wp, E, gext, zero, grad_w, gpad):
    """The weight gradient of planes o, o + 1 (flat in gext, at E), and their input
    gradient into gpad unless it is empty."""
    M = (flat.shape[1] // Wp - 3) * Wp
    _weight_grads(flat, gext[0, E : E + M], gext[1, E : E + M], o, Wp, zero, grad_w)
    if gpad.size > 0:
        gflat = gpad.reshape(flat.shape)
        for k in range(2):
            for c in range(flat.shape[0]):
                _input_grad(gext[k], E, Wp, weight[o + k, c], gflat[c])


@njit(inline="always")
def _plane_sum(g, M, zero):
    """The sum of a flat gradient plane g[:M] (its thrown-away columns zero): the bias
    gradient, in one loop over the plane (row by row, each row's last few values summed one
    after another took longer than the weight gradient)."""
    total = zero
    for m in range(M):
        total += g[m]
    return total


@njit(inline="always")
def _pooled_plane(grad_out, indices, out, n, c, oH, oW, Wp, one, g):
    """g = conv plane (n, c)'s gradient from its relu'd 2x2 pool's (``unpool_2x2``), or,
    where an index leaves its window, from the general kernel through ``one`` (1, 1, oH, oW).
    Returns whether it took the general kernel (then pixels outside the windows hold
    values)."""
    g[: 2 * grad_out.shape[2] * Wp] = 0  # the windows' rows (the rest stays 0)
    if not unpool_2x2(grad_out[n, c], indices[n, c], out[n, c], oW, Wp, g):
        return False
    plane = slice(n, n + 1), slice(c, c + 1)
    nothing = np.empty((0, 0, 0, 0), dtype=one.dtype)
    relu_max_pool2d_backward_kernel(grad_out[plane], indices[plane], out[plane], nothing, one)
    for i in range(oH):
        for j in range(oW):
            g[i * Wp + j] = one[0, 0, i, j]
    return True


@njit(cache=True, nogil=True, fastmath={"reassoc"})  # the sums vectorise
def conv3x3_backward(grad, indices, out, x, weight, top, left, xpad, gext, grad_w, grad_b, gpad,
                     grad_x):  # fmt: skip
    """For stride 1 and (top, left) padding: add the weight and bias gradients into
    ``grad_w`` (C_out', C, 3, 3) and ``grad_b`` (C_out',); write the input gradient into
    ``grad_x`` (N, C, H, W) unless it is empty.

        grad_w[o, c, p, q] += sum_{n, i, j} grad[n, o, i, j] * xpad[n, c, i + p, j + q]
        grad_x[n, c] = the padding cut from  sum_{o, p, q} grad[n, o] * weight[o, c, p, q]
                                             added onto xpad's pixels at (i + p, j + q)

    grad is the conv output's gradient (N, C_out, oH, oW) when ``indices`` is empty; else,
    for ``conv3x3_forward``'s pool, the pooled gradient (N, C_out, pH, pW), with the
    winners ``indices`` and the pooled values ``out``: each conv plane's gradient is then
    built in gext from them (``relu_pool.relu_max_pool2d_2x2_backward_kernel``'s rule).

    x (N, C, H, W); weight (C_out', C, 3, 3), C_out' as in ``conv3x3_forward``; xpad and
    gpad (C, oH + 3, oW + 2), scratch (gpad unused, and may be empty, without an input
    gradient); gext (2, (oH + 5) * Wp + 2), scratch: two output planes' gradients, flat, the
    columns past oW zero, between margins of zeros for the input gradient's taps.
    """
    N, C = x.shape[:2]
    C_out = grad.shape[1]
    oH, oW, Wp = xpad.shape[1] - 3, xpad.shape[2] - 2, xpad.shape[2]
    E = 2 * Wp + 2  # the margin before each gradient plane in gext
    flat = xpad.reshape(C, xpad.shape[1] * Wp)
    zero = np.zeros(1, dtype=grad_w.dtype)[0]
    pooled = indices.size > 0
    one = np.empty((1, 1, oH, oW), dtype=x.dtype)  # a stray pooled plane's gradient
    gext[:] = 0
    for n in range(N):
        pad_image(x, n, top, left, xpad)
        if gpad.size > 0:
            gpad[:] = 0
        for o in range(0, C_out, 2):
            if o + 1 == C_out:  # the zero filter's plane: no gradient
                gext[1] = 0
            strays = False
            for k in range(min(2, C_out - o)):
                g = gext[k, E:]
                if pooled:
                    strays |= _pooled_plane(grad, indices, out, n, o + k, oH, oW, Wp, one, g)
                else:
                    for i in range(oH):
                        row, dst = grad[n, o + k, i], g[i * Wp : i * Wp + oW]
                        for j in range(oW):
                            dst[j] = row[j]
                grad_b[o + k] += _plane_sum(g, oH * Wp, zero)
            _backward_planes(flat, weight, o, Wp, E, gext, zero, grad_w, gpad)
            if strays:  # pixels outside the windows got values: zeros again for the next
                gext[:] = 0
        if gpad.size > 0:
            unpad_image(gpad, top, left, grad_x, n)
