"""The default random generator behind minicnn's initialisers and dropout.

Every function that draws random numbers takes ``generator=None``; ``None`` means this
module's default NumPy ``Generator``, which ``manual_seed`` reseeds (like ``torch.manual_seed``).

The default generator runs the Mersenne Twister (NumPy's ``MT19937``), the engine behind
torch's CPU generator, seeded exactly as torch seeds it; and the initialisers turn its 32-bit
outputs into uniform numbers the way torch's CPU kernel does (``minicnn.init.uniform_``). So
after ``minicnn.manual_seed(777)`` a model's initial weights are, bit for bit, those of the
same torch model after ``torch.manual_seed(777)`` — and in a fresh process, before any
seeding, both start from torch's default seed. Normal draws and dropout masks follow the same
distributions as torch's, not the same numbers.
"""

from __future__ import annotations

import numpy as np

TORCH_DEFAULT_SEED = 67280421310721  # what torch's CPU generator starts from


def mt19937(seed: int) -> np.random.Generator:
    """A Generator over MT19937 in the state ``std::mt19937(seed)`` (and torch) give it.

    The Mersenne Twister's reference seeding: the low 32 bits of the seed, then
    ``key[i] = 1812433253 * (key[i-1] ^ (key[i-1] >> 30)) + i`` (mod 2**32).
    """
    key = [seed & 0xFFFFFFFF]
    for i in range(1, 624):
        previous = key[-1]
        key.append((1812433253 * (previous ^ (previous >> 30)) + i) & 0xFFFFFFFF)
    bit_generator = np.random.MT19937()
    bit_generator.state = {
        "bit_generator": "MT19937",
        "state": {"key": np.array(key, dtype=np.uint32), "pos": 624},
    }
    return np.random.Generator(bit_generator)


_default_generator = mt19937(TORCH_DEFAULT_SEED)


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the default generator as ``torch.manual_seed(seed)`` seeds torch's; return it."""
    global _default_generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: expected an int seed, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"manual_seed: expected a non-negative seed, got {seed}")
    _default_generator = mt19937(int(seed))
    return _default_generator


def default_generator() -> np.random.Generator:
    """The generator used when a function is given ``generator=None``."""
    return _default_generator


def resolve(generator: np.random.Generator | None) -> np.random.Generator:
    """``generator`` itself, or the default generator when it is ``None``."""
    if generator is None:
        return _default_generator
    if not isinstance(generator, np.random.Generator):
        raise TypeError(
            f"expected a numpy.random.Generator or None, got {type(generator).__name__}"
        )
    return generator


def get_state(generator: np.random.Generator | None = None) -> dict:
    """A generator's state (the default one's when None) as a JSON-serialisable dict."""
    state = resolve(generator).bit_generator.state
    return _jsonable(state)


def set_state(state: dict, generator: np.random.Generator | None = None) -> None:
    """Put a generator (the default one when None) back in a state from ``get_state``."""
    bit_generator = resolve(generator).bit_generator
    if not isinstance(state, dict) or state.get("bit_generator") != type(bit_generator).__name__:
        found = state.get("bit_generator") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"set_state: a {type(bit_generator).__name__} state was expected, got {found!r}"
        )
    inner = dict(state["state"])
    if "key" in inner:  # MT19937 keeps its key as a uint32 array
        inner["key"] = np.asarray(inner["key"], dtype=np.uint32)
    bit_generator.state = {**state, "state": inner}


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    return value
