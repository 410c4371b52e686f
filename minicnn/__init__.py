"""minicnn: a from-scratch CNN engine in NumPy and Numba that computes exactly what PyTorch does.

    import minicnn
    from minicnn import nn, functional as F

Tiers: ``minicnn.kernels`` (NumPy twins and fast Numba kernels) → ``minicnn.functional``
(torch-named ops with their backwards) → ``minicnn.nn`` (modules with manual backprop).
"""

from minicnn import environment as environment  # first: it checks the settings Numba reads
from minicnn import functional, init, kernels, nn, optim
from minicnn.kernels import get_backend, set_backend, use_backend
from minicnn.nn.tape import no_grad
from minicnn.random import manual_seed
from minicnn.teach.summarize import summary

__version__ = "0.1.0"

__all__ = [
    "functional",
    "get_backend",
    "init",
    "kernels",
    "manual_seed",
    "nn",
    "no_grad",
    "optim",
    "set_backend",
    "summary",
    "use_backend",
]
