"""``NUMBA_BOUNDSCHECK=1`` turns an out-of-bounds index in a compiled kernel into an IndexError.

CI runs the suite a second time with it (see ``.ci/run``) and a Numba cache directory of its
own: Numba's cache key holds the signature, the CPU and the bytecode but not the boundscheck
flag (``numba.core.caching._CacheImpl._index_key``), so kernels cached by an unchecked run
would be loaded, unchecked, without a word. minicnn's kernels run no ``prange`` loops (the
batch is split across Python threads, ``minicnn.kernels.runtime.parallel``, which re-raises a
worker's exception in the caller), so an IndexError reaches the test that caused it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

OUT_OF_BOUNDS = "IndexError: index is out of bounds"


def run_checked(code: str, cache_dir, cwd=None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python set up as CI's checked run: NUMBA_BOUNDSCHECK=1 and its
    own Numba cache."""
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(cache_dir))
    env.pop("NUMBA_DISABLE_JIT", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_cached_kernel_compiled_with_boundscheck_raises_index_error(tmp_path):
    (tmp_path / "kernel.py").write_text(
        textwrap.dedent("""
        from numba import njit

        @njit(cache=True)
        def read(a, i):
            return a[i]
    """)
    )
    code = """
        import numpy as np
        from kernel import read
        assert read(np.arange(3.0), 2) == 2.0
        read(np.arange(3.0), 3)
    """
    cache = tmp_path / "cache"
    for attempt in ("compiled", "loaded from the cache"):
        result = run_checked(code, cache, cwd=tmp_path)
        assert result.returncode != 0 and OUT_OF_BOUNDS in result.stderr, (attempt, result.stderr)
        assert any(cache.rglob("*.nbi")), "nothing was cached"


RELU_BACKWARD_READING_PAST_THE_END = """
    import numpy as np
    from minicnn.kernels.elementwise import relu_backward_kernel
    x = np.ones(64)
    relu_backward_kernel(np.ones(8), x, np.empty_like(x))  # grad_out is 8 long, not 64
"""


def test_minicnn_kernels_are_checked_in_a_boundscheck_run(tmp_path):
    if os.environ.get("NUMBA_BOUNDSCHECK") == "1":  # the CI run: this process's own kernels
        from minicnn.kernels.elementwise import relu_backward_kernel

        x = np.ones(64)
        with pytest.raises(IndexError, match="out of bounds"):
            relu_backward_kernel(np.ones(8), x, np.empty_like(x))
    else:  # unchecked, the same call would read past the end: check a fresh process instead
        repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        result = run_checked(RELU_BACKWARD_READING_PAST_THE_END, tmp_path, cwd=repository)
        assert result.returncode != 0 and OUT_OF_BOUNDS in result.stderr, result.stderr
