"""Shared fixtures: the hypothesis profile and the MNIST directory the suite is given.

MNIST is looked up as the library does it: ``--mnist-dir``, then ``$MINICNN_DATA``, then
``./data``. A missing dataset fails the tests that need it; it never skips them.
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

# the JIT's first call is slow, so no per-example deadline; 200 examples per op by default
# CI sets MINICNN_HYPOTHESIS_DERANDOMIZE=1: the same examples on every run, so a rare case
# found once fails every time rather than now and then
settings.register_profile(
    "default",
    max_examples=int(os.environ.get("MINICNN_HYPOTHESIS_EXAMPLES", "200")),
    derandomize=os.environ.get("MINICNN_HYPOTHESIS_DERANDOMIZE") == "1",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("default")

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def pytest_addoption(parser):
    parser.addoption(
        "--mnist-dir",
        default=None,
        help="directory with the four MNIST IDX files (default: $MINICNN_DATA, then ./data)",
    )


def _has_mnist(directory: Path) -> bool:
    return all(
        (directory / name).is_file() or (directory / f"{name}.gz").is_file() for name in MNIST_FILES
    )


@pytest.fixture(scope="session")
def mnist_dir(request) -> Path:
    """The directory holding the four MNIST files; fails (never skips) when there is none."""
    candidates = [request.config.getoption("--mnist-dir"), os.environ.get("MINICNN_DATA"), "data"]
    tried = []
    for candidate in candidates:
        if not candidate:
            continue
        directory = Path(candidate)
        for place in (directory, directory / "MNIST" / "raw"):
            tried.append(str(place))
            if _has_mnist(place):
                return place.resolve()  # absolute: some tests change directory
    pytest.fail(
        "MNIST not found (tried: " + ", ".join(tried) + "). Point the tests at the four IDX "
        "files with --mnist-dir DIR or MINICNN_DATA=DIR, e.g. MINICNN_DATA=../shared/data/mnist"
    )
