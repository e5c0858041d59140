"""Python callbacks with Keras's hook names, stop_training, and Ctrl-C during fit."""
import os
import signal
import struct
import threading

import numpy as np
import pytest

from cnnfromscratch import Callback, Conv2D, Dense, Flatten, Sequential, WeightAveraging, _core


def tiny_model():
    model = Sequential([Flatten(), Dense(16, activation='relu'), Dense(4, activation='softmax')])
    model.compile(optimizer='adam', loss='scce', learning_rate=1e-2, input_shape=[1, 6, 6])
    return model


def tiny_data(n=64):
    rng = np.random.default_rng(1)
    return rng.random((n, 1, 6, 6), dtype=np.float32), rng.integers(0, 4, n)


class Recorder(Callback):
    def __init__(self, stop_after_epoch=None):
        self.events = []
        self.stop_after_epoch = stop_after_epoch

    def on_train_begin(self, logs=None):
        self.events.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch, round(logs["loss"], 6) > 0))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, set(logs)))
        if epoch == self.stop_after_epoch:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.events.append("train_end")


def test_hooks_are_called_in_kerass_order():
    model = tiny_model()
    x, y = tiny_data()
    recorder = Recorder()
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[recorder])
    keys = {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert recorder.model is model
    assert recorder.events == ["train_begin",
                               ("epoch_begin", 0), ("batch_end", 0, True), ("batch_end", 1, True), ("epoch_end", 0, keys),
                               ("epoch_begin", 1), ("batch_end", 0, True), ("batch_end", 1, True), ("epoch_end", 1, keys),
                               "train_end"]


def test_stop_training_from_a_callback_ends_fit():
    model = tiny_model()
    x, y = tiny_data()
    history = model.fit(x, y, epochs=10, verbose=0, callbacks=[Recorder(stop_after_epoch=1)])
    assert len(history.history["loss"]) == 2


def test_a_callbacks_exception_propagates():
    class Failing(Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyError("from the callback")

    model = tiny_model()
    x, y = tiny_data()
    with pytest.raises(KeyError, match="from the callback"):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[Failing()])
    assert np.isfinite(model.predict(x)).all()


def test_ctrl_c_during_fit_raises_keyboard_interrupt_and_leaves_a_usable_model():
    model = tiny_model()
    x, y = tiny_data(4096)
    started = threading.Event()

    class Started(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            started.set()

    def interrupt():
        started.wait(30)
        os.kill(os.getpid(), signal.SIGINT)

    # Python's own Ctrl-C handler, also where the runner started Python with SIGINT ignored
    # (a background job); fit is bounded should the signal never arrive.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    sender = threading.Thread(target=interrupt)
    sender.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.fit(x, y, epochs=300, batch_size=8, verbose=0, callbacks=[Started()])
    finally:
        sender.join()
        signal.signal(signal.SIGINT, previous)
    assert np.isfinite(model.predict(x)).all()
    history = model.fit(x[:64], y[:64], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_the_librarys_callbacks(tmp_path):
    from cnnfromscratch import CSVLogger, EarlyStopping, ModelCheckpoint, load_model, plot_training_curves

    model = tiny_model()
    x, y = tiny_data()
    recorder = Recorder()
    callbacks = [EarlyStopping(monitor="loss", min_delta=100.0, patience=2), CSVLogger(tmp_path / "log.csv"),
                 ModelCheckpoint(tmp_path / "epoch{epoch}.safetensors", monitor="loss", save_best_only=False),
                 recorder]
    history = model.fit(x, y, epochs=20, verbose=0, callbacks=callbacks)
    # No epoch improves the loss by 100: the first sets the best; the library stops once more
    # than `patience` epochs in a row have not improved.
    assert len(history.history["loss"]) == 4
    assert [e[1] for e in recorder.events if e[0] == "epoch_end"] == [0, 1, 2, 3]
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,loss,accuracy") and len(lines) == 5
    saved = load_model(tmp_path / "epoch4.safetensors")
    assert np.array_equal(saved.predict(x), model.predict(x))
    plot_training_curves(tmp_path / "log.csv", tmp_path / "curves.png", "tiny")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(OSError, match="missing.csv"):
        plot_training_curves(tmp_path / "missing.csv", tmp_path / "never.png", "")


def test_the_gil_is_released_while_fit_computes():
    # Steps of a few milliseconds each (a convolution on 32x32 images at batch 256), so the
    # counting thread, once the OS schedules it, finds the GIL free while a step computes.
    model = Sequential([Conv2D(8, 3, activation='relu'), Flatten(), Dense(4, activation='softmax')])
    model.compile(optimizer='adam', loss='scce', learning_rate=1e-2, input_shape=[3, 32, 32])
    rng = np.random.default_rng(2)
    x, y = rng.random((1024, 3, 32, 32), dtype=np.float32), rng.integers(0, 4, 1024)
    ticks = 0
    done = threading.Event()

    def count():
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    counter = threading.Thread(target=count)
    counter.start()
    counts = []
    try:
        # Holding the GIL through fit would leave the counter at (nearly) nothing in every
        # attempt; a loaded machine may not schedule the counter during one short fit, so
        # up to three.
        for _ in range(3):
            before = ticks
            model.fit(x, y, epochs=1, batch_size=256, verbose=0)
            counts.append(ticks - before)
            if counts[-1] > 10000:
                break
    finally:
        done.set()
        counter.join()
    assert max(counts) > 10000, counts


def test_validation_data_and_initial_epoch():
    model = tiny_model()
    x, y = tiny_data()
    history = model.fit(x[:48], y[:48], epochs=3, initial_epoch=1, validation_data=(x[48:], y[48:]), verbose=0)
    assert history.epoch == [1, 2]
    assert len(history.history["val_loss"]) == 2
    loss, accuracy = model.evaluate(x[48:], y[48:])
    assert np.isclose(history.history["val_loss"][-1], loss) and np.isclose(history.history["val_accuracy"][-1],
                                                                            accuracy)


def test_fractional_epochs_and_drop_last():
    x, y = tiny_data(36)  # batch 8: 4 whole batches and 4 rows
    for drop_last, batches in ((False, [5, 5]), (True, [4, 4])):
        recorder = Recorder()
        history = tiny_model().fit(x, y, epochs=1.9, batch_size=8, drop_last=drop_last, callbacks=[recorder],
                                   verbose=0)
        assert history.epoch == [0, 1]
        counts = []  # batches per epoch
        for e in recorder.events:
            if e[0] == "epoch_begin":
                counts.append(0)
            elif e[0] == "batch_end":
                counts[-1] += 1
        # ceil(1.9 x 5) = 10 steps, 5 + 5; with drop_last ceil(1.9 x 4) = 8, 4 + 4
        assert counts == batches, (drop_last, counts)
    with pytest.raises(Exception, match="fit: epochs must be a number"):
        tiny_model().fit(x, y, epochs=float("nan"), verbose=0)


def test_weight_averaging():
    x, y = tiny_data()

    def trained(callbacks):
        model = tiny_model()
        model.fit(x, y, epochs=2, batch_size=16, callbacks=callbacks, verbose=0)
        return np.concatenate([w.ravel() for w in model.get_weights()])

    plain = trained([])
    # An EMA with decay 0 is the weights themselves; with decay 0.9 the average is not.
    assert np.array_equal(trained([WeightAveraging("ema", decay=0.0)]), plain)
    assert not np.allclose(trained([WeightAveraging("ema", decay=0.9)]), plain)
    assert not np.allclose(trained([WeightAveraging("lookahead", every=2, alpha=0.5, alpha_decay=0.77)]), plain)
    with pytest.raises(Exception, match="weight_averaging: decay must be in"):
        WeightAveraging("ema", decay=1.5)
    with pytest.raises(Exception, match="sma"):
        WeightAveraging("sma")


def _tfrecords(path):
    """The data of each TFRecord in an event file (length-prefixed; the CRCs are the C++ tests')."""
    raw, records, at = path.read_bytes(), [], 0
    while at < len(raw):
        (length,) = struct.unpack_from("<Q", raw, at)
        records.append(raw[at + 12:at + 12 + length])
        at += 12 + length + 4
    assert at == len(raw)
    return records


needs_protobuf = pytest.mark.skipif(not _core.built_with_protobuf(),
                                    reason="the package was built without protobuf (no TensorBoard writer)")


@needs_protobuf
def test_tensorboard_writes_an_event_file_per_fit(tmp_path):
    from cnnfromscratch import TensorBoard
    model = tiny_model()
    x, y = tiny_data(64)
    # 64 rows, batch 16, no validation: 4 steps an epoch, 8 in all, step scalars at 2, 4, 6, 8.
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[TensorBoard(tmp_path, update_freq=2)])
    files = sorted(tmp_path.glob("events.out.tfevents.*"))
    assert len(files) == 1
    records = _tfrecords(files[0])
    assert b"brain.Event:2" in records[0]
    assert b"model/summary" in records[1]
    tags = [tag for r in records[2:] for tag in
            (b"step/loss", b"step/accuracy", b"step/learning_rate", b"epoch/loss", b"epoch/accuracy",
             b"epoch/learning_rate", b"epoch/seconds", b"epoch/val_loss") if tag in r]
    assert tags.count(b"step/loss") == 4 and tags.count(b"step/learning_rate") == 4
    assert tags.count(b"epoch/loss") == 2 and tags.count(b"epoch/seconds") == 2
    assert b"epoch/val_loss" not in tags  # no validation data
    assert len(records) == 2 + 4 * 3 + 2 * 4
    first = files[0].read_bytes()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[TensorBoard(tmp_path)])
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2  # appended as a new file
    assert files[0].read_bytes() == first


@needs_protobuf
def test_tensorboard_checks_update_freq(tmp_path):
    from cnnfromscratch import TensorBoard
    TensorBoard(tmp_path, update_freq="batch")
    for bad in (0, -3, "step", 1.5, True):
        with pytest.raises(ValueError, match="update_freq"):
            TensorBoard(tmp_path, update_freq=bad)
