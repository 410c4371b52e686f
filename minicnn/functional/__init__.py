"""Torch-named functional ops on NumPy arrays, each with its backward right beside it.

Every function validates its arguments (a clear ValueError or TypeError otherwise), normalises
``int | tuple`` arguments, and calls the kernel the active backend selects (see
``minicnn.kernels``). Arrays are NCHW; weights are stored as torch stores them.

Float arrays are float32 or float64, one dtype per call, as torch requires; integer, bool,
float16, complex and object arrays, and lists, are a TypeError rather than converted (class
indices, masks and pooling indices are the integer or bool arrays they are; ``flatten``, a
reshape, takes any array). Any layout works: non-contiguous views give the same bits as
contiguous arrays. NaN and infinities propagate as in torch. An empty batch (N = 0) gives an
empty result, as in torch.
"""

from minicnn.functional.activation import (
    dropout,
    dropout_backward,
    dropout_mask,
    flatten,
    linear,
    linear_backward,
    log_softmax,
    log_softmax_backward,
    relu,
    relu_backward,
    softmax,
    softmax_backward,
)
from minicnn.functional.conv import conv2d, conv2d_backward, conv_output_size
from minicnn.functional.fused import conv2d_relu_max_pool2d, conv2d_relu_max_pool2d_backward
from minicnn.functional.loss import cross_entropy, cross_entropy_backward
from minicnn.functional.pool import (
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
    pool_output_size,
)

__all__ = [
    "avg_pool2d",
    "avg_pool2d_backward",
    "conv2d",
    "conv2d_backward",
    "conv2d_relu_max_pool2d",
    "conv2d_relu_max_pool2d_backward",
    "conv_output_size",
    "cross_entropy",
    "cross_entropy_backward",
    "dropout",
    "dropout_backward",
    "dropout_mask",
    "flatten",
    "linear",
    "linear_backward",
    "log_softmax",
    "log_softmax_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "pool_output_size",
    "relu",
    "relu_backward",
    "softmax",
    "softmax_backward",
]
