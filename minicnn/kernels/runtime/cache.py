"""Whether Numba can keep the compiled kernels on disk; without a place, they compile in memory.

Numba compiles each fast kernel on its first call and, with ``cache=CACHE``, stores the machine
code beside the source (``__pycache__``), else in ``$NUMBA_CACHE_DIR`` or the user's cache
directory, so that later runs start at once. A read-only install with no writable cache
directory has none of these, and there Numba refuses ``cache=CACHE`` when the kernel is defined,
which is at ``import minicnn``. So every kernel is decorated with ``cache=CACHE``: True where
Numba finds a place, else False with one warning that says how to give it one.
"""

from __future__ import annotations

import warnings

from numba.core.caching import FunctionCache


def _probe() -> None:
    """A function defined in the kernels' tree: Numba looks for its cache as for theirs."""


def _can_cache() -> bool:
    try:
        FunctionCache(_probe)  # Numba's own search for a writable cache directory
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return False
    return True


CACHE = _can_cache()
if not CACHE:
    warnings.warn(
        "minicnn: Numba finds no writable directory to cache its compiled kernels in (a "
        "read-only install, and no writable NUMBA_CACHE_DIR or user cache directory); they "
        "compile on every run. Set NUMBA_CACHE_DIR=DIR to a writable directory to keep them.",
        RuntimeWarning,
        stacklevel=2,
    )
