"""Find the four MNIST files on disk and load one split as validated NumPy arrays.

Any directory holding the four standard file names works, so Fashion-MNIST (same names, same
format) loads the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from minicnn.data.idx import read_idx

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DATA_ENV = "MINICNN_DATA"
DEFAULT_DATA_DIR = "data"
# the copy that ships with minicnn (see its README): the last resort when no place is given
BUNDLED_DATA_DIR = Path(__file__).parent / "mnist_files"
IMAGE_SIZE = (28, 28)
NUM_CLASSES = 10

DATA_DIR_HELP = (
    "MNIST directory (default: $MINICNN_DATA, else ./data, else the copy that ships with minicnn)"
)
HOW_TO_POINT = (
    "Point minicnn at a directory holding the four MNIST files (plain or .gz, directly inside "
    "or under MNIST/raw/) with --data-dir DIR or MINICNN_DATA=DIR"
)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The directory MNIST is looked up in (and downloaded to).

    The first source that is *given* decides, and the later ones are not consulted: the
    ``data_dir`` argument, else ``$MINICNN_DATA``, else ``./data``. A wrong explicit path is an
    error rather than a silent fallback to some other copy of the data.
    """
    return _resolve(data_dir)[0]


def _resolve(data_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """The data directory and, for error messages, where it came from."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir), "the data_dir argument"
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env), f"${DATA_ENV}"
    return Path(DEFAULT_DATA_DIR), _DEFAULT_SOURCE


_DEFAULT_SOURCE = "the default ./data"


def mnist_file(directory: str | os.PathLike, name: str) -> Path | None:
    """``directory/name.gz`` or ``directory/name``, whichever exists (``.gz`` first), else None.

    The ``.gz`` wins because it is what ``download_mnist`` writes after checking its hash; a
    stale uncompressed file beside it is then never read.
    """
    directory = Path(directory)
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def split_files(train: bool) -> tuple[str, str]:
    """The images and labels files of the training split (``train=True``) or the test split."""
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def find_mnist(
    data_dir: str | os.PathLike | None = None, files: Sequence[str] = MNIST_FILES
) -> Path:
    """The directory holding the MNIST ``files`` (the four by default), each plain or ``.gz``.

    The base directory comes from ``resolve_data_dir(data_dir)``; the files may sit directly in
    it or in torchvision's ``MNIST/raw/`` layout under it. When no directory is given (no
    argument, no ``$MINICNN_DATA``) and ``./data`` holds no MNIST, the copy that ships with
    minicnn (``BUNDLED_DATA_DIR``) is used. Raises ``FileNotFoundError`` naming the places
    tried, the missing files and how to point at local files.
    """
    base, source = _resolve(data_dir)
    places = (base, base / "MNIST" / "raw")
    missing = {}
    for place in places:
        missing[place] = [name for name in files if mnist_file(place, name) is None]
        if not missing[place]:
            return place
    bundled_complete = all(mnist_file(BUNDLED_DATA_DIR, name) for name in files)
    if source == _DEFAULT_SOURCE and bundled_complete:
        return BUNDLED_DATA_DIR
    # report the place that came closest: it is most likely the one the user meant
    closest = min(places, key=lambda place: len(missing[place]))
    raise FileNotFoundError(
        f"MNIST not found in {base} (from {source}) nor in {places[1]}: {closest} lacks "
        f"{', '.join(missing[closest])} (each as NAME or NAME.gz). {HOW_TO_POINT}, "
        "or fetch them with minicnn.data.download_mnist(DIR)."
    )


def load_mnist(
    data_dir: str | os.PathLike | None = None, train: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load the training (``train=True``) or test split of MNIST, validated.

    Returns ``(images, labels)``: images uint8, labels int64 (the dtype of torchvision's
    ``MNIST.targets``).

    Shape:
        images ``(N, 28, 28)``, labels ``(N,)``; N = 60000 for train, 10000 for test.
    """
    images_name, labels_name = split_files(train)
    directory = find_mnist(data_dir, (images_name, labels_name))  # this split's files only
    images_path = mnist_file(directory, images_name)
    labels_path = mnist_file(directory, labels_name)
    assert images_path is not None and labels_path is not None  # find_mnist saw both
    return load_mnist_files(images_path, labels_path)


def load_mnist_files(
    images_path: str | os.PathLike, labels_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """Load one images file and its labels file and check they make an MNIST split.

    Checks, each with a ``ValueError`` naming the offending file(s): the IDX structure (see
    ``read_idx``), 28 x 28 images, at least one image, as many labels as images, and every label
    in 0..9.

    Shape:
        images ``(N, 28, 28)`` uint8, labels ``(N,)`` int64.
    """
    images = read_idx(images_path, "images")  # (N, H, W) uint8
    labels = read_idx(labels_path, "labels")  # (N,) uint8
    n, height, width = images.shape
    if (height, width) != IMAGE_SIZE:
        raise ValueError(
            f"{images_path}: expected {IMAGE_SIZE[0]} x {IMAGE_SIZE[1]} images, "
            f"got {height} x {width}"
        )
    if n == 0:
        raise ValueError(f"{images_path}: expected at least one image, got 0")
    if len(labels) != n:
        raise ValueError(
            f"image/label count mismatch: expected {labels_path} to hold one label per image "
            f"of {images_path} ({n}), got {len(labels)} labels"
        )
    bad = np.flatnonzero(labels >= NUM_CLASSES)  # (n_bad,)
    if len(bad):
        raise ValueError(
            f"{labels_path}: expected labels in 0..{NUM_CLASSES - 1}, got {labels[bad[0]]} at "
            f"index {bad[0]} ({len(bad)} out-of-range labels in all)"
        )
    return images, labels.astype(np.int64)  # (N, 28, 28), (N,)
