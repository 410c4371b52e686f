"""Settings minicnn's dependencies read at import, checked first so that a bad one is one clear
line rather than a traceback from inside Numba. Imported first by ``minicnn``; changes nothing."""

import os

_threads = os.environ.get("NUMBA_NUM_THREADS", "1").strip()
if not (_threads.isdigit() and int(_threads) >= 1):
    raise ImportError(
        f"minicnn: NUMBA_NUM_THREADS={_threads!r}: expected a whole number >= 1; unset it or "
        "set it to the number of threads to use"
    )
