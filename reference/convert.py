"""Weights between minicnn and PyTorch, both ways, bit for bit.

The two engines store every parameter under the same name and in the same layout (weights
``(C_out, C_in, kH, kW)`` and ``(out, in)``), so converting is a copy with checks: the key sets
must agree, every shape must agree, and the dtype is never changed (float32 stays float32,
float64 stays float64; put a torch model in float64 with ``.double()``).

    copy_to_torch(minicnn_model, torch_model)      # minicnn → torch
    copy_from_torch(torch_model, minicnn_model)    # torch → minicnn
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import torch

from minicnn.nn.module import Module


def to_torch_state_dict(
    model_or_state: Module | Mapping[str, np.ndarray], like: torch.nn.Module | None = None
) -> OrderedDict[str, torch.Tensor]:
    """minicnn weights as a torch ``state_dict``: new CPU tensors that own copies of the data.

    A parameter listed under two names (DeepCNN's ``fc1`` / ``layer4.0``) becomes one tensor
    under both, as in torch. With ``like``, keys and shapes are checked against its state_dict.
    """
    state = model_or_state.state_dict() if isinstance(model_or_state, Module) else model_or_state
    if not isinstance(state, Mapping):
        raise TypeError(
            f"to_torch_state_dict: expected a minicnn Module or a mapping, got {state!r}"
        )
    converted: dict[int, torch.Tensor] = {}  # id(array) → its tensor, to keep sharing
    result = OrderedDict()
    for key, array in state.items():
        if not isinstance(array, np.ndarray):
            raise TypeError(
                f"to_torch_state_dict: {key!r} is a {type(array).__name__}, not an array"
            )
        if id(array) not in converted:
            native = array.dtype.newbyteorder("=")  # torch reads native byte order only
            converted[id(array)] = torch.from_numpy(np.array(array, dtype=native, copy=True))
        result[key] = converted[id(array)]
    if like is not None:
        _check_match(_shapes(result), _shapes(like.state_dict()), "torch model")
    return result


def from_torch_state_dict(
    torch_state_or_module: torch.nn.Module | Mapping[str, torch.Tensor], like: Module | None = None
) -> OrderedDict[str, np.ndarray]:
    """A torch ``state_dict`` (or a module's) as NumPy arrays that own copies of the data.

    With ``like`` (a minicnn Module), keys and shapes are checked against its ``state_dict()``.
    """
    state = torch_state_or_module
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if not isinstance(state, Mapping):
        raise TypeError(
            f"from_torch_state_dict: expected a torch Module or a mapping, got {state!r}"
        )
    # state_dict() detaches each name anew, so sharing shows in the memory, not in id()
    converted: dict[tuple, np.ndarray] = {}
    result = OrderedDict()
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"from_torch_state_dict: {key!r} is a {type(tensor).__name__}, not a tensor"
            )
        if tensor.dtype == torch.bfloat16:
            raise ValueError(f"from_torch_state_dict: {key!r} is bfloat16, which NumPy lacks")
        where = (tensor.device, tensor.data_ptr(), tensor.dtype, tensor.shape, tensor.stride())
        if where not in converted:
            converted[where] = tensor.detach().cpu().numpy().copy()
        result[key] = converted[where]
    if like is not None:
        _check_match(_shapes(result), _shapes(like.state_dict()), "minicnn model")
    return result


def copy_to_torch(minicnn_model: Module, torch_model: torch.nn.Module) -> torch.nn.Module:
    """Copy minicnn's weights into ``torch_model`` in place (strict) and return it.

    The torch model must already have minicnn's dtype: a silent cast would change the values.
    """
    state = to_torch_state_dict(minicnn_model, like=torch_model)
    target = torch_model.state_dict()
    for key, tensor in state.items():
        if tensor.dtype != target[key].dtype:
            raise ValueError(
                f"copy_to_torch: {key!r} is {tensor.dtype} in minicnn but {target[key].dtype} in "
                "the torch model; convert one of them first (e.g. torch_model.double())"
            )
    torch_model.load_state_dict(state, strict=True)
    return torch_model


def copy_from_torch(torch_model: torch.nn.Module, minicnn_model: Module) -> Module:
    """Copy torch's weights into ``minicnn_model`` in place (strict) and return it.

    The minicnn parameters take torch's dtype, as ``Module.load_state_dict`` does.
    """
    minicnn_model.load_state_dict(from_torch_state_dict(torch_model, like=minicnn_model))
    return minicnn_model


def _shapes(state: Mapping) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items()}


def _check_match(actual: dict, expected: dict, target: str) -> None:
    """ValueError naming the first difference in keys or shapes between two state_dicts."""
    missing = [key for key in expected if key not in actual]
    unexpected = [key for key in actual if key not in expected]
    if missing or unexpected:
        raise ValueError(
            f"state_dict keys do not match the {target}: missing {missing}, unexpected {unexpected}"
        )
    for key, shape in expected.items():
        if actual[key] != shape:
            raise ValueError(
                f"{key!r}: the {target} expects shape {shape}, the state_dict has {actual[key]}"
            )
