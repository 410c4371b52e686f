"""Keep freed memory in the process, so that a training step's arrays cost no page faults.

A training step allocates the same large arrays on every step (a conv layer's output for a
batch of 100 is 10 MB) and frees them again. glibc's malloc serves blocks that large with
``mmap`` and hands them back to the kernel when they are freed, so every step touches fresh
pages, and the kernel faults in and zeroes each of them (on the deck's CNN, a third of a
single-threaded step's time: benchmarks/README.md#what-we-measured). ``keep_freed_memory()``
tells malloc to serve blocks up to 32 MiB from its heap and never to give the heap's free top back,
so the next step reuses the same pages, as torch's own CPU allocator does. The process keeps
its peak memory until it exits, which is what a training run needs anyway.

Called when the fast kernels first run (``process``), never at import;
``MINICNN_KEEP_FREED_MEMORY=0`` turns it off. On systems without glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_LIMIT = 32 * 1024 * 1024  # the largest mmap threshold glibc accepts on 64-bit systems
TRIM_NEVER = 2**31 - 1


def keep_freed_memory() -> bool:
    """Set malloc's thresholds as the module docstring says; True when they were set."""
    if os.environ.get("MINICNN_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_LIMIT)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_NEVER)
    )
