"""Shared fixtures: small data the tests make, or a small subset of the real CIFAR-10 when
$CNN_DATA or <checkout>/../shared/data holds it; the `cnn` CLI when one is built."""
from __future__ import annotations

import os
import shutil
import types
from pathlib import Path

import numpy as np
import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
CIFAR_RECORD = 1 + 3 * 32 * 32


def cifar10_dir() -> Path | None:
    roots = [os.environ.get("CNN_DATA"), CHECKOUT.parent / "shared" / "data"]
    for root in filter(None, roots):
        d = Path(root) / "cifar-10-batches-bin"
        if (d / "data_batch_1.bin").is_file():
            return d
    return None


def read_cifar10_gray(path: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` records as the library's grayscale reader makes them: float32
    [N, 1, 32, 32] luma in [0, 1], integer labels."""
    raw = np.fromfile(path, dtype=np.uint8, count=count * CIFAR_RECORD).reshape(count, CIFAR_RECORD)
    rgb = raw[:, 1:].reshape(count, 3, 32, 32).astype(np.float32)
    luma = (np.float32(0.299) * rgb[:, 0] + np.float32(0.587) * rgb[:, 1] + np.float32(0.114) * rgb[:, 2])
    return (luma * (np.float32(1) / np.float32(255)))[:, None], raw[:, 0].astype(np.int64)


def write_fake_cifar10(directory: Path, seed: int) -> None:
    """A CIFAR-10 binary folder of random bytes (the readers want 10,000 records a file)."""
    rng = np.random.default_rng(seed)
    for name in ("data_batch_1.bin", "test_batch.bin"):
        records = rng.integers(0, 256, (10000, CIFAR_RECORD), dtype=np.uint8)
        records[:, 0] %= 10
        records.tofile(directory / name)


def synthetic_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale 32x32 images whose class (0-9) is where a bright 8x8 square sits, over noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.random((n, 1, 32, 32), dtype=np.float32) * np.float32(0.3)
    for i, label in enumerate(y):
        r, c = divmod(int(label), 5)
        x[i, 0, 4 + 14 * r: 12 + 14 * r, 1 + 6 * c: 9 + 6 * c] += np.float32(0.7)
    return x, y


@pytest.fixture(scope="session")
def data() -> types.SimpleNamespace:
    """The seed's `data`: X_train [N, 1, 32, 32] float32, Y_train one-hot [N, 10]."""
    d = cifar10_dir()
    if d is not None:
        x, y = read_cifar10_gray(d / "data_batch_1.bin", 2000)
        source = f"CIFAR-10 {d}"
    else:
        x, y = synthetic_images(2000)
        source = "synthetic"
    return types.SimpleNamespace(X_train=x, Y_train=np.eye(10, dtype=np.float32)[y], labels=y, source=source)


@pytest.fixture(scope="session")
def cnn_cli() -> str:
    """The `cnn` command: $CNN_CLI (which must exist when set), else build/ci-cpu or build/dev."""
    if os.environ.get("CNN_CLI"):
        path = os.environ["CNN_CLI"]
        assert os.access(path, os.X_OK), f"CNN_CLI={path} is not an executable"
        return path
    for candidate in (CHECKOUT / "build" / "ci-cpu" / "cnn", CHECKOUT / "build" / "dev" / "cnn"):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("cnn")
    if found is None:
        pytest.skip("no `cnn` CLI built (set CNN_CLI)")
    return found
