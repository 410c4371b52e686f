"""Modules: layers that hold Parameters, run forward, and backpropagate by hand."""

from minicnn.nn.activation import Dropout, Flatten, ReLU
from minicnn.nn.fused import ConvReLUMaxPool2d, fusion
from minicnn.nn.layers import Conv2d, Linear
from minicnn.nn.loss import CrossEntropyLoss
from minicnn.nn.module import Module, Parameter, StateDictKeyError
from minicnn.nn.pooling import AvgPool2d, MaxPool2d
from minicnn.nn.sequential import Sequential
from minicnn.nn.tape import LossValue, is_grad_enabled, no_grad

__all__ = [
    "AvgPool2d",
    "Conv2d",
    "ConvReLUMaxPool2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "Linear",
    "LossValue",
    "MaxPool2d",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "StateDictKeyError",
    "fusion",
    "is_grad_enabled",
    "no_grad",
]
