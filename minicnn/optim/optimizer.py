"""Optimizer: the bookkeeping every optimizer shares, with torch.optim.Optimizer's layout.

An optimizer holds ``param_groups`` (a list of dicts, each with its ``params`` list and its own
hyperparameters) and ``state`` (a dict from Parameter to that parameter's buffers). Subclasses
implement ``_step_group(group)``, which updates every parameter of one group whose ``.grad`` is
not None, in place, so that every other holder of ``p.data`` sees the new values.

``state_dict()`` uses torch's layout, so a checkpoint crosses engines once its arrays are
converted (``torch.from_numpy`` one way, ``.numpy()`` the other)::

    {'state': {0: {'step': 10.0, 'exp_avg': array, ...}, ...},
     'param_groups': [{'lr': 0.01, ..., 'params': [0, 1]}, ...]}

Two deliberate differences from torch: ``state_dict()`` returns copies of the buffers (torch
returns live references that the next ``step()`` overwrites), and ``step`` is a Python float
(torch keeps a 0-d float32 tensor; both count exactly up to 2**24 steps).
"""

from __future__ import annotations

import copy
import numbers
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from minicnn.nn.module import FLOAT_DTYPES, Parameter
from minicnn.optim.state import checked_layout, loaded_buffers

# keys torch.optim puts in param groups to pick an implementation (foreach, fused, ...); they
# change no arithmetic, so we neither need nor emit them, and ignore them when loading
IMPLEMENTATION_KEYS = frozenset({"foreach", "fused", "capturable", "differentiable"})


def check_hyperparameter(
    optimizer: str, what: str, value: Any, low: float | None = 0.0, high: float | None = None
) -> None:
    """TypeError unless ``value`` is a real number; ValueError unless ``low <= value < high``.

    The messages are torch's (``Invalid learning rate: -1.0``) prefixed by the optimizer's name.
    ``not low <= value`` also rejects NaN.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{optimizer}: {what} must be a real number, got {type(value).__name__}")
    if (low is not None and not low <= value) or (high is not None and not value < high):
        raise ValueError(f"{optimizer}: Invalid {what}: {value}")
    try:
        float(value)  # what the update computes with
    except OverflowError:
        raise ValueError(f"{optimizer}: Invalid {what}: {value} (too large for a float)") from None


def check_flag(optimizer: str, what: str, value: Any) -> None:
    """TypeError unless ``value`` is a bool (a string such as ``"False"`` would count as True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{optimizer}: {what} must be a bool, got {value!r}")


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``zero_grad`` and checkpoints.

    Args:
        params: an iterable of Parameters, or of dicts ``{'params': [...], 'lr': ..., ...}``
            whose entries override ``defaults`` for that group.
        defaults: every hyperparameter's default value.
    """

    def __init__(self, params: Iterable[Parameter] | Iterable[dict], defaults: dict[str, Any]):
        # defaults first, so a bad lr is reported before a bad params list, as in torch
        self._check_hyperparameters(defaults)
        self.defaults = dict(defaults)
        self.state: defaultdict[Parameter, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []

        if isinstance(params, (Parameter, np.ndarray, dict)):
            raise TypeError(
                f"{self._name}: params should be an iterable of Parameters or of dicts, "
                f"but got {type(params).__name__}"
            )
        try:
            groups = list(params)
        except TypeError:
            raise TypeError(
                f"{self._name}: params should be an iterable of Parameters or of dicts, "
                f"but got {type(params).__name__}"
            ) from None
        if len(groups) == 0:
            raise ValueError(f"{self._name}: optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    @property
    def _name(self) -> str:
        return type(self).__name__

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Append a group; missing hyperparameters take the optimizer's defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(
                f"{self._name}: param_group must be a dict, but got {type(param_group).__name__}"
            )
        if "params" not in param_group:
            raise ValueError(f"{self._name}: a param group needs a 'params' entry")
        params = param_group["params"]
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            # a set's order changes between runs, and the order names the state_dict indices
            raise TypeError(
                f"{self._name}: optimizer parameters need to be organized in ordered "
                "collections, but the ordering of parameters in sets changes between runs; "
                "use a list instead"
            )
        else:
            params = list(params)
        for param in params:
            if not isinstance(param, Parameter):
                raise TypeError(
                    f"{self._name}: optimizer can only optimize Parameters, but one of the "
                    f"params is {type(param).__name__}"
                )

        group = {**self.defaults, **param_group, "params": params}
        self._check_hyperparameters(group)

        # torch only warns about repeats within a group ("in future, this will cause an
        # error"); a repeated parameter would be stepped twice, so we take that future now
        if len({id(p) for p in params}) != len(params):
            raise ValueError(
                f"{self._name}: optimizer contains a parameter group with duplicate parameters"
            )
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(
                f"{self._name}: some parameters appear in more than one parameter group"
            )
        self.param_groups.append(group)

    # -- the update ------------------------------------------------------------------------

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Set every ``.grad`` to None (the default, as torch), or fill it with zeros in place."""
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if set_to_none:
                    param.grad = None
                else:
                    param.grad.fill(0)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a ``.grad``; returns ``closure()`` if one is given.

        The closure (forward, backward, return the loss) runs before the update, as in torch.
        """
        loss = None if closure is None else closure()
        # every gradient is checked before any parameter moves: a bad one changes nothing
        for group in self.param_groups:
            for param in group["params"]:
                self._grad_of(param)
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError(f"{self._name} does not implement _step_group()")

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        """Raise ValueError/TypeError for a hyperparameter torch would reject."""

    def _grad_of(self, param: Parameter) -> np.ndarray | None:
        """``param.grad`` after checking that it fits ``param.data``; None means skip."""
        if not isinstance(param.data, np.ndarray) or param.data.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{self._name}: a parameter's data must be a float32 or float64 array, got "
                f"{getattr(param.data, 'dtype', type(param.data).__name__)}"
            )
        grad = param.grad
        if grad is None:
            return None
        if not isinstance(grad, np.ndarray):
            raise TypeError(
                f"{self._name}: gradient must be a NumPy array, got {type(grad).__name__}"
            )
        if grad.shape != param.data.shape:
            raise ValueError(
                f"{self._name}: gradient of shape {grad.shape} for a parameter of shape "
                f"{param.data.shape}"
            )
        if grad.dtype != param.data.dtype:
            raise TypeError(
                f"{self._name}: gradient of dtype {grad.dtype} for a parameter of dtype "
                f"{param.data.dtype}"
            )
        return grad

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """A snapshot in torch's layout: parameters are named by their index across groups."""
        index = {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        param_groups = [
            {
                **{k: v for k, v in g.items() if k != "params"},
                "params": [index[id(p)] for p in g["params"]],
            }
            for g in self.param_groups
        ]
        state = {
            index[id(param)]: {key: copy.deepcopy(value) for key, value in buffers.items()}
            for param, buffers in self.state.items()
        }
        return {"state": state, "param_groups": param_groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take over the state and hyperparameters of a ``state_dict()`` (ours or torch's).

        Groups are matched by position and must hold as many parameters as ours. Arrays are
        copied and cast to their parameter's dtype; ``step`` becomes a float. Nothing changes
        unless the whole dict is valid; what is not is a ValueError or TypeError (see
        ``minicnn.optim.state``).
        """
        saved_groups, saved_state = checked_layout(self._name, state_dict, self.param_groups)
        param_groups, group_of, id_map = [], {}, {}
        for group, saved in zip(self.param_groups, saved_groups, strict=True):
            new = {k: copy.deepcopy(v) for k, v in saved.items() if k not in IMPLEMENTATION_KEYS}
            new = {**self.defaults, **new, "params": group["params"]}
            self._check_hyperparameters(new)
            param_groups.append(new)
            for saved_id, param in zip(saved["params"], group["params"], strict=True):
                id_map[saved_id], group_of[id(param)] = param, new

        state: defaultdict[Parameter, dict[str, Any]] = defaultdict(dict)
        for saved_id, buffers in saved_state.items():
            if saved_id not in id_map:
                raise ValueError(
                    f"{self._name}: loaded state dict has state for parameter {saved_id!r}, "
                    "which none of its parameter groups holds"
                )
            param = id_map[saved_id]
            state[param] = loaded_buffers(self._name, saved_id, param, buffers)
            self._check_state(saved_id, state[param], group_of[id(param)])

        self.state = state
        self.param_groups = param_groups

    def _check_state(self, index: int, buffers: dict[str, Any], group: dict[str, Any]) -> None:
        """Raise ValueError when a loaded parameter's buffers cannot be stepped with."""

    def __repr__(self) -> str:
        lines = [f"{self._name} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])
