"""Turn uint8 images into float batches, as torchvision's ToTensor/Normalize and torch's
DataLoader do, with shuffles that are a pure function of (seed, epoch)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

# the usual MNIST statistics (training set, after ToTensor), as in torch's MNIST examples
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

Stat = float | Sequence[float] | None


def to_float(
    images: np.ndarray,
    mean: Stat = None,
    std: Stat = None,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """uint8 images to floats in [0, 1], then optionally ``(x - mean) / std``.

    Bit for bit what torchvision computes with ``ToTensor()`` (``img.float().div(255)``) and
    ``Normalize(mean, std)``: every step is one IEEE operation in ``dtype``, done in the same
    order. ``mean`` and ``std`` are a float or one value per channel, and come together.

    Shape:
        ``(N, H, W)`` -> ``(N, 1, H, W)``; ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"to_float: expected uint8 images, got {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]  # (N, 1, H, W) view
    elif images.ndim != 4:
        raise ValueError(f"to_float: expected (N, H, W) or (N, C, H, W), got {images.shape}")
    dtype = _float_dtype(dtype)
    x = images.astype(dtype)  # (N, C, H, W)
    # dividing by 255 (not multiplying by 1/255, which is inexact) is what matches torch
    x /= dtype.type(255)
    if mean is None and std is None:
        return x
    if mean is None or std is None:
        raise ValueError("to_float: give both mean and std, or neither")
    # rounded to dtype first, as Normalize does with torch.as_tensor(mean, dtype=x.dtype)
    m = np.asarray(mean, dtype).reshape(-1, 1, 1)  # (C, 1, 1) or (1, 1, 1)
    s = np.asarray(std, dtype).reshape(-1, 1, 1)  # (C, 1, 1) or (1, 1, 1)
    if m.shape[0] not in (1, x.shape[1]) or s.shape[0] not in (1, x.shape[1]):
        raise ValueError(
            f"to_float: expected one mean/std or one per channel ({x.shape[1]}), "
            f"got {m.shape[0]} means and {s.shape[0]} stds"
        )
    if np.any(s == 0):
        raise ValueError(f"to_float: std must be non-zero, got {std}")
    x -= m
    x /= s
    return x  # (N, C, H, W)


class BatchLoader:
    """Mini-batches ``(x, y)`` over in-memory images and labels, like torch's ``DataLoader``.

    Shuffle rule: epoch ``e`` visits the samples in the order
    ``np.random.default_rng((seed, e)).permutation(N)``. The order is a pure function of the
    seed and the epoch number, so a run resumed at epoch ``e`` (``epoch=e``, or assigning
    ``loader.epoch``) sees exactly the batches the uninterrupted run would have seen. Without
    ``shuffle`` the order is ``0, 1, ..., N - 1`` every epoch.

    Each ``iter(loader)`` (each ``for`` loop) runs one epoch and advances ``loader.epoch``;
    ``loader.batches(e)`` runs epoch ``e`` without touching it. Only one batch at a time is
    converted to floats, so the dataset itself is never copied.

    Args:
        images: uint8 ``(N, H, W)``; kept by reference.
        labels: integer ``(N,)``; yielded as int64.
        batch_size: samples per batch.
        shuffle: reshuffle every epoch (see the rule above).
        drop_last: drop the last batch when it is smaller than ``batch_size``, as torch does.
        seed: non-negative int from which every epoch's order is derived.
        epoch: the epoch the next ``iter()`` runs (for resuming).
        mean, std: normalisation applied after the division by 255 (see ``to_float``).
        dtype: float32 (default) or float64 for ``x``.

    Shape:
        ``x`` ``(B, 1, H, W)``, ``y`` ``(B,)`` with ``B = batch_size``, except a last batch of
        ``N % batch_size`` samples when ``drop_last`` is False.
        ``len(loader)`` = ``N // batch_size`` if ``drop_last`` else ``ceil(N / batch_size)``.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        *,
        epoch: int = 0,
        mean: Stat = None,
        std: Stat = None,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(
                f"BatchLoader: expected uint8 images (N, H, W), got {images.dtype} {images.shape}"
            )
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"BatchLoader: expected integer labels (N,), got {labels.dtype} {labels.shape}"
            )
        if len(labels) != len(images):
            raise ValueError(
                f"BatchLoader: expected one label per image ({len(images)}), got {len(labels)}"
            )
        _check_count("batch_size", batch_size, minimum=1)
        _check_count("seed", seed, minimum=0)
        _check_count("epoch", epoch, minimum=0)
        self.images = images  # (N, H, W), not copied
        self.labels = labels.astype(np.int64, copy=False)  # (N,)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.mean, self.std = mean, std
        self.dtype = _float_dtype(dtype)
        to_float(images[:1], mean, std, self.dtype)  # reject a bad mean/std now, not mid-epoch

    def __len__(self) -> int:
        """Number of batches per epoch."""
        n, b = len(self.images), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices epoch ``epoch`` visits, in order. Shape: ``(N,)`` int64."""
        _check_count("epoch", epoch, minimum=0)
        n = len(self.images)
        if not self.shuffle:
            return np.arange(n)  # (N,)
        return np.random.default_rng((self.seed, int(epoch))).permutation(n)  # (N,)

    def batches(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of epoch ``epoch``; does not change ``self.epoch``."""
        order = self.order(epoch)  # (N,)
        b = self.batch_size
        for i in range(len(self)):
            # an unshuffled batch is a slice: a view, so only the float conversion copies
            rows = order[i * b : (i + 1) * b] if self.shuffle else slice(i * b, (i + 1) * b)
            x = to_float(self.images[rows], self.mean, self.std, self.dtype)  # (B, 1, H, W)
            y = self.labels[rows].copy()  # (B,) int64, the caller's own
            yield x, y

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # not a generator itself, so the epoch advances when the loop starts, as in torch
        epoch = self.epoch
        self.epoch += 1
        return self.batches(epoch)


def _float_dtype(dtype: np.dtype | type) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"expected dtype float32 or float64, got {dtype}")
    return dtype


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"BatchLoader: expected an int {name}, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"BatchLoader: expected {name} >= {minimum}, got {value}")
