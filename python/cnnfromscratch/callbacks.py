"""Keras-style callbacks: subclass Callback and override any of its hooks."""
from __future__ import annotations

from typing import Any


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


class _Dispatcher:
    """What the C++ side calls: forwards each hook to every callback that has it and reports
    whether the model asked to stop."""

    def __init__(self, model: Any, callbacks: list[Any]) -> None:
        self.model = model
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if hasattr(cb, "set_model"):
                cb.set_model(model)
            else:
                cb.model = model
        # Per-batch logs cost a device synchronisation per batch: only when asked for.
        self.wants_batch_logs = any(_overrides(cb, "on_train_batch_end") for cb in self.callbacks)

    def _call(self, hook: str, *args: Any) -> bool:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(*args)
        return bool(self.model.stop_training)

    def on_train_begin(self) -> bool:
        return self._call("on_train_begin", {})

    def on_train_end(self) -> bool:
        return self._call("on_train_end", {})

    def on_epoch_begin(self, epoch: int) -> bool:
        return self._call("on_epoch_begin", epoch, {})

    def on_epoch_end(self, epoch: int, logs: dict) -> bool:
        return self._call("on_epoch_end", epoch, logs)

    def on_train_batch_end(self, batch: int, logs: dict) -> bool:
        return self._call("on_train_batch_end", batch, logs)


def _overrides(cb: Any, hook: str) -> bool:
    fn = getattr(type(cb), hook, None)
    return fn is not None and fn is not getattr(Callback, hook, None)
