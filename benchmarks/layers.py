"""Where a training step's time goes: forward and backward time of every layer, both engines.

minicnn: every leaf module's ``forward`` and ``backward`` (and the loss's, and the
optimizer's ``zero_grad`` and ``step``) is shadowed by an instance attribute that calls the
method between two ``time.perf_counter`` readings; so is each fused Conv2d -> ReLU ->
MaxPool2d layer (``minicnn.nn.fused``), whose time goes to its conv's row. The tape calls
``module.forward`` and ``module.backward``, so it picks the wrappers up; deleting the
attributes restores the model.

torch: forward pre- and post-hooks time each leaf's forward (and the loss's). A backward starts
at ``register_full_backward_pre_hook`` (the gradient of the module's output is ready) and ends
at the later of ``register_full_backward_hook`` (its input's gradient is done) and the
``register_post_accumulate_grad_hook`` of each of its parameters (its weight gradients are
stored). The latter matters for the first layer: its input needs no gradient, so its full
backward hook fires as soon as the gradient of its output is ready, before the convolution's
backward has run. On the CPU autograd runs the nodes one after another on the calling thread,
and a parameter's AccumulateGrad node runs as soon as it is ready, so these hooks bracket
exactly that layer's backward. Full backward hooks insert an identity autograd node around
each module, which adds a few microseconds per layer to torch's times; the whole step is
timed without hooks by ``benchmarks.timing``, so the headline ratios do not carry this cost.
The optimizer is wrapped as in minicnn.

"other" is the step time (with the timers in place) minus the rows: Python overhead,
reshapes, autograd bookkeeping. Each row is the median over the timed steps.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections import defaultdict


class _Clock:
    """Per-step totals of named timings: ``totals[(name, phase)][step]`` in seconds."""

    def __init__(self) -> None:
        self.step = 0
        self.totals: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
        self.started: dict[tuple[str, str], float] = {}
        self.ended: dict[tuple[str, str], float] = {}

    def settle(self) -> None:
        """Add the intervals whose end was recorded as a time (``ended``) for this step."""
        for key, end in self.ended.items():
            self.add(key, end - self.started.pop(key))
        self.ended.clear()

    def add(self, key: tuple[str, str], seconds: float) -> None:
        step_totals = self.totals[key]
        step_totals[self.step] = step_totals.get(self.step, 0.0) + seconds

    def wrap(self, function, key: tuple[str, str]):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(key, time.perf_counter() - start)

        return timed

    def medians(self, steps: range) -> dict[tuple[str, str], float]:
        return {
            key: statistics.median(t.get(s, 0.0) for s in steps) for key, t in self.totals.items()
        }


def _leaves(model, is_leaf) -> list[tuple[str, object]]:
    return [(name, module) for name, module in model.named_modules() if name and is_leaf(module)]


def _run(runner, clock: _Clock, steps: int, warmup: int) -> tuple[list[float], range]:
    """Warm up, then time ``steps`` training steps whole; the step indices that count."""
    step_times = []
    for index in range(warmup + steps):
        clock.step = index
        start = time.perf_counter()
        runner.train_step()
        runner.sync()
        step_times.append(time.perf_counter() - start)
        clock.settle()
    return step_times[warmup:], range(warmup, warmup + steps)


def _rows(
    leaves, clock: _Clock, counted: range, step_times: list[float], extra, kinds: dict | None = None
) -> dict:
    """Per-step samples of every row and of "other" (the step minus its rows), summarized;
    ``kinds`` renames the kind of some rows (by name)."""
    kinds = kinds or {}
    names = [(name, kinds.get(name, type(module).__name__)) for name, module in leaves]
    rows = []
    for name, kind in [*names, *((name, "") for name in extra)]:
        rows.append(
            {
                "name": name,
                "kind": kind,
                **{
                    f"{phase}_samples_s": [clock.totals[(name, phase)].get(s, 0.0) for s in counted]
                    for phase in ("forward", "backward")
                },
            }
        )
    other = [
        step - sum(r["forward_samples_s"][i] + r["backward_samples_s"][i] for r in rows)
        for i, step in enumerate(step_times)
    ]
    return _summarize({"rows": rows, "step_samples_s": list(step_times), "other_samples_s": other})


def _summarize(result: dict) -> dict:
    """``forward_s``, ``backward_s``, ``step_s`` and ``other_s``: medians of the samples."""
    for row in result["rows"]:
        row["forward_s"] = statistics.median(row["forward_samples_s"])
        row["backward_s"] = statistics.median(row["backward_samples_s"])
    result["step_s"] = statistics.median(result["step_samples_s"])
    result["other_s"] = statistics.median(result["other_samples_s"])
    return result


def minicnn_layers(runner, steps: int = 10, warmup: int = 2) -> dict:
    """Per-layer times of a ``MinicnnRunner``'s training step (see the module docstring)."""
    import minicnn
    from minicnn.nn.fused import fused_children

    clock = _Clock()
    leaves = _leaves(runner.model, lambda m: not m._modules)
    wrapped = [*leaves, ("loss", runner.criterion)]
    kinds = {}
    with minicnn.use_backend(runner.backend):
        # a Conv2d -> ReLU -> MaxPool2d run that Sequential fuses is one call: its time goes
        # to the conv's row, and the ReLU and MaxPool2d rows stay empty
        names = {id(module): name for name, module in leaves}
        for _, sequential in runner.model.named_modules():
            if isinstance(sequential, minicnn.nn.Sequential):
                for call in fused_children(sequential):
                    if isinstance(call, minicnn.nn.ConvReLUMaxPool2d):
                        conv_name = names[id(call.conv)]
                        wrapped.append((conv_name, call))
                        kinds[conv_name] = "Conv2d+ReLU+MaxPool2d fused"
                        kinds[names[id(call.relu)]] = kinds[names[id(call.pool)]] = "in it"
    for name, module in wrapped:
        for phase in ("forward", "backward"):
            module.__dict__[phase] = clock.wrap(getattr(module, phase), (name, phase))
    optimizer = runner.optimizer
    optimizer.__dict__["step"] = clock.wrap(optimizer.step, ("optimizer step", "forward"))
    optimizer.__dict__["zero_grad"] = clock.wrap(optimizer.zero_grad, ("zero_grad", "forward"))
    try:
        with minicnn.use_backend(runner.backend):
            runner.model.train()
            step_times, counted = _run(runner, clock, steps, warmup)
    finally:
        for _, module in wrapped:
            module.__dict__.pop("forward", None)
            module.__dict__.pop("backward", None)
        optimizer.__dict__.pop("step", None)
        optimizer.__dict__.pop("zero_grad", None)
    return _rows(leaves, clock, counted, step_times, ["loss", "zero_grad", "optimizer step"], kinds)


def torch_layers(runner, steps: int = 10, warmup: int = 2) -> dict:
    """Per-layer times of a CPU ``TorchRunner``'s training step (see the module docstring)."""
    clock = _Clock()
    leaves = _leaves(runner.model, lambda m: not list(m.children()))
    handles = []

    def forward_hooks(key):
        def begin(*_):
            clock.started[key] = time.perf_counter()

        def end(*_):
            clock.add(key, time.perf_counter() - clock.started.pop(key))

        return begin, end

    def backward_hooks(key):
        def begin(*_):
            clock.started[key] = time.perf_counter()

        def end(*_):  # the last of the module's backward events wins (see the docstring)
            clock.ended[key] = time.perf_counter()

        return begin, end

    for name, module in [*leaves, ("loss", runner.criterion)]:
        begin, end = forward_hooks((name, "forward"))
        handles += [module.register_forward_pre_hook(begin), module.register_forward_hook(end)]
        begin, end = backward_hooks((name, "backward"))
        handles += [
            module.register_full_backward_pre_hook(begin),
            module.register_full_backward_hook(end),
        ]
        for param in module.parameters(recurse=False):
            handles.append(param.register_post_accumulate_grad_hook(end))
    optimizer = runner.optimizer
    optimizer.__dict__["step"] = clock.wrap(optimizer.step, ("optimizer step", "forward"))
    optimizer.__dict__["zero_grad"] = clock.wrap(optimizer.zero_grad, ("zero_grad", "forward"))
    try:
        with warnings.catch_warnings():
            # expected for the first layer, whose input (the images) needs no gradient
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            runner.model.train()
            step_times, counted = _run(runner, clock, steps, warmup)
    finally:
        for handle in handles:
            handle.remove()
        optimizer.__dict__.pop("step", None)
        optimizer.__dict__.pop("zero_grad", None)
    return _rows(leaves, clock, counted, step_times, ["loss", "zero_grad", "optimizer step"])


def layer_times(runner, steps: int = 10, warmup: int = 2) -> dict:
    """``minicnn_layers`` or ``torch_layers``, whichever fits the runner's engine."""
    if runner.engine.startswith("minicnn"):
        return minicnn_layers(runner, steps, warmup)
    if runner.engine != "torch-cpu":
        raise ValueError(f"per-layer times are measured on the CPU only, not {runner.engine}")
    return torch_layers(runner, steps, warmup)


def merge(results: list[dict]) -> dict:
    """Several ``layer_times`` results of one engine as one: their samples pooled."""
    rows = [
        {
            **row,
            **{
                key: [x for r in results for x in r["rows"][i][key]]
                for key in ("forward_samples_s", "backward_samples_s")
            },
        }
        for i, row in enumerate(results[0]["rows"])
    ]
    pooled = {
        key: [x for r in results for x in r[key]] for key in ("step_samples_s", "other_samples_s")
    }
    return _summarize({"rows": rows, **pooled, "rounds": len(results)})
