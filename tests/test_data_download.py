"""minicnn.data.download, offline: a local http.server and file:// URLs stand in for the mirrors.

The mirrors serve the real MNIST files from the ``mnist_dir`` fixture, since only those match
the published SHA-256 hashes.
"""

from __future__ import annotations

import gzip
import shutil
import threading
import urllib.error
import urllib.request
import zlib
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from minicnn.data import (
    MIRRORS,
    MNIST_FILES,
    DownloadError,
    download_mnist,
    ensure_mnist,
    load_mnist,
)

GZ_NAMES = sorted(f"{name}.gz" for name in MNIST_FILES)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep pytest's output clean
        pass


def offline(request, timeout):
    """An opener for a machine without internet."""
    raise urllib.error.URLError(f"network is unreachable ({request.full_url})")


class CountingOpener:
    """urllib's opener, recording each URL it is asked for."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, request, timeout):
        self.urls.append(request.full_url)
        return urllib.request.urlopen(request, timeout=timeout)


@pytest.fixture(scope="module")
def good_mirror(mnist_dir: Path, tmp_path_factory) -> Path:
    """A directory laid out like a mirror: the four real files, gzipped."""
    mirror = tmp_path_factory.mktemp("mirror")
    for name in MNIST_FILES:
        if (mnist_dir / f"{name}.gz").is_file():
            shutil.copyfile(mnist_dir / f"{name}.gz", mirror / f"{name}.gz")
        else:
            data = (mnist_dir / name).read_bytes()
            (mirror / f"{name}.gz").write_bytes(gzip.compress(data, compresslevel=1))
    return mirror


@pytest.fixture(scope="module")
def http_mirror(good_mirror: Path):
    """The good mirror served over HTTP on 127.0.0.1, from a background thread."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(QuietHandler, directory=str(good_mirror))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join()


def test_download_over_http_then_skip_valid_files(http_mirror, mnist_dir, tmp_path):
    dest = tmp_path / "new" / "dir"
    assert download_mnist(dest, [http_mirror]) == dest
    assert sorted(p.name for p in dest.iterdir()) == GZ_NAMES  # no temporary files left
    for train in (True, False):
        (images, labels), expected = load_mnist(dest, train), load_mnist(mnist_dir, train)
        np.testing.assert_array_equal(images, expected[0])
        np.testing.assert_array_equal(labels, expected[1])

    download_mnist(dest, [http_mirror], opener=offline)  # all present and valid: no fetch

    # a damaged file is fetched again, and only that one
    (dest / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    opener = CountingOpener()
    download_mnist(dest, [http_mirror], opener=opener)
    assert opener.urls == [http_mirror + "t10k-labels-idx1-ubyte.gz"]
    np.testing.assert_array_equal(load_mnist(dest, False)[1], load_mnist(mnist_dir, False)[1])


@pytest.mark.parametrize("damage", ["wrong_content", "truncated"])
def test_corrupt_download_is_rejected_and_never_written(good_mirror, tmp_path, damage):
    bad = tmp_path / "bad_mirror"
    shutil.copytree(good_mirror, bad)
    victim = bad / "t10k-labels-idx1-ubyte.gz"
    if damage == "wrong_content":  # a valid gzip whose content is not the published file
        content = bytearray(gzip.decompress(victim.read_bytes()))
        content[-1] = (content[-1] + 1) % 10  # one label changed
        victim.write_bytes(gzip.compress(bytes(content)))
    else:
        victim.write_bytes(victim.read_bytes()[:-100])
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError) as info:
        download_mnist(dest, [bad.as_uri() + "/"])
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz" in message
    assert ("expected SHA-256" if damage == "wrong_content" else "broken") in message
    # the three good files landed; the bad one left nothing behind, not even a temporary file
    assert sorted(p.name for p in dest.iterdir()) == [n for n in GZ_NAMES if "t10k-labels" not in n]

    # the next mirror in the list is tried, and delivers
    download_mnist(dest, [bad.as_uri() + "/", good_mirror.as_uri() + "/"])
    assert sorted(p.name for p in dest.iterdir()) == GZ_NAMES


def test_all_mirrors_failing_says_how_to_use_local_files(http_mirror, tmp_path):
    assert issubclass(DownloadError, RuntimeError)
    with pytest.raises(DownloadError) as info:
        download_mnist(tmp_path / "dest", opener=offline)  # the real mirror list, no network
    message = str(info.value)
    for mirror in MIRRORS:
        assert mirror + "train-images-idx3-ubyte.gz" in message
    assert "network is unreachable" in message
    assert "--data-dir DIR" in message and "MINICNN_DATA=DIR" in message
    assert not (tmp_path / "dest").exists()

    with pytest.raises(DownloadError, match="HTTP Error 404"):
        download_mnist(tmp_path / "dest", [http_mirror + "nowhere/"])
    with pytest.raises(DownloadError, match="no mirrors given"):
        download_mnist(tmp_path / "dest", [])


def test_ensure_mnist(http_mirror, mnist_dir, tmp_path, monkeypatch):
    found = ensure_mnist(mnist_dir, opener=offline)  # present: nothing fetched
    assert load_mnist(found, train=False)[0].shape == (10000, 28, 28)

    with pytest.raises(FileNotFoundError, match="--data-dir DIR"):
        ensure_mnist(tmp_path / "empty", download=False)

    assert ensure_mnist(tmp_path / "given", mirrors=[http_mirror]) == tmp_path / "given"
    assert sorted(p.name for p in (tmp_path / "given").iterdir()) == GZ_NAMES

    # no argument: the download goes where the lookup will look, here $MINICNN_DATA
    monkeypatch.setenv("MINICNN_DATA", str(tmp_path / "from_env"))
    assert ensure_mnist(mirrors=[http_mirror]) == tmp_path / "from_env"
    assert len(load_mnist(train=False)[1]) == 10000


def test_a_mirror_serving_a_gzip_bomb_is_skipped(good_mirror, tmp_path):
    bad = tmp_path / "bad_mirror"
    shutil.copytree(good_mirror, bad)
    labels = gzip.decompress((good_mirror / "t10k-labels-idx1-ubyte.gz").read_bytes())
    # the real labels, then 200 MB of zeros: decompression must stop one byte past MNIST's size
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    blob = compressor.compress(labels) + b"".join(
        compressor.compress(bytes(1 << 20)) for _ in range(200)
    )
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(blob + compressor.flush())
    dest = tmp_path / "dest"
    download_mnist(dest, [bad.as_uri() + "/", good_mirror.as_uri() + "/"])
    assert gzip.decompress((dest / "t10k-labels-idx1-ubyte.gz").read_bytes()) == labels
