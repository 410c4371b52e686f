"""MNIST for minicnn: IDX files, lookup, download, and mini-batches. NumPy and stdlib only.

Typical use::

    images, labels = load_mnist(data_dir, train=True)  # (N, 28, 28) uint8, (N,) int64
    loader = BatchLoader(images, labels, 64, shuffle=True, seed=0, mean=MNIST_MEAN, std=MNIST_STD)
    for x, y in loader:  # x (64, 1, 28, 28) float32, y (64,) int64
        ...
"""

from __future__ import annotations

from minicnn.data.download import MIRRORS, MNIST_SHA256, DownloadError, download_mnist, ensure_mnist
from minicnn.data.idx import decode_idx, read_idx, read_uncompressed
from minicnn.data.loader import MNIST_MEAN, MNIST_STD, BatchLoader, to_float
from minicnn.data.mnist import (
    BUNDLED_DATA_DIR,
    DATA_DIR_HELP,
    DATA_ENV,
    MNIST_FILES,
    find_mnist,
    load_mnist,
    load_mnist_files,
    mnist_file,
    resolve_data_dir,
    split_files,
)

__all__ = [
    "BUNDLED_DATA_DIR",
    "DATA_DIR_HELP",
    "DATA_ENV",
    "MIRRORS",
    "MNIST_FILES",
    "MNIST_MEAN",
    "MNIST_SHA256",
    "MNIST_STD",
    "BatchLoader",
    "DownloadError",
    "decode_idx",
    "download_mnist",
    "ensure_mnist",
    "find_mnist",
    "load_mnist",
    "load_mnist_files",
    "mnist_file",
    "read_idx",
    "read_uncompressed",
    "resolve_data_dir",
    "split_files",
    "to_float",
]
