"""Data sets in Keras's convention: (x_train, y_train), (x_test, y_test) as numpy arrays in the
library's layout (float32 [N, C, H, W] in [0, 1], int64 class indices), read by the C++
readers from the places the CLI searches: `path`, $CNN_DATA/<name>, ./data/<name>, then
../shared/data/<name> beside the checkout the package was built from."""
from __future__ import annotations

import os
import types
from typing import Any

import numpy as np

from . import _core

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _load(kind: str, name: str, path: str | os.PathLike | None, grayscale: bool, standardize: bool,
          limit: int | None, test_limit: int | None) -> Arrays:
    directory = _core.find_data_dir(name, os.fspath(path) if path is not None else "")
    train, test = _core.load_dataset(kind, directory, grayscale, standardize, limit or 0, test_limit or 0)
    return (train[0], train[1]), (test[0], test[1])


def _cifar10_load_data(path: str | os.PathLike | None = None, grayscale: bool = False, standardize: bool = False,
                       limit: int | None = None, test_limit: int | None = None) -> Arrays:
    """CIFAR-10 (binary version): 50,000 + 10,000 images [3, 32, 32] ([1, 32, 32] with grayscale:
    BT.601 luma); standardize: per channel with the training images' statistics; limit /
    test_limit: only the first N images."""
    return _load("cifar10", "cifar-10-batches-bin", path, grayscale, standardize, limit, test_limit)


def _mnist_load_data(path: str | os.PathLike | None = None, standardize: bool = False, limit: int | None = None,
                     test_limit: int | None = None) -> Arrays:
    """MNIST (IDX files, plain or .gz): 60,000 + 10,000 images [1, 28, 28]."""
    return _load("mnist", "mnist", path, False, standardize, limit, test_limit)


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
