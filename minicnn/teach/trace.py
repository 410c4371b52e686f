"""Watch a model run: every module call of one forward pass, named, with its input and output.

``trace(model, x)`` runs ``model(x)`` once in eval mode and reads the calls back from the tape
(``minicnn.nn.tape``), which records every module call with the calls made inside it. That
gives, for any model built from ``minicnn.nn`` modules, whatever its ``forward`` does:

* ``layers``: the innermost calls (Conv2d, ReLU, ...) in the order they ran, named by their
  path in the model (``layer1.0``), with a ``reshape`` step wherever the forward reshaped an
  array between two calls (the deck's ``out.view(out.size(0), -1)``);
* ``blocks``: the model's own calls (``layer1``, ``layer2``, ``fc``), for pictures of what
  each block makes of an image.

``summarize`` builds its table from ``layers``; ``show`` draws ``blocks``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import numpy as np

from minicnn.nn import tape
from minicnn.nn.fused import fusion
from minicnn.nn.module import Module

RESHAPE = "reshape"  # the kind of a step that is a reshape in a forward, not a module call


@dataclasses.dataclass(frozen=True)
class Step:
    """One module call of the traced forward pass (or a reshape between two of them).

    Attributes:
        name: the module's path in the model (``'layer1.0'``); ``''`` for the model itself
            and for a reshape.
        module: the module called; None for a reshape.
        input: the array it received.
        output: the array it returned.
        aliases: the module's other paths in the model (DeepCNN's ``layer4.0`` is also
            ``fc1``).
    """

    name: str
    module: Module | None
    input: np.ndarray
    output: np.ndarray
    aliases: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """The module's class name, or ``'reshape'``."""
        return RESHAPE if self.module is None else type(self.module).__name__


@dataclasses.dataclass(frozen=True)
class Trace:
    """What ``trace`` saw: the model's output, its top-level calls and its innermost ones."""

    output: np.ndarray
    blocks: list[Step]
    layers: list[Step]


def trace(model: Module, x: np.ndarray) -> Trace:
    """Run ``model(x)`` once in eval mode and return every module call it made (see the
    module docstring). The model's training mode is restored and nothing is kept for a
    backward pass; in eval mode Dropout draws no mask, so no random state is used."""
    if not isinstance(model, Module):
        raise TypeError(f"trace: expected a minicnn.nn.Module, got {type(model).__name__}")
    if not isinstance(x, np.ndarray):
        raise TypeError(f"trace: expected x to be a numpy array, got {type(x).__name__}")
    was_training = model.training
    model.eval()
    try:
        with _recording(), fusion(False):  # every layer's own call, none fused
            output = model(x)
        call = model.__dict__.get("_last_call")
    finally:
        model.train(was_training)
    names = _all_names(model)
    try:
        if not call.children:  # the model is a single layer
            root = Step("", model, call.inputs[0], output)
            return Trace(output, [root], [root])
        blocks = [
            _step(child, _join("", _key(model, child.module)), names) for child in call.children
        ]
        return Trace(output, blocks, _with_reshapes(list(_leaves(call, "", names))))
    finally:
        _forget(call)


# -- walking the recorded calls -------------------------------------------------------------


@contextlib.contextmanager
def _recording() -> Iterator[None]:
    """Record module calls even inside ``no_grad()``: the tape is how calls are seen."""
    previous = tape._grad_enabled
    tape._grad_enabled = True
    try:
        yield
    finally:
        tape._grad_enabled = previous


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _key(parent: Module, child: Module) -> str:
    """The name ``child`` is registered under in ``parent`` (its class name if none)."""
    for key, module in parent._modules.items():
        if module is child:
            return key
    return type(child).__name__


def _all_names(model: Module) -> dict[int, list[str]]:
    """Every path to every module, as torch's ``named_modules(remove_duplicate=False)``."""
    names: dict[int, list[str]] = {}

    def walk(module: Module, prefix: str, path: tuple[int, ...]) -> None:
        names.setdefault(id(module), []).append(prefix)
        for key, child in module._modules.items():
            if child is not None and id(child) not in path:
                walk(child, _join(prefix, key), path + (id(child),))

    walk(model, "", (id(model),))
    return names


def _step(call: tape.Call, name: str, names: dict[int, list[str]]) -> Step:
    aliases = tuple(n for n in names.get(id(call.module), []) if n != name)
    return Step(name, call.module, call.inputs[0], call.output, aliases)


def _leaves(call: tape.Call, name: str, names: dict[int, list[str]]) -> Iterator[Step]:
    """The innermost calls under ``call``, depth first, in the order they ran."""
    if not call.children:
        yield _step(call, name, names)
        return
    for child in call.children:
        yield from _leaves(child, _join(name, _key(call.module, child.module)), names)


def _with_reshapes(steps: list[Step]) -> list[Step]:
    """``steps`` with a reshape step wherever a call's input is a reshaped view of the output
    of the call before it."""
    result: list[Step] = []
    for step in steps:
        before = result[-1].output if result else None
        x = step.input
        if (
            isinstance(before, np.ndarray)
            and isinstance(x, np.ndarray)
            and x is not before
            and x.shape != before.shape
            and x.size == before.size
            and np.may_share_memory(x, before)
        ):
            result.append(Step("", None, before, x))
        result.append(step)
    return result


def _forget(call: tape.Call) -> None:
    """Drop the arrays the traced pass left for a backward pass that will not come."""
    stack = [call]
    while stack:
        current = stack.pop()
        if "saved" in current.module.__dict__:
            current.module.saved = None
        stack.extend(current.children)
    tape._release(call)
