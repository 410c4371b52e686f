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
from collections.abc import Callable
from typing import NamedTuple

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
from minicnn.kernels.geometry import PoolGeometry
from minicnn.kernels.relu_pool import relu_max_pool2d_2x2_backward_kernel
from minicnn.kernels.runtime import parallel

# Below this many taps per output (Cg*kH*kW), the weight gradient's product is summed by a
# loop rather than BLAS: such thin products are slow in OpenBLAS, and serialised across
# threads (benchmarks/README.md, "What we measured")
SMALL_TAPS = 16


def _pad_shape(x, kernel, out_hw):
    """The padded plane ``im2col_unit`` reads: wide enough for every tap of every output."""
    return (x.shape[1], out_hw[0] + kernel[0] - 1, out_hw[1] + kernel[1] - 1)


class Pooling(NamedTuple):
    """A plan's own relu and max pool of its conv's output, for a chunk of images
    (``ConvPlan.pooling``): ``forward(x, out, indices)`` sets out, indices =
    max_pool2d(relu(conv2d(x))), and ``backward(grad_out, indices, out, x, grad_w, grad_b,
    grad_x)`` is ``ConvPlan.backward`` from the pooled gradient."""

    forward: Callable
    backward: Callable


class ConvPlan:
    """One conv2d's shapes and weight matrices, and its work on one chunk of images.

    ``forward(x, out)`` and ``backward(grad, x, ...)`` take a chunk of at most ``chunk``
    images (a slice of the batch) and use per-thread scratch space for the unfolded input,
    so threads can run them on their slices at the same time. The fused layers of
    ``minicnn.kernels.fused`` run a conv chunk by chunk the same way.
    """

    def __init__(self, x_shape, weight, bias, stride, padding, dilation, groups, dtype):
        N, C, H, W = x_shape
        C_out, Cg, kH, kW = weight.shape
        self.groups, self.Og, self.C_out = groups, C_out // groups, C_out
        self.oH, self.oW = conv_out_hw((H, W), (kH, kW), stride, padding, dilation)
        self.L, self.taps = self.oH * self.oW, Cg * kH * kW
        self.kernel, self.stride, self.padding, self.dilation = (kH, kW), stride, padding, dilation
        self.unit = stride == (1, 1) and dilation == (1, 1)
        self.dtype = np.dtype(dtype)
        self.weight = weight
        self.wmat = weight.reshape(groups, self.Og, self.taps)  # (groups, Og, taps)
        self.bias_vector = np.empty(0, self.dtype) if bias is None else bias.astype(self.dtype)
        # per image: its unfolded input and its output (which a fused layer keeps in scratch)
        per_image = (groups * self.taps + C_out) * self.L * self.dtype.itemsize
        self.chunk = parallel.chunk_size(per_image)
        self.out_shape = (N, C_out, self.oH, self.oW)

    def chunks(self, start: int, stop: int):
        """(n0, n1) for the chunks of images start..stop."""
        for n0 in range(start, stop, self.chunk):
            yield n0, min(n0 + self.chunk, stop)

    def pooling(self, pool_geometry: PoolGeometry) -> Pooling | None:
        """The plan's own relu and pool of its conv's output over these windows (none here:
        ``minicnn.kernels.fused`` then pools the conv's output in scratch space)."""
        return None

    def _unfold(self, x):
        """cols = im2col(x), (groups, taps, b, L), by the unit-stride kernel where it applies."""
        shape = (self.groups, self.taps, x.shape[0], self.L)
        cols = parallel.scratch("cols", shape, self.dtype)
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

        One product per group for the whole chunk, (Og, taps) @ (taps, b*L): a wide matrix
        keeps BLAS efficient where one image's L = oH*oW is small (DeepCNN's 7x7 layer)."""
        b, groups, Og, L = x.shape[0], self.groups, self.Og, self.L
        cols = self._unfold(x).reshape(groups, self.taps, b * L)  # (groups, taps, b*L)
        prod = parallel.scratch("prod", (groups, Og, b * L), self.dtype)
        np.matmul(self.wmat, cols, out=prod)  # (groups, Og, b*L)
        products_to_images(prod, self.bias_vector, out.reshape(b, self.C_out, L))

    def backward(self, grad, x, grad_w, grad_b, grad_x) -> None:
        """For a chunk: add its weight and bias gradients into ``grad_w`` (groups, Og, taps)
        and ``grad_b`` (C_out,), and write its input gradient into ``grad_x`` unless None."""
        b, groups, Og, taps, L = x.shape[0], self.groups, self.Og, self.taps, self.L
        cols = self._unfold(x)  # (groups, taps, b, L)
        chunk_w = parallel.scratch("grad_w", (groups, Og, taps), self.dtype)
        if taps < SMALL_TAPS:
            weight_grad_from_columns(grad.reshape(b, self.C_out, L), cols, chunk_w)
        else:
            g_wide = self._wide(grad)  # (groups, Og, b*L)
            columns = cols.reshape(groups, taps, b * L).transpose(0, 2, 1)
            np.matmul(g_wide, columns, out=chunk_w)
        grad_w += chunk_w
        grad_b += grad.reshape(b, self.C_out, L).sum(axis=(0, 2))
        if grad_x is not None:
            g_wide = self._wide(grad) if taps < SMALL_TAPS else g_wide  # (groups, Og, b*L)
            cols_grad = cols.reshape(groups, taps, b * L)  # the columns' gradient, over cols
            np.matmul(self.w_t, g_wide, out=cols_grad)
            self._fold(cols, grad_x)

    def _wide(self, grad):
        """A chunk's output gradient (b, C_out, oH, oW) in the columns' layout, (groups, Og,
        b*L), in scratch space."""
        b, groups, Og, L = grad.shape[0], self.groups, self.Og, self.L
        g_wide = parallel.scratch("grad_wide", (groups, Og, b, L), self.dtype)
        np.copyto(g_wide, grad.reshape(b, groups, Og, L).transpose(1, 2, 0, 3))
        return g_wide.reshape(groups, Og, b * L)

    @functools.cached_property
    def w_t(self):
        """The weight matrices transposed, (groups, taps, Og), for the input gradient."""
        return np.ascontiguousarray(self.wmat.transpose(0, 2, 1))

    def backward_batch(self, x, input_grad: bool, chunk_backward):
        """The whole batch's (grad_x, grad_weight, grad_bias), the batch split across threads;
        ``chunk_backward(n0, n1, grad_w, grad_b, grad_x)`` does the backward of images
        n0..n1 (``backward``, or a ``Pooling``'s), adding into the thread's sums ``grad_w``
        and ``grad_b`` and writing ``grad_x`` (those images' slice, or None). Each thread
        sums its images' weight gradients, then the threads' sums add up in slice order."""
        grad_x = np.empty(x.shape, dtype=self.dtype) if input_grad else None  # (N, C, H, W)

        def task(start, stop):
            grad_w = np.zeros(self.grad_w_shape, dtype=self.dtype)  # this slice's sum
            grad_b = np.zeros(self.C_out, dtype=self.dtype)
            for n0, n1 in self.chunks(start, stop):
                part = None if grad_x is None else grad_x[n0:n1]
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
        return (self.groups, self.Og, self.taps)

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
        # from cache, and fewer, wider products are faster (benchmarks/README.md)
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
        the forward pass's), and the 2x2 kernel, which takes such planes to the general one,
        gives the conv output's gradient instead."""
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
    giving a 2x2 block of outputs. It pools the plain 2x2 windows itself: each tile's block
    is a window, pooled as the output transform makes it, and the blocks' gradient is built
    from the pooled one (``tile_pool``)."""

    def pooling(self, pool_geometry: PoolGeometry) -> Pooling | None:
        if not pool_geometry.is_plain_2x2((self.oH, self.oW)):
            return None
        return Pooling(self._pool_tiles, self._pool_tiles_backward)

    def _pool_tiles(self, x, out, indices) -> None:
        """out, indices = max_pool2d(relu(conv2d(x)), 2) for a chunk: x (b, C, H, W), out and
        indices (b, C_out, pH, pW)."""
        M = self._products(x)  # (16, b*T, C_out)
        tile_pool.relu_max_pool_tiles(M, self.bias_vector, self.oH, self.oW, out, indices)

    def _pool_tiles_backward(self, grad_out, indices, out, x, grad_u, grad_b, grad_x):
        """``backward`` for ``_pool_tiles``, from the pooled gradient of a chunk."""
        D = self._scratch(*x.shape[:2])[3]
        strays = tile_pool.relu_max_pool_tiles_backward(grad_out, indices, out, self.oH, self.oW, D)
        self._pooled_backward(strays, D, grad_out, indices, out, (0, 0), x, grad_u, grad_b, grad_x)


class Winograd4Plan(WinogradPlan):
    """``WinogradPlan`` by F(4x4, 3x3) (``winograd_f4x4``): 36 products over 6x6 tiles, each
    giving a 4x4 block of outputs. It pools the 2x2 windows at stride 2 with padding 0 or 1
    itself, reading each window's pixels from the blocks (``tile_pool``)."""

    kernels = winograd_f4x4
    m = 4

    def pooling(self, pool_geometry: PoolGeometry) -> Pooling | None:
        if not pool_geometry.is_clipped_2x2():
            return None
        pH, pW = pool_geometry.padding

        def forward(x, out, indices):  # out, indices (b, C_out, qH, qW)
            M = self._products(x)  # (36, b*T, C_out)
            tile_pool.relu_max_pool_blocks(
                M, self.bias_vector, self.oH, self.oW, pH, pW, out, indices
            )

        def backward(grad_out, indices, out, x, grad_u, grad_b, grad_x):
            D = self._scratch(*x.shape[:2])[3]
            strays = tile_pool.relu_max_pool_blocks_backward(
                grad_out, indices, out, self.oH, self.oW, pH, pW, D
            )
            pads = (pH, pW)
            self._pooled_backward(
                strays, D, grad_out, indices, out, pads, x, grad_u, grad_b, grad_x
            )

        return Pooling(forward, backward)


class DirectPlan(ConvPlan):
    """A 3x3, stride-1, ungrouped conv2d of few input channels (one: the deck's first layer)
    computed directly (``direct``): per image, over the zero-padded planes laid out flat, two
    output planes at a time. It pools the plain 2x2 windows itself: each plane as it is made,
    and each plane's gradient phases built from the pooled gradient (see
    ``minicnn.kernels.fastconv.direct``)."""

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

    def pooling(self, pool_geometry: PoolGeometry) -> Pooling | None:
        if not pool_geometry.is_plain_2x2((self.oH, self.oW)):
            return None
        return Pooling(self._conv_pool, self._conv_pool_backward)

    def forward(self, x, out) -> None:
        self._conv_pool(x, out, np.empty((0, 0, 0, 0), np.int64))

    def _conv_pool(self, x, out, indices) -> None:
        """out, indices = max_pool2d(relu(conv2d(x)), 2) for a chunk: x (b, C, H, W), out
        and indices (b, C_out, pH, pW) (or, with ``indices`` empty, ``forward`` itself)."""
        top, left = self.padding[0], self.padding[2]
        direct.conv3x3_forward(
            x, self.weight2, self.bias2, top, left, *self._scratch(), out, indices
        )

    def backward(self, grad, x, grad_w, grad_b, grad_x) -> None:
        no_pool = np.empty((0, 0, 0, 0), np.int64)
        self._conv_pool_backward(grad, no_pool, grad[:0], x, grad_w, grad_b, grad_x)

    def _conv_pool_backward(self, grad_out, indices, out, x, grad_w, grad_b, grad_x):
        """``backward`` for ``_conv_pool``, from the pooled gradient of a chunk (or, with
        ``indices`` empty, ``backward`` itself: see ``direct.conv3x3_backward``)."""
        top, left = self.padding[0], self.padding[2]
        xpad, _, P, grad_phases = self._scratch()  # the two planes' gradients' phases
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
            grad_phases,
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
