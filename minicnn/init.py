"""Weight initialisers with torch.nn.init's names, fan rules and gains.

Each initialiser fills its argument in place (a ``Parameter`` or a NumPy array) and returns it.
The numbers come from a NumPy ``Generator`` (``generator=None`` means the default one that
``minicnn.manual_seed`` seeds). With an MT19937 generator — the default one is — uniform draws
are torch's, bit for bit: the same 32-bit outputs turned into numbers by the same arithmetic
(see ``uniform_``), so ``xavier_uniform_``, ``kaiming_uniform_`` and the layers' default
initialisation reproduce torch's weights for the same seed. Normal draws follow torch's
distributions, not its numbers.
"""

from __future__ import annotations

import math

import numpy as np

from minicnn.random import resolve

__all__ = [
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]


def _array(tensor) -> np.ndarray:
    # a Parameter's values are its .data (an ndarray's own .data is a raw buffer)
    array = tensor if isinstance(tensor, np.ndarray) else getattr(tensor, "data", None)
    if not isinstance(array, np.ndarray):
        raise TypeError(f"init: expected a Parameter or a numpy array, got {type(tensor).__name__}")
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(f"init: expected a float32 or float64 array, got {array.dtype}")
    return array


def _fill(tensor, values: np.ndarray):
    _array(tensor)[...] = values
    return tensor


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity, as ``torch.nn.init.calculate_gain``."""
    linear_fns = [
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "sigmoid",
    ]
    if nonlinearity in linear_fns:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def calculate_fan_in_and_fan_out(tensor) -> tuple[int, int]:
    """``fan_in = shape[1] * receptive field``, ``fan_out = shape[0] * receptive field``."""
    shape = _array(tensor).shape
    if len(shape) < 2:
        raise ValueError(
            f"Fan in and fan out can not be computed for an array with fewer than 2 "
            f"dimensions, got shape {shape}"
        )
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _fan(tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill with U(a, b), drawn as torch's CPU kernel draws when the generator is MT19937.

    torch turns each 32-bit output r of its Mersenne Twister into ``x = (r & (2**24 - 1)) /
    2**24`` for float32 (53 bits from two outputs for float64) and returns ``x * (b - a) + a``
    computed in double with ``a`` and ``b`` rounded to the tensor's dtype first. Other bit
    generators draw with NumPy's ``Generator.uniform``.
    """
    array = _array(tensor)
    generator = resolve(generator)
    if not isinstance(generator.bit_generator, np.random.MT19937):
        return _fill(tensor, generator.uniform(a, b, size=array.shape))
    dtype = array.dtype.type
    low, high = dtype(a), dtype(b)
    raw = generator.bit_generator.random_raw(array.size * (1 if dtype is np.float32 else 2))
    if dtype is np.float32:
        x = (raw & (2**24 - 1)).astype(np.float64) * 2.0**-24  # 24 random bits in [0, 1)
    else:
        first, second = raw[0::2], raw[1::2]  # torch's random64(): the first draw is the high half
        x = (((first << 32) | second) & (2**53 - 1)).astype(np.float64) * 2.0**-53
    width = np.float64(dtype(high - low))  # the width in the tensor's dtype, as torch computes it
    return _fill(tensor, (x * width + np.float64(low)).reshape(array.shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with N(mean, std²)."""
    shape = _array(tensor).shape
    return _fill(tensor, resolve(generator).normal(mean, std, size=shape))


def constant_(tensor, val: float):
    """Fill with ``val``."""
    return _fill(tensor, val)


def zeros_(tensor):
    """Fill with zeros."""
    return _fill(tensor, 0.0)


def ones_(tensor):
    """Fill with ones."""
    return _fill(tensor, 1.0)


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """Fill with U(-a, a), ``a = gain * sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio, 2010)."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """Fill with N(0, std²), ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(
    tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None
):
    """Fill with U(-b, b), ``b = gain * sqrt(3 / fan)`` (He et al., 2015)."""
    if _array(tensor).size == 0:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(
    tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None
):
    """Fill with N(0, std²), ``std = gain / sqrt(fan)``."""
    if _array(tensor).size == 0:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std, generator)
