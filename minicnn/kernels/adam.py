"""Adam's update of one parameter, the twin and the fast kernel side by side.

The readable rule is ``adam_update_numpy``, the twin: NumPy expressions in torch's order of
operations, about fifteen passes over the parameter and its two moment buffers.
``adam_update_numba`` does the same arithmetic element by element, in the same order and in
the arrays' dtype (the scalars arrive already in that dtype, as NumPy's expressions cast
them), so the results are the twin's bit for bit; it reads and writes each array once, and
the elements are split across threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.runtime.cache import CACHE
from minicnn.kernels.runtime.parallel import parallel_for

# -- the NumPy twin ---------------------------------------------------------------------------


def lerp_(start: np.ndarray, end: np.ndarray, weight: float) -> None:
    """``start += weight * (end - start)`` in place, in the form torch's CPU ``lerp`` uses.

    torch picks the form by the weight, for accuracy near each end::

        |w| < 0.5:  start + w * (end - start)
        otherwise:  end - (end - start) * (1 - w)

    ``1 - w`` is taken in the array's dtype, as torch does, so float32 rounds like torch.
    """
    w = start.dtype.type(weight)
    if abs(w) < 0.5:
        start += w * (end - start)
    else:
        start[...] = end - (end - start) * (start.dtype.type(1) - w)


def adam_update_numpy(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    max_exp_avg_sq: np.ndarray | None,
    step: float,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
) -> None:
    """One Adam step on one parameter and its buffers, all in place; ``step`` counts from 1.

    The rule, in torch's operation order (``_single_tensor_adam``)::

        g = -grad if maximize else grad
        param = param * (1 - lr * weight_decay)          # AdamW (decoupled)
        g = g + weight_decay * param                     # Adam (L2), if weight_decay != 0
        m = lerp(m, g, 1 - beta1)
        v = v * beta2 + (1 - beta2) * g * g
        v_max = max(v_max, v)                            # amsgrad: use v_max below
        bc1 = 1 - beta1**step;  bc2 = 1 - beta2**step    # Python floats
        denom = sqrt(v) / bc2**0.5 + eps
        param = param + (-lr / bc1) * m / denom

    ``max_exp_avg_sq`` is None without amsgrad. ``grad`` is never written to.
    """
    g = -grad if maximize else grad  # (*param.shape)
    if weight_decay != 0:
        if decoupled_weight_decay:
            param *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * param

    lerp_(exp_avg, g, 1 - beta1)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * g * g

    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2**0.5

    if max_exp_avg_sq is not None:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        denom = np.sqrt(max_exp_avg_sq)
    else:
        denom = np.sqrt(exp_avg_sq)
    denom /= bias_correction2_sqrt
    denom += eps
    # torch's addcdiv computes value * t1 / t2 left to right: (value * t1) / t2
    param += -step_size * exp_avg / denom


# -- the fast kernel --------------------------------------------------------------------------


@njit(inline="always")
def _plain_adam(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    lerp_weight,
    beta2,
    one_minus_beta2,
    bias_correction2_sqrt,
    eps,
    neg_step_size,
):
    """``adam_kernel``'s loop for torch's default Adam (the deck's): no weight decay, no
    amsgrad, no maximize, beta1 above 0.5. The same arithmetic; without the options'
    branches the compiler vectorises it (benchmarks/README.md#what-we-measured)."""
    for k in range(param.size):
        g = grad[k]
        m = exp_avg[k]
        m = m + lerp_weight * (g - m)
        exp_avg[k] = m
        v = exp_avg_sq[k] * beta2
        v = v + one_minus_beta2 * g * g
        exp_avg_sq[k] = v
        denom = np.sqrt(v) / bias_correction2_sqrt + eps
        param[k] = param[k] + neg_step_size * m / denom


@njit(cache=CACHE, nogil=True, error_model="numpy")  # x / 0 is inf or NaN, as in NumPy
def adam_kernel(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    max_exp_avg_sq,
    amsgrad,
    maximize,
    decay,
    decoupled,
    lerp_weight,
    lerp_low,
    beta2,
    one_minus_beta2,
    bias_correction2_sqrt,
    eps,
    neg_step_size,
):
    """One Adam step on flat arrays, in place (see ``adam_update_numpy`` for the rule).

    ``decay`` is the factor ``1 - lr * weight_decay`` when ``decoupled``, else
    ``weight_decay`` (0: no decay);
    ``lerp_weight`` is ``1 - beta1`` and ``lerp_low`` whether it is below 0.5 (torch's lerp
    form); every float argument is of the arrays' dtype.
    """
    if lerp_low and not (maximize or amsgrad or decoupled or decay != 0):
        _plain_adam(
            param,
            grad,
            exp_avg,
            exp_avg_sq,
            lerp_weight,
            beta2,
            one_minus_beta2,
            bias_correction2_sqrt,
            eps,
            neg_step_size,
        )
        return
    one = param.dtype.type(1)
    for k in range(param.size):
        g = -grad[k] if maximize else grad[k]
        if decoupled:
            param[k] = param[k] * decay
        elif decay != 0:
            g = g + decay * param[k]
        m = exp_avg[k]
        if lerp_low:
            m = m + lerp_weight * (g - m)
        else:
            m = g - (g - m) * (one - lerp_weight)
        exp_avg[k] = m
        v = exp_avg_sq[k] * beta2
        v = v + one_minus_beta2 * g * g
        exp_avg_sq[k] = v
        if amsgrad:  # np.maximum: a NaN in either wins
            v_max = max_exp_avg_sq[k]
            v = v_max if (v_max > v or v_max != v_max) else v
            max_exp_avg_sq[k] = v
        denom = np.sqrt(v) / bias_correction2_sqrt + eps
        param[k] = param[k] + neg_step_size * m / denom


def adam_update_numba(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    max_exp_avg_sq,
    step,
    *,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    decoupled_weight_decay,
    maximize,
):
    """``adam_update_numpy`` (same arguments) through ``adam_kernel``; arrays it cannot view as
    flat (not C-contiguous) go to the twin."""
    written = (param, exp_avg, exp_avg_sq) + (
        (max_exp_avg_sq,) if max_exp_avg_sq is not None else ()
    )
    if not all(a.flags.c_contiguous for a in written):
        return adam_update_numpy(
            param,
            grad,
            exp_avg,
            exp_avg_sq,
            max_exp_avg_sq,
            step,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )
    grad = np.ascontiguousarray(grad)
    t = param.dtype.type
    decoupled = bool(decoupled_weight_decay and weight_decay != 0)
    decay = 1 - lr * weight_decay if decoupled else weight_decay
    lerp_weight = 1 - beta1
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    scalars = (
        t(decay),
        decoupled,
        t(lerp_weight),
        bool(abs(t(lerp_weight)) < 0.5),
        t(beta2),
        t(1 - beta2),
        t(bias_correction2**0.5),
        t(eps),
        t(-(lr / bias_correction1)),
    )
    amsgrad = max_exp_avg_sq is not None
    flats = [a.reshape(-1) for a in (param, grad, exp_avg, exp_avg_sq)]
    flats.append(max_exp_avg_sq.reshape(-1) if amsgrad else flats[3])

    def task(a, b):
        p, g, m, v, v_max = (f[a:b] for f in flats)
        adam_kernel(p, g, m, v, v_max, amsgrad, bool(maximize), *scalars)

    parallel_for(param.size, task, grain=1 << 15)
