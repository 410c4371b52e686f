"""The tape: how ``cost.backward()`` finds its way back through a model.

Every module call is recorded as a ``Call``: the module, its inputs, its output, what a layer
saved for its backward pass, and the calls made inside its forward (its children). A model
whose ``forward`` is a chain of module calls — with reshapes between them, as in
``out = self.fc(out.reshape(N, -1))`` — then needs no ``backward`` of its own: the default
``Module.backward`` replays its children's calls in reverse, each receiving the gradient of
the array it produced (reshaped back to that array's shape).

A loss returns a ``LossValue``, a 0-d array whose ``backward()`` asks the loss for the
gradient of its input and hands it to the call that produced that input. Inside
``no_grad()`` nothing is recorded or saved, as in torch.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

import numpy as np

_grad_enabled = True
_stack: list[Call] = []  # the calls whose forward is running, innermost last
# the outermost calls, by the identity of their output, while they are alive
_producers: weakref.WeakValueDictionary[int, Call] = weakref.WeakValueDictionary()


class Call:
    """One module call: enough to run its backward pass later."""

    __slots__ = ("module", "inputs", "output", "saved", "children", "__weakref__")

    def __init__(self, module, inputs: tuple) -> None:
        self.module = module
        self.inputs = inputs
        self.output = None
        self.saved = None
        self.children: list[Call] = []


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Run forward passes without recording them or saving arrays for backward."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


def record(module, args: tuple):
    """Run ``module.forward(*args)`` and keep the call on the tape (see the module docstring)."""
    if not _grad_enabled:
        out = module.forward(*args)
        if "saved" in module.__dict__:
            module.saved = None  # nothing will run backward: keep no arrays alive
        return out
    call = Call(module, args)
    _stack.append(call)
    try:
        out = module.forward(*args)
    finally:
        _stack.pop()
    call.output = out
    call.saved = module.__dict__.get("saved")
    if _stack:
        _stack[-1].children.append(call)
    else:
        _producers[id(out)] = call
    object.__setattr__(module, "_last_call", call)
    return out


def backward_call(call: Call, grad_output: np.ndarray, input_grad: bool = True):
    """The gradient with respect to ``call``'s first input, given that of its output.

    ``input_grad=False`` says nobody needs that gradient (the call's input is the model's
    input, as for ``cost.backward()``): a layer whose ``needs_input_grad`` is then False may
    skip computing it and return None, as torch skips it for an input without requires_grad.
    """
    module = call.module
    if not _uses_default_backward(module):
        if "saved" in module.__dict__:
            module.saved = call.saved  # this call's arrays, even if the layer ran again since
        object.__setattr__(module, "needs_input_grad", input_grad)
        try:
            return module.backward(grad_output)
        finally:
            object.__setattr__(module, "needs_input_grad", True)
    if not call.children:
        raise RuntimeError(
            f"{type(module).__name__}.backward: its forward called no modules, so there is "
            f"nothing to replay; implement {type(module).__name__}.backward"
        )
    grad = grad_output
    consumer = call.output  # the array whose gradient ``grad`` is
    first = call.children[0]
    for child in reversed(call.children):
        grad = _carry(grad, consumer, child.output, module, child.module)
        # only the first child's input is this call's input: the others feed a next child
        grad = backward_call(child, grad, input_grad or child is not first)
        consumer = child.inputs[0]
    if grad is None:
        return None
    return _carry(grad, consumer, call.inputs[0], module, "its input")


def replays_children(backward):
    """Marks ``Module.backward``, the default that replays a call's children; a layer that
    overrides it computes its own gradient, and ``backward_call`` hands it the saved arrays."""
    backward.replays_children = True
    return backward


def _uses_default_backward(module) -> bool:
    return getattr(type(module).backward, "replays_children", False)


def _carry(grad, consumer, producer, module, source) -> np.ndarray:
    """``grad`` (the gradient of ``consumer``) as the gradient of ``producer``, which
    ``consumer`` must be, or a reshaped view of."""
    if consumer is producer:
        return grad
    if (
        isinstance(consumer, np.ndarray)
        and isinstance(producer, np.ndarray)
        and consumer.size == producer.size
        and np.may_share_memory(consumer, producer)
    ):
        return np.reshape(grad, producer.shape)
    name = source if isinstance(source, str) else type(source).__name__
    raise RuntimeError(
        f"{type(module).__name__}.backward: its forward is not a chain of module calls (the "
        f"output of {name} is not what the next step consumed); implement "
        f"{type(module).__name__}.backward for this model"
    )


def producer_of(array: np.ndarray) -> Call | None:
    """The outermost recorded call whose output is ``array`` (or a view of it)."""
    call = _producers.get(id(array))
    if call is not None and call.output is array:
        return call
    for call in list(_producers.values()):
        out = call.output
        if (
            isinstance(out, np.ndarray)
            and out.size == array.size
            and np.may_share_memory(out, array)
        ):
            return call
    return None


class LossValue(np.ndarray):
    """A loss: a 0-d array (print it, ``float()`` it, ``.item()`` it) with ``backward()``.

    ``backward()`` fills every parameter's ``.grad`` of the model that produced the loss's
    input, as ``loss.backward()`` does in torch. Arithmetic on it gives plain NumPy values.
    """

    def __new__(cls, value: np.ndarray, criterion, logits: np.ndarray) -> LossValue:
        obj = np.asarray(value).view(cls)
        obj._criterion = criterion
        obj._logits = logits
        return obj

    def __array_finalize__(self, obj) -> None:
        self._criterion = getattr(obj, "_criterion", None)
        self._logits = getattr(obj, "_logits", None)

    def __array_wrap__(self, array, context=None, return_scalar=False):
        plain = np.asarray(array).view(np.ndarray)
        return plain[()] if plain.ndim == 0 else plain

    def backward(self) -> None:
        if self._criterion is None:
            raise RuntimeError("backward: this loss value is not attached to a loss module")
        grad_logits = self._criterion.backward()
        producer = producer_of(self._logits)
        if producer is None:
            raise RuntimeError(
                "backward: the loss's input was not produced by a recorded module call (was it "
                "computed inside no_grad(), or already backpropagated?)"
            )
        if producer.output is not self._logits:
            grad_logits = np.reshape(grad_logits, producer.output.shape)
        backward_call(producer, grad_logits, input_grad=False)  # the model's input needs none
        _release(producer)
        self._criterion = None

    def __reduce__(self):
        return (np.asarray, (np.asarray(self).view(np.ndarray).copy(),))


def _release(call: Call) -> None:
    """Drop a finished call's arrays, as torch frees its graph after backward."""
    _producers.pop(id(call.output), None)
    if getattr(call.module, "_last_call", None) is call:
        object.__setattr__(call.module, "_last_call", None)
    for child in call.children:
        _release(child)
    call.children = []
    call.saved = None
