"""Python and C++ read and write the same model files: a model saved in Python loads in
C++ (load_model runs cnn::Sequential::load; the `cnn` CLI evaluates it) with bit-identical
predictions, and a model the CLI trains and saves loads in Python."""
import re
import subprocess

import numpy as np
import pytest

from conftest import CHECKOUT, CIFAR_RECORD, write_fake_cifar10
from cnnfromscratch import AveragePooling2D, Conv2D, Dense, Flatten, Sequential, _core, load_model

TEST_IMAGES = 200


@pytest.fixture(scope="module")
def fake_cifar10(tmp_path_factory):
    """A CIFAR-10 folder of random bytes and its first test images' bytes [N, 3, 32, 32], labels."""
    d = tmp_path_factory.mktemp("cifar-10-batches-bin")
    write_fake_cifar10(d, seed=7)
    raw = np.fromfile(d / "test_batch.bin", dtype=np.uint8, count=TEST_IMAGES * CIFAR_RECORD)
    raw = raw.reshape(TEST_IMAGES, CIFAR_RECORD)
    return d, raw[:, 1:].reshape(TEST_IMAGES, 3, 32, 32), raw[:, 0].astype(np.int64)


def rgb_lenet():
    model = Sequential([Conv2D(filters=6, kernel_size=5, activation='relu'), AveragePooling2D(pool_size=2),
                        Conv2D(filters=16, kernel_size=5, activation='relu'), AveragePooling2D(pool_size=2),
                        Flatten(), Dense(120, activation='relu'), Dense(84, activation='relu'),
                        Dense(10, activation='softmax')])
    model.compile(optimizer='adam', loss='cce', learning_rate=1e-3, input_shape=[3, 32, 32], seed=5)
    return model


def cli_eval(cnn_cli, model_path, data_dir):
    out = subprocess.run([cnn_cli, "eval", "--model", str(model_path), "--data", str(data_dir),
                          "--limit", str(TEST_IMAGES)], check=True, capture_output=True, text=True).stdout
    loss, accuracy = map(float, re.search(r"Test: loss (\S+), accuracy (\S+) \(", out).groups())
    rows = out.split("columns: predicted):\n", 1)[1].splitlines()[1:11]
    confusion = np.array([[int(v) for v in row.split()[1:]] for row in rows])
    return loss, accuracy, confusion


def confusion_of(probabilities, labels):
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (labels, probabilities.argmax(axis=1)), 1)
    return confusion


def test_saved_in_python_loads_in_cpp_bit_identical(tmp_path, fake_cifar10):
    _, x, y = fake_cifar10
    model = rgb_lenet()
    model.fit(x, y, epochs=1, batch_size=50, verbose=0)
    expected = model.predict(x)
    path = tmp_path / "lenet_rgb.safetensors"
    model.save(path)
    loaded = load_model(path)
    assert np.array_equal(loaded.predict(x), expected)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), model.get_weights()))
    assert loaded.summary_string() == model.summary_string()
    assert loaded.count_params() == model.count_params() == 62006


def test_saved_in_python_evaluates_alike_in_the_cli(tmp_path, fake_cifar10, cnn_cli):
    data_dir, x, y = fake_cifar10
    model = rgb_lenet()
    model.fit(x, y, epochs=2, batch_size=20, verbose=0)
    path = tmp_path / "from_python.safetensors"
    model.save(path)
    loss, accuracy, confusion = cli_eval(cnn_cli, path, data_dir)
    py_loss, py_accuracy = model.evaluate(x, y)
    assert f"{py_loss:.4f}" == f"{loss:.4f}" and f"{py_accuracy:.4f}" == f"{accuracy:.4f}"
    assert np.array_equal(confusion, confusion_of(model.predict(x), y))


def test_trained_by_the_cli_loads_in_python(tmp_path, fake_cifar10, cnn_cli):
    data_dir, x, y = fake_cifar10
    path = tmp_path / "from_cli.safetensors"
    subprocess.run([cnn_cli, "train", "--model", str(CHECKOUT / "models" / "lenet5.json"), "--data", str(data_dir),
                    "--epochs", "1", "--limit", "300", "--test-limit", str(TEST_IMAGES), "--verbose", "0",
                    "--save", str(path)], check=True, capture_output=True)
    model = load_model(path)
    assert [type(l).__name__ for l in model.layers] == ["Conv2D", "AveragePooling2D", "Conv2D", "AveragePooling2D",
                                                        "Flatten", "Dense", "Dense", "Dense"]
    loss, accuracy, confusion = cli_eval(cnn_cli, path, data_dir)
    py_loss, py_accuracy = model.evaluate(x, y)
    assert f"{py_loss:.4f}" == f"{loss:.4f}" and f"{py_accuracy:.4f}" == f"{accuracy:.4f}"
    assert np.array_equal(confusion, confusion_of(model.predict(x), y))


needs_protobuf = pytest.mark.skipif(not _core.built_with_protobuf(),
                                    reason="the package was built without protobuf (no ONNX exporter)")


@needs_protobuf
def test_export_onnx_writes_what_the_cli_writes(tmp_path, cnn_cli):
    """model.export_onnx runs the library's exporter: the same bytes as `cnn export` of the saved
    model (whose ONNX name is the file's stem). onnxruntime checks the export itself in the
    C++ build's interop.onnx test."""
    model = rgb_lenet()
    saved = tmp_path / "lenet_rgb.safetensors"
    model.save(saved)
    for opset, batch, flag in [(17, None, "dynamic"), (20, 7, "7")]:
        ours, theirs = tmp_path / f"python_{flag}.onnx", tmp_path / f"cli_{flag}.onnx"
        model.export_onnx(ours, opset=opset, batch=batch, name="lenet_rgb")
        subprocess.run([cnn_cli, "export", "--model", str(saved), "--onnx", str(theirs), "--opset", str(opset),
                        "--batch", flag], check=True, capture_output=True)
        assert ours.read_bytes() == theirs.read_bytes()
        assert b"probabilities" in ours.read_bytes()


@needs_protobuf
def test_export_onnx_refuses_bad_options(tmp_path):
    model = rgb_lenet()
    for kwargs in [{"opset": 12}, {"opset": 23}, {"opset": 17.0}, {"batch": 0}, {"batch": True}]:
        with pytest.raises(ValueError, match="export_onnx"):
            model.export_onnx(tmp_path / "x.onnx", **kwargs)
    with pytest.raises(ValueError, match="compile the model first"):
        Sequential([Flatten(), Dense(2)]).export_onnx(tmp_path / "x.onnx")
    with pytest.raises(OSError, match="no_such_dir"):
        model.export_onnx(tmp_path / "no_such_dir" / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
