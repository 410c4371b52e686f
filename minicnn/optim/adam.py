"""Adam and AdamW as torch.optim has them (AdamW is Adam with decoupled weight decay)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from minicnn import kernels
from minicnn.kernels.adam import adam_update_numba, adam_update_numpy
from minicnn.nn.module import Parameter
from minicnn.optim.optimizer import Optimizer, check_flag, check_hyperparameter


class Adam(Optimizer):
    """Adam (torch.optim.Adam): a step along the bias-corrected first moment of the gradient,
    scaled per element by the bias-corrected root second moment.

    Args:
        params: Parameters, or param-group dicts overriding the defaults below.
        lr: learning rate, >= 0.
        betas: ``(beta1, beta2)``, each in [0, 1): decay rates of the two moment averages.
        eps: added to the root second moment, >= 0.
        weight_decay: >= 0; an L2 penalty added to the gradient, or with
            ``decoupled_weight_decay`` a shrink of the parameter by ``1 - lr * weight_decay``.
        amsgrad: normalise by the running maximum of the second moment.
        maximize: ascend the objective instead of descending.
        decoupled_weight_decay: AdamW's decay (Loshchilov & Hutter).

    State per parameter, created on its first step: ``step`` (a float), ``exp_avg``,
    ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``.
    """

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        check_hyperparameter(self._name, "learning rate", group["lr"])
        check_hyperparameter(self._name, "epsilon value", group["eps"])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{self._name}: betas must be a pair of floats, got {betas!r}")
        for i, beta in enumerate(betas):
            check_hyperparameter(self._name, f"beta parameter at index {i}", beta, high=1.0)
        check_hyperparameter(self._name, "weight_decay value", group["weight_decay"])
        for flag in ("amsgrad", "maximize", "decoupled_weight_decay"):
            check_flag(self._name, flag, group[flag])

    def _check_state(self, index: int, buffers: dict[str, Any], group: dict[str, Any]) -> None:
        if not buffers:  # a parameter not stepped yet
            return
        arrays = ["exp_avg", "exp_avg_sq"] + ["max_exp_avg_sq"] * bool(group["amsgrad"])
        lacking = [key for key in arrays if not isinstance(buffers.get(key), np.ndarray)]
        lacking += [] if "step" in buffers else ["step"]
        if lacking:
            raise ValueError(
                f"{self._name}: the loaded state of parameter {index} lacks {lacking} (it holds "
                f"{sorted(buffers)}; arrays of the parameter's shape and a step count)"
            )

    def _step_group(self, group: dict[str, Any]) -> None:
        beta1, beta2 = (float(beta) for beta in group["betas"])
        for param in group["params"]:
            grad = self._grad_of(param)
            if grad is None:
                continue
            state = self.state[param]
            if len(state) == 0:
                state["step"] = 0.0
                state["exp_avg"] = np.zeros_like(param.data)
                state["exp_avg_sq"] = np.zeros_like(param.data)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = np.zeros_like(param.data)
            state["step"] += 1.0
            update = kernels.pick(adam_update_numpy, adam_update_numba)
            update(
                param.data,
                grad,
                state["exp_avg"],
                state["exp_avg_sq"],
                state["max_exp_avg_sq"] if group["amsgrad"] else None,
                state["step"],
                lr=float(group["lr"]),
                beta1=beta1,
                beta2=beta2,
                eps=float(group["eps"]),
                weight_decay=float(group["weight_decay"]),
                decoupled_weight_decay=bool(group["decoupled_weight_decay"]),
                maximize=bool(group["maximize"]),
            )


class AdamW(Adam):
    """AdamW (torch.optim.AdamW): Adam whose weight decay shrinks the parameter directly,
    ``param *= 1 - lr * weight_decay``, before the Adam step, instead of entering the moments.

    Arguments as :class:`Adam`, but ``weight_decay`` defaults to 1e-2 and decay is always
    decoupled (also after ``load_state_dict``, as in torch).
    """

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
