"""Adam's update of one parameter, all its elementwise steps in one pass.

The readable rule is ``minicnn.optim.adam.adam_update``, the twin: NumPy expressions in
torch's order of operations, about fifteen passes over the parameter and its two moment
buffers. This kernel does the same arithmetic element by element, in the same order and in
the arrays' dtype (the scalars arrive already in that dtype, as NumPy's expressions cast
them), so the results are the twin's bit for bit; it reads and writes each array once, and
the elements are split across threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.parallel import parallel_for


@njit(inline="always")
def _plain_adam(param, grad, exp_avg, exp_avg_sq, lerp_weight, beta2, one_minus_beta2,
                bias_correction2_sqrt, eps, neg_step_size):  # fmt: skip
    """``adam_kernel``'s loop for torch's default Adam (the deck's): no weight decay, no
    amsgrad, no maximize, beta1 above 0.5. The same arithmetic; without the options'
    branches the compiler vectorises it (DeepCNN's fc1.weight: 3.6 -> 0.5 ns an element)."""
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


@njit(cache=True, nogil=True, error_model="numpy")  # x / 0 is inf or NaN, as in NumPy
def adam_kernel(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, amsgrad, maximize,
                decay, decoupled, lerp_weight, lerp_low, beta2, one_minus_beta2,
                bias_correction2_sqrt, eps, neg_step_size):  # fmt: skip
    """One Adam step on flat arrays, in place (see ``adam_update`` for the rule).

    ``decay`` is the factor ``1 - lr * weight_decay`` when ``decoupled``, else
    ``weight_decay`` (0: no decay);
    ``lerp_weight`` is ``1 - beta1`` and ``lerp_low`` whether it is below 0.5 (torch's lerp
    form); every float argument is of the arrays' dtype.
    """
    if lerp_low and not (maximize or amsgrad or decoupled or decay != 0):
        _plain_adam(param, grad, exp_avg, exp_avg_sq, lerp_weight, beta2, one_minus_beta2,
                    bias_correction2_sqrt, eps, neg_step_size)  # fmt: skip
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


def adam_update_numba(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, *, lr, beta1,
                      beta2, eps, weight_decay, decoupled_weight_decay, maximize):  # fmt: skip
    """``adam_update`` (same arguments) through ``adam_kernel``; arrays it cannot view as
    flat (not C-contiguous) go to the twin."""
    written = (param, exp_avg, exp_avg_sq) + ((max_exp_avg_sq,) if max_exp_avg_sq is not None
                                              else ())  # fmt: skip
    if not all(a.flags.c_contiguous for a in written):
        from minicnn.optim.adam import adam_update  # the twin (it imports this module)

        return adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr=lr,
                           beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                           decoupled_weight_decay=decoupled_weight_decay,
                           maximize=maximize)  # fmt: skip
    grad = np.ascontiguousarray(grad)
    t = param.dtype.type
    decoupled = bool(decoupled_weight_decay and weight_decay != 0)
    decay = 1 - lr * weight_decay if decoupled else weight_decay
    lerp_weight = 1 - beta1
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    scalars = (t(decay), decoupled, t(lerp_weight),
               bool(abs(t(lerp_weight)) < 0.5), t(beta2), t(1 - beta2),
               t(bias_correction2**0.5), t(eps), t(-(lr / bias_correction1)))  # fmt: skip
    amsgrad = max_exp_avg_sq is not None
    flats = [a.reshape(-1) for a in (param, grad, exp_avg, exp_avg_sq)]
    flats.append(max_exp_avg_sq.reshape(-1) if amsgrad else flats[3])

    def task(a, b):
        p, g, m, v, v_max = (f[a:b] for f in flats)
        adam_kernel(p, g, m, v, v_max, amsgrad, bool(maximize), *scalars)

    parallel_for(param.size, task, grain=1 << 15)
