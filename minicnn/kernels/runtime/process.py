"""The two process-wide settings the fast kernels want, applied when they first run.

- NumPy's BLAS on one thread (``threads.set_blas_threads(1)``): minicnn's own threads run the
  matrix products, one each, and a multithreaded OpenBLAS would spin against them;
- malloc keeping freed memory (``allocator.keep_freed_memory()``): a step's large arrays then
  reuse the same pages instead of faulting in fresh ones.

Importing minicnn changes neither. The first parallel section of a fast kernel calls
``ensure_configured()``, which applies both unless ``configure`` was called before; a library
user who wants NumPy's BLAS left alone calls ``configure(single_threaded_blas=False)`` first
(or ``configure()`` to apply both now). ``MINICNN_KEEP_FREED_MEMORY=0`` declines the malloc
setting from the environment. benchmarks/README.md#what-we-measured gives what each saves.
"""

from __future__ import annotations

from minicnn.kernels.runtime import allocator, threads

_applied: dict[str, bool] | None = None  # what configure() did, once it ran


def configure(*, single_threaded_blas: bool = True, keep_freed_memory: bool = True) -> dict:
    """Apply the settings asked for, now; returns which took effect (False where no OpenBLAS
    or no glibc was found, or the setting was declined). Later calls apply theirs again."""
    global _applied
    _applied = {
        "single_threaded_blas": single_threaded_blas and threads.set_blas_threads(1),
        "keep_freed_memory": keep_freed_memory and allocator.keep_freed_memory(),
    }
    return dict(_applied)


def ensure_configured() -> None:
    """``configure()`` with its defaults, unless it ran already (the fast kernels' first call)."""
    if _applied is None:
        configure()


def applied() -> dict | None:
    """What ``configure`` applied, or None while the fast kernels have not run."""
    return None if _applied is None else dict(_applied)
