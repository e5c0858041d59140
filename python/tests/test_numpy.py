"""numpy in and out: conversions, weights round trips, shapes."""
import numpy as np
import pytest

from cnnfromscratch import (Activation, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                            GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D, Sequential)


def small_model(seed=42):
    model = Sequential([Conv2D(filters=3, kernel_size=3, padding='same', activation='relu'), MaxPooling2D(2),
                        Flatten(), Dense(5, activation='softmax')])
    model.compile(optimizer='sgd', loss='cce', learning_rate=0.1, input_shape=[2, 8, 8], seed=seed)
    return model


def images(n=6):
    return np.random.default_rng(3).integers(0, 256, (n, 2, 8, 8)).astype(np.uint8)


def test_uint8_float64_and_strided_inputs_match_float32():
    model = small_model()
    raw = images()
    as_float32 = raw.astype(np.float32) * (np.float32(1) / np.float32(255))
    expected = model.predict(as_float32)
    assert expected.dtype == np.float32 and expected.shape == (6, 5)
    assert np.allclose(expected.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(model.predict(raw), expected)
    assert np.array_equal(model.predict(as_float32.astype(np.float64)), expected)
    assert np.array_equal(model.predict(np.asfortranarray(as_float32)), expected)
    assert np.array_equal(model.predict(as_float32[::-1][::-1]), expected)


def test_weights_round_trip_in_layer_order():
    a, b = small_model(seed=1), small_model(seed=2)
    x = images().astype(np.float32) / 255
    assert not np.array_equal(a.predict(x), b.predict(x))
    weights = a.get_weights()
    assert [w.shape for w in weights] == [(3, 2, 3, 3), (3,), (5, 48), (5,)]
    b.set_weights(weights)
    assert np.array_equal(a.predict(x), b.predict(x))
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))
    # get_weights returns copies: changing one does not change the model.
    weights[0][:] = 0
    assert np.array_equal(a.predict(x), b.predict(x))


def test_set_weights_checks_count_and_shapes():
    model = small_model()
    weights = model.get_weights()
    with pytest.raises(ValueError, match=r"has 4 arrays, got 3"):
        model.set_weights(weights[:3])
    weights[2] = np.zeros((5, 47), np.float32)
    with pytest.raises(ValueError, match=r"expected shape \[5, 48\], got \[5, 47\]"):
        model.set_weights(weights)


def test_wrong_shape_names_expected_and_given():
    model = small_model()
    with pytest.raises(ValueError, match=r"predict: x: expected shape \[N, 2, 8, 8\], got \[4, 3, 8, 8\]"):
        model.predict(np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"expected shape \[N, 2, 8, 8\], got \[2, 8, 8\]"):
        model.predict(np.zeros((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"expected a float or uint8 array, got dtype int64"):
        model.predict(np.zeros((1, 2, 8, 8), np.int64))


def test_every_layer_builds_and_counts_params():
    model = Sequential([Conv2D(filters=4, kernel_size=(3, 3), strides=1, padding='same', use_bias=False,
                               kernel_initializer='he_uniform', activation='leaky_relu', alpha=0.1),
                        BatchNormalization(), Dropout(0.25), Activation('relu')])
    model.add(GlobalAveragePooling2D())
    model.add(Dense(3, activation='softmax'))
    model.compile(optimizer='adam', loss='scce', learning_rate=1e-3, input_shape=[2, 6, 6])
    # Conv 4*2*3*3 (no bias) + BN 4 * 4 (gamma, beta, running mean, running variance) + Dense 4*3+3
    assert model.count_params() == 72 + 16 + 15
    assert [type(l).__name__ for l in model.layers] == ["Conv2D", "BatchNormalization", "Dropout", "Activation",
                                                        "GlobalAveragePooling2D", "Dense"]
    x = np.random.default_rng(0).random((8, 2, 6, 6), dtype=np.float32)
    history = model.fit(x, np.arange(8) % 3, epochs=2, batch_size=4, verbose=0)
    assert len(history.history["loss"]) == 2
    assert "Total params: 103" in model.summary_string()
    other = Sequential([GlobalMaxPooling2D(), Dense(2, activation='softmax')])
    other.compile(input_shape=[3, 4, 4])
    assert other.count_params() == 8


def test_numpy_scalars_as_layer_options():
    model = Sequential([Flatten(), Dense(np.int64(3), activation='softmax')])
    model.compile(input_shape=[np.int32(2), 2, 2])
    assert model.count_params() == 8 * 3 + 3


def test_evaluate_per_class():
    model = small_model()
    x = images(20).astype(np.float32) / 255
    y = np.arange(20) % 5
    loss, accuracy, per_class, confusion = model.evaluate(x, y, per_class=True)
    assert (loss, accuracy) == model.evaluate(x, y)
    predicted = model.predict(x).argmax(axis=1)
    assert confusion.shape == (5, 5) and confusion.sum() == 20
    assert np.array_equal(np.diag(confusion), [np.sum((y == c) & (predicted == c)) for c in range(5)])
    assert np.isclose(accuracy, np.mean(predicted == y))
    assert np.allclose(per_class, np.diag(confusion) / 4)


def test_evaluate_with_test_time_augmentation():
    model = small_model()
    x = images(20).astype(np.float32) / 255
    y = np.arange(20) % 5
    plain = model.evaluate(x, y)
    assert model.evaluate(x, y, tta={}) == plain
    flip = model.evaluate(x, y, tta={"flip": True})
    assert flip != plain
    # The views of the mirrored images are the same two: the same loss but for summation order.
    assert np.isclose(model.evaluate(x[..., ::-1], y, tta={"flip": True})[0], flip[0], rtol=1e-6)
    shifted = model.evaluate(x, y, tta={"flip": True, "translate": 1})
    airbench = model.evaluate(x, y, tta={"flip": True, "translate": 1, "shifted_share": 0.5})
    assert shifted != flip and airbench != shifted
    with pytest.raises(ValueError, match="unknown tta key 'rotate'"):
        model.evaluate(x, y, tta={"rotate": 1})
    with pytest.raises(ValueError, match="shifted_share must be in"):
        model.evaluate(x, y, tta={"shifted_share": 0.5})


def test_float32_c_contiguous_inputs_are_read_in_place_and_never_written():
    from cnnfromscratch import _core
    x = (images(16).astype(np.float32) / np.float32(255)).copy()
    assert _core._tensor_data_address(x) == x.ctypes.data  # the tensor is the array's memory
    strided = np.asfortranarray(x)
    assert _core._tensor_data_address(strided) != strided.ctypes.data  # converted once, a copy
    y = np.arange(16) % 5
    before_x, before_y = x.copy(), y.copy()
    model = small_model()
    model.fit(x, y, epochs=2, batch_size=4, validation_split=0.25, verbose=0,
              augment={'flip': 'random', 'translate': 1})
    model.evaluate(x, y)
    model.predict(x)
    assert np.array_equal(x, before_x) and np.array_equal(y, before_y)


def test_precision_policy_keyword_trains_in_bf16_and_keeps_fp32_weights():
    x = images(12).astype(np.float32) / np.float32(255)
    y = np.arange(12) % 5
    models = {}
    for precision in ("fp32", "bf16"):
        model = Sequential([Conv2D(filters=3, kernel_size=3, padding='same', activation='relu'), MaxPooling2D(2),
                            Flatten(), Dense(5, activation='softmax')])
        model.compile(optimizer='sgd', loss='cce', learning_rate=0.1, input_shape=[2, 8, 8], seed=7,
                      precision=precision)
        model.fit(x, y, epochs=2, batch_size=4, verbose=0, shuffle=False)
        models[precision] = model
    fp32, bf16 = (np.concatenate([w.ravel() for w in models[p].get_weights()]) for p in ("fp32", "bf16"))
    assert not np.array_equal(fp32, bf16)  # the products saw rounded operands
    assert np.allclose(fp32, bf16, atol=0.05)
    # Master weights are fp32: most are not bf16 values (their low 16 bits are not all zero).
    assert np.mean((bf16.view(np.uint32) & 0xFFFF) != 0) > 0.9
    with pytest.raises(ValueError, match="fp16"):
        Sequential([Flatten(), Dense(2)]).compile(input_shape=[1, 2, 2], precision='fp16')
