"""Data sets in Keras's convention: (x_train, y_train), (x_test, y_test) as numpy arrays in the
library's layout (float32 [N, C, H, W] in [0, 1], int64 class indices), read by the C++
readers from the places the CLI searches: `path`, $CNN_DATA/<name>, ./data/<name>, then
../shared/data/<name> beside the checkout the package was built from.

When a data set is in none of those places and `download=True` (the default, as Keras), it is
downloaded from its official source into $CNN_DATA/<name> (./data/<name> when $CNN_DATA is not
set), where the CLI finds it too, and checked against the published md5 sums, exactly as
tools/get_cifar10.sh and tools/get_mnist.sh do (same sources; CIFAR10_URL and MNIST_MIRROR
override them with a mirror, file:// included)."""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import types
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from . import _core

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_FILE_MD5S = {
    "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25", "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421", "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d", "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d"}
# yann.lecun.com no longer serves MNIST reliably; PyTorch's mirror has the official .gz files. The
# md5 sums are of the uncompressed contents, so a recompressed copy from another mirror passes.
MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_CONTENT_MD5S = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb", "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea", "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"}


def _md5(chunks) -> str:
    digest = hashlib.md5()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _file_chunks(path: Path, opener=open):
    with opener(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def _fetch(url: str, target: Path) -> None:
    """url -> target, through target.part, so an interrupted download never looks complete."""
    part = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except OSError as e:
        part.unlink(missing_ok=True)
        raise OSError(f"download failed: {url}: {e}") from e
    part.replace(target)


def _check_md5s(directory: Path, md5s: dict[str, str], opener=open, suffix: str = "") -> None:
    for name, expected in md5s.items():
        path = directory / (name + suffix)
        if not path.is_file():
            raise OSError(f"{path} is missing after the download")
        if (got := _md5(_file_chunks(path, opener))) != expected:
            raise OSError(f"{path} has md5 {got}, expected {expected}")


def _download_cifar10(root: Path, url: str = CIFAR10_URL, archive_md5: str = CIFAR10_ARCHIVE_MD5,
                      file_md5s: dict[str, str] = CIFAR10_FILE_MD5S) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-binary.tar.gz"
    if not (archive.is_file() and _md5(_file_chunks(archive)) == archive_md5):
        _fetch(url, archive)
        if (got := _md5(_file_chunks(archive))) != archive_md5:
            archive.unlink()
            raise OSError(f"md5 of the download {url} is {got}, expected {archive_md5} (archive removed)")
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("cifar-10-batches-bin/") and m.isfile()]
        # The "data" filter (Python >= 3.11.4) refuses links and paths that leave root.
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(root, members=members, **extra)
    target = root / "cifar-10-batches-bin"
    _check_md5s(target, file_md5s)
    return target


def _download_mnist(root: Path, mirror: str = MNIST_MIRROR, content_md5s: dict[str, str] = MNIST_CONTENT_MD5S) -> Path:
    target = root / "mnist"
    target.mkdir(parents=True, exist_ok=True)
    for name in content_md5s:
        _fetch(mirror.rstrip("/") + "/" + name + ".gz", target / (name + ".gz"))
    _check_md5s(target, content_md5s, opener=gzip.open, suffix=".gz")
    return target


_DOWNLOADERS = {"cifar-10-batches-bin": lambda root: _download_cifar10(root, os.environ.get("CIFAR10_URL", CIFAR10_URL)),
                "mnist": lambda root: _download_mnist(root, os.environ.get("MNIST_MIRROR", MNIST_MIRROR))}


def _find_or_download(name: str, path: str | os.PathLike | None, download: bool) -> str:
    if path is not None:
        return _core.find_data_dir(name, os.fspath(path))
    try:
        return _core.find_data_dir(name, "")
    except ValueError as not_found:
        if not download:
            raise FileNotFoundError(str(not_found)) from None
        root = Path(os.environ.get("CNN_DATA") or "data")
        print(f"cnnfromscratch: {name} not found; downloading it into {root / name}", flush=True)
        return os.fspath(_DOWNLOADERS[name](root))


def _load(kind: str, name: str, path: str | os.PathLike | None, grayscale: bool, standardize: bool,
          limit: int | None, test_limit: int | None, download: bool) -> Arrays:
    directory = _find_or_download(name, path, download)
    train, test = _core.load_dataset(kind, directory, grayscale, standardize, limit or 0, test_limit or 0)
    return (train[0], train[1]), (test[0], test[1])


def _cifar10_load_data(path: str | os.PathLike | None = None, grayscale: bool = False, standardize: bool = False,
                       limit: int | None = None, test_limit: int | None = None, download: bool = True) -> Arrays:
    """CIFAR-10 (binary version): 50,000 + 10,000 images [3, 32, 32] ([1, 32, 32] with grayscale:
    BT.601 luma); standardize: per channel with the training images' statistics; limit /
    test_limit: only the first N images; download: fetch it (162 MiB) when it is found nowhere."""
    return _load("cifar10", "cifar-10-batches-bin", path, grayscale, standardize, limit, test_limit, download)


def _mnist_load_data(path: str | os.PathLike | None = None, standardize: bool = False, limit: int | None = None,
                     test_limit: int | None = None, download: bool = True) -> Arrays:
    """MNIST (IDX files, plain or .gz): 60,000 + 10,000 images [1, 28, 28]; download: fetch it
    (11 MiB) when it is found nowhere."""
    return _load("mnist", "mnist", path, False, standardize, limit, test_limit, download)


cifar10 = types.SimpleNamespace(load_data=_cifar10_load_data)
mnist = types.SimpleNamespace(load_data=_mnist_load_data)


def image_folder(path: str | os.PathLike, channels: int = 3, height: int = 32,
                 width: int = 32) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A folder with one subfolder per class of PNG/JPEG/BMP images, resized to height x width:
    (x, y, class_names), classes sorted by name."""
    x, y, names = _core.load_image_folder(os.fspath(path), channels, height, width)
    return x, y, names


def to_categorical(y: Any, num_classes: int | None = None) -> np.ndarray:
    """Class indices [N] -> one-hot rows float32 [N, num_classes] (Keras's)."""
    labels = np.asarray(y)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"to_categorical: expected integer class indices [N], got {labels.dtype} {list(labels.shape)}")
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"to_categorical: labels must be in [0, {classes}), got [{labels.min()}, {labels.max()}]")
    return np.eye(classes, dtype=np.float32)[labels]
