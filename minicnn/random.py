"""The default random generator behind minicnn's initialisers and dropout.

Every function that draws random numbers takes ``generator=None``; ``None`` means this
module's default NumPy ``Generator``, which ``manual_seed`` reseeds (like ``torch.manual_seed``).
"""

from __future__ import annotations

import numpy as np

_default_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the default generator (a fresh ``np.random.default_rng(seed)``) and return it."""
    global _default_generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: expected an int seed, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"manual_seed: expected a non-negative seed, got {seed}")
    _default_generator = np.random.default_rng(int(seed))
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


def get_state() -> dict:
    """The default generator's state, a JSON-serialisable dict (for checkpoints)."""
    return _default_generator.bit_generator.state


def set_state(state: dict) -> None:
    """Restore the default generator's state saved by ``get_state``."""
    _default_generator.bit_generator.state = state
