"""Layers with Keras's names and keywords. Each holds its configuration as in models/*.json;
the C++ library builds the layer from it (cnn::layer_from_config), so a bad option fails there
with the library's message."""
from __future__ import annotations

import json
from typing import Any


class Layer:
    """A layer's configuration: {"type": ..., options...}, as in model files."""

    def __init__(self, type_: str, **options: Any) -> None:
        self.config: dict[str, Any] = {"type": type_}
        self.config.update({k: v for k, v in options.items() if v is not None})

    @property
    def name(self) -> str:
        return self.config.get("name", "")

    def get_config(self) -> dict[str, Any]:
        return dict(self.config)

    def _json(self) -> str:
        return json.dumps(self.config, default=_plain)

    @staticmethod
    def from_config(config: dict[str, Any]) -> "Layer":
        layer = Layer.__new__(_CLASSES.get(config["type"], Layer))
        layer.config = dict(config)
        return layer

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.config.items() if k != "type")
        return f"{self.config['type']}({options})"


def _common(trainable: bool, name: str | None) -> dict[str, Any]:
    return {"trainable": None if trainable else False, "name": name}


class Conv2D(Layer):
    def __init__(self, filters: int, kernel_size: int | tuple[int, int] = 3, strides: int | tuple[int, int] = 1,
                 padding: str = "valid", activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", alpha: float | None = None,
                 trainable: bool = True, name: str | None = None) -> None:
        super().__init__("Conv2D", filters=filters, kernel_size=_size2(kernel_size), strides=_size2(strides),
                         padding=padding, activation=activation or "linear", use_bias=use_bias,
                         kernel_initializer=kernel_initializer, alpha=alpha, **_common(trainable, name))


class Dense(Layer):
    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", alpha: float | None = None,
                 trainable: bool = True, name: str | None = None) -> None:
        super().__init__("Dense", units=units, activation=activation or "linear", use_bias=use_bias,
                         kernel_initializer=kernel_initializer, alpha=alpha, **_common(trainable, name))


class Flatten(Layer):
    def __init__(self, name: str | None = None) -> None:
        super().__init__("Flatten", name=name)


class MaxPooling2D(Layer):
    def __init__(self, pool_size: int | tuple[int, int] = 2, strides: int | tuple[int, int] | None = None,
                 padding: str = "valid", name: str | None = None) -> None:
        super().__init__("MaxPooling2D", pool_size=_size2(pool_size), strides=_size2(strides), padding=padding,
                         name=name)


class AveragePooling2D(Layer):
    def __init__(self, pool_size: int | tuple[int, int] = 2, strides: int | tuple[int, int] | None = None,
                 padding: str = "valid", name: str | None = None) -> None:
        super().__init__("AveragePooling2D", pool_size=_size2(pool_size), strides=_size2(strides),
                         padding=padding, name=name)


class BatchNormalization(Layer):
    """momentum is Keras's (the weight of the old running value: 0.99 by default); epsilon
    defaults to the library's (PyTorch's) 1e-5."""

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-5, center: bool = True, scale: bool = True,
                 trainable: bool = True, name: str | None = None) -> None:
        super().__init__("BatchNormalization", keras_momentum=momentum, epsilon=epsilon, center=center,
                         scale=scale, **_common(trainable, name))


class Dropout(Layer):
    def __init__(self, rate: float, name: str | None = None) -> None:
        super().__init__("Dropout", rate=rate, name=name)


class GlobalAveragePooling2D(Layer):
    def __init__(self, name: str | None = None) -> None:
        super().__init__("GlobalAveragePooling2D", name=name)


class GlobalMaxPooling2D(Layer):
    def __init__(self, name: str | None = None) -> None:
        super().__init__("GlobalMaxPooling2D", name=name)


class Activation(Layer):
    def __init__(self, activation: str, alpha: float | None = None, name: str | None = None) -> None:
        super().__init__("Activation", activation=activation, alpha=alpha, name=name)


def _plain(value: Any) -> Any:
    """numpy scalars (np.int64(6), ...) as the Python numbers JSON takes."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"layer option {value!r} of type {type(value).__name__} is not a number, string or list")


def _size2(value: int | tuple[int, int] | list[int] | None) -> int | list[int] | None:
    return list(value) if isinstance(value, (tuple, list)) else value


_CLASSES = {cls.__name__: cls for cls in (Conv2D, Dense, Flatten, MaxPooling2D, AveragePooling2D,
                                          BatchNormalization, Dropout, GlobalAveragePooling2D,
                                          GlobalMaxPooling2D, Activation)}
