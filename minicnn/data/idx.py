"""Read IDX files, the format MNIST ships in, plain or gzip-compressed.

Layout, all big-endian: two zero bytes, a dtype code, the number of dimensions ``ndim``, then
``ndim`` uint32 sizes, then the payload in C order. MNIST images carry the magic 0x00000803
(uint8, 3 dims: N, H, W) and labels 0x00000801 (uint8, 1 dim: N).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Literal

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


def read_uncompressed(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``, gunzipped when it is a ``.gz`` file or starts like one.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming the file) for a
    truncated or corrupt gzip stream.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected an IDX file, plain or .gz)")
    data = path.read_bytes()
    # an IDX file always starts with two zero bytes, so sniffing the gzip magic is unambiguous
    if path.suffix == ".gz" or data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as err:
            raise ValueError(
                f"{path}: expected a complete gzip stream, got a truncated or corrupt one "
                f"({type(err).__name__}: {err})"
            ) from err
    return data


def read_idx(path: str | os.PathLike, kind: IdxKind | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or uncompressed) into a native-endian NumPy array.

    Args:
        path: the IDX file; gzip-compressed when its name ends in ``.gz`` or its bytes say so.
        kind: ``"images"`` demands magic 0x00000803 (uint8, 3 dims), ``"labels"`` demands
            0x00000801 (uint8, 1 dim); ``None`` accepts any valid IDX file.

    Every defect (bad gzip, wrong magic, short header, payload longer or shorter than the header
    promises) raises ``ValueError`` with the file's path, what was expected and what came; a
    missing file raises ``FileNotFoundError``.

    Shape:
        the dims the header lists, e.g. ``(N, H, W)`` uint8 for images, ``(N,)`` for labels.
    """
    return decode_idx(read_uncompressed(path), str(path), kind)


def decode_idx(data: bytes, name: str = "<bytes>", kind: IdxKind | None = None) -> np.ndarray:
    """Parse the uncompressed bytes of an IDX file; ``name`` is what errors call the source."""
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"decode_idx: kind must be 'images', 'labels' or None, got {kind!r}")
    if len(data) < 4:
        raise ValueError(f"{name}: expected a 4-byte IDX magic number, got a {len(data)}-byte file")
    magic = int.from_bytes(data[:4], "big")
    code, ndim = data[2], data[3]
    if kind is not None:
        want, what = _KINDS[kind]
        if magic != want:
            raise ValueError(
                f"{name}: expected magic 0x{want:08x} ({what}), got 0x{magic:08x}" + _guess(magic)
            )
    elif data[:2] != b"\x00\x00" or code not in IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{name}: expected an IDX magic number 0x0000TTDD (TT a dtype code in "
            f"{sorted(f'0x{c:02x}' for c in IDX_DTYPES)}, DD >= 1 dims), got 0x{magic:08x}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{name}: expected a {header}-byte header ({ndim} dims), got only {len(data)} bytes"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[code]
    count = math.prod(dims)
    want_bytes = count * dtype.itemsize
    got_bytes = len(data) - header
    if got_bytes != want_bytes:
        shape = " x ".join(map(str, dims))
        how = "truncated" if got_bytes < want_bytes else "trailing bytes"
        raise ValueError(
            f"{name}: header promises {shape} {dtype.name} = {want_bytes} payload bytes, "
            f"got {got_bytes} ({how})"
        )
    flat = np.frombuffer(data, dtype, count=count, offset=header)  # (prod(dims),) read-only view
    # astype copies into a writable, native-endian array (a no-op conversion for uint8)
    return flat.reshape(dims).astype(dtype.newbyteorder("="))  # dims


def _guess(magic: int) -> str:
    """A hint for the usual mix-ups: images and labels swapped, or a file that is not IDX."""
    if magic == IMAGES_MAGIC:
        return " (an images file)"
    if magic == LABELS_MAGIC:
        return " (a labels file)"
    if magic >> 16 == 0x1F8B:
        return " (gzip data: is the file compressed twice?)"
    return ""
