"""minicnn.data: IDX parsing, MNIST lookup and loading (against torchvision), batching.

Broken files are built in tmp_path from tiny synthetic IDX data, with headers packed here by
hand so that the reader is not tested against its own writer.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torchvision.transforms import Compose, Normalize, ToTensor

from minicnn.data import (
    BUNDLED_DATA_DIR,
    MNIST_FILES,
    MNIST_MEAN,
    MNIST_SHA256,
    MNIST_STD,
    BatchLoader,
    decode_idx,
    find_mnist,
    load_mnist,
    load_mnist_files,
    read_idx,
    split_files,
    to_float,
)
from tests.helpers import run_measuring_memory

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (5, 28, 28), dtype=np.uint8)  # (5, 28, 28)
LABELS = np.array([3, 0, 9, 1, 7], np.uint8)  # (5,)


def idx_bytes(array: np.ndarray, magic: int | None = None, dims=None) -> bytes:
    """An IDX file by hand: big-endian magic, one uint32 per dim, then the raw uint8 payload."""
    dims = array.shape if dims is None else dims
    magic = 0x0800 | len(dims) if magic is None else magic
    return struct.pack(f">I{len(dims)}I", magic, *dims) + np.asarray(array, np.uint8).tobytes()


def write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``, gzip-compressed when the name ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def make_mnist(directory: Path, n: int = 5, gz: tuple[bool, ...] = (True,) * 4) -> Path:
    """A tiny MNIST-shaped directory: the four standard names, n samples per split."""
    for name, zipped in zip(MNIST_FILES, gz, strict=True):
        array = IMAGES[:n] if "images" in name else LABELS[:n]
        write(directory / (name + ".gz" if zipped else name), idx_bytes(array))
    return directory


# --- against torchvision, on the real files ---------------------------------------------------


@pytest.fixture(scope="module")
def torchvision_root(mnist_dir: Path, tmp_path_factory) -> Path:
    """The same files uncompressed under <root>/MNIST/raw/, where torchvision reads them."""
    root = tmp_path_factory.mktemp("torchvision")
    (root / "MNIST" / "raw").mkdir(parents=True)
    for name in MNIST_FILES:
        dest = root / "MNIST" / "raw" / name
        if (mnist_dir / f"{name}.gz").is_file():
            dest.write_bytes(gzip.decompress((mnist_dir / f"{name}.gz").read_bytes()))
        else:
            shutil.copyfile(mnist_dir / name, dest)
    return root


@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_load_mnist_matches_torchvision(mnist_dir, torchvision_root, train):
    reference = torchvision.datasets.MNIST(torchvision_root, train=train, download=False)
    images, labels = load_mnist(mnist_dir, train=train)
    assert images.shape == (60000 if train else 10000, 28, 28)
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    np.testing.assert_array_equal(images, reference.data.numpy())
    np.testing.assert_array_equal(labels, reference.targets.numpy())

    # torchvision's own path (PIL image -> ToTensor [-> Normalize]) must agree bit for bit
    picks = RNG.choice(len(images), 300, replace=False)
    for stats, transform in [
        ((None, None), ToTensor()),
        ((MNIST_MEAN, MNIST_STD), Compose([ToTensor(), Normalize((MNIST_MEAN,), (MNIST_STD,))])),
    ]:
        expected = torch.stack([transform(reference[i][0]) for i in picks]).numpy()
        got = to_float(images[picks], *stats)  # (300, 1, 28, 28)
        assert got.dtype == expected.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_float64_matches_torch_double(mnist_dir):
    images = load_mnist(mnist_dir, train=False)[0][:200]  # (200, 28, 28)
    expected = torch.from_numpy(images).unsqueeze(1).double().div(255).numpy()
    np.testing.assert_array_equal(to_float(images, dtype=np.float64), expected)


# --- IDX reader and broken files --------------------------------------------------------------


def test_read_idx_gz_and_plain_agree(tmp_path):
    plain = write(tmp_path / "a-idx3-ubyte", idx_bytes(IMAGES))
    zipped = write(tmp_path / "a-idx3-ubyte.gz", idx_bytes(IMAGES))
    for path in (plain, zipped, str(zipped)):
        array = read_idx(path, "images")
        assert array.dtype == np.uint8 and array.flags.writeable
        np.testing.assert_array_equal(array, IMAGES)


def test_decode_idx_other_dtypes():
    values = np.arange(-3, 3, dtype=">i2").reshape(2, 3)  # (2, 3) big-endian int16
    data = struct.pack(">I2I", 0x00000B02, 2, 3) + values.tobytes()
    np.testing.assert_array_equal(decode_idx(data), values)
    with pytest.raises(ValueError, match="x.idx: expected magic 0x00000801"):
        decode_idx(data, "x.idx", "labels")


def _truncated_gz(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(IMAGES))[:-40])
    return path, None, "truncated or corrupt"


def _corrupt_gz(tmp_path):
    blob = bytearray(gzip.compress(idx_bytes(IMAGES)))
    blob[len(blob) // 2 : len(blob) // 2 + 16] = bytes(16)  # damage the deflate stream
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(bytes(blob))
    return path, None, "truncated or corrupt"


def _not_gz(tmp_path):
    path = write(tmp_path / "train-images-idx3-ubyte", idx_bytes(IMAGES))
    return path.rename(path.with_suffix(".gz")), None, "truncated or corrupt"


def _wrong_magic(tmp_path):
    path = write(tmp_path / "train-images-idx3-ubyte", idx_bytes(LABELS))
    return path, None, "expected magic 0x00000803 (uint8 images, 3 dims (N, H, W)), got 0x00000801"


def _payload_short(tmp_path):
    path = write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(IMAGES, dims=(6, 28, 28)))
    return path, None, f"promises 6 x 28 x 28 uint8 = {6 * 784} payload bytes, got {5 * 784}"


def _payload_long(tmp_path):
    path = write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(LABELS, dims=(4,)))
    return None, path, "promises 4 uint8 = 4 payload bytes, got 5 (trailing bytes)"


def _short_header(tmp_path):
    path = write(tmp_path / "train-images-idx3-ubyte", idx_bytes(IMAGES)[:9])
    return path, None, "expected a 16-byte header (3 dims), got only 9 bytes"


def _label_too_big(tmp_path):
    path = write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(np.array([0, 1, 12, 3, 4])))
    return None, path, "expected labels in 0..9, got 12 at index 2"


def _count_mismatch(tmp_path):
    labels = write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(LABELS[:4]))
    return None, labels, "train-images-idx3-ubyte.gz (5), got 4 labels"


def _image_size(tmp_path):
    path = write(tmp_path / "train-images-idx3-ubyte", idx_bytes(IMAGES[:, :27]))
    return path, None, "expected 28 x 28 images, got 27 x 28"


def _missing(tmp_path):
    return tmp_path / "train-images-idx3-ubyte.gz", None, "no such file"


@pytest.mark.parametrize(
    "broken",
    [
        _truncated_gz,
        _corrupt_gz,
        _not_gz,
        _wrong_magic,
        _payload_short,
        _payload_long,
        _short_header,
        _label_too_big,
        _count_mismatch,
        _image_size,
        _missing,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_broken_files_name_the_file(tmp_path, broken):
    images, labels, expected = broken(tmp_path)
    images = images or write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(IMAGES))
    labels = labels or write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(LABELS))
    error = FileNotFoundError if broken is _missing else ValueError
    with pytest.raises(error) as info:
        load_mnist_files(images, labels)
    message = str(info.value)
    assert expected in message
    culprit = labels if broken in (_payload_long, _label_too_big, _count_mismatch) else images
    assert str(culprit) in message
    if broken is _count_mismatch:
        assert str(images) in message


# --- lookup -----------------------------------------------------------------------------------


def test_lookup_order(tmp_path, monkeypatch):
    explicit, env = make_mnist(tmp_path / "explicit"), make_mnist(tmp_path / "env")
    make_mnist(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINICNN_DATA", str(env))
    assert find_mnist(explicit) == explicit
    assert find_mnist(str(explicit)) == explicit
    assert find_mnist() == env
    monkeypatch.delenv("MINICNN_DATA")
    assert find_mnist() == Path("data")
    assert load_mnist()[0].shape == (5, 28, 28)


def test_the_shipped_copy_is_the_last_resort_and_is_mnist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./data here
    monkeypatch.delenv("MINICNN_DATA", raising=False)
    assert find_mnist() == BUNDLED_DATA_DIR
    for name in MNIST_FILES:  # the published content, whatever the compression
        with gzip.open(BUNDLED_DATA_DIR / f"{name}.gz") as file:
            assert hashlib.sha256(file.read()).hexdigest() == MNIST_SHA256[name], name
    make_mnist(tmp_path / "data")  # a ./data holding MNIST comes first
    assert find_mnist() == Path("data")
    # a directory that is given is never replaced by the shipped copy
    with pytest.raises(FileNotFoundError):
        find_mnist(tmp_path / "typo")
    monkeypatch.setenv("MINICNN_DATA", str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError):
        find_mnist()


def test_given_directory_is_not_silently_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICNN_DATA", str(make_mnist(tmp_path / "env")))
    with pytest.raises(FileNotFoundError) as info:
        find_mnist(tmp_path / "typo")
    message = str(info.value)
    assert "typo" in message and "train-images-idx3-ubyte" in message
    assert "--data-dir DIR" in message and "MINICNN_DATA=DIR" in message


def test_a_split_needs_only_its_own_files(tmp_path):
    make_mnist(tmp_path)
    for name in split_files(train=True):
        (tmp_path / f"{name}.gz").unlink()
    images, labels = load_mnist(tmp_path, train=False)  # (5, 28, 28), (5,)
    assert images.shape == (5, 28, 28) and labels.shape == (5,)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path, train=True)
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        find_mnist(tmp_path)  # all four by default


def test_torchvision_layout_and_mixed_compression(tmp_path):
    raw = make_mnist(tmp_path / "MNIST" / "raw", gz=(True, False, False, True))
    assert find_mnist(tmp_path) == raw
    for train in (True, False):
        images, labels = load_mnist(tmp_path, train=train)
        np.testing.assert_array_equal(images, IMAGES)
        np.testing.assert_array_equal(labels, LABELS)


# --- batching ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n, batch_size", [(10, 4), (12, 4), (3, 5), (1, 1)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batch_shapes_follow_torch(n, batch_size, drop_last):
    images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)  # (n, 28, 28)
    loader = BatchLoader(images, np.arange(n) % 10, batch_size, drop_last=drop_last)
    torch_loader = torch.utils.data.DataLoader(range(n), batch_size, drop_last=drop_last)
    assert len(loader) == len(torch_loader)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [len(b) for b in torch_loader]
    for i, (x, y) in enumerate(batches):  # unshuffled: batch i is rows i*B ... i*B + B - 1
        assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape[1:] == (1, 28, 28)
        np.testing.assert_array_equal(x, to_float(images[i * batch_size : i * batch_size + len(y)]))


def test_shuffle_is_reproducible_per_epoch_and_covers_every_sample():
    n, batch_size = 23, 5
    images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)  # (n, 28, 28)
    ids = np.arange(n)  # labels that name their sample
    loader = BatchLoader(images, ids, batch_size, shuffle=True, seed=7, dtype=np.float64)
    epochs = [[(x, y) for x, y in loader] for _ in range(3)]
    assert loader.epoch == 3
    orders = [np.concatenate([y for _, y in epoch]) for epoch in epochs]
    for e, (epoch, order) in enumerate(zip(epochs, orders, strict=True)):
        assert sorted(order) == list(range(n))  # every sample exactly once
        np.testing.assert_array_equal(order, np.random.default_rng((7, e)).permutation(n))
        for x, y in epoch:
            assert x.dtype == np.float64
            np.testing.assert_array_equal(x, to_float(images[y], dtype=np.float64))
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])

    # same seed and epoch, same order: a run resumed at epoch 2 replays epoch 2 exactly
    resumed = BatchLoader(images, ids, batch_size, shuffle=True, seed=7, epoch=2)
    np.testing.assert_array_equal(np.concatenate([y for _, y in resumed]), orders[2])
    other_seed = BatchLoader(images, ids, batch_size, shuffle=True, seed=8)
    assert not np.array_equal(other_seed.order(0), orders[0])

    dropped = np.concatenate([y for _, y in BatchLoader(images, ids, 5, True, True, seed=7)])
    assert len(dropped) == 20 and len(set(dropped)) == 20  # drop_last: each at most once


def test_normalisation_and_bad_arguments():
    loader = BatchLoader(IMAGES, LABELS, 2, mean=MNIST_MEAN, std=MNIST_STD)
    x, _ = next(iter(loader))
    mean, std = np.float32(MNIST_MEAN), np.float32(MNIST_STD)
    np.testing.assert_array_equal(x, (to_float(IMAGES[:2]) - mean) / std)
    with pytest.raises(ValueError, match="batch_size >= 1"):
        BatchLoader(IMAGES, LABELS, 0)
    with pytest.raises(ValueError, match="one label per image"):
        BatchLoader(IMAGES, LABELS[:4], 2)
    with pytest.raises(ValueError, match="float32 or float64"):
        BatchLoader(IMAGES, LABELS, 2, dtype=np.float16)
    with pytest.raises(ValueError, match="both mean and std"):
        to_float(IMAGES, mean=0.5)
    assert math.isclose(float(to_float(np.full((1, 1, 1), 255, np.uint8))[0, 0, 0, 0]), 1.0)


# -- hostile files: memory is what the header declares -------------------------------------


def gzip_bomb(path: Path, header: bytes, zero_mb: int) -> Path:
    """A gzip file of ``header`` then ``zero_mb`` MB of zeros (about 1000 to 1 compressed)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as file:
        file.write(compressor.compress(header))
        block = bytes(1 << 20)
        for _ in range(zero_mb):
            file.write(compressor.compress(block))
        file.write(compressor.flush())
    return path


READ_IMAGES = """
import sys
from minicnn.data import read_idx
try:
    read_idx(sys.argv[1], "images")
except ValueError as error:
    print(error)
"""


def test_gzip_bomb_stops_where_the_header_says(tmp_path):
    header = struct.pack(">IIII", 0x803, 100, 28, 28)
    bomb = gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", header, 400)
    assert bomb.stat().st_size < 1 << 20  # 400 MB of zeros in under 1 MB
    out, peak_mb = run_measuring_memory(READ_IMAGES, str(bomb))
    assert f"{bomb}: header promises 100 x 28 x 28 uint8 = 78400 payload bytes" in out
    assert "(trailing bytes)" in out
    assert peak_mb < 300, f"{peak_mb:.0f} MB for a {bomb.stat().st_size} byte file"


def test_header_declaring_more_than_the_file_can_hold_is_refused_before_reading(tmp_path):
    path = write(
        tmp_path / "train-images-idx3-ubyte.gz", struct.pack(">IIII", 0x803, 60000, 4096, 4096)
    )
    with pytest.raises(ValueError, match="payload bytes, but the file cannot hold them"):
        read_idx(path, "images")
    plain = write(tmp_path / "plain", struct.pack(">IIII", 0x803, 60000, 4096, 4096))
    with pytest.raises(ValueError, match="but the file cannot hold them"):
        read_idx(plain)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (struct.pack(">I", 0x0D40) + bytes(4 * 64), "0x00000d40"),  # 64 dims: NumPy allows 32
        (struct.pack(">IIII", 0x0D03, 0, 2**32 - 1, 2**32 - 1), "more than an array can hold"),
    ],
)
def test_absurd_idx_shapes_are_value_errors_naming_the_file(data, message):
    with pytest.raises(ValueError, match=f"x.idx: .*{message}"):
        decode_idx(data, "x.idx")
