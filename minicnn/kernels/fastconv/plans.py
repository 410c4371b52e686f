"""How the fast conv2d computes: plans, each a conv's shapes and weights prepared once and its
work on a chunk of images.

Each thread takes a slice of the batch (``minicnn.kernels.runtime.parallel``) and walks it a few
images at a time with a plan: im2col + BLAS (``ConvPlan``: unfold the chunk's receptive
fields into a scratch matrix that fits in L2, multiply, move on) or, for the 3x3 convs,
Winograd (``Winograd2Plan``, ``Winograd4Plan``) or direct loops (``DirectPlan``, one input
channel). None keeps its unfolded input for the backward pass; unfolding a chunk again there
costs less than writing the whole batch's out to memory and reading it back.
``minicnn.kernels.conv.make_plan`` picks one for each conv (benchmarks/README.md gives the
measurements); the twin there is the specification all of them are tested against.
"""

from __future__ import annotations

import functools

import numpy as np

from minicnn.kernels.fastconv import (
    direct,
    tile_pool,
    tiles,
    winograd,
    winograd_f2x2,
    winograd_f4x4,
)
from minicnn.kernels.fastconv.im2col import (
    col2im,
    col2im_unit,
    conv_out_hw,
    im2col,
    im2col_unit,
    products_to_images,
    weight_grad_from_columns,
)
from minicnn.kernels.relu_pool import relu_max_pool2d_2x2_backward_kernel
from minicnn.kernels.runtime import parallel

# Below this many taps per output (K = Cg*kH*kW), the weight gradient's product is summed by
# a loop rather than BLAS: OpenBLAS ran (32, 6272) @ (6272, 9) at 1.7x the time of
# (32, 6272) @ (6272, 16), and, called from two threads at once, one at a time (measured).
SMALL_K = 16


def _pad_shape(x, kernel, out_hw):
    """The padded plane ``im2col_unit`` reads: wide enough for every tap of every output."""
    return (x.shape[1], out_hw[0] + kernel[0] - 1, out_hw[1] + kernel[1] - 1)


class ConvPlan:
    """One conv2d's shapes and weight matrices, and its work on one chunk of images.

    ``forward(x, out)`` and ``backward(grad, x, ...)`` take a chunk of at most ``chunk``
    images (a slice of the batch) and use per-thread scratch space for the unfolded input,
    so threads can run them on their slices at the same time. The fused layers of
    ``minicnn.kernels.fused`` run a conv chunk by chunk the same way.
    """

    # whether the plan pools relu(conv) by 2x2 windows as it makes the conv's output, and
    # builds that output's gradient from the pooled one (``relu_max_pool_2x2`` and its
    # backward, which ``minicnn.kernels.fused`` calls then)
    pools_2x2 = False
    # whether it does so for the clipped 2x2 pools too (stride 2, padding 0 or 1, any
    # ceil_mode: ``relu_max_pool_clipped_2x2`` and its backward)
    pools_clipped_2x2 = False

    def __init__(self, x_shape, weight, bias, stride, padding, dilation, groups, dtype):
        N, C, H, W = x_shape
        C_out, Cg, kH, kW = weight.shape
        self.G, self.Og, self.C_out = groups, C_out // groups, C_out
        self.oH, self.oW = conv_out_hw((H, W), (kH, kW), stride, padding, dilation)
        self.L, self.K = self.oH * self.oW, Cg * kH * kW
        self.kernel, self.stride, self.padding, self.dilation = (kH, kW), stride, padding, dilation
        self.unit = stride == (1, 1) and dilation == (1, 1)
        self.dtype = np.dtype(dtype)
        self.weight = weight
        self.wmat = weight.reshape(self.G, self.Og, self.K)  # (G, Og, K)
        self.bias_vector = np.empty(0, self.dtype) if bias is None else bias.astype(self.dtype)
        # per image: its unfolded input and its output (which a fused layer keeps in scratch)
        per_image = (self.G * self.K + C_out) * self.L * self.dtype.itemsize
        self.chunk = parallel.chunk_size(per_image)
        self.out_shape = (N, C_out, self.oH, self.oW)

    def chunks(self, start: int, stop: int):
        """(n0, n1) for the chunks of images start..stop."""
        for n0 in range(start, stop, self.chunk):
            yield n0, min(n0 + self.chunk, stop)

    def _unfold(self, x):
        """cols = im2col(x), (G, K, b, L), by the unit-stride kernel where it applies."""
        cols = parallel.scratch("cols", (self.G, self.K, x.shape[0], self.L), self.dtype)
        out_hw, top, left = (self.oH, self.oW), self.padding[0], self.padding[2]
        if self.unit:
            xpad = parallel.scratch("pad", _pad_shape(x, self.kernel, out_hw), self.dtype)
            im2col_unit(x, *self.kernel, top, left, *out_hw, xpad, cols)
        else:
            im2col(x, *self.kernel, *self.stride, top, left, *self.dilation, *out_hw, cols)
        return cols

    def _fold(self, cols, out):
        """out = col2im(cols), by the unit-stride kernel where it applies."""
        out_hw, top, left = (self.oH, self.oW), self.padding[0], self.padding[2]
        if self.unit:
            gpad = parallel.scratch("pad", _pad_shape(out, self.kernel, out_hw), self.dtype)
            col2im_unit(cols, *self.kernel, top, left, *out_hw, gpad, out)
        else:
            col2im(cols, *self.kernel, *self.stride, top, left, *self.dilation, *out_hw, out)

    def forward(self, x, out) -> None:
        """out = conv2d(x) for a chunk: x (b, C, H, W), out (b, C_out, oH, oW).

        One product per group for the whole chunk, (Og, K) @ (K, b*L): a wide matrix keeps
        BLAS efficient where one image's L = oH*oW is small (DeepCNN's 7x7 layer)."""
        b, G, Og, L = x.shape[0], self.G, self.Og, self.L
        cols = self._unfold(x).reshape(G, self.K, b * L)  # (G, K, b*L)
        prod = parallel.scratch("prod", (G, Og, b * L), self.dtype)
        np.matmul(self.wmat, cols, out=prod)  # (G, Og, b*L)
        products_to_images(prod, self.bias_vector, out.reshape(b, self.C_out, L))

    def backward(self, grad, x, grad_w, grad_b, grad_x) -> None:
        """For a chunk: add its weight and bias gradients into ``grad_w`` (G, Og, K) and
        ``grad_b`` (C_out,), and write its input gradient into ``grad_x`` unless None."""
        b, G, Og, K, L = x.shape[0], self.G, self.Og, self.K, self.L
        cols = self._unfold(x)  # (G, K, b, L)
        chunk_w = parallel.scratch("grad_w", (G, Og, K), self.dtype)
        if K < SMALL_K:
            weight_grad_from_columns(grad.reshape(b, self.C_out, L), cols, chunk_w)
        else:
            g_wide = self._wide(grad)  # (G, Og, b*L)
            np.matmul(g_wide, cols.reshape(G, K, b * L).transpose(0, 2, 1), out=chunk_w)
        grad_w += chunk_w
        grad_b += grad.reshape(b, self.C_out, L).sum(axis=(0, 2))
        if grad_x is not None:
            g_wide = self._wide(grad) if K < SMALL_K else g_wide  # (G, Og, b*L)
            np.matmul(self.w_t, g_wide, out=cols.reshape(G, K, b * L))  # the columns' gradient
            self._fold(cols, grad_x)

    def _wide(self, grad):
        """A chunk's output gradient (b, C_out, oH, oW) in the columns' layout, (G, Og, b*L),
        in scratch space."""
        b, G, Og, L = grad.shape[0], self.G, self.Og, self.L
        g_wide = parallel.scratch("grad_wide", (G, Og, b, L), self.dtype)
        np.copyto(g_wide, grad.reshape(b, G, Og, L).transpose(1, 2, 0, 3))
        return g_wide.reshape(G, Og, b * L)

    @functools.cached_property
    def w_t(self):
        """The weight matrices transposed, (G, K, Og), for the input gradient."""
        return np.ascontiguousarray(self.wmat.transpose(0, 2, 1))

    def backward_batch(self, task_grad, x, input_grad: bool, chunk_backward=None):
        """The whole batch's (grad_x, grad_weight, grad_bias), the batch split across threads;
        ``task_grad(n0, n1)`` gives the output gradient of images n0..n1, for ``backward``,
        unless ``chunk_backward(n0, n1, grad_w, grad_b, grad_x)`` does a chunk's backward
        itself. Each thread sums its images' weight gradients, then the threads' sums add
        up in slice order."""
        grad_x = np.empty(x.shape, dtype=self.dtype) if input_grad else None  # (N, C, H, W)

        def task(start, stop):
            grad_w = np.zeros(self.grad_w_shape, dtype=self.dtype)  # this slice's sum
            grad_b = np.zeros(self.C_out, dtype=self.dtype)
            for n0, n1 in self.chunks(start, stop):
                part = None if grad_x is None else grad_x[n0:n1]
                if chunk_backward is None:
                    self.backward(task_grad(n0, n1), x[n0:n1], grad_w, grad_b, part)
                else:
                    chunk_backward(n0, n1, grad_w, grad_b, part)
            return grad_w, grad_b

        partials = parallel.parallel_for(x.shape[0], task)
        grad_weight, grad_bias = partials[0]
        for grad_w, grad_b in partials[1:]:  # in slice order: the same sum on every run
            grad_weight += grad_w
            grad_bias += grad_b
        return grad_x, self.grad_weight(grad_weight), grad_bias

    @property
    def grad_w_shape(self) -> tuple[int, ...]:
        """The shape ``backward`` sums weight gradients in."""
        return (self.G, self.Og, self.K)

    def grad_weight(self, grad_w):
        """The weight gradient, (C_out, Cg, kH, kW), from ``backward``'s sum."""
        return grad_w.reshape(self.weight.shape)


class WinogradPlan(ConvPlan):
    """A 3x3, stride-1, ungrouped conv2d by Winograd (``winograd``): per chunk, the input
    tiles' transform, one BLAS product per tile position and the output transform, the tile
    domain channels last (``tiles``): V (planes, b*T, C), M (planes, b*T, C_out). The weight
    gradient is summed in the transformed domain, (planes, C_out, C), and brought back to 3x3
    once for the batch. ``Winograd2Plan`` and ``Winograd4Plan`` are its two kinds."""

    kernels = winograd_f2x2  # the transforms
    m = 2  # the output block's side: tiles of m + 2 pixels, (m + 2)**2 products

    def __init__(self, x_shape, weight, bias, stride, padding, dilation, groups, dtype):
        super().__init__(x_shape, weight, bias, stride, padding, dilation, groups, dtype)
        C_out, C = weight.shape[:2]
        self.planes = (self.m + 2) ** 2
        self.tH, self.tW = winograd.tiles_for((self.oH, self.oW), self.m)
        self.T = self.tH * self.tW  # tiles per image
        self.U = np.empty((self.planes, C_out, C), dtype=self.dtype)  # the filters, transformed
        self.kernels.filter_transform(weight, self.U)
        self.bias_vector = np.zeros(C_out, self.dtype) if bias is None else bias.astype(self.dtype)
        # per image: its tiles' transform (and its gradient) and the products. Each product
        # touches one plane of them at a time, so chunks of twice the L2 budget still run
        # from cache, and fewer, wider products are faster (by 7% on the deck's conv2 with
        # F(2x2, 3x3), measured against 1 MiB; 4 MiB was slower)
        per_image = self.planes * self.T * (2 * C + C_out) * self.dtype.itemsize
        self.chunk = parallel.chunk_size(per_image, 2 * 1024 * 1024)

    def _scratch(self, b, C):
        """(xpad, V, M, D) of a chunk of b images: ``tiles.scratch_shapes``, per thread (M is
        the products, and their gradient in the backward pass)."""
        shapes = tiles.scratch_shapes(self.m, b, C, self.C_out, self.tH, self.tW)
        names = ("pad", "tiles", "products", "grad_blocks")
        return [parallel.scratch(name, shape, self.dtype) for name, shape in zip(names, shapes)]

    def _transform_input(self, x):
        """V = the chunk's input tiles, transformed: (planes, b*T, C) in scratch space."""
        xpad, V, _, _ = self._scratch(*x.shape[:2])
        self.kernels.input_transform(x, self.padding[0], self.padding[2], xpad, V)
        return V, xpad

    def _products(self, x):
        """M = the chunk's products, (planes, b*T, C_out) in scratch space."""
        V, _ = self._transform_input(x)  # (planes, b*T, C)
        M = self._scratch(*x.shape[:2])[2]
        np.matmul(V, self.U_t, out=M)  # (planes, b*T, C_out)
        return M

    def forward(self, x, out) -> None:
        """out = conv2d(x) for a chunk: x (b, C, H, W), out (b, C_out, oH, oW)."""
        self.kernels.output_transform(self._products(x), self.bias_vector, out)

    def backward(self, grad, x, grad_u, grad_b, grad_x) -> None:
        """For a chunk: add its weight gradient, transformed, into ``grad_u`` (planes, C_out,
        C) and its bias gradient into ``grad_b``; write its input gradient unless None."""
        D = self._scratch(*x.shape[:2])[3]
        tiles.output_grad_blocks(grad, D)  # (m*m, b*T*C_out)
        self._backward_blocks(D, x, grad_u, grad_b, grad_x)

    def _backward_blocks(self, D, x, grad_u, grad_b, grad_x) -> None:
        """``backward`` from the output gradient in the tiles' blocks, D (m*m, b*T*C_out)."""
        dM = self._scratch(*x.shape[:2])[2]
        self.kernels.grad_output_transform(D, dM, grad_b)  # (planes, b*T, C_out), grad_b
        V, xpad = self._transform_input(x)  # (planes, b*T, C)
        chunk_u = parallel.scratch("grad_u", self.U.shape, self.dtype)
        np.matmul(dM.transpose(0, 2, 1), V, out=chunk_u)  # (planes, C_out, C)
        grad_u += chunk_u
        if grad_x is not None:
            np.matmul(dM, self.U, out=V)  # the tiles' gradient, (planes, b*T, C), over V
            self.kernels.grad_input_transform(V, self.padding[0], self.padding[2], xpad, grad_x)

    def _pooled_backward(self, strays, D, grad_out, indices, out, pads, x, grad_u, grad_b, grad_x):
        """``backward`` from a relu'd 2x2 pool's gradient (padding ``pads``), whose blocks' D
        the kind's pooled kernel has built, unless ``strays``: an index left its window (not
        the forward pass's), and the general rule gives the conv output's gradient instead."""
        if strays:
            g = parallel.scratch(
                "conv_grad", (x.shape[0], self.C_out, self.oH, self.oW), self.dtype
            )
            relu_max_pool2d_2x2_backward_kernel(grad_out, indices, out, *pads, g)
            tiles.output_grad_blocks(g, D)
        self._backward_blocks(D, x, grad_u, grad_b, grad_x)

    @functools.cached_property
    def U_t(self):
        """The transformed filters, transposed: (planes, C, C_out)."""
        return np.ascontiguousarray(self.U.transpose(0, 2, 1))

    @property
    def grad_w_shape(self) -> tuple[int, ...]:
        return self.U.shape

    def grad_weight(self, grad_u):
        grad_weight = np.empty(self.weight.shape, dtype=self.dtype)  # (C_out, C, 3, 3)
        self.kernels.grad_filter_transform(grad_u, grad_weight)
        return grad_weight


class Winograd2Plan(WinogradPlan):
    """``WinogradPlan`` by F(2x2, 3x3) (``winograd_f2x2``): 16 products over 4x4 tiles, each
    giving a 2x2 block of outputs. Its fused form pools each tile's block as the output
    transform makes it (``relu_max_pool_2x2``), and builds the blocks' gradient from the
    pooled one."""

    pools_2x2 = True

    def relu_max_pool_2x2(self, x, out, indices) -> None:
        """out, indices = max_pool2d(relu(conv2d(x)), 2) for a chunk: x (b, C, H, W), out and
        indices (b, C_out, pH, pW)."""
        M = self._products(x)  # (16, b*T, C_out)
        tile_pool.relu_max_pool_tiles(M, self.bias_vector, self.oH, self.oW, out, indices)

    def relu_max_pool_2x2_backward(self, grad_out, indices, out, x, grad_u, grad_b, grad_x):
        """``backward`` for ``relu_max_pool_2x2``, from the pooled gradient of a chunk."""
        D = self._scratch(*x.shape[:2])[3]
        strays = tile_pool.relu_max_pool_tiles_backward(grad_out, indices, out, self.oH, self.oW, D)
        self._pooled_backward(strays, D, grad_out, indices, out, (0, 0), x, grad_u, grad_b, grad_x)


class Winograd4Plan(WinogradPlan):
    """``WinogradPlan`` by F(4x4, 3x3) (``winograd_f4x4``): 36 products over 6x6 tiles, each
    giving a 4x4 block of outputs."""

    kernels = winograd_f4x4
    m = 4
    pools_clipped_2x2 = True

    def relu_max_pool_clipped_2x2(self, x, pH, pW, out, indices) -> None:
        """out, indices = max_pool2d(relu(conv2d(x)), 2, padding=(pH, pW)) for a chunk: x
        (b, C, H, W), out and indices (b, C_out, qH, qW), pooled from the tiles' blocks."""
        M = self._products(x)  # (36, b*T, C_out)
        tile_pool.relu_max_pool_blocks(M, self.bias_vector, self.oH, self.oW, pH, pW, out, indices)

    def relu_max_pool_clipped_2x2_backward(
        self, grad_out, indices, out, pH, pW, x, grad_u, grad_b, grad_x
    ):
        """``backward`` for ``relu_max_pool_clipped_2x2``, from the pooled gradient of a
        chunk."""
        D = self._scratch(*x.shape[:2])[3]
        strays = tile_pool.relu_max_pool_blocks_backward(
            grad_out, indices, out, self.oH, self.oW, pH, pW, D
        )
        self._pooled_backward(
            strays, D, grad_out, indices, out, (pH, pW), x, grad_u, grad_b, grad_x
        )


class DirectPlan(ConvPlan):
    """A 3x3, stride-1, ungrouped conv2d of few input channels (one: the deck's first layer)
    computed directly (``direct``): per image, over the zero-padded planes laid out flat, two output planes at a time. Its fused form pools each plane as it is
    made (``relu_max_pool_2x2``), and builds each plane's gradient phases from the pooled
    gradient (see ``minicnn.kernels.fastconv.direct``)."""

    pools_2x2 = True

    def __init__(self, x_shape, weight, bias, stride, padding, dilation, groups, dtype):
        super().__init__(x_shape, weight, bias, stride, padding, dilation, groups, dtype)
        C_out = weight.shape[0]
        even = C_out + C_out % 2  # the kernels make two planes at a time: a zero filter pads
        self.weight2 = np.zeros((even, *weight.shape[1:]), dtype=self.dtype)
        self.weight2[:C_out] = weight
        self.bias2 = np.zeros(even, dtype=self.dtype)
        if bias is not None:
            self.bias2[:C_out] = bias
        self.Wp = self.oW + 2
        self.xpad_shape = (weight.shape[1], self.oH + 3, self.Wp)  # see conv3x3_forward

    def _scratch(self):
        """(xpad, planes, P, Y), per thread: the padded input planes, two output planes, and
        the input's phases and two output planes' phases (``direct.conv3x3_forward``)."""
        xpad = parallel.scratch("pad", self.xpad_shape, self.dtype)
        planes = parallel.scratch("planes", (2, self.oH * self.Wp), self.dtype)
        hH, hW = (self.oH + 1) // 2, (self.oW + 1) // 2  # the phases' rows and columns
        P = parallel.scratch("phases", (self.xpad_shape[0], 2, 2, 2, (hH + 1) * hW), self.dtype)
        Y = parallel.scratch("plane_phases", (2, 4, hH * hW), self.dtype)
        return xpad, planes, P, Y

    def forward(self, x, out) -> None:
        self.relu_max_pool_2x2(x, out, np.empty((0, 0, 0, 0), np.int64))

    def relu_max_pool_2x2(self, x, out, indices) -> None:
        """out, indices = max_pool2d(relu(conv2d(x)), 2) for a chunk: x (b, C, H, W), out
        and indices (b, C_out, pH, pW) (or, with ``indices`` empty, ``forward`` itself)."""
        top, left = self.padding[0], self.padding[2]
        direct.conv3x3_forward(
            x, self.weight2, self.bias2, top, left, *self._scratch(), out, indices
        )

    def backward(self, grad, x, grad_w, grad_b, grad_x) -> None:
        no_pool = np.empty((0, 0, 0, 0), np.int64)
        self.relu_max_pool_2x2_backward(grad, no_pool, grad[:0], x, grad_w, grad_b, grad_x)

    def relu_max_pool_2x2_backward(self, grad_out, indices, out, x, grad_w, grad_b, grad_x):
        """``backward`` for ``relu_max_pool_2x2``, from the pooled gradient of a chunk (or,
        with ``indices`` empty, ``backward`` itself: see ``direct.conv3x3_backward``)."""
        top, left = self.padding[0], self.padding[2]
        xpad, _, P, G = self._scratch()  # G: the two planes' gradients' phases
        gext = parallel.scratch("grad_planes", (2, (self.oH + 5) * self.Wp + 2), self.dtype)
        gpad = parallel.scratch(
            "grad_pad", self.xpad_shape if grad_x is not None else (0, 0, 0), self.dtype
        )
        grad_x = np.empty((0, 0, 0, 0), self.dtype) if grad_x is None else grad_x
        direct.conv3x3_backward(
            grad_out,
            indices,
            out,
            x,
            self.weight2,
            top,
            left,
            xpad,
            P,
            G,
            gext,
            grad_w,
            grad_b,
            gpad,
            grad_x,
        )

    @property
    def grad_w_shape(self) -> tuple[int, ...]:
        return self.weight2.shape

    def grad_weight(self, grad_w):
        return np.ascontiguousarray(grad_w[: self.C_out])
