"""Batch parallelism: the images of a batch split across worker threads.

The fast kernels parallelise the simplest way a CNN allows: image ``n`` of a batch never
meets image ``m`` until a weight gradient sums over the batch. ``parallel_for(N, task)``
cuts ``range(N)`` into one contiguous slice per thread and runs ``task(start, stop)`` on
each; every task walks its slice in chunks small enough to stay in the core's L2 cache,
calling single-threaded Numba kernels (``nogil=True``) and single-threaded BLAS products, so
no thread ever waits for, or spins against, another thread's work. A weight gradient comes
back as one partial sum per slice, added up in slice order: the result depends on the thread
count (as torch's does), never on timing.

The thread count is ``minicnn.kernels.runtime.threads.get_num_threads()``: ``NUMBA_NUM_THREADS``
(default, the number of cores), or ``set_num_threads(n)`` (``minicnn train --threads N``).
BLAS runs on one thread per call (``minicnn.kernels.runtime.threads`` says why).
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
from collections.abc import Callable

import numpy as np

from minicnn.kernels.runtime import process
from minicnn.kernels.runtime import threads as _threads

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_size = 0
_local = threading.local()


def _executor(count: int) -> concurrent.futures.ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size < count:
        if _pool is not None:
            _pool.shutdown(wait=True)
        _pool = concurrent.futures.ThreadPoolExecutor(count, thread_name_prefix="minicnn")
        _pool_size = count
    return _pool


def slices(n: int, parts: int) -> list[tuple[int, int]]:
    """``range(n)`` cut into at most ``parts`` contiguous (start, stop) slices, sizes within
    one of each other, none empty."""
    parts = max(1, min(parts, n))
    bounds = [n * k // parts for k in range(parts + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(parts)]


def parallel_for(n: int, task: Callable[[int, int], object], grain: int = 1) -> list:
    """``[task(start, stop) for each slice]``, the slices of ``range(n)`` run concurrently,
    one per thread (see the module docstring), none shorter than ``grain`` items unless
    there is only one. Returns the results in slice order."""
    process.ensure_configured()  # BLAS on one thread, malloc keeping its memory (see process)
    threads = _threads.get_num_threads()
    if getattr(_local, "in_task", False):
        threads = 1  # called from inside a task: run here, never wait on the busy pool
    parts = slices(n, min(threads, max(1, n // grain)))
    if len(parts) <= 1:
        return [task(*part) for part in parts]
    futures = [_executor(threads).submit(_as_task, task, *part) for part in parts[1:]]
    try:
        first = _as_task(task, *parts[0])  # the calling thread takes the first slice itself
    finally:
        results = [future.result() for future in futures]  # never leave a task running
    return [first] + results


def _as_task(task: Callable[[int, int], object], start: int, stop: int):
    """``task(start, stop)``, marked as running inside a parallel section."""
    outer = getattr(_local, "in_task", False)
    _local.in_task = True
    try:
        return task(start, stop)
    finally:
        _local.in_task = outer


def chunk_size(bytes_per_image: int, budget: int = 1024 * 1024) -> int:
    """How many images' scratch space fits in ``budget`` bytes (at least one): chunks of this
    many images keep a task's working set in L2."""
    return max(1, budget // max(1, bytes_per_image))


def scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A per-thread work array of ``shape`` (uninitialised), reused across calls so that the
    hot loops allocate nothing. The view of each shape asked for is kept too: a CNN step asks
    some 300 times, mostly for the same few shapes, and a lookup is cheaper than a reshape."""
    views = _local.__dict__.setdefault("views", {})
    view = views.get((name, shape, dtype))
    if view is not None:
        return view
    buffers = _local.__dict__.setdefault("buffers", {})
    size = math.prod(shape)  # np.prod costs more than the rest of this function
    kind = np.dtype(dtype)
    buffer = buffers.get((name, kind))
    if buffer is None or buffer.size < size:
        buffer = np.empty(size, dtype=kind)
        buffers[(name, kind)] = buffer
        views.clear()  # views of the old buffer are stale; the few others are rebuilt
    if len(views) > 256:  # (shapes vary without end only in tests)
        views.clear()
    view = buffer[:size].reshape(shape)
    views[(name, shape, dtype)] = view
    return view
