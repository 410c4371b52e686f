"""Modules: layers that hold Parameters, run forward, and backpropagate by hand."""

from minicnn.nn.layers import AvgPool2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU
from minicnn.nn.loss import CrossEntropyLoss
from minicnn.nn.module import Module, Parameter, Sequential
from minicnn.nn.tape import LossValue, is_grad_enabled, no_grad

__all__ = [
    "AvgPool2d",
    "Conv2d",
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
    "is_grad_enabled",
    "no_grad",
]
