"""Hypothesis strategies for fuzzing modules and optimizers: a valid module (or optimizer) and a
valid call of it, with some of the arguments made wrong by ``tests.strategies_nn.wrong``.

Modules are drawn as specifications, ``(class name, constructor kwargs)``, and built by
``build``, so that hypothesis prints a failing example as readable data.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from minicnn import nn
from tests.strategies import (
    any_arrays,
    arrays,
    conv2d_cases,
    cross_entropy_cases,
    dtypes,
    linear_cases,
    pool_cases,
)
from tests.strategies_nn import sequential_cases, wrong

MODULES = [
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "ReLU",
    "Linear",
    "Flatten",
    "Dropout",
    "Sequential",
    "CrossEntropyLoss",
]
SEEDED = ("Conv2d", "Linear", "Dropout")  # layers that draw random numbers take a generator


def build(kind: str, kwargs: dict) -> nn.Module:
    """``nn.<kind>(**kwargs)``; a Sequential's kwargs are its layers' specifications."""
    if kind == "Sequential":
        # a specification is built; anything else (a junk layer) is passed on as it is
        return nn.Sequential(
            *(build(*layer) if isinstance(layer, tuple) else layer for layer in kwargs["layers"])
        )
    if kind in SEEDED and "generator" not in kwargs:
        kwargs = dict(kwargs, generator=np.random.default_rng(0))
    return getattr(nn, kind)(**kwargs)


@st.composite
def valid_modules(draw, kind: str) -> tuple[dict, tuple]:
    """(constructor kwargs, forward inputs) of a valid ``nn.<kind>`` and a valid input."""
    if kind == "Conv2d":
        x, w, b, conv = draw(conv2d_cases())
        C_out, Cg, kH, kW = w.shape
        kwargs = dict(
            in_channels=Cg * conv["groups"],
            out_channels=C_out,
            kernel_size=(kH, kW),
            **conv,
            bias=b is not None,
            dtype=x.dtype,
        )
        return kwargs, (x,)
    if kind in ("MaxPool2d", "AvgPool2d"):
        x, kwargs = draw(pool_cases(kind[:3].lower()))
        return kwargs, (x,)
    if kind == "Linear":
        x, w, b = draw(linear_cases())
        kwargs = dict(
            in_features=w.shape[1], out_features=w.shape[0], bias=b is not None, dtype=x.dtype
        )
        return kwargs, (x,)
    if kind == "CrossEntropyLoss":
        logits, target, kwargs = draw(cross_entropy_cases())
        return kwargs, (logits, target)
    if kind == "Sequential":
        layers, x = draw(sequential_cases())
        specs = [
            (name, dict(zip(_POSITIONAL.get(name, ()), args), **kw)) for name, args, kw in layers
        ]
        return {"layers": specs}, (x,)
    x = draw(any_arrays(min_dims=2 if kind == "Flatten" else 1))
    if kind == "Flatten":
        return dict(start_dim=draw(st.integers(-x.ndim, x.ndim - 1)), end_dim=-1), (x,)
    if kind == "Dropout":
        return dict(p=draw(st.sampled_from([0.0, 0.3, 1.0]))), (x,)
    assert kind == "ReLU", kind
    return {}, (x,)


_POSITIONAL = {
    "Conv2d": ("in_channels", "out_channels", "kernel_size"),
    "Linear": ("in_features", "out_features"),
}


@st.composite
def wrong_kwargs(draw, kwargs: dict) -> dict:
    """``kwargs`` with one or two values made wrong (a Sequential: one layer made junk)."""
    kwargs = dict(kwargs)
    if "layers" in kwargs:
        layers = list(kwargs["layers"])
        layers[draw(st.integers(0, len(layers) - 1))] = draw(st.sampled_from([None, 1, np.tanh]))
        return dict(kwargs, layers=layers)
    names = sorted(kwargs) + ["generator"] * ("dtype" in kwargs)  # the seeded layers too
    if not names:  # ReLU takes no arguments
        return kwargs
    for key in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)):
        if key == "dtype":
            kwargs[key] = draw(
                st.sampled_from(
                    [np.float16, np.int64, np.bool_, "bogus", 3, None, "float64", np.complex64]
                )
            )
        elif key == "generator":
            kwargs[key] = draw(st.sampled_from([0, "rng", np.random.RandomState(0)]))
        else:
            kwargs[key] = draw(wrong(kwargs.get(key)))
    return kwargs


@st.composite
def module_cases(draw) -> tuple[str, dict, tuple, str]:
    """(kind, constructor kwargs, forward inputs, what to do): ``'build'`` with wrong kwargs,
    ``'forward'`` or ``'backward'`` with a wrong argument, ``'eval'`` (a backward in eval
    mode), ``'order'`` (backward without forward, or twice), ``'state'`` (a wrong state dict)."""
    kind = draw(st.sampled_from(MODULES))
    kwargs, inputs = draw(valid_modules(kind))
    what = draw(st.sampled_from(["build", "forward", "backward", "eval", "order", "state"]))
    if what == "build":
        kwargs = draw(wrong_kwargs(kwargs))
    elif what == "forward":
        inputs = list(inputs)
        for i in draw(st.lists(st.integers(0, len(inputs) - 1), min_size=1, unique=True)):
            inputs[i] = draw(wrong(inputs[i]))
        inputs = tuple(inputs)
    return kind, kwargs, inputs, what


@st.composite
def wrong_state(draw, state: dict) -> dict:
    """A module's state dict with a name dropped, added or renamed, or an array made wrong."""
    state = dict(state)
    how = draw(st.sampled_from(["drop", "add", "rename", "value", "value"]))
    if how == "add" or not state:
        state[draw(st.sampled_from(["extra", "weight", "0.weight"]))] = np.zeros(1)
    elif how in ("drop", "rename"):
        key = draw(st.sampled_from(sorted(state)))
        value = state.pop(key)
        if how == "rename":
            state[key + "s"] = value
    else:
        key = draw(st.sampled_from(sorted(state)))
        state[key] = draw(wrong(state[key]))
    return state


OPTIMIZERS = {
    "SGD": lambda: dict(
        lr=st.sampled_from([0.0, 0.01, 0.5]),
        momentum=st.sampled_from([0.0, 0.9]),
        dampening=st.just(0.0),
        weight_decay=st.sampled_from([0.0, 0.1]),
        nesterov=st.booleans(),
        maximize=st.booleans(),
    ),
    "Adam": lambda: dict(
        lr=st.sampled_from([0.0, 1e-3, 0.5]),
        betas=st.just((0.9, 0.999)),
        eps=st.sampled_from([1e-8, 0.0]),
        weight_decay=st.sampled_from([0, 0.1]),
        amsgrad=st.booleans(),
        maximize=st.booleans(),
    ),
    "AdamW": lambda: dict(
        lr=st.sampled_from([1e-3, 0.5]),
        betas=st.just((0.5, 0.0)),
        weight_decay=st.sampled_from([0.0, 1e-2]),
        amsgrad=st.booleans(),
    ),
}


# each wrong for some hyperparameter: out of range, NaN, not a number, a pair for a number, a
# number for a pair, too large for a float, a string posing as a bool
WRONG_HYPERPARAMETERS = [
    -1.0,
    float("nan"),
    "0.1",
    None,
    (0.9,),
    1j,
    10**400,
    (0.9, 1.5),
    [0.9, 0.99],
    np.array(0.1),
    "False",
]


@st.composite
def optimizer_cases(draw) -> tuple[str, list, dict, str]:
    """(optimizer name, parameters with gradients, hyperparameters, what to do): ``'build'``
    with a wrong hyperparameter or parameter list, ``'step'`` with a wrong gradient, or
    ``'state'`` (load a state dict made wrong)."""
    name = draw(st.sampled_from(sorted(OPTIMIZERS)))
    kwargs = {key: draw(values) for key, values in OPTIMIZERS[name]().items()}
    if name == "SGD" and kwargs["momentum"] == 0:
        kwargs["nesterov"] = False  # torch's rule: Nesterov needs a momentum
    dtype = draw(dtypes)
    params = []
    for _ in range(draw(st.integers(1, 3))):
        shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
        param = nn.Parameter(arrays(draw, shape, dtype))
        param.grad = arrays(draw, shape, dtype)
        params.append(param)
    what = draw(st.sampled_from(["build", "step", "state"]))
    if what == "build":
        key = draw(st.sampled_from([*sorted(kwargs), "params"]))
        if key == "params":
            return (
                name,
                draw(
                    st.sampled_from(
                        [
                            [],
                            [np.zeros(2)],
                            None,
                            params[0],
                            [{}],
                            [{"params": params, "lr": -1.0}],
                            {"params": params},
                        ]
                    )
                ),
                kwargs,
                what,
            )
        kwargs[key] = draw(st.sampled_from(WRONG_HYPERPARAMETERS))
    elif what == "step":
        param = params[draw(st.integers(0, len(params) - 1))]
        param.grad = draw(wrong(param.grad))
    return name, params, kwargs, what


@st.composite
def wrong_optimizer_state(draw, state: dict) -> object:
    """An optimizer's ``state_dict()`` with one part made wrong (or not a dict at all)."""
    how = draw(
        st.sampled_from(
            [
                "junk",
                "groups",
                "group",
                "params",
                "buffers",
                "buffer",
                "step",
                "number",
                "drop",
                "hyper",
            ]
        )
    )
    groups, buffers = state["param_groups"], state["state"]
    if how == "junk":
        return draw(st.sampled_from([None, [], {"state": {}}, {"state": [], "param_groups": []}]))
    if how == "groups":
        return dict(state, param_groups=draw(st.sampled_from([None, groups * 2, {}, "x"])))
    if how == "group":
        return dict(state, param_groups=[draw(st.sampled_from([None, {}, [1], "x"]))] + groups[1:])
    if how == "params":
        junk = draw(st.sampled_from([None, [0.5], [[0]], ["0"], [True], [99], list(range(9))]))
        return dict(state, param_groups=[dict(groups[0], params=junk)] + groups[1:])
    if how == "hyper":
        key = draw(st.sampled_from(sorted(k for k in groups[0] if k != "params")))
        value = draw(st.sampled_from([-1.0, None, "x", float("nan"), (1.0, 2.0)]))
        return dict(state, param_groups=[dict(groups[0], **{key: value})] + groups[1:])
    if how == "buffers" or not buffers:
        return dict(state, state=draw(st.sampled_from([None, [], {0: None}, {0: [1.0]}, {9: {}}])))
    index = draw(st.sampled_from(sorted(buffers)))
    entry = dict(buffers[index])
    key = draw(st.sampled_from(sorted(entry)))
    if how == "drop":
        del entry[key]
    elif how == "number":
        entry[key] = 0.5
    elif how == "step" or key == "step":
        entry["step"] = draw(
            st.sampled_from([None, "3", float("nan"), -1.0, np.ones(2), 1j, [1.0]])
        )
    else:
        entry[key] = draw(wrong(entry[key]))
    return dict(state, state={**buffers, index: entry})
