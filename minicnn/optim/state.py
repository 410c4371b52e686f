"""Loading an optimizer's ``state_dict``: the containers, parameter indices and buffers are
checked before anything is taken over, each fault a ValueError or TypeError that names the
optimizer (``Optimizer.load_state_dict`` then checks the hyperparameters as the constructor
does, and each optimizer that its buffers are complete)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from minicnn.nn.module import Parameter


def checked_layout(name: str, state_dict: Any, groups: list[dict]) -> tuple[list, Mapping]:
    """(param_groups, state) of ``state_dict`` once they fit ``groups``, the optimizer's own:
    as many groups, each a dict with as many integer parameter indices."""
    if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= state_dict.keys():
        raise ValueError(f"{name}: a state_dict is a dict with 'state' and 'param_groups' entries")
    saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
    if not isinstance(saved_state, Mapping):
        raise TypeError(
            f"{name}: the state dict's 'state' must be a dict, got {type(saved_state).__name__}"
        )
    if not isinstance(saved_groups, (list, tuple)):
        raise TypeError(
            f"{name}: the state dict's 'param_groups' must be a list, got "
            f"{type(saved_groups).__name__}"
        )
    if len(saved_groups) != len(groups):
        raise ValueError(
            f"{name}: loaded state dict has {len(saved_groups)} parameter groups, the optimizer "
            f"has {len(groups)}"
        )
    seen: set[int] = set()
    for i, (saved, group) in enumerate(zip(saved_groups, groups)):
        params = saved.get("params") if isinstance(saved, Mapping) else None
        if not isinstance(params, (list, tuple)) or not all(map(_is_index, params)):
            raise TypeError(
                f"{name}: loaded parameter group {i} must be a dict whose 'params' is a list of "
                f"parameter indices, got {saved!r}"
            )
        if len(params) != len(group["params"]):
            raise ValueError(
                f"{name}: loaded state dict's parameter group {i} holds {len(params)} "
                f"parameters, the optimizer's holds {len(group['params'])}"
            )
        if seen & set(params) or len(set(params)) != len(params):
            raise ValueError(f"{name}: loaded parameter group {i} repeats a parameter index")
        seen |= set(params)
    return list(saved_groups), saved_state


def loaded_buffers(name: str, index: int, param: Parameter, buffers: Any) -> dict[str, Any]:
    """One parameter's loaded state: ``step`` a float >= 0, arrays copied in the parameter's
    dtype and shape, None and plain numbers kept as they are."""
    if not isinstance(buffers, Mapping):
        raise TypeError(
            f"{name}: the state of parameter {index} must be a dict of buffers, got "
            f"{type(buffers).__name__}"
        )
    return {key: _buffer(name, param, key, value) for key, value in buffers.items()}


def _buffer(name: str, param: Parameter, key: Any, value: Any) -> Any:
    if key == "step":
        step = np.asarray(value)  # a number, or torch's 0-d tensor as an array
        if step.shape != () or step.dtype.kind not in "iuf":
            raise TypeError(f"{name}: loaded 'step' must be a number, got {value!r}")
        if not (np.isfinite(step) and step >= 0):
            raise ValueError(f"{name}: loaded 'step' must be a count >= 0, got {value!r}")
        return float(step)
    if value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
        return value
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:  # e.g. ragged nested lists
        raise ValueError(f"{name}: loaded state {key!r} is not an array ({error})") from None
    if array.dtype.kind not in "iuf":  # complex, bool, strings or objects: no buffer
        raise TypeError(f"{name}: loaded state {key!r} has dtype {array.dtype}, not real numbers")
    if array.shape != param.data.shape:
        raise ValueError(
            f"{name}: loaded state {key!r} has shape {array.shape}, its parameter has shape "
            f"{param.data.shape}"
        )
    return np.array(array, dtype=param.data.dtype, copy=True)


def _is_index(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
