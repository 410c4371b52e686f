"""How the fast kernels run: ``threads`` (how many, and BLAS's count), ``parallel`` (a batch's
images split across them, per-thread scratch arrays), ``allocator`` (malloc kept from
returning a step's memory to the OS), ``process`` (those two settings, applied on the first run)
and ``cache`` (whether Numba can keep the compiled kernels on disk)."""
