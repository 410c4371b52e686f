"""The fast kernels' threads: slices of a batch, thread counts, BLAS threads, freed memory."""

from __future__ import annotations

import resource

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn import functional as F
from minicnn import models, nn, use_backend
from minicnn.kernels.runtime import allocator, parallel, threads
from tests.helpers import assert_close


@pytest.fixture
def thread_count():
    """Set the kernels' thread count for one test, then restore it."""
    before = threads.get_num_threads()
    yield threads.set_num_threads
    threads.set_num_threads(before)


@given(n=st.integers(0, 300), parts=st.integers(1, 9))
def test_slices_cover_the_range_in_order_and_evenly(n, parts):
    cut = parallel.slices(n, parts)
    assert cut[0][0] == 0 and cut[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(cut, cut[1:]))  # contiguous, in order
    sizes = [stop - start for start, stop in cut]
    assert len(cut) == max(1, min(parts, n))
    assert max(sizes) - min(sizes) <= 1 and (n == 0 or min(sizes) >= 1)


def test_parallel_for_returns_results_in_slice_order(thread_count):
    thread_count(3)
    assert parallel.parallel_for(10, lambda a, b: (a, b)) == [(0, 3), (3, 6), (6, 10)]
    assert parallel.parallel_for(10, lambda a, b: (a, b), grain=6) == [(0, 10)]


def test_a_parallel_for_inside_a_task_runs_in_place(thread_count):
    # a task that itself splits work must not wait for the pool it is occupying
    thread_count(2)
    inner = parallel.parallel_for(4, lambda a, b: parallel.parallel_for(6, lambda c, d: (c, d)))
    assert inner == [[(0, 6)], [(0, 6)]]


def test_an_error_in_a_worker_reaches_the_caller(thread_count):
    thread_count(2)

    def task(a, b):
        if a > 0:
            raise ValueError("second slice")
        return a

    with pytest.raises(ValueError, match="second slice"):
        parallel.parallel_for(4, task)


def test_blas_runs_on_one_thread_whatever_the_thread_count(thread_count):
    # minicnn's threads run the products; a multithreaded BLAS's spinning threads would take
    # their cores (see minicnn.kernels.runtime.threads)
    if threads.get_blas_threads() is None:
        pytest.fail("NumPy's OpenBLAS was not found: minicnn cannot control its threads")
    thread_count(2)
    seen = parallel.parallel_for(2, lambda a, b: threads.get_blas_threads())
    assert seen == [1, 1] and threads.get_blas_threads() == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_rejects_non_positive_ints(bad):
    with pytest.raises(ValueError, match="positive int"):
        threads.set_num_threads(bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_timing_and_barely_on_thread_count(thread_count, dtype):
    # forward passes split images, so any thread count gives the same bits; a weight gradient
    # sums per-thread partial sums, so it differs by round-off only between thread counts
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 3, 9, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    grad = rng.standard_normal((7, 4, 9, 8)).astype(dtype)
    runs = {}
    for count in (1, 2, 3, 3):
        thread_count(count)
        out = F.conv2d(x, w, None, padding=1)
        grads = F.conv2d_backward(grad, x, w, padding=1, output_mask=(True, True, False))
        runs.setdefault(count, []).append((out, *grads[:2]))
    assert all(np.array_equal(a, b) for a, b in zip(runs[3][0], runs[3][1]))  # repeatable
    for count in (2, 3):
        out, grad_x, grad_w = runs[count][0]
        assert np.array_equal(out, runs[1][0][0]) and np.array_equal(grad_x, runs[1][0][1])
        assert_close(grad_w, runs[1][0][2], f"weight gradient on {count} threads")


@pytest.mark.parametrize("shape", [(40, 30, 5), (3, 40, 70), (2, 4, 33, 50)])
def test_linear_splits_rows_or_features_across_threads(thread_count, shape):
    """By rows when x outweighs the weight, by the weight's features when it outweighs x
    (with leading axes, too): every thread count gives the twin's result."""
    *lead, n_in, n_out = shape
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((*lead, n_in)), rng.standard_normal((n_out, n_in))
    b, grad = rng.standard_normal(n_out), rng.standard_normal((*lead, n_out))
    with use_backend("numpy"):
        expected = F.linear(x, w, b), *F.linear_backward(grad, x, w)
    for count in (1, 2, 3):
        thread_count(count)
        for mask in ((True, True, True), (False, True, True)):
            got = F.linear(x, w, b), *F.linear_backward(grad, x, w, output_mask=mask)
            for name, mine, twin in zip(("out", "grad_x", "grad_w", "grad_b"), got, expected):
                if mine is not None:
                    assert_close(mine, twin, f"{name} on {count} threads", tolerance=1e-13)


@pytest.mark.parametrize("fused", [False, True])
def test_cost_backward_skips_the_first_layers_input_gradient(monkeypatch, fused):
    # the model's input needs no gradient: its first conv asks for none, as torch does
    name = "conv2d_relu_max_pool2d_backward" if fused else "conv2d_backward"
    masks = []
    real = getattr(F, name)

    def spy(*args, output_mask=(True, True, True), **kwargs):
        masks.append(tuple(output_mask))
        return real(*args, output_mask=output_mask, **kwargs)

    monkeypatch.setattr(F, name, spy)
    model = models.CNN()
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    with nn.fusion(fused):
        nn.CrossEntropyLoss()(model(x), np.array([1, 2])).backward()
        assert masks == [(True, True, True), (False, True, True)]  # layer2's, then layer1's
        assert model.layer1[0].needs_input_grad  # set for that backward pass only
        # Module.backward called directly still returns the input's gradient
        out = model(x)
        grad_x = model.backward(np.ones_like(out))
    assert grad_x.shape == x.shape and np.abs(grad_x).sum() > 0


def test_freed_memory_is_reused_without_page_faults():
    assert allocator.keep_freed_memory(), "glibc's mallopt was not found"
    x = np.ones((100, 32, 28, 28), dtype=np.float32)  # 10 MB, as a conv layer's output
    for _ in range(2):
        np.empty_like(x).fill(1)  # warm the heap up to this size
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        np.empty_like(x).fill(1)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 100, f"{faults} page faults for 5 reused 10 MB arrays (2,450 pages each)"
