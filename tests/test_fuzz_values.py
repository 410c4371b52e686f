"""Valid but awkward arguments: non-contiguous views compute what contiguous arrays compute,
bit for bit, and NaN and infinite inputs propagate exactly as they do in torch (never an
error, never a crash), forward and backward, on both backends."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from minicnn import functional as F
from minicnn import use_backend
from tests.helpers import compare_with_torch
from tests.strategies_nn import OPS, strided, valid_calls

BACKENDS = ["numpy", "numba"]


def same(a, b) -> bool:
    """Equal shapes, dtypes and bits (NaN included), for arrays or tuples of them and None."""
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(same, a, b))
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@given(name=st.sampled_from(OPS), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_non_contiguous_arrays_give_the_same_bits(name, seed, data):
    kwargs = data.draw(valid_calls(name))
    views = {k: strided(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    assert all(
        v.size <= 1 or not v.flags.c_contiguous for v in views.values() if isinstance(v, np.ndarray)
    )
    for backend in BACKENDS:
        with use_backend(backend):
            results = [getattr(F, name)(**call, **_seeded(name, seed)) for call in (kwargs, views)]
        assert same(*results), f"{name} on {backend}: a strided view changed the result"


def _seeded(name: str, seed: int) -> dict:
    # dropout draws its mask when it is not given one: the same draw for both calls
    return {"generator": np.random.default_rng(seed)} if name in ("dropout", "dropout_mask") else {}


POSITIONAL = {
    "conv2d": ("input", "weight", "bias"),
    "linear": ("input", "weight", "bias"),
    "cross_entropy": ("input", "target"),
}
NONFINITE_OPS = [
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "relu",
    "linear",
    "softmax",
    "log_softmax",
    "cross_entropy",
]


@given(name=st.sampled_from(NONFINITE_OPS), data=st.data())
def test_nan_and_inf_inputs_propagate_like_torch(name, data):
    kwargs = data.draw(valid_calls(name))
    x = kwargs["input"].copy()
    flat = x.reshape(-1)
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, flat.size - 1))
        flat[index] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    kwargs["input"] = x
    if name == "cross_entropy":
        kwargs.pop("weight", None)  # compare_with_torch hands its kwargs to torch as they are
    if name == "max_pool2d":
        _, indices = F.max_pool2d(**kwargs, return_indices=True)
        # a window entirely in the padding makes torch's backward write out of bounds (a heap
        # corruption, see test_pool.py): such a case is no use here
        assume(not (indices >= x.shape[-2] * x.shape[-1]).any())
    names = POSITIONAL.get(name, ("input",))
    arrays = [kwargs.pop(key) for key in names if key in kwargs]
    for backend in BACKENDS:
        with use_backend(backend), np.errstate(all="ignore"):
            compare_with_torch(name, *arrays, **kwargs)
