"""cnnfromscratch: the CNNFromScratch C++/CUDA library with Keras's Python API.

    from cnnfromscratch import *
    model = Sequential([Conv2D(filters=6, kernel_size=5, activation='relu'), ..., Dense(10, activation='softmax')])
    model.compile(optimizer='sgd', loss='cce', learning_rate=0.01, input_shape=[1, 32, 32])
    model.fit(x_train, y_train, epochs=30)
"""
from . import datasets, distributed
from ._core import built_with_cuda, built_with_protobuf, cuda_available, plot_training_curves
from .callbacks import Callback, CSVLogger, EarlyStopping, ModelCheckpoint, TensorBoard, WeightAveraging
from .datasets import to_categorical
from .layers import (Activation, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                     GlobalAveragePooling2D, GlobalMaxPooling2D, Layer, MaxPooling2D)
from .models import History, Sequential, load_model

__all__ = ["Activation", "AveragePooling2D", "BatchNormalization", "CSVLogger", "Callback", "Conv2D", "Dense",
           "Dropout", "EarlyStopping", "Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "History", "Layer",
           "MaxPooling2D", "ModelCheckpoint", "Sequential", "TensorBoard", "WeightAveraging", "built_with_cuda",
           "built_with_protobuf", "cuda_available", "datasets", "load_model", "plot_training_curves",
           "to_categorical"]
