"""cnnfromscratch.datasets: the C++ readers' arrays, Keras's (x_train, y_train), (x_test, y_test)."""
import gzip
import hashlib
import tarfile

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


@pytest.fixture(scope="module")
def fake_cifar10_archive(tmp_path_factory):
    """A tar.gz laid out as the official one, of random records; with its md5 sums (made once:
    120,000 random records take a while to compress)."""
    tmp_path = tmp_path_factory.mktemp("fake_cifar10")
    source = tmp_path / "source" / "cifar-10-batches-bin"
    source.mkdir(parents=True)
    write_fake_cifar10(source, seed=5)
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-bin")
    file_md5s = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in source.iterdir()}
    return archive, hashlib.md5(archive.read_bytes()).hexdigest(), file_md5s


def test_cifar10_download_checks_the_md5_sums_and_unpacks_where_the_cli_looks(tmp_path, fake_cifar10_archive):
    archive, archive_md5, file_md5s = fake_cifar10_archive
    root = tmp_path / "data"
    target = datasets._download_cifar10(root, archive.as_uri(), archive_md5, file_md5s)
    assert target == root / "cifar-10-batches-bin"
    assert sorted(p.name for p in target.iterdir()) == sorted(file_md5s)
    (x, y), _ = datasets.cifar10.load_data(path=target, limit=4, test_limit=1)
    assert x.shape == (4, 3, 32, 32) and y.shape == (4,)
    # Again: the archive already there is reused, not fetched (the URL now points nowhere).
    assert datasets._download_cifar10(root, (tmp_path / "gone.tar.gz").as_uri(), archive_md5, file_md5s) == target


def test_a_download_with_the_wrong_md5_is_an_os_error_and_leaves_no_archive(tmp_path, fake_cifar10_archive):
    archive, _, file_md5s = fake_cifar10_archive
    root = tmp_path / "data"
    with pytest.raises(OSError, match="expected 0123456789abcdef0123456789abcdef"):
        datasets._download_cifar10(root, archive.as_uri(), "0123456789abcdef0123456789abcdef", file_md5s)
    assert not (root / "cifar-10-binary.tar.gz").exists() and not (root / "cifar-10-binary.tar.gz.part").exists()
    with pytest.raises(OSError, match="download failed"):
        datasets._download_cifar10(root, (tmp_path / "missing.tar.gz").as_uri(), "0" * 32, file_md5s)


def test_mnist_download_checks_the_uncompressed_md5_sums(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    rng = np.random.default_rng(3)
    md5s = {}
    for name in datasets.MNIST_CONTENT_MD5S:
        content = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        (mirror / (name + ".gz")).write_bytes(gzip.compress(content))
        md5s[name] = hashlib.md5(content).hexdigest()
    target = datasets._download_mnist(tmp_path / "data", mirror.as_uri(), md5s)
    assert sorted(p.name for p in target.iterdir()) == sorted(n + ".gz" for n in md5s)
    md5s["t10k-labels-idx1-ubyte"] = "f" * 32
    with pytest.raises(OSError, match="t10k-labels-idx1-ubyte.gz has md5"):
        datasets._download_mnist(tmp_path / "data2", mirror.as_uri(), md5s)


def test_a_data_set_found_nowhere_downloads_into_cnn_data_unless_download_is_false(tmp_path, monkeypatch,
                                                                                   fake_cifar10_archive):
    def not_found(name, explicit_dir):
        if explicit_dir:
            return explicit_dir
        raise ValueError(f"data set '{name}' not found")
    monkeypatch.setattr(datasets._core, "find_data_dir", not_found)
    monkeypatch.setenv("CNN_DATA", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="data set 'mnist' not found"):
        datasets.mnist.load_data(download=False)
    archive, archive_md5, file_md5s = fake_cifar10_archive
    fetched = []
    monkeypatch.setitem(datasets._DOWNLOADERS, "cifar-10-batches-bin", lambda root: fetched.append(root) or
                        datasets._download_cifar10(root, archive.as_uri(), archive_md5, file_md5s))
    (x, _), (x_test, _) = datasets.cifar10.load_data(limit=3, test_limit=2)
    assert fetched == [tmp_path / "cache"] and x.shape == (3, 3, 32, 32) and x_test.shape == (2, 3, 32, 32)
