"""Sequential with Keras's compile / fit / evaluate / predict, on the C++ library."""
from __future__ import annotations

import json
import numbers
import os
from typing import Any, Iterable, Sequence

import numpy as np

from . import _core
from .callbacks import _Dispatcher, _NativeCallback
from .layers import Layer


class History:
    """What fit returns: .history maps loss, accuracy, val_loss, val_accuracy and lr to one
    value per epoch (validation values only with validation data), as Keras's."""

    def __init__(self, history: dict[str, list[float]], epochs: list[int]) -> None:
        self.history = history
        self.epoch = epochs

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


def _images(x: Any, expected: Sequence[int] | None, what: str) -> np.ndarray:
    """float32 C-contiguous [N, *expected]: returned as is when it already is one (the C++
    side then reads it in place, no copy); other float dtypes and layouts
    converted once; uint8 scaled to [0, 1] as the library's data
    readers scale (v * (1 / 255) in float32, so the same bytes give the same inputs)."""
    a = np.asarray(x)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) * (np.float32(1) / np.float32(255))
    elif not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{what}: expected a float or uint8 array, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if expected is not None and (a.ndim != len(expected) + 1 or list(a.shape[1:]) != list(expected)):
        want = "[N, " + ", ".join(str(d) for d in expected) + "]"
        raise ValueError(f"{what}: expected shape {want}, got {list(a.shape)}")
    return a


def _targets(y: Any, what: str) -> np.ndarray:
    """Class indices [N] (integers) or one row per sample [N, K], as float32."""
    a = np.asarray(y)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating) or a.dtype == np.bool_):
        raise ValueError(f"{what}: expected integer labels [N] or float targets [N, K], got dtype {a.dtype}")
    if a.ndim not in (1, 2):
        raise ValueError(f"{what}: expected shape [N] (class indices) or [N, K], got {list(a.shape)}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _options(target: Any, values: dict[str, Any] | None, what: str) -> Any:
    """`target` (a C++ options struct) with `values` set on it; an unknown key is a ValueError."""
    for key, value in (values or {}).items():
        if key.startswith("_") or not hasattr(target, key):
            valid = ", ".join(k for k in dir(target) if not k.startswith("_"))
            raise ValueError(f"fit: {what}: unknown option {key!r}; valid options: {valid}")
        setattr(target, key, value)
    return target


class Sequential:
    """A stack of layers: Sequential([Conv2D(6, 5, activation='relu'), ..., Dense(10, activation='softmax')])."""

    def __init__(self, layers: Iterable[Layer] | None = None, name: str | None = None) -> None:
        self._layers: list[Layer] = []
        self._model = _core.Model()
        self.name = name or "sequential"
        for layer in layers or []:
            self.add(layer)

    @classmethod
    def _wrap(cls, core_model: Any) -> "Sequential":
        model = cls.__new__(cls)
        model._model = core_model
        model._layers = [Layer.from_config(json.loads(c)) for c in core_model.layer_configs()]
        model.name = "sequential"
        return model

    @property
    def stop_training(self) -> bool:
        """Set to True (from a callback) to end fit after the current epoch."""
        return self._model.stop_training

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        self._model.stop_training = bool(value)

    def add(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise ValueError(f"Sequential.add: expected a layer, got {type(layer).__name__}")
        self._model.add(layer._json())
        self._layers.append(layer)

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def compile(self, optimizer: str = "sgd", loss: str = "cce", learning_rate: float = 0.01,
                input_shape: Sequence[int] | None = None, *, momentum: float = 0.0, nesterov: bool = False,
                beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7, weight_decay: float = 0.0,
                decoupled_weight_decay: bool = False, label_smoothing: float = 0.0, bias_lr_scale: float = 1.0,
                from_logits: bool = False, seed: int = 42, device: str = "cpu", precision: str = "fp32") -> None:
        """Infers every shape and initialises the weights. input_shape is per sample: [C, H, W].
        precision: 'fp32' (default), 'tf32' or 'bf16' (Keras's mixed_bfloat16: the products read
        bf16-rounded activations and weights, accumulate in fp32; weights stay fp32)."""
        if input_shape is None:
            raise ValueError("compile: input_shape is required (per sample, e.g. [1, 32, 32])")
        _pick_local_gpu(device)
        self._model.compile(optimizer, loss, learning_rate, [int(d) for d in input_shape], momentum, nesterov,
                            beta_1, beta_2, epsilon, weight_decay, decoupled_weight_decay, label_smoothing,
                            bias_lr_scale, from_logits, seed, device, precision)

    def _input_shape(self) -> list[int] | None:
        return self._model.input_shape() if self._model.compiled else None

    def fit(self, x: Any, y: Any, epochs: float = 1, batch_size: int = 32, validation_split: float = 0.0,
            validation_data: tuple[Any, Any] | None = None, shuffle: bool = True, verbose: int = 1,
            callbacks: list[Any] | None = None, initial_epoch: int = 0, seed: int = 1,
            lr_schedule: str | dict[str, Any] | None = None, augment: dict[str, Any] | None = None,
            distributed: bool | None = None, sync_batchnorm: bool = False, drop_last: bool = False) -> History:
        """Trains; returns a History. Integer labels y [N] are class indices (for 'cce' too).

        epochs may be fractional, as airbench's 9.9: the last epoch trains the first steps of its
        shuffled order, ceil(epochs x steps per epoch) steps in all. drop_last: train only the
        whole batches of each epoch (airbench's loader; data-parallel, the global batch).

        lr_schedule: 'constant', 'step', 'cosine' or 'onecycle', or a dict with "kind" and the
        schedule's parameters (step_epochs, gamma, min_factor, warmup, start_factor,
        end_factor). augment: a dict of translate (pixels), flip ('none', 'random',
        'alternate') and cutout (side of a zeroed square).

        distributed: data-parallel over the MPI ranks (cnnfromscratch.distributed); None (the
        default) means "when started by mpirun or srun". batch_size is per rank. sync_batchnorm:
        BatchNormalization's statistics over every rank's rows (default: per rank)."""
        if distributed is None:
            distributed = _core.launched_by_mpi()
        shape = self._input_shape()
        xs, ys = _images(x, shape, "fit: x"), _targets(y, "fit: y")
        val_x = val_y = None
        if validation_data is not None:
            val_x, val_y = (_images(validation_data[0], shape, "fit: validation_data x"),
                            _targets(validation_data[1], "fit: validation_data y"))
        dispatcher = _Dispatcher(self, callbacks or [])
        native = [cb._native for cb in callbacks or [] if isinstance(cb, _NativeCallback)]
        h = self._model.fit(xs, ys, epochs, batch_size, shuffle, bool(drop_last), validation_split, val_x, val_y, verbose, seed,
                            initial_epoch, dispatcher,
                            _options(_core.LRSchedule(), {"kind": lr_schedule} if isinstance(lr_schedule, str)
                                     else lr_schedule, "lr_schedule"),
                            _options(_core.Augmentation(), augment, "augment"), native, bool(distributed),
                            bool(sync_batchnorm))
        history = {"loss": h["loss"], "accuracy": h["accuracy"]}
        if validation_split > 0 or validation_data is not None:
            history["val_loss"], history["val_accuracy"] = h["val_loss"], h["val_accuracy"]
        history["lr"] = h["lr"]
        first = len(h["loss"])
        return History(history, list(range(initial_epoch, initial_epoch + first)))

    def evaluate(self, x: Any, y: Any, batch_size: int = 256, per_class: bool = False,
                 tta: dict | None = None) -> tuple:
        """(loss, accuracy) on x, y; with per_class also the per-class accuracies [K] and the
        confusion matrix [true, predicted] (numpy arrays). tta: test-time augmentation, the
        model file's training.tta keys: flip (also the mirrored images), translate (each view
        also shifted by -t and +t pixels), shifted_share (the shifted views' share of the
        average; default: every view weighs the same)."""
        shape = self._input_shape()
        t = dict(tta or {})
        unknown = sorted(set(t) - {"flip", "translate", "shifted_share"})
        if unknown:
            raise ValueError(f"evaluate: unknown tta key {unknown[0]!r}; valid keys: flip, translate, shifted_share")
        e = self._model.evaluate(_images(x, shape, "evaluate: x"), _targets(y, "evaluate: y"), batch_size, per_class,
                                 bool(t.get("flip", False)), int(t.get("translate", 0)),
                                 float(t.get("shifted_share", -1)))
        if per_class:
            return e.loss, e.accuracy, np.array(e.per_class_accuracy), np.array(e.confusion, dtype=np.int64)
        return e.loss, e.accuracy

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """Probabilities (the last layer's outputs), float32 [N, outputs]."""
        return self._model.predict(_images(x, self._input_shape(), "predict: x"), batch_size)

    def summary(self) -> None:
        print(self._model.summary_string(), end="")

    def summary_string(self) -> str:
        return self._model.summary_string()

    def count_params(self) -> int:
        return self._model.count_params()

    def get_weights(self) -> list[np.ndarray]:
        """Every parameter as a numpy array, in layer order (Conv2D weight [filters, in, kh, kw], bias, ...)."""
        return [np.array(a) for _, a in self._model.weights()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        current = self._model.weights()
        if len(weights) != len(current):
            raise ValueError(f"set_weights: the model has {len(current)} arrays, got {len(weights)}")
        named = []
        for (name, old), new in zip(current, weights):
            a = np.ascontiguousarray(new, dtype=np.float32)
            if a.shape != old.shape:
                raise ValueError(f"set_weights: {name}: expected shape {list(old.shape)}, got {list(a.shape)}")
            named.append((name, a))
        self._model.set_weights(named)

    def save(self, path: str | os.PathLike) -> None:
        """One safetensors file with architecture and weights, as the C++ library and the CLI write."""
        self._model.save(os.fspath(path))

    def export_onnx(self, path: str | os.PathLike, *, opset: int = 17, batch: int | None = None,
                    name: str = "", description: str = "") -> None:
        """The compiled model, in inference mode, as an ONNX file (docs/FORMATS.md): input "input"
        [N, *input_shape] float32, output "probabilities" (what predict() returns). opset: 13 to 22;
        batch: None for a dynamic batch dimension, else a fixed size; name and description go into
        the ONNX metadata (empty: those the model was loaded with, else name "sequential"). The
        file is written as `cnn export` writes it."""
        if isinstance(opset, bool) or not isinstance(opset, numbers.Integral) or not 13 <= opset <= 22:
            raise ValueError(f"export_onnx: opset must be an integer from 13 to 22, got {opset!r}")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1):
            raise ValueError(f"export_onnx: batch must be None (dynamic) or a positive integer, got {batch!r}")
        if not self._model.compiled:
            raise ValueError("export_onnx: compile the model first (the graph needs its input shape)")
        self._model.export_onnx(os.fspath(path), int(opset), 0 if batch is None else int(batch), str(name),
                                str(description))

    def to(self, device: str) -> "Sequential":
        _pick_local_gpu(device)
        self._model.to(device)
        return self

    @property
    def device(self) -> str:
        return self._model.device()


def _pick_local_gpu(device: str) -> None:
    """Under mpirun each rank trains on its own GPU (the local rank's), chosen before the model
    moves there."""
    if device == "cuda" and _core.launched_by_mpi():
        _core.distributed_use_local_gpu()


def load_model(path: str | os.PathLike) -> Sequential:
    """A model saved by save(), the C++ library or `cnn train --save`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    return Sequential._wrap(_core.Model.load(path))
