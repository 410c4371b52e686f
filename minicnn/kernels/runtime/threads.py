"""How many threads the fast kernels use; the BLAS library gets one.

minicnn runs a batch's images on ``get_num_threads()`` threads (``parallel``). The count
starts at ``NUMBA_NUM_THREADS`` (Numba's setting: the number of cores unless the environment
says otherwise) and ``set_num_threads(n)`` changes it (``minicnn train --threads N`` and the
benchmarks call it).

Every matrix product runs on one BLAS thread, inside those threads: a multithreaded OpenBLAS
keeps its idle threads spinning after each product, on the cores minicnn's threads need
(benchmarks/README.md#what-we-measured). So the fast kernels' first run sets NumPy's OpenBLAS
to one thread, for the whole process (``process``; torch has a BLAS of its own), never the
import. NumPy's BLAS is reached through its OpenBLAS ``*_set_num_threads`` symbol, as NumPy's
wheels ship it; with another BLAS these functions do nothing.
"""

from __future__ import annotations

import ctypes
import functools

import numba

_count = int(numba.config.NUMBA_NUM_THREADS)

_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "")


def get_num_threads() -> int:
    """The number of threads a batch is split across."""
    return _count


def set_num_threads(count: int) -> None:
    """Split each batch across ``count`` threads."""
    global _count
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {count!r}")
    _count = count


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
