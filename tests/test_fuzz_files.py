"""Damaged files: random byte flips and truncations of a valid checkpoint and of valid MNIST
IDX files, gzipped or plain.

A damaged checkpoint must give a ValueError naming the file, or, when the damage leaves the
file valid (a flip in the header's whitespace padding), the very same contents. A damaged
MNIST split must give a ValueError naming the file, or a valid split: uint8 images
(N, 28, 28) and as many int64 labels in 0..9 (a flip inside plain pixel bytes is invisible).
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn.data import load_mnist_files
from minicnn.io.checkpoint import load_checkpoint, save_checkpoint
from minicnn.models import CNN
from minicnn.optim import Adam


@st.composite
def damage(draw, data: bytes, header: int) -> bytes:
    """``data`` with 1 to 4 bytes flipped (most in the first ``header`` bytes, where the
    structure is), or cut short."""
    if draw(st.booleans()):
        return data[: draw(st.integers(0, len(data) - 1))]
    raw = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        end = min(header, len(data)) if draw(st.integers(0, 3)) else len(data)
        raw[draw(st.integers(0, end - 1))] ^= draw(st.integers(1, 255))
    return bytes(raw)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(path, the file's bytes, what loading it gives): a CNN after one Adam step, the run's
    metadata included."""
    path = tmp_path_factory.mktemp("checkpoint") / "ckpt.safetensors"
    model = CNN(generator=np.random.default_rng(0))
    optimizer = Adam(model.parameters())
    for param in model.parameters():
        param.grad = np.ones_like(param.data)
    optimizer.step()
    save_checkpoint(
        path,
        model,
        model_name="cnn",
        optimizer=optimizer,
        epoch=1,
        step=1,
        config={"lr": 0.001},
        metrics=[{"epoch": 1, "cost": 0.5}],
    )
    return path, path.read_bytes(), load_checkpoint(path)


def assert_same_checkpoint(actual, expected) -> None:
    assert (actual.model_name, actual.dtype, actual.epoch, actual.step) == (
        expected.model_name,
        expected.dtype,
        expected.epoch,
        expected.step,
    )
    assert (actual.config, actual.metrics, actual.rng_state) == (
        expected.config,
        expected.metrics,
        expected.rng_state,
    )
    for key, array in expected.state_dict.items():
        assert actual.state_dict[key].tobytes() == array.tobytes(), key
    np.testing.assert_equal(actual.optimizer_state, expected.optimizer_state)


@given(data=st.data())
def test_damaged_checkpoint_is_a_value_error_or_unchanged(checkpoint, data):
    path, good, expected = checkpoint
    header = 8 + int.from_bytes(good[:8], "little")
    path.write_bytes(data.draw(damage(good, header)))
    try:
        loaded = load_checkpoint(path)
    except ValueError as error:
        assert str(path) in str(error), f"the message does not name the file: {error}"
    else:
        assert_same_checkpoint(loaded, expected)
    finally:
        path.write_bytes(good)


RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (3, 28, 28), dtype=np.uint8)  # (3, 28, 28)
LABELS = np.array([3, 0, 9], np.uint8)  # (3,)


def idx(array: np.ndarray) -> bytes:
    """An IDX file: big-endian magic 0x0000 08 ndim, one uint32 per dim, the uint8 payload."""
    return struct.pack(f">I{array.ndim}I", 0x0800 | array.ndim, *array.shape) + array.tobytes()


@pytest.fixture(scope="module")
def mnist_split(tmp_path_factory):
    directory = tmp_path_factory.mktemp("idx")
    return directory, {"images": idx(IMAGES), "labels": idx(LABELS)}


@given(data=st.data(), which=st.sampled_from(["images", "labels"]), zipped=st.booleans())
def test_damaged_idx_file_is_a_value_error_or_a_valid_split(mnist_split, data, which, zipped):
    directory, files = mnist_split
    paths = {}
    for kind, raw in files.items():
        paths[kind] = directory / (f"{kind}.gz" if zipped else kind)
        good = gzip.compress(raw, mtime=0) if zipped else raw
        # a gzip header is 10 bytes, then deflate's own block headers; IDX's is 8 or 16
        paths[kind].write_bytes(data.draw(damage(good, 24)) if kind == which else good)
    try:
        images, labels = load_mnist_files(paths["images"], paths["labels"])
    except ValueError as error:
        assert str(paths[which]) in str(error), f"the message does not name the file: {error}"
        return
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
    assert labels.dtype == np.int64 and labels.shape == (len(images),)
    assert labels.min() >= 0 and labels.max() <= 9
    if zipped:  # gzip's CRC catches any change to the payload
        np.testing.assert_array_equal(images, IMAGES)
        np.testing.assert_array_equal(labels, LABELS)
