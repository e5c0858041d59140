"""The package on a GPU (skipped without one, as the C++ GPU tests are): the same model trained
on the CPU and on CUDA from the same weights agrees, moving between devices keeps the weights,
and a model saved from the GPU loads on the CPU with the same predictions."""
import numpy as np
import pytest

import cnnfromscratch
from cnnfromscratch import Conv2D, Dense, Flatten, MaxPooling2D, Sequential, load_model

pytestmark = pytest.mark.skipif(not cnnfromscratch.cuda_available(), reason="no usable GPU (or a CPU-only build)")


def twins(device):
    def make():
        model = Sequential([Conv2D(filters=4, kernel_size=3, padding='same', activation='relu'), MaxPooling2D(2),
                            Flatten(), Dense(10, activation='softmax')])
        model.compile(optimizer='sgd', loss='scce', learning_rate=0.05, momentum=0.9, input_shape=[3, 16, 16],
                      seed=3)
        return model
    cpu, gpu = make(), make()
    gpu.set_weights(cpu.get_weights())
    gpu.to(device)
    return cpu, gpu


def data(n=96):
    rng = np.random.default_rng(2)
    return rng.random((n, 3, 16, 16), dtype=np.float32), rng.integers(0, 10, n)


# 1e-4 relative, the C++ suite's end-to-end bound (tests/gpu/test_gpu_model.cpp): a few epochs
# compound float rounding that differs between the devices' summation orders.
def test_fit_on_cuda_agrees_with_the_cpu():
    cpu, gpu = twins('cuda')
    assert gpu.device == 'cuda'
    x, y = data()
    h_cpu = cpu.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0).history
    h_gpu = gpu.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0).history
    np.testing.assert_allclose(h_gpu['loss'], h_cpu['loss'], rtol=1e-4)
    np.testing.assert_allclose(gpu.predict(x), cpu.predict(x), rtol=1e-4, atol=1e-6)


def test_moving_between_devices_and_saving_from_the_gpu_keep_the_model(tmp_path):
    cpu, gpu = twins('cuda')
    x, _ = data(8)
    expected = cpu.predict(x)
    gpu.to('cpu')
    assert gpu.device == 'cpu'
    assert np.array_equal(gpu.predict(x), expected)  # the same weights, back on the CPU
    gpu.to('cuda')
    path = tmp_path / "from_gpu.safetensors"
    gpu.save(path)
    assert np.array_equal(load_model(path).predict(x), expected)
