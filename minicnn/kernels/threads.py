"""How many threads the fast kernels use, and the BLAS library's share of them.

minicnn runs a batch's images on ``get_num_threads()`` threads (``minicnn.kernels.parallel``).
The count starts at ``NUMBA_NUM_THREADS`` (Numba's setting: the number of cores unless the
environment says otherwise) and ``set_num_threads(n)`` changes it (``minicnn train --threads
N`` and the benchmarks call it).

The matrix products inside those threads must each run on one BLAS thread: a multithreaded
BLAS called from two threads at once would start two threads per call on a machine with two
cores, and its idle threads spin. ``single_threaded_blas()`` sets that for the duration of a
parallel section and restores the BLAS's own count afterwards, so a product called outside
one (batch 1, a Linear layer) still uses every core. NumPy's BLAS is reached through its
OpenBLAS ``*_set_num_threads`` symbol, as NumPy's wheels ship it; with another BLAS these
functions do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Iterator

import numba

_count = int(numba.config.NUMBA_NUM_THREADS)

_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "")


def get_num_threads() -> int:
    """The number of threads a batch is split across."""
    return _count


def set_num_threads(count: int) -> None:
    """Split each batch across ``count`` threads, and let BLAS use as many outside them."""
    global _count
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {count!r}")
    _count = count
    set_blas_threads(count)


@functools.cache
def _blas() -> tuple | None:
    """NumPy's OpenBLAS (set_num_threads, get_num_threads), or None when not found."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
    except OSError:
        return None
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                setter = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    return setter, getter
    return None


def set_blas_threads(count: int) -> bool:
    """Set the BLAS library's thread count; False when no OpenBLAS was found."""
    blas = _blas()
    if blas is None:
        return False
    blas[0](int(count))
    return True


def get_blas_threads() -> int | None:
    """The BLAS library's thread count, or None when no OpenBLAS was found."""
    blas = _blas()
    return None if blas is None else int(blas[1]())


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run a block with BLAS on one thread (see the module docstring)."""
    previous = get_blas_threads()
    if previous is None or previous == 1:
        yield
        return
    set_blas_threads(1)
    try:
        yield
    finally:
        set_blas_threads(previous)
