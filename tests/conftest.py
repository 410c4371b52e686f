"""Shared fixtures: the hypothesis profile and the MNIST directory the suite is given.

MNIST is looked up as the library does it (``minicnn.data.find_mnist``): ``--mnist-dir``, then
``$MINICNN_DATA``, then ``./data``, then the copy that ships with minicnn. A directory that is
given but lacks MNIST fails the tests that need it; they never skip.
"""

from __future__ import annotations

import os

# torch and Numba each keep an OpenMP thread pool, and by default idle OpenMP threads spin.
# The tests alternate between the two engines, so each pool's spinning threads starve the
# other's workers: on two cores a small conv took 47 ms instead of 0.2 ms. Idle threads
# that sleep make the suite ~15x faster. This must be set before torch or numba is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from minicnn.data import find_mnist  # noqa: E402

# the JIT's first call is slow, so no per-example deadline; 200 examples per op by default.
# The same examples on every run, a user's as CI's, so that the suite a user runs is the one CI
# passed; MINICNN_HYPOTHESIS_EXPLORE=1 draws fresh ones (README, "Running the tests"), and a
# case that fails there is pinned with @example in its test
settings.register_profile(
    "default",
    max_examples=int(os.environ.get("MINICNN_HYPOTHESIS_EXAMPLES", "200")),
    derandomize=os.environ.get("MINICNN_HYPOTHESIS_EXPLORE") != "1",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("default")


def pytest_addoption(parser):
    parser.addoption(
        "--mnist-dir",
        default=None,
        help="directory with the four MNIST IDX files (default: $MINICNN_DATA, then ./data, "
        "then the copy that ships with minicnn)",
    )


@pytest.fixture(scope="session")
def mnist_dir(request) -> Path:
    """The directory holding the four MNIST files; fails (never skips) when there is none."""
    try:
        return find_mnist(request.config.getoption("--mnist-dir")).resolve()  # some tests chdir
    except FileNotFoundError as error:
        pytest.fail(str(error))
