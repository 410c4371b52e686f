"""Download the four MNIST files, check them against the published hashes, write atomically.

Only ``urllib`` is used. The mirror list and the function that opens a URL are arguments, so the
whole path runs offline in tests (a local ``http.server`` or ``file://`` URLs).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from minicnn.data.idx import decompress, read_uncompressed
from minicnn.data.mnist import HOW_TO_POINT, MNIST_FILES, find_mnist, resolve_data_dir

# torchvision's mirrors, in its order
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

# SHA-256 of the *uncompressed* IDX files: the published hashes, which (unlike the .gz files'
# hashes) do not change when a mirror recompresses a file
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# the uncompressed sizes: decompression stops one byte past them, so a gzip bomb costs no more
MNIST_BYTES = {
    "train-images-idx3-ubyte": 47_040_016,
    "train-labels-idx1-ubyte": 60_008,
    "t10k-images-idx3-ubyte": 7_840_016,
    "t10k-labels-idx1-ubyte": 10_008,
}

# the largest file is ~10 MB compressed; a mirror sending far more is not sending MNIST
_MAX_DOWNLOAD_BYTES = 64 * 2**20

Opener = Callable[[urllib.request.Request, float], IO[bytes]]


class DownloadError(RuntimeError):
    """No mirror delivered a file whose content matches its published SHA-256."""


def _urlopen(request: urllib.request.Request, timeout: float) -> IO[bytes]:
    """The default opener: ``urllib.request.urlopen`` (handles http, https and file URLs)."""
    return urllib.request.urlopen(request, timeout=timeout)


def download_mnist(
    root: str | os.PathLike,
    mirrors: Sequence[str] = MIRRORS,
    *,
    opener: Opener | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch the four MNIST ``.gz`` files into ``root`` and return ``root``.

    A file already in ``root`` (plain or ``.gz``) whose uncompressed SHA-256 is the published
    one is kept; anything else is fetched from the first mirror that delivers the right content
    (``mirror + name + ".gz"``). A download is checked in memory before it touches the disk,
    then written to a temporary file beside the destination, fsynced and renamed over it, so
    ``root`` never holds a partial or unverified file.

    Args:
        root: destination directory, created when needed.
        mirrors: base URLs tried in order; each ends in ``/``.
        opener: ``opener(request, timeout)`` returns a readable binary response; the default
            is ``urllib.request.urlopen``.
        timeout: seconds to wait on each connection.

    Raises ``DownloadError`` when every mirror fails for some file; its message lists each
    mirror's failure and says how to point minicnn at local files instead.
    """
    root = Path(root)
    open_url = _urlopen if opener is None else opener
    for name, digest in MNIST_SHA256.items():
        if _has_valid_copy(root, name, digest):
            continue
        blob = _fetch_verified(name, digest, mirrors, open_url, timeout)
        _write_atomic(root / f"{name}.gz", blob)
    return root


def ensure_mnist(
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] = MIRRORS,
    opener: Opener | None = None,
    files: Sequence[str] = MNIST_FILES,
) -> Path:
    """The directory holding the MNIST ``files`` (see ``find_mnist``; all four by default),
    downloading MNIST there when they are absent.

    Downloads go to ``resolve_data_dir(data_dir)``: the argument, else ``$MINICNN_DATA``, else
    ``./data``. With ``download=False`` a missing dataset raises ``FileNotFoundError``.
    """
    try:
        return find_mnist(data_dir, files)
    except FileNotFoundError:
        if not download:
            raise
    root = resolve_data_dir(data_dir)
    download_mnist(root, mirrors, opener=opener)
    return find_mnist(root)


def _has_valid_copy(root: Path, name: str, digest: str) -> bool:
    """Whether ``root`` already holds ``name`` or ``name.gz`` with the published content."""
    for path in (root / f"{name}.gz", root / name):
        if not path.is_file():
            continue
        try:
            content = read_uncompressed(path, limit=MNIST_BYTES[name])
        except (ValueError, OSError):
            continue  # corrupt, oversized or unreadable: fetch a fresh copy
        if hashlib.sha256(content).hexdigest() == digest:
            return True
    return False


def _fetch_verified(
    name: str, digest: str, mirrors: Sequence[str], open_url: Opener, timeout: float
) -> bytes:
    """The ``.gz`` bytes of ``name`` from the first mirror whose content has the right hash."""
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + f"/{name}.gz"
        # some mirrors refuse urllib's default User-Agent
        request = urllib.request.Request(url, headers={"User-Agent": "minicnn"})
        try:
            with open_url(request, timeout) as response:
                blob = response.read(_MAX_DOWNLOAD_BYTES + 1)
        except (OSError, http.client.HTTPException, ValueError) as err:
            # URLError, HTTPError, timeouts and refused connections are all OSErrors
            failures.append(f"{url}: {type(err).__name__}: {err}")
            continue
        if len(blob) > _MAX_DOWNLOAD_BYTES:
            failures.append(f"{url}: expected at most {_MAX_DOWNLOAD_BYTES} bytes, got more")
            continue
        try:
            content = decompress(blob, url, MNIST_BYTES[name])
        except ValueError as err:
            failures.append(f"{url}: expected a gzip file, got a broken one or a bomb ({err})")
            continue
        got = hashlib.sha256(content).hexdigest()
        if got != digest:
            failures.append(f"{url}: expected SHA-256 {digest} (uncompressed), got {got}")
            continue
        return blob
    tried = "\n  ".join(failures) if failures else "(no mirrors given)"
    raise DownloadError(
        f"could not download {name}.gz from any mirror:\n  {tried}\n"
        f"No internet access? {HOW_TO_POINT}."
    )


def _write_atomic(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` so that ``dest`` is either absent, the old file, or complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    # same directory as dest, so os.replace is a rename within one filesystem (atomic)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a dataset should be readable
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(dest.parent)


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
