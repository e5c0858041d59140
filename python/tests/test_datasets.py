"""cnnfromscratch.datasets: the C++ readers' arrays, Keras's (x_train, y_train), (x_test, y_test)."""
import numpy as np
import pytest

from conftest import CIFAR_RECORD, cifar10_dir, read_cifar10_gray, write_fake_cifar10
from cnnfromscratch import datasets, to_categorical


def test_cifar10_load_data_reads_the_librarys_layout(tmp_path):
    write_fake_cifar10(tmp_path, seed=11)
    (x, y), (x_test, y_test) = datasets.cifar10.load_data(path=tmp_path, limit=30, test_limit=20)
    assert x.dtype == np.float32 and x.shape == (30, 3, 32, 32) and x_test.shape == (20, 3, 32, 32)
    assert y.dtype == np.int64 and y.shape == (30,) and y_test.shape == (20,)
    raw = np.fromfile(tmp_path / "data_batch_1.bin", np.uint8, count=30 * CIFAR_RECORD).reshape(30, CIFAR_RECORD)
    assert np.array_equal(y, raw[:, 0])
    assert np.array_equal(x, raw[:, 1:].reshape(30, 3, 32, 32).astype(np.float32) * (np.float32(1) / np.float32(255)))
    (gray, _), _ = datasets.cifar10.load_data(path=tmp_path, grayscale=True, limit=30, test_limit=1)
    assert np.allclose(gray, read_cifar10_gray(tmp_path / "data_batch_1.bin", 30)[0], atol=1e-6)
    (standardized, _), _ = datasets.cifar10.load_data(path=tmp_path, standardize=True, limit=30, test_limit=1)
    assert np.allclose(standardized.mean(axis=(0, 2, 3)), 0, atol=1e-4)


def test_a_missing_data_set_is_a_value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        datasets.mnist.load_data(path=tmp_path / "nowhere")


@pytest.mark.skipif(cifar10_dir() is None, reason="no real CIFAR-10 ($CNN_DATA or ../shared/data)")
def test_real_cifar10_subset():
    (x, y), (x_test, y_test) = datasets.cifar10.load_data(path=cifar10_dir(), limit=100, test_limit=100)
    assert x.shape == (100, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
    assert set(np.unique(y)) <= set(range(10)) and len(np.unique(y_test)) > 5


def test_to_categorical():
    assert np.array_equal(to_categorical(np.array([2, 0]), 3), np.array([[0, 0, 1], [1, 0, 0]], np.float32))
    assert to_categorical(np.array([4, 1])).shape == (2, 5)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\), got \[0, 3\]"):
        to_categorical(np.array([0, 3]), 3)
