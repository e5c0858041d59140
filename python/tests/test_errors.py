"""cnn::Error from C++ becomes the Python exception its context calls for, with its message."""
import numpy as np
import pytest

import cnnfromscratch
from cnnfromscratch import Conv2D, Dense, Flatten, Sequential, load_model


def test_bad_arguments_are_value_errors_with_the_librarys_message():
    with pytest.raises(ValueError, match=r"^unknown padding 'bogus'; valid paddings: valid, same$"):
        Sequential([Conv2D(filters=2, kernel_size=3, padding='bogus')])
    model = Sequential([Flatten(), Dense(3, activation='softmax')])
    with pytest.raises(ValueError, match=r"^compile: unknown optimizer 'sgdd'"):
        model.compile(optimizer='sgdd', input_shape=[4])
    model.compile(input_shape=[4])
    with pytest.raises(ValueError, match=r"^fit: y has 2 rows but x has 3$"):
        model.fit(np.zeros((3, 4), np.float32), np.zeros(2, np.int64), verbose=0)
    with pytest.raises(ValueError, match=r"^fit: batch_size must be positive, got 0$"):
        model.fit(np.zeros((3, 4), np.float32), np.zeros(3, np.int64), batch_size=0, verbose=0)


def test_file_problems_are_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.safetensors")
    model = Sequential([Flatten(), Dense(3, activation='softmax')])
    model.compile(input_shape=[4])
    with pytest.raises(OSError, match=r"^cannot save '.*/no/such/dir/m\.safetensors'"):
        model.save(tmp_path / "no" / "such" / "dir" / "m.safetensors")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{oops}")
    with pytest.raises(OSError, match=str(damaged)):
        load_model(damaged)


@pytest.mark.skipif(cnnfromscratch.cuda_available(), reason="a usable GPU: moving to CUDA succeeds")
def test_unusable_cuda_is_a_runtime_error():
    model = Sequential([Flatten(), Dense(3, activation='softmax')])
    model.compile(input_shape=[4])
    with pytest.raises(RuntimeError, match=r"^cannot use device cuda: "):
        model.to('cuda')
    assert model.device == 'cpu'


def test_out_of_memory_is_a_memory_error():
    model = Sequential([Flatten(), Dense(2 ** 30, activation='softmax')])
    with pytest.raises(MemoryError):
        model.compile(input_shape=[1, 20, 20])


@pytest.mark.skipif(cnnfromscratch.cuda_available(), reason="a usable GPU: compiling for CUDA succeeds")
def test_compiling_for_an_unusable_gpu_is_a_runtime_error():
    model = Sequential([Flatten(), Dense(3, activation='softmax')])
    with pytest.raises(RuntimeError, match=r"cannot use device cuda: "):
        model.compile(input_shape=[4], device='cuda')


def test_add_takes_layers_only():
    with pytest.raises(ValueError, match=r"Sequential.add: expected a layer, got str"):
        Sequential(["Dense"])
