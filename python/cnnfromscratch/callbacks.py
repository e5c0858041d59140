"""Keras-style callbacks: subclass Callback and override any of its hooks."""
from __future__ import annotations

import os
from typing import Any

from . import _core


class Callback:
    """Hooks fit calls (with the GIL held). Set `self.model.stop_training = True` to end
    training after the current epoch."""

    model: Any = None

    def set_model(self, model: Any) -> None:
        self.model = model

    def on_train_begin(self, logs: dict | None = None) -> None: ...
    def on_train_end(self, logs: dict | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None: ...


class _NativeCallback:
    """One of the library's callbacks (run in C++, without the GIL)."""

    _native: Any


class EarlyStopping(_NativeCallback):
    """Stops training when `monitor` ('val_loss', falling back to 'loss' without validation
    data; 'loss', 'accuracy', 'val_accuracy') has not improved by min_delta for `patience`
    epochs; restore_best_weights puts the best epoch's weights back at the end."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 restore_best_weights: bool = False) -> None:
        self._native = _core.early_stopping(monitor, min_delta, patience, restore_best_weights)


class ModelCheckpoint(_NativeCallback):
    """Saves the model after an epoch ("{epoch}" in filepath is the 1-based epoch); with
    save_best_only only when `monitor` improved."""

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", save_best_only: bool = True) -> None:
        self._native = _core.model_checkpoint(os.fspath(filepath), monitor, save_best_only)


class CSVLogger(_NativeCallback):
    """Writes epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds per epoch to `filename`."""

    def __init__(self, filename: str | os.PathLike, append: bool = False) -> None:
        self._native = _core.csv_logger(os.fspath(filename), append)


class WeightAveraging(_NativeCallback):
    """Weight averaging during training, on the model's device (the model files'
    training.weight_averaging): 'ema' keeps avg = decay avg + (1 - decay) w after every step;
    'lookahead' every `every` steps moves the slow weights towards the fast ones by alpha
    (1 - alpha_decay p^alpha_decay_power), p the fraction of fit's steps done, and resets the
    fast ones to them (airbench94: alpha 1, alpha_decay 0.95**5, power 3, every 5). With
    use_average_at_end the average replaces the weights when fit ends."""

    def __init__(self, method: str = "ema", decay: float = 0.999, every: int = 5, alpha: float = 0.5,
                 alpha_decay: float = 0.0, alpha_decay_power: float = 3.0, use_average_at_end: bool = True) -> None:
        self._native = _core.weight_averaging(method, decay, every, alpha, alpha_decay, alpha_decay_power,
                                              use_average_at_end)


class TensorBoard(_NativeCallback):
    """Writes TensorBoard event files into log_dir (a new file per fit, so a resumed run
    appends): per epoch epoch/loss, epoch/accuracy, epoch/val_loss, epoch/val_accuracy,
    epoch/learning_rate and epoch/seconds; with update_freq N (an integer; 'batch' is 1) also
    step/loss, step/accuracy and step/learning_rate every N optimizer steps; the model's summary as text;
    with write_images the first Conv2D's filters after every epoch. Tags: docs/FORMATS.md.
    Raises ValueError when the library was built without protobuf."""

    def __init__(self, log_dir: str | os.PathLike = "logs", update_freq: int | str = "epoch",
                 write_images: bool = False) -> None:
        if update_freq == "epoch":
            every = 0
        elif update_freq == "batch":
            every = 1
        elif isinstance(update_freq, int) and not isinstance(update_freq, bool) and update_freq > 0:
            every = update_freq
        else:
            raise ValueError("TensorBoard: update_freq must be 'epoch', 'batch' or a positive number of steps, "
                             f"got {update_freq!r}")
        self._native = _core.tensorboard(os.fspath(log_dir), every, write_images)


class _Dispatcher:
    """What the C++ side calls: forwards each hook to every Python callback that has it, in
    list order. The library's callbacks are left out (fit hands them to C++ itself)."""

    def __init__(self, model: Any, callbacks: list[Any]) -> None:
        self.model = model
        self.callbacks = [cb for cb in callbacks if not isinstance(cb, _NativeCallback)]
        for cb in self.callbacks:
            if hasattr(cb, "set_model"):
                cb.set_model(model)
            else:
                cb.model = model
        # Per-batch logs cost a device synchronisation per batch: only when asked for.
        self.wants_batch_logs = any(_overrides(cb, "on_train_batch_end") for cb in self.callbacks)

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(*args)

    def on_train_begin(self) -> None:
        self._call("on_train_begin", {})

    def on_train_end(self) -> None:
        self._call("on_train_end", {})

    def on_epoch_begin(self, epoch: int) -> None:
        self._call("on_epoch_begin", epoch, {})

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self._call("on_epoch_end", epoch, logs)

    def on_train_batch_end(self, batch: int, logs: dict) -> None:
        self._call("on_train_batch_end", batch, logs)


def _overrides(cb: Any, hook: str) -> bool:
    fn = getattr(type(cb), hook, None)
    return fn is not None and fn is not getattr(Callback, hook, None)
