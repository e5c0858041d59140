"""The seed's LeNet-5 listing, verbatim but for its import line, runs and learns."""
import numpy as np
import pytest

SEED_LISTING = """
from cnnfromscratch import *

model = Sequential([
  Conv2D(filters=6, kernel_size=5, strides=1, padding='valid', activation='relu'),
  AveragePooling2D(pool_size=2, strides=2),
  Conv2D(filters=16, kernel_size=5, strides=1, padding='valid', activation='relu'),
  AveragePooling2D(pool_size=2, strides=2),
  Flatten(), Dense(120, activation='relu'), Dense(84, activation='relu'), Dense(10, activation='softmax')])
input_shape = [1, 32, 32]
model.compile(optimizer='sgd', loss='cce', learning_rate=0.01, input_shape=input_shape)
model.fit(data.X_train, data.Y_train, epochs=30)
"""


def test_seed_listing_runs_and_learns(data):
    scope = {"data": data}
    exec(SEED_LISTING, scope)
    model = scope["model"]
    loss, accuracy = model.evaluate(data.X_train, data.Y_train)
    # Untrained, the loss is about ln(10) = 2.303 and the accuracy about 0.1.
    assert loss < 0.95 * np.log(10) and accuracy > 0.2, (loss, accuracy, data.source)
    assert model.count_params() == 61706


def test_fit_history_is_kerass(data):
    from cnnfromscratch import AveragePooling2D, Conv2D, Dense, Flatten, Sequential

    model = Sequential([Conv2D(4, 5, activation='relu'), AveragePooling2D(2), Flatten(),
                        Dense(10, activation='softmax')])
    model.compile(optimizer='adam', loss='scce', learning_rate=0.003, input_shape=[1, 32, 32])
    h = model.fit(data.X_train, data.labels, epochs=4, batch_size=50, validation_split=0.2, verbose=0)
    assert list(h.history) == ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert all(len(v) == 4 for v in h.history.values())
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert np.allclose(h.history["lr"], 0.003)
    assert h.epoch == [0, 1, 2, 3]


def test_fit_lr_schedule_and_augmentation(data):
    from cnnfromscratch import Dense, Flatten, Sequential

    model = Sequential([Flatten(), Dense(10, activation='softmax')])
    model.compile(optimizer='sgd', loss='cce', learning_rate=0.1, input_shape=[1, 32, 32])
    x, y = data.X_train[:256], data.labels[:256]
    h = model.fit(x, y, epochs=3, verbose=0, lr_schedule={"kind": "step", "step_epochs": 1, "gamma": 0.5},
                  augment={"flip": "random", "translate": 2})
    assert np.allclose(h.history["lr"], [0.1, 0.05, 0.025])
    h = model.fit(x, y, epochs=2, verbose=0, lr_schedule="cosine")
    assert h.history["lr"][0] > h.history["lr"][1]
    with pytest.raises(ValueError, match=r"fit: augment: unknown option 'flips'"):
        model.fit(x, y, verbose=0, augment={"flips": "random"})
    with pytest.raises(ValueError, match=r"unknown"):
        model.fit(x, y, verbose=0, lr_schedule="sometimes")
