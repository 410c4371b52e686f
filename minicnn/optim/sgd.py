"""SGD with momentum, dampening, Nesterov momentum and L2 weight decay, as torch.optim.SGD."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from minicnn.nn.module import Parameter
from minicnn.optim.optimizer import Optimizer, check_flag, check_hyperparameter


def sgd_update(
    param: np.ndarray,
    grad: np.ndarray,
    momentum_buffer: np.ndarray | None,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> np.ndarray | None:
    """One SGD step on one parameter, in place; returns the (new) momentum buffer.

    The rule, in torch's operation order (``_single_tensor_sgd``)::

        g = -grad if maximize else grad
        g = g + weight_decay * param                      # if weight_decay != 0
        b = g  (first step: a copy, no dampening)         # if momentum != 0
        b = momentum * b + (1 - dampening) * g            #   later steps
        g = g + momentum * b if nesterov else b
        param = param - lr * g

    ``grad`` is never written to. Python-float hyperparameters meet float32 arrays as float32
    (NumPy's NEP 50 rule), which is how torch's CPU kernels convert their scalar arguments.
    """
    g = -grad if maximize else grad  # (*param.shape)
    if weight_decay != 0:
        g = g + weight_decay * param
    if momentum != 0:
        if momentum_buffer is None:
            momentum_buffer = g.copy()
        else:
            momentum_buffer *= momentum
            momentum_buffer += (1 - dampening) * g
        g = g + momentum * momentum_buffer if nesterov else momentum_buffer
    param += -lr * g
    return momentum_buffer


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum (torch.optim.SGD).

    Args:
        params: Parameters, or param-group dicts overriding the defaults below.
        lr: learning rate, >= 0.
        momentum: momentum factor, >= 0; 0 keeps no state at all.
        dampening: dampening of the gradient's share of the momentum buffer (not applied on
            the first step, whose buffer is the gradient itself).
        weight_decay: L2 penalty, >= 0, added to the gradient.
        nesterov: use Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
        maximize: ascend the objective instead of descending.

    State per parameter: ``momentum_buffer`` (when momentum != 0), created on its first step.
    """

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[dict],
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        check_hyperparameter(self._name, "learning rate", group["lr"])
        check_hyperparameter(self._name, "momentum value", group["momentum"])
        check_hyperparameter(self._name, "weight_decay value", group["weight_decay"])
        check_hyperparameter(self._name, "dampening value", group["dampening"], low=None)
        for flag in ("nesterov", "maximize"):
            check_flag(self._name, flag, group[flag])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"{self._name}: Nesterov momentum requires a momentum and zero dampening"
            )

    def _check_state(self, index: int, buffers: dict[str, Any], group: dict[str, Any]) -> None:
        buffer = buffers.get("momentum_buffer")
        if buffer is not None and not isinstance(buffer, np.ndarray):
            raise ValueError(
                f"{self._name}: the loaded momentum_buffer of parameter {index} must be an "
                f"array of the parameter's shape or None, got {type(buffer).__name__}"
            )

    def _step_group(self, group: dict[str, Any]) -> None:
        for param in group["params"]:
            grad = self._grad_of(param)
            if grad is None:
                continue
            state = self.state[param] if group["momentum"] != 0 else {}
            buffer = sgd_update(
                param.data,
                grad,
                state.get("momentum_buffer"),
                lr=float(group["lr"]),
                momentum=float(group["momentum"]),
                dampening=float(group["dampening"]),
                weight_decay=float(group["weight_decay"]),
                nesterov=bool(group["nesterov"]),
                maximize=bool(group["maximize"]),
            )
            if group["momentum"] != 0:
                state["momentum_buffer"] = buffer
