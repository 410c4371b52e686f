"""Read IDX files, the format MNIST ships in, plain or gzip-compressed.

Layout, all big-endian: two zero bytes, a dtype code, the number of dimensions ``ndim``, then
``ndim`` uint32 sizes, then the payload in C order. MNIST images carry the magic 0x00000803
(uint8, 3 dims: N, H, W) and labels 0x00000801 (uint8, 1 dim: N).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

# dtype code (the third magic byte) -> big-endian NumPy dtype, from the format's description
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

IdxKind = Literal["images", "labels"]

# what each kind must start with, and how to say so in an error message
_KINDS: dict[str, tuple[int, str]] = {
    "images": (IMAGES_MAGIC, "uint8 images, 3 dims (N, H, W)"),
    "labels": (LABELS_MAGIC, "uint8 labels, 1 dim (N,)"),
}
_GZIP_MAGIC = b"\x1f\x8b"
# deflate turns one byte into at most 1032: a file claiming more than that is truncated
_DEFLATE_MAX_RATIO = 1032
# the most payload one file may declare (MNIST's largest is 47 MB); NumPy's limit on dims
MAX_PAYLOAD_BYTES = 2 << 30
_MAX_DIMS = 32
_CHUNK = 1 << 20


def read_uncompressed(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of ``path``, gunzipped when it is a ``.gz`` file or starts like one.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming the file) for a
    truncated or corrupt gzip stream, or for more than ``limit`` bytes (when given): decompression
    stops there, so a gzip bomb costs ``limit`` bytes of memory, not what it expands to.
    """
    path = Path(path)
    with _open_idx(path) as (stream, _):
        data = stream.read() if limit is None else _read_exactly(stream, limit + 1)
    if limit is not None and len(data) > limit:
        raise ValueError(f"{path}: expected at most {limit} bytes, got more")
    return data


def decompress(blob: bytes, name: str, limit: int) -> bytes:
    """The content of the gzip bytes ``blob``, at most ``limit`` bytes of it; ``ValueError``
    naming ``name`` when the stream is broken or holds more."""
    data = _read_exactly(_Gunzip(io.BytesIO(blob), name), limit + 1)
    if len(data) > limit:
        raise ValueError(f"{name}: expected at most {limit} bytes, got more")
    return data


def read_idx(path: str | os.PathLike, kind: IdxKind | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or uncompressed) into a native-endian NumPy array.

    Args:
        path: the IDX file; gzip-compressed when its name ends in ``.gz`` or its bytes say so.
        kind: ``"images"`` demands magic 0x00000803 (uint8, 3 dims), ``"labels"`` demands
            0x00000801 (uint8, 1 dim); ``None`` accepts any valid IDX file.

    The header is read and checked first; then exactly the payload it declares is read (and
    decompressed) into the array, and one byte more to prove there is none. So memory is the
    payload the header declares, whatever the file expands to. Every defect (bad gzip, wrong
    magic, short header, absurd shape, payload longer or shorter than the header promises)
    raises ``ValueError`` with the file's path, what was expected and what came; a missing file
    raises ``FileNotFoundError``.

    Shape:
        the dims the header lists, e.g. ``(N, H, W)`` uint8 for images, ``(N,)`` for labels.
    """
    path = Path(path)
    with _open_idx(path) as (stream, most):
        return _read_idx(stream, str(path), kind, most)


def decode_idx(data: bytes, name: str = "<bytes>", kind: IdxKind | None = None) -> np.ndarray:
    """Parse the uncompressed bytes of an IDX file; ``name`` is what errors call the source."""
    return _read_idx(io.BytesIO(data), name, kind, len(data))


# -- reading --------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_idx(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """``(stream, most)``: the file's uncompressed bytes as a stream, and the most bytes it can
    yield (the file's size, or what deflate's best ratio makes of it)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected an IDX file, plain or .gz)")
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        # an IDX file starts with two zero bytes, so sniffing the gzip magic is unambiguous
        zipped = path.suffix == ".gz" or file.read(2) == _GZIP_MAGIC
        file.seek(0)
        if zipped:
            yield _Gunzip(file, path), size * _DEFLATE_MAX_RATIO
        else:
            yield file, size


class _Gunzip(io.RawIOBase):
    """A gzip file's content as a stream, inflated only as far as it is read (``gzip.open``
    would do, but its errors name no file and it reads ahead of what is asked)."""

    def __init__(self, file: BinaryIO, path: str | os.PathLike) -> None:
        self._file, self._path = file, path
        self._inflate = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer
        self._pending = b""  # compressed bytes read but not yet inflated

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        while True:
            if self._inflate.eof:  # a member ended: another may follow, as gzip allows
                rest = self._inflate.unused_data or self._file.read(_CHUNK)
                if not rest:
                    return 0
                self._inflate, self._pending = zlib.decompressobj(wbits=31), rest
            if not self._pending:
                self._pending = self._file.read(_CHUNK)
                if not self._pending:
                    raise self._broken("the file ends inside the stream")
            try:
                piece = self._inflate.decompress(self._pending, min(len(view), _CHUNK))
            except zlib.error as error:
                raise self._broken(str(error)) from None
            self._pending = self._inflate.unconsumed_tail
            if piece:
                view[: len(piece)] = piece
                return len(piece)

    def _broken(self, why: str) -> ValueError:
        return ValueError(
            f"{self._path}: expected a complete gzip stream, got a truncated or corrupt one ({why})"
        )


def _read_idx(stream: BinaryIO, name: str, kind: IdxKind | None, most: int) -> np.ndarray:
    """Check the header on ``stream``, then read exactly the payload it declares."""
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"decode_idx: kind must be 'images', 'labels' or None, got {kind!r}")
    head = _read_exactly(stream, 4)
    if len(head) < 4:
        raise ValueError(f"{name}: expected a 4-byte IDX magic number, got a {len(head)}-byte file")
    magic = int.from_bytes(head, "big")
    code, ndim = head[2], head[3]
    if kind is not None:
        want, what = _KINDS[kind]
        if magic != want:
            raise ValueError(
                f"{name}: expected magic 0x{want:08x} ({what}), got 0x{magic:08x}" + _guess(magic)
            )
    elif head[:2] != b"\x00\x00" or code not in IDX_DTYPES or not 1 <= ndim <= _MAX_DIMS:
        raise ValueError(
            f"{name}: expected an IDX magic number 0x0000TTDD (TT a dtype code in "
            f"{sorted(f'0x{c:02x}' for c in IDX_DTYPES)}, DD 1 to {_MAX_DIMS} dims), "
            f"got 0x{magic:08x}"
        )
    header = 4 + 4 * ndim
    sizes = _read_exactly(stream, header - 4)
    if len(sizes) < header - 4:
        raise ValueError(
            f"{name}: expected a {header}-byte header ({ndim} dims), got only "
            f"{4 + len(sizes)} bytes"
        )
    dims = struct.unpack(f">{ndim}I", sizes)
    dtype = IDX_DTYPES[code]
    want_bytes = math.prod(dims) * dtype.itemsize
    shape = " x ".join(map(str, dims))
    promise = f"{name}: header promises {shape} {dtype.name} = {want_bytes} payload bytes"
    if math.prod(max(n, 1) for n in dims) * dtype.itemsize > 2**62:
        raise ValueError(f"{name}: header declares shape {shape}, more than an array can hold")
    if header + want_bytes > most:
        raise ValueError(f"{promise}, but the file cannot hold them ({most} bytes at most)")
    if want_bytes > MAX_PAYLOAD_BYTES:
        raise ValueError(f"{promise}, more than this reader loads ({MAX_PAYLOAD_BYTES})")
    payload = np.empty(want_bytes, np.uint8)  # (prod(dims) * itemsize,)
    got_bytes = _read_into(stream, payload)
    if got_bytes < want_bytes:
        raise ValueError(f"{promise}, got {got_bytes} (truncated)")
    extra = len(_read_exactly(stream, _CHUNK))
    if extra:
        more = f"{want_bytes + extra}" if extra < _CHUNK else f"more than {want_bytes}"
        raise ValueError(f"{promise}, got {more} (trailing bytes)")
    array = payload.view(dtype).reshape(dims)  # dims, big-endian
    if dtype.itemsize > 1:
        array.byteswap(inplace=True)  # in place: the payload is the only copy
    return array.view(dtype.newbyteorder("="))  # dims, native-endian


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at the end of the stream."""
    buffer = bytearray(size)
    return bytes(buffer[: _read_into(stream, buffer)])


def _read_into(stream: BinaryIO, buffer) -> int:
    view, filled = memoryview(buffer).cast("B"), 0
    while filled < len(view):
        count = stream.readinto(view[filled:])
        if not count:
            break
        filled += count
    return filled


def _guess(magic: int) -> str:
    """A hint for the usual mix-ups: images and labels swapped, or a file that is not IDX."""
    if magic == IMAGES_MAGIC:
        return " (an images file)"
    if magic == LABELS_MAGIC:
        return " (a labels file)"
    if magic >> 16 == 0x1F8B:
        return " (gzip data: is the file compressed twice?)"
    return ""
