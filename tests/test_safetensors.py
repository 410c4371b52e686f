"""minicnn.io.safetensors: round trips, interop with the official package, validation, atomicity."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from safetensors import safe_open

from minicnn.io import safetensors as st
from tests.helpers import run_measuring_memory


def sample_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "weight": rng.standard_normal((3, 2, 3, 3)).astype(np.float32),
        "bias": rng.standard_normal(3),  # float64
        "scalar": np.asarray(np.float64(2.5)),  # 0-d
        "empty": np.zeros((0, 4), dtype=np.float32),
        "index": np.arange(5, dtype=np.int64),
        "bytes": np.arange(7, dtype=np.uint8),
        "mask": np.array([True, False, True]),
        "half": np.array([1.5, -2.0], dtype=np.float16),
        "small": np.array([-1, 2], dtype=np.int8),
    }


def assert_bit_identical(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for name, array in expected.items():
        got = np.asarray(actual[name])
        assert got.dtype == array.dtype.newbyteorder("="), name
        assert got.shape == array.shape, name
        assert got.tobytes() == np.ascontiguousarray(array, got.dtype).tobytes(), name


# -- round trips and layout ----------------------------------------------------------------


def test_round_trip_is_bit_identical(tmp_path):
    tensors = sample_tensors()
    tensors["nan"] = np.array([np.nan, -np.inf, -0.0], dtype=np.float64)
    path = tmp_path / "t.safetensors"
    st.save_file(tensors, path, metadata={"note": "hello ✓", "n": "3"})
    loaded = st.load_file(path)
    assert_bit_identical(loaded, tensors)
    assert st.load_metadata(path) == {"note": "hello ✓", "n": "3"}
    assert all(array.flags.writeable for array in loaded.values())


def test_non_contiguous_big_endian_and_shared_arrays(tmp_path):
    base = np.arange(12.0).reshape(3, 4)
    tensors = {"t": base.T, "big": np.arange(4, dtype=">i4"), "a": base, "b": base}
    path = tmp_path / "t.safetensors"
    st.save_file(tensors, path)
    loaded = st.load_file(path)
    assert_bit_identical(loaded, tensors)
    assert loaded["a"] is not loaded["b"]  # a shared array is simply written twice
    assert st.load_metadata(path) == {}


def test_layout_header_padding_and_contiguous_offsets(tmp_path):
    path = tmp_path / "t.safetensors"
    st.save_file(sample_tensors(), path, {"k": "v"})
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    assert (8 + length) % 8 == 0
    header = json.loads(raw[8 : 8 + length])
    entries = [entry for name, entry in header.items() if name != "__metadata__"]
    position = 0
    for entry in entries:  # header order is data order, with no gaps
        assert entry["data_offsets"][0] == position
        assert position % st.DTYPES[entry["dtype"]].itemsize == 0  # aligned for torch's views
        position = entry["data_offsets"][1]
    assert position == len(raw) - 8 - length


# -- interop with the official package -----------------------------------------------------


def test_official_numpy_files_load_here(tmp_path):
    tensors = sample_tensors()
    path = tmp_path / "official.safetensors"
    safetensors.numpy.save_file(tensors, str(path), metadata={"who": "official"})
    assert_bit_identical(st.load_file(path), tensors)
    assert st.load_metadata(path) == {"who": "official"}


def test_official_torch_files_load_here(tmp_path):
    tensors = {
        "w": torch.randn(4, 3, dtype=torch.float64),
        "b": torch.randn(4),
        "i": torch.arange(3),
    }
    path = tmp_path / "official.safetensors"
    safetensors.torch.save_file(tensors, str(path))
    assert_bit_identical(st.load_file(path), {k: v.numpy() for k, v in tensors.items()})


def test_our_files_load_in_the_official_package(tmp_path):
    tensors = sample_tensors()
    path = tmp_path / "ours.safetensors"
    st.save_file(tensors, path, {"who": "minicnn"})
    assert_bit_identical(safetensors.numpy.load_file(str(path)), tensors)
    from_torch = safetensors.torch.load_file(str(path))
    assert_bit_identical({k: v.numpy() for k, v in from_torch.items()}, tensors)
    with safe_open(str(path), framework="np") as file:
        assert file.metadata() == {"who": "minicnn"}


# -- validation on load --------------------------------------------------------------------


def write_raw(path, header, data: bytes = b"", pad: bool = True) -> None:
    """A file with the given header (an object to encode, or raw bytes) and data section."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


CORRUPT = {
    "shorter than 8": lambda p: p.write_bytes(b"\x01\x00\x00"),
    "past the end": lambda p: p.write_bytes((1000).to_bytes(8, "little") + b"{}"),
    "absurd": lambda p: p.write_bytes((10**12).to_bytes(8, "little") + b"{}"),
    "not valid UTF-8": lambda p: write_raw(p, b'{"\xff": 1}'),
    "not valid JSON": lambda p: write_raw(p, b'{"a": '),
    "not an object": lambda p: write_raw(p, [1, 2]),
    "twice": lambda p: write_raw(p, b'{"a": {}, "a": {}}'),
    "exactly the fields": lambda p: write_raw(p, {"a": {"dtype": "F32", "shape": [0]}}),
    "unknown or unsupported dtype": lambda p: write_raw(p, {"a": entry("Q7")}, bytes(8)),
    "unsupported dtype 'BF16'": lambda p: write_raw(p, {"a": entry("BF16", (4,))}, bytes(8)),
    "not a list of ints": lambda p: write_raw(p, {"a": entry(shape=(-2,))}, bytes(8)),
    "shape 3": lambda p: write_raw(p, {"a": {**entry(), "shape": 3}}, bytes(8)),
    "shape [True": lambda p: write_raw(p, {"a": {**entry(), "shape": [True, 2]}}, bytes(8)),
    "not [begin, end]": lambda p: write_raw(p, {"a": entry(offsets=(0, 4, 8))}, bytes(8)),
    "needs 8": lambda p: write_raw(p, {"a": entry(offsets=(0, 12))}, bytes(12)),
    "leaves a gap": lambda p: write_raw(
        p, {"a": entry(offsets=(0, 8)), "b": entry(offsets=(12, 20))}, bytes(20)
    ),
    "overlaps": lambda p: write_raw(
        p, {"a": entry(offsets=(0, 8)), "b": entry(offsets=(4, 12))}, bytes(12)
    ),
    "run past the end": lambda p: write_raw(p, {"a": entry(offsets=(0, 8))}, bytes(4)),
    "cover 8 bytes": lambda p: write_raw(p, {"a": entry()}, bytes(9)),
    "strings to strings": lambda p: write_raw(p, {"__metadata__": {"a": 1}}),
    "strings to strings ": lambda p: write_raw(p, {"__metadata__": ["a"]}),
}


@pytest.mark.parametrize("fault", list(CORRUPT))
def test_malformed_files_raise_value_error_naming_the_file(tmp_path, fault):
    path = tmp_path / "bad.safetensors"
    CORRUPT[fault](path)
    for read in (st.load_file, st.load_metadata):
        with pytest.raises(ValueError, match=fault.strip().replace("[", r"\[")) as info:
            read(path)
        assert str(path) in str(info.value)


def test_truncated_real_file(tmp_path):
    path = tmp_path / "t.safetensors"
    st.save_file(sample_tensors(), path)
    raw = path.read_bytes()
    for cut in (3, 20, len(raw) - 1):
        path.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match=str(path)):
            st.load_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        st.load_file(tmp_path / "nothing.safetensors")


# -- validation on save --------------------------------------------------------------------


@pytest.mark.parametrize(
    "tensors, metadata, error",
    [
        ({1: np.zeros(2)}, None, TypeError),
        ({"a": [1.0, 2.0]}, None, TypeError),
        ({"a": np.zeros(2, dtype=complex)}, None, ValueError),
        ({"a": np.array(["x"])}, None, ValueError),
        ({"__metadata__": np.zeros(2)}, None, ValueError),
        ({"a": np.zeros(2)}, {"k": 1}, TypeError),
    ],
)
def test_save_rejects_bad_arguments(tmp_path, tensors, metadata, error):
    with pytest.raises(error):
        st.save_file(tensors, tmp_path / "x.safetensors", metadata)
    assert list(tmp_path.iterdir()) == []


# -- atomic writes -------------------------------------------------------------------------


@pytest.fixture
def old_file(tmp_path):
    path = tmp_path / "model.safetensors"
    st.save_file({"old": np.arange(3.0)}, path, {"version": "old"})
    return path, path.read_bytes()


def assert_untouched(path, old_bytes):
    assert path.read_bytes() == old_bytes
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left


def test_failed_rename_leaves_the_old_file(old_file, monkeypatch):
    path, old_bytes = old_file

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(st.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        st.save_file({"new": np.arange(4.0)}, path)
    assert_untouched(path, old_bytes)


def test_failure_in_the_middle_of_the_data(old_file, monkeypatch):
    path, old_bytes = old_file
    real, calls = st._little_endian_bytes, []

    def fail_on_second(array):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("tobytes failed")
        return real(array)

    monkeypatch.setattr(st, "_little_endian_bytes", fail_on_second)
    with pytest.raises(RuntimeError, match="tobytes failed"):
        st.save_file({"a": np.ones(1000), "b": np.ones(1000)}, path)
    assert_untouched(path, old_bytes)


def test_failed_fsync_and_a_new_destination(tmp_path, monkeypatch):
    path = tmp_path / "new.safetensors"

    def fail(fd):
        raise OSError("fsync failed")

    monkeypatch.setattr(st.os, "fsync", fail)
    with pytest.raises(OSError, match="fsync failed"):
        st.save_file({"a": np.ones(3)}, path)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_and_keeps_mode(old_file):
    path, _ = old_file
    os.chmod(path, 0o640)
    st.save_file({"new": np.arange(2, dtype=np.int32)}, path)
    assert_bit_identical(st.load_file(path), {"new": np.arange(2, dtype=np.int32)})
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


# -- hostile files: nothing is read before the header is checked ---------------------------


def sparse_safetensors(path, header: dict, data_bytes: int):
    """A safetensors file whose data section is ``data_bytes`` of holes (no disk, no reading)."""
    raw = json.dumps(header).encode()
    with open(path, "wb") as file:
        file.write(len(raw).to_bytes(8, "little") + raw)
        file.truncate(8 + len(raw) + data_bytes)
    return path


LOAD = """
import sys
from minicnn.io.checkpoint import load_model
from minicnn.io.safetensors import load_file
for load in (load_file, load_model):
    try:
        load(sys.argv[1])
    except ValueError as error:
        print(error)
"""


@pytest.mark.parametrize(
    ("header", "data_bytes", "message"),
    [
        ({}, 1 << 30, "the tensors cover 0 bytes of data but the file holds 1073741824"),
        (
            {"w": {"dtype": "F32", "shape": [7_500_000_000], "data_offsets": [0, 30_000_000_000]}},
            30_000_000_000,
            "the header declares 30000000000 bytes of tensors, more than this reader loads",
        ),
    ],
)
def test_huge_sparse_files_are_refused_before_reading(tmp_path, header, data_bytes, message):
    path = sparse_safetensors(tmp_path / "huge.safetensors", header, data_bytes)
    out, peak_mb = run_measuring_memory(LOAD, str(path))
    assert f"{path}: {message}" in out
    assert out.count(f"{path}: ") == 2  # load_model's error names the file as well
    assert peak_mb < 300, f"{peak_mb:.0f} MB"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nests JSON too deeply"),
        (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "nests JSON too deeply"),
        (b"{" + b'"k":[],' * 1_100_000 + b'"z":1}', "JSON objects or lists"),
    ],
)
def test_hostile_headers_are_value_errors(tmp_path, raw, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)
    for read in (st.load_file, st.load_metadata):
        with pytest.raises(ValueError, match=message):
            read(path)


def test_absurd_shapes_are_value_errors(tmp_path):
    for shape in ([1] * 40, [0, 2**40, 2**40]):
        header = {"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}
        path = sparse_safetensors(tmp_path / "bad.safetensors", header, 0)
        with pytest.raises(ValueError, match=f"{path}: tensor 'w': shape .* is absurd"):
            st.load_file(path)
