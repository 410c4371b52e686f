"""Kernels: pure functions on NumPy arrays, each op in two implementations.

Every op has a readable NumPy *twin* (``*_numpy``), the specification a learner steps through,
and a fast implementation (``*_numba``) tested against it. ``minicnn.functional`` validates
arguments, allocates and calls whichever implementation the active backend selects:

    minicnn.kernels.set_backend("numpy")      # the twins everywhere
    with minicnn.kernels.use_backend("numba"):  # the fast kernels, for a block
        ...

The default is ``numba``, or ``$MINICNN_BACKEND`` when set. ``NUMBA_DISABLE_JIT=1`` turns the
fast kernels back into plain, debuggable Python.

One file per op, twin and fast version side by side: ``conv``, ``pool`` (max), ``avg_pool``,
``elementwise`` (relu, dropout), ``linear``, ``softmax`` (with cross-entropy), ``adam``, and
``fused`` (conv → relu → max-pool in one pass, its pooled gradient routed by ``relu_pool``).
How the fast conv computes lives in ``fastconv`` (plans, im2col, direct loops, Winograd); how
the fast kernels run in ``runtime`` (threads, the batch split across them, memory).
docs/architecture.md names the function that computes each op on each backend.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

BACKENDS = ("numba", "numpy")

_backend = os.environ.get("MINICNN_BACKEND", "numba")
if _backend not in BACKENDS:
    raise ValueError(f"MINICNN_BACKEND must be one of {BACKENDS}, got {_backend!r}")


def get_backend() -> str:
    """The active backend's name, ``'numba'`` or ``'numpy'``."""
    return _backend


def set_backend(name: str) -> None:
    """Select the kernels ``minicnn.functional`` calls: ``'numba'`` (fast) or ``'numpy'``."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"set_backend: expected one of {BACKENDS}, got {name!r}")
    _backend = name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run a block with the given backend, restoring the previous one afterwards."""
    previous = _backend
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def pick(numpy_fn: Callable, numba_fn: Callable) -> Callable:
    """The implementation of an op that the active backend selects."""
    return numba_fn if _backend == "numba" else numpy_fn
