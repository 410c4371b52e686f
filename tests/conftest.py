"""Shared fixtures: the hypothesis profile and the MNIST directory the suite is given.

MNIST is looked up as the library does it: ``--mnist-dir``, then ``$MINICNN_DATA``, then
``./data``. A missing dataset fails the tests that need it; it never skips them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# the JIT's first call is slow, so no per-example deadline; 200 examples per op by default
settings.register_profile(
    "default",
    max_examples=int(os.environ.get("MINICNN_HYPOTHESIS_EXAMPLES", "200")),
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
        (directory / name).is_file() or (directory / f"{name}.gz").is_file()
        for name in MNIST_FILES
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
                return place
    pytest.fail(
        "MNIST not found (tried: " + ", ".join(tried) + "). Point the tests at the four IDX "
        "files with --mnist-dir DIR or MINICNN_DATA=DIR, e.g. MINICNN_DATA=../shared/data/mnist"
    )
