"""Thread counts for the two kinds of parallel code a training step runs: Numba's parallel
kernels and the BLAS library behind NumPy's matrix products.

Both keep worker threads that spin for a while after each call. When a Numba kernel and a
BLAS product alternate on a machine with few cores, each pool's spinning threads take the
cores the other pool needs: on two cores a CNN training step varied between 62 ms and
530 ms from run to run. ``set_num_threads`` sets both counts; ``minicnn train --threads``
and the benchmarks call it. NumPy's BLAS is reached through its ``*_set_num_threads``
symbol (OpenBLAS, as NumPy's wheels ship it); with another BLAS this does nothing.
"""

from __future__ import annotations

import ctypes
import functools

import numba

_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)


@functools.cache
def _blas_setter():
    """NumPy's OpenBLAS ``set_num_threads`` function, or None when it cannot be found."""
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
        for name in _SETTERS:
            if hasattr(library, name):
                setter = getattr(library, name)
                setter.argtypes = [ctypes.c_int]
                setter.restype = None
                return setter
    return None


def set_blas_threads(count: int) -> bool:
    """Set the BLAS library's thread count; False when no OpenBLAS was found."""
    setter = _blas_setter()
    if setter is None:
        return False
    setter(int(count))
    return True


def set_num_threads(count: int, blas: int | None = 1) -> None:
    """Run Numba's parallel kernels on ``count`` threads and BLAS on ``blas`` threads.

    One BLAS thread by default: minicnn's kernels already use the cores between products,
    and a single-threaded BLAS leaves no spinning threads behind (see the module docstring).
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {count!r}")
    if count > numba.config.NUMBA_NUM_THREADS:
        raise ValueError(
            f"set_num_threads: at most NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS} "
            f"threads, got {count}"
        )
    numba.set_num_threads(count)
    if blas is not None:
        set_blas_threads(blas)
