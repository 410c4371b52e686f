"""The safetensors file format, read and written with NumPy and the standard library alone.

A file is three parts, all little-endian::

    8 bytes     N, the header's length (unsigned 64-bit)
    N bytes     a UTF-8 JSON object, padded with spaces so that 8 + N is a multiple of 8:
                {name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
                 "__metadata__": {str: str}}
    the rest    the tensors' bytes, C order, packed back to back with no gap; offsets are
                relative to the start of this part and must cover it exactly

The format holds no code, so loading a file cannot run any (unlike a pickle), and every field
is checked before a byte of tensor data is trusted: a malformed file raises ``ValueError``
naming the file. Files written here load with the official ``safetensors`` package (NumPy and
torch), and its files load here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np

# the format's dtype names; BF16 and the F8 types have no NumPy dtype, so they are refused
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype("<u1"),
    "I8": np.dtype("<i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}
_NAMES = {(dtype.kind, dtype.itemsize): name for name, dtype in DTYPES.items()}

# the official reader's limit: a longer header is a corrupt or hostile file, not a model
MAX_HEADER_BYTES = 100_000_000
# a bound on the JSON containers in a header, far above any model's (three per tensor)
MAX_HEADER_CONTAINERS = 1_000_000
# the most tensor data ``load_file`` reads into memory; minicnn's models hold a few MB
MAX_DATA_BYTES = 4 << 30
# NumPy's limit on an array's dimensions (32 before NumPy 2)
MAX_DIMS = 32
METADATA_KEY = "__metadata__"
_ENTRY_FIELDS = {"dtype", "shape", "data_offsets"}


def save_file(
    tensors: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write ``tensors`` (and string ``metadata``) to ``path`` as a safetensors file, atomically.

    The file is written beside ``path`` under a temporary name, flushed to disk, and renamed
    over ``path``; on any error the temporary file is removed and ``path`` is left as it was.
    An array that appears under two names is written twice. Tensors are laid out widest dtype
    first (then in the given order) so that every tensor starts aligned to its item size, as
    torch needs to view the bytes in place.
    """
    path = Path(path)
    arrays = {name: _checked_array(name, value) for name, value in _checked_names(tensors)}
    header: dict[str, object] = {}
    if metadata is not None:
        header[METADATA_KEY] = _checked_metadata(metadata)
    # a stable sort: tensors of one item size keep the caller's order
    order = sorted(arrays, key=lambda name: -arrays[name].dtype.itemsize)
    offset = 0
    for name in order:
        array = arrays[name]
        begin, offset = offset, offset + array.nbytes
        header[name] = {
            "dtype": _NAMES[(array.dtype.kind, array.dtype.itemsize)],
            "shape": list(array.shape),
            "data_offsets": [begin, offset],
        }
    header_bytes = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)

    def write(file) -> None:
        file.write(len(header_bytes).to_bytes(8, "little"))
        file.write(header_bytes)
        for name in order:
            file.write(_little_endian_bytes(arrays[name]))

    atomic_write(path, write)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``.

    The data is fsynced before the rename and the directory after it, so after a crash ``path``
    holds either the old file or the whole new one, never a mix. When ``path`` is a symbolic
    link, the file it points to is replaced and the link stays. Temporary files that a killed
    writer left beside ``path`` are removed after a successful write.
    """
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            _lock(file.fileno())  # while it is held, no other writer takes this file for stale
            write(file)
            file.flush()
            os.fsync(file.fileno())
            # mkstemp makes the file private (0600); give it the mode a plain open() would have
            os.chmod(temp_name, path.stat().st_mode & 0o777 if path.exists() else 0o644)
            os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    _fsync_directory(directory)
    _remove_stale_temporaries(path)


def load_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file, in the header's order, as writable NumPy arrays.

    Raises ``ValueError`` naming the file if anything about it is malformed, and
    ``FileNotFoundError`` if there is no file.
    """
    with SafetensorsFile(path) as file:
        return file.tensors()


def load_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The file's ``__metadata__`` (``{}`` when it has none); the whole header is validated."""
    with SafetensorsFile(path) as file:
        return file.metadata


class SafetensorsFile:
    """An open safetensors file whose header has been read and validated; ``tensors()`` then
    reads the data through the same open file.

    Opening once and reading everything through that one descriptor means a writer that renames
    a new file over ``path`` meanwhile cannot mix two versions: the reader keeps the old one.
    Nothing the size of the data is allocated before the header is checked, so a caller can
    also check ``entries`` (say, against a model) before paying for the data.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = open(self.path, "rb")
        try:
            header, self._data_start, size = _read_header(self._file, self.path)
            self._entries = _checked_entries(header, size - self._data_start, self.path)
        except BaseException:
            self._file.close()
            raise
        self.metadata: dict[str, str] = dict(header.get(METADATA_KEY, {}))
        self.data_bytes = size - self._data_start

    @property
    def entries(self) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        """``{name: (dtype, shape)}`` as the header declares them, in the header's order."""
        return {name: (dtype, shape) for name, (dtype, shape, _) in self._entries.items()}

    def tensors(self) -> dict[str, np.ndarray]:
        """Read the data section (once) and return every tensor, as ``load_file`` does."""
        path = self.path
        if self.data_bytes > MAX_DATA_BYTES:
            raise ValueError(
                f"{path}: the header declares {self.data_bytes} bytes of tensors, more than "
                f"this reader loads into memory ({MAX_DATA_BYTES}); the file is corrupt or not "
                "a minicnn model"
            )
        try:
            data = bytearray(self.data_bytes)
        except MemoryError:
            raise ValueError(
                f"{path}: no memory for the {self.data_bytes} bytes of tensors its header declares"
            ) from None
        self._file.seek(self._data_start)
        if self._file.readinto(data) != len(data):
            raise ValueError(f"{path}: file changed size while being read")
        tensors = {}
        for name, (dtype, shape, begin) in self._entries.items():
            array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=begin)
            if not array.flags.aligned or not dtype.isnative:
                array = array.astype(dtype.newbyteorder("="))  # a copy, aligned and native-endian
            tensors[name] = array.reshape(shape)
        return tensors

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# -- reading --------------------------------------------------------------------------------


def _read_header(file, path: Path) -> tuple[dict, int, int]:
    """The parsed header, where the data starts, and the file's size."""
    size = os.fstat(file.fileno()).st_size
    if size < 8:
        raise ValueError(f"{path}: not a safetensors file: {size} bytes, shorter than 8")
    length = int.from_bytes(file.read(8), "little")
    if length > MAX_HEADER_BYTES:
        raise ValueError(
            f"{path}: header length {length} is absurd (limit {MAX_HEADER_BYTES}); "
            "the file is corrupt or not safetensors"
        )
    if length > size - 8:
        raise ValueError(
            f"{path}: header length {length} runs past the end of the file ({size} bytes); "
            "the file is truncated or corrupt"
        )
    raw = file.read(length)
    if len(raw) != length:
        raise ValueError(f"{path}: file changed size while being read")
    # each JSON object or list costs Python far more than its bytes; a header of millions of
    # them is an attack on memory, refused before parsing (a count of every bracket, strings
    # included, bounds the number of containers from above)
    containers = raw.count(b"{") + raw.count(b"[")
    if containers > MAX_HEADER_CONTAINERS:
        raise ValueError(
            f"{path}: header holds {containers} JSON objects or lists (limit "
            f"{MAX_HEADER_CONTAINERS}); the file is corrupt or hostile"
        )
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: header is not valid UTF-8 ({error})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: header is not valid JSON ({error})") from None
    except RecursionError:
        raise ValueError(f"{path}: header nests JSON too deeply to be safetensors") from None
    except _DuplicateKey as error:
        raise ValueError(f"{path}: header names {error} twice") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is a JSON {type(header).__name__}, not an object")
    return header, 8 + length, size


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    # plain json.loads keeps the last of two equal keys; a second entry means a corrupt header
    result = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(repr(key))
        result[key] = value
    return result


def _checked_entries(header: dict, data_size: int, path: Path) -> dict:
    """``{name: (dtype, shape, begin)}`` after checking every entry and the offsets' tiling."""
    metadata = header.get(METADATA_KEY, {})
    if not isinstance(metadata, dict) or not all(
        isinstance(value, str) for value in metadata.values()
    ):
        raise ValueError(f"{path}: {METADATA_KEY} must be an object mapping strings to strings")
    entries = {}
    for name, entry in header.items():
        if name == METADATA_KEY:
            continue
        if not isinstance(entry, dict) or set(entry) != _ENTRY_FIELDS:
            raise ValueError(
                f"{path}: tensor {name!r}: expected an object with exactly the fields "
                f"{sorted(_ENTRY_FIELDS)}, got {_describe(entry)}"
            )
        dtype = DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
        if dtype is None:
            raise ValueError(
                f"{path}: tensor {name!r}: unknown or unsupported dtype {entry['dtype']!r}"
            )
        shape, offsets = entry["shape"], entry["data_offsets"]
        if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
            raise ValueError(f"{path}: tensor {name!r}: shape {shape!r} is not a list of ints >= 0")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
            raise ValueError(
                f"{path}: tensor {name!r}: data_offsets {offsets!r} is not [begin, end]"
            )
        if len(shape) > MAX_DIMS or math.prod(max(n, 1) for n in shape) > 2**62:
            raise ValueError(
                f"{path}: tensor {name!r}: shape {shape} is absurd (more than {MAX_DIMS} "
                "dimensions, or more elements than an array can hold)"
            )
        begin, end = offsets
        expected = math.prod(shape) * dtype.itemsize
        if end - begin != expected:
            raise ValueError(
                f"{path}: tensor {name!r}: data_offsets {offsets} span {end - begin} bytes, but "
                f"shape {shape} of {entry['dtype']} needs {expected}"
            )
        entries[name] = (dtype, tuple(shape), begin, end)

    # the offsets must tile the data exactly: no gap, no overlap, nothing past either end
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda item: item[1][2:]):
        if begin != position:
            what = "overlaps the tensor before it" if begin < position else "leaves a gap"
            raise ValueError(f"{path}: tensor {name!r}: data_offsets [{begin}, {end}] {what}")
        if end > data_size:
            raise ValueError(
                f"{path}: tensor {name!r}: data_offsets [{begin}, {end}] run past the end of the "
                f"data ({data_size} bytes); the file is truncated"
            )
        position = end
    if position != data_size:
        raise ValueError(
            f"{path}: the tensors cover {position} bytes of data but the file holds {data_size}"
        )
    return {name: (dtype, shape, begin) for name, (dtype, shape, begin, _) in entries.items()}


def _describe(value: object) -> str:
    # never repr() a crafted value: it may be huge or nested past the recursion limit
    if isinstance(value, dict):
        return f"an object with fields {sorted(value)[:8]}"
    return f"a JSON {type(value).__name__}"


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# -- writing --------------------------------------------------------------------------------


def _checked_names(tensors: Mapping[str, np.ndarray]):
    if not isinstance(tensors, Mapping):
        raise TypeError(f"save_file: expected a mapping of names to arrays, got {type(tensors)}")
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"save_file: tensor names must be strings, got {name!r}")
        if name == METADATA_KEY:
            raise ValueError(f"save_file: {METADATA_KEY!r} is reserved and cannot name a tensor")
        yield name, value


def _checked_array(name: str, value: np.ndarray) -> np.ndarray:
    if isinstance(value, np.generic):  # a NumPy scalar is a 0-d tensor
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"save_file: {name!r} is a {type(value).__name__}, not a NumPy array")
    if (value.dtype.kind, value.dtype.itemsize) not in _NAMES:
        raise ValueError(f"save_file: {name!r} has dtype {value.dtype}, which safetensors lacks")
    return value


def _checked_metadata(metadata: dict[str, str]) -> dict[str, str]:
    if not isinstance(metadata, Mapping) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()
    ):
        raise TypeError("save_file: metadata must map strings to strings")
    return dict(metadata)


def _little_endian_bytes(array: np.ndarray) -> np.ndarray:
    """The array's bytes (as uint8) in C order, little-endian; no copy when it already is."""
    little = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
    return np.ascontiguousarray(array, dtype=little).reshape(-1).view(np.uint8)


def _lock(fd: int, wait: bool = True) -> bool:
    """Take an exclusive ``flock`` on ``fd``; False when ``wait`` is off and another process
    holds it. The kernel drops the lock when its holder dies, even by ``kill -9``."""
    if os.name != "posix":
        return True
    import fcntl  # POSIX only

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files of writers to ``path`` that died before renaming them: those
    whose lock nobody holds."""
    if os.name != "posix":
        return
    prefix = f".{path.name}."
    for temp in path.parent.iterdir():
        if not (temp.name.startswith(prefix) and temp.name.endswith(".tmp")):
            continue
        try:
            fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if _lock(fd, wait=False):
                temp.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _fsync_directory(directory: Path) -> None:
    # the rename lives in the directory's entry table; only POSIX lets us open and sync it
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
