"""Module and Sequential: the containers every layer and model is built from (Parameter is in
``minicnn.nn.parameter``, re-exported here).

A Module holds Parameters and sub-Modules and keeps what its forward pass needs for the
backward pass. ``backward(grad_output)`` returns the gradient with respect to the input and
adds each parameter's gradient into ``.grad``, accumulating as torch does until ``zero_grad``.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Iterator, Mapping

import numpy as np

from minicnn.nn import tape
from minicnn.nn.parameter import FLOAT_DTYPES, Parameter, StateDictKeyError, loadable


class Module:
    """Base class of every layer and model.

    Subclasses set Parameters and Modules as attributes in ``__init__`` (registration order is
    the order of ``parameters()`` and ``state_dict()``), implement ``forward``, and implement
    ``backward(grad_output) -> grad_input``.
    """

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # a layer's own backward reports bad gradients under the layer's name, as forward does
        if "backward" in cls.__dict__:
            cls.backward = _naming_errors(cls.__dict__["backward"])

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_last_call", None)

    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() is called in "
                f"{type(self).__name__}.__init__"
            )
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif value is None and name in ("weight", "bias"):
            # an absent parameter (bias=False) is registered as None, as in torch
            self._parameters[name] = None
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    # -- forward and backward ---------------------------------------------------------------

    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def __call__(self, *args):
        try:
            return tape.record(self, args)
        except (ValueError, TypeError) as error:
            raise _named(error, self) from error

    @tape.replays_children
    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """d loss / d input from d loss / d output, adding into every parameter's ``.grad``.

        Layers implement this themselves. For a model whose forward is a chain of module
        calls this default replays its last forward pass backwards (see ``minicnn.nn.tape``).
        """
        call = self.__dict__.get("_last_call")
        if call is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() called without a forward pass before it "
                f"(or twice for one forward pass)"
            )
        grad_input = tape.backward_call(call, grad_output)
        tape._release(call)
        return grad_input

    # -- traversal -----------------------------------------------------------------------------

    def named_modules(
        self, prefix: str = "", memo: set | None = None
    ) -> Iterator[tuple[str, Module]]:
        """Every module in the tree, each once, with its dotted name (``''`` for self)."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def _named_members(self, remove_duplicate: bool) -> Iterator[tuple[str, Parameter]]:
        # walks every registration path, so a module registered under two names is visited
        # under both; remove_duplicate keeps the first name of each parameter
        seen = set()

        def walk(module: Module, prefix: str, path: tuple):
            for name, param in module._parameters.items():
                if param is None:
                    continue
                if remove_duplicate and id(param) in seen:
                    continue
                seen.add(id(param))
                yield prefix + name, param
            for name, child in module._modules.items():
                if child is not None and id(child) not in path:
                    yield from walk(child, f"{prefix}{name}.", path + (id(child),))

        yield from walk(self, "", (id(self),))

    def named_parameters(self, remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """``(name, parameter)`` pairs; each parameter once (first name) unless asked otherwise."""
        yield from self._named_members(remove_duplicate)

    def parameters(self) -> Iterator[Parameter]:
        """Every parameter once, even when its module is registered under two names."""
        for _, param in self.named_parameters():
            yield param

    # -- state -------------------------------------------------------------------------------

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget accumulated gradients (``None`` by default, as torch; zeros if asked)."""
        for param in self.parameters():
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad[...] = 0

    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise TypeError(f"train: expected mode to be a bool, got {type(mode).__name__}")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, dtype) -> Module:
        """Cast every parameter (and its gradient) to float32 or float64, in place."""
        try:
            wanted = np.dtype(dtype)
        except TypeError:
            wanted = None  # not a dtype at all
        if wanted is None or wanted not in FLOAT_DTYPES:
            raise TypeError(f"{type(self).__name__}.to: expected float32 or float64, got {dtype!r}")
        dtype = wanted
        for param in self.parameters():
            param.data = param.data.astype(dtype)
            if param.grad is not None:
                param.grad = param.grad.astype(dtype)
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Every parameter under every name torch would give it (shared ones repeat).

        The values are the parameters' own arrays, not copies, as in torch.
        """
        return OrderedDict(
            (name, param.data) for name, param in self._named_members(remove_duplicate=False)
        )

    def load_state_dict(self, state_dict: Mapping[str, np.ndarray], strict: bool = True):
        """Copy arrays into the parameters; shapes must match.

        A float64 array stays float64 (and a float32 one float32): the parameter takes the
        incoming dtype rather than rounding it, so a float64 state loads without loss. float16
        is widened to float32 (exactly); any other dtype is a TypeError. When the dtype already
        agrees the copy is made in place. Every array is checked before any is copied, so a
        state dict that fails leaves the model as it was.

        Returns ``(missing_keys, unexpected_keys)``; with ``strict`` either being non-empty
        is a ``StateDictKeyError`` (a ValueError, and a KeyError).
        """
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"{where}: expected a mapping of names to arrays, got {type(state_dict).__name__}"
            )
        own = dict(self._named_members(remove_duplicate=False))
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        if strict and (missing or unexpected):
            raise StateDictKeyError(
                f"{where}: missing keys {missing}, unexpected keys {unexpected}"
            )
        arrays = {
            key: loadable(state_dict[key], key, param.data.shape, where)
            for key, param in own.items()
            if key in state_dict
        }
        for key, array in arrays.items():
            param = own[key]
            if param.data.dtype == array.dtype:
                np.copyto(param.data, array)
            else:
                param.data = np.array(array, copy=True)
        return missing, unexpected

    # -- printing ------------------------------------------------------------------------------

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [
            f"({name}): " + repr(module).replace("\n", "\n  ")
            for name, module in self._modules.items()
        ]
        if not lines:
            return f"{type(self).__name__}({self.extra_repr()})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


def _naming_errors(backward):
    @functools.wraps(backward)
    def named_backward(self, *args, **kwargs):
        try:
            return backward(self, *args, **kwargs)
        except (ValueError, TypeError) as error:
            raise _named(error, self) from error

    return named_backward


def _named(error: Exception, module: Module) -> Exception:
    """The same error with the failing layer named in front, once (the innermost layer)."""
    if getattr(error, "minicnn_layer", None) is not None:
        return error
    try:
        named = type(error)(f"{module!r}: {error}")
    except Exception:  # an exception type that needs other constructor arguments
        return error
    named.minicnn_layer = module
    return named
