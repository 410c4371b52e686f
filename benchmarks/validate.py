"""Before anything is timed: do the engines compute the same thing?

The minicnn model gets its weights copied into the torch model (``reference.convert``), both
run the same batch forward and backward, and the logits, the loss and every parameter's
gradient are compared with torch on the CPU as the reference. The error of an array is
``max |a - b| / max |b|``, the largest difference relative to the reference's scale, which a
correct float32 engine keeps near 1e-6. Both models run in eval mode here, so DeepCNN's
dropout (whose masks differ between engines) is off and every layer's backward is still
exercised. A speed comparison of engines that disagree would be meaningless, so a failure
raises ``ValidationError`` naming the array and the error.
"""

from __future__ import annotations

import contextlib

import numpy as np

TOLERANCE = 1e-4  # float32, relative to the reference's largest value


class ValidationError(RuntimeError):
    """An engine's logits or gradients differ from torch's on the CPU."""


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max |actual - expected| / max |expected|`` (the denominator at least 1e-30)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-30)
    return float(np.max(np.abs(actual - expected), initial=0.0)) / scale


def minicnn_pass(model, X: np.ndarray, Y: np.ndarray, backend: str = "numba") -> dict:
    """Logits, loss and gradients (by parameter name) of one eval-mode pass in minicnn."""
    import minicnn
    from minicnn import nn

    with minicnn.use_backend(backend):
        model.eval()
        model.zero_grad()
        logits = model(X)  # (B, 10)
        cost = nn.CrossEntropyLoss()(logits, Y)
        loss = float(cost)
        cost.backward()
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}
    return {"logits": np.array(logits), "loss": np.array(loss), "grads": grads}


def torch_pass(model, X: np.ndarray, Y: np.ndarray, device: str = "cpu") -> dict:
    """The same pass in torch, results copied back to NumPy."""
    import torch

    model.eval()
    model.zero_grad(set_to_none=True)
    logits = model(torch.from_numpy(X).to(device))  # (B, 10)
    cost = torch.nn.CrossEntropyLoss()(logits, torch.from_numpy(Y).to(device))
    cost.backward()
    grads = {name: p.grad.detach().cpu().numpy() for name, p in model.named_parameters()}
    return {
        "logits": logits.detach().cpu().numpy(),
        "loss": cost.detach().cpu().numpy(),
        "grads": grads,
    }


def errors(result: dict, reference: dict) -> dict:
    """Every array's ``relative_error`` against the reference, and the largest of them."""
    found = {
        "logits": relative_error(result["logits"], reference["logits"]),
        "loss": relative_error(result["loss"], reference["loss"]),
    }
    if result["grads"].keys() != reference["grads"].keys():
        raise ValidationError(
            f"the engines name their parameters differently: {sorted(result['grads'])} vs "
            f"{sorted(reference['grads'])}"
        )
    for name, grad in result["grads"].items():
        found[f"grad {name}"] = relative_error(grad, reference["grads"][name])
    worst = max(found, key=found.get)
    return {"errors": found, "worst": worst, "max_error": found[worst]}


def check(engine: str, model_name: str, result: dict, reference: dict, tolerance: float) -> dict:
    """``errors`` plus ``ok``; raises ``ValidationError`` when the worst exceeds ``tolerance``."""
    found = errors(result, reference)
    found["tolerance"] = tolerance
    found["ok"] = found["max_error"] <= tolerance
    if not found["ok"]:
        raise ValidationError(
            f"{engine} disagrees with torch-cpu on {model_name}: {found['worst']} differs by "
            f"{found['max_error']:.3g} (relative to its largest value; tolerance "
            f"{tolerance:g}). Not timing engines that compute different things."
        )
    return found


def compare(
    mini_model, torch_model, X, Y, backend: str = "numba", tolerance: float = TOLERANCE
) -> dict:
    """Check one minicnn model against one torch model on the CPU (their weights as they are:
    copy them first with ``reference.convert.copy_to_torch``)."""
    reference = torch_pass(torch_model, X, Y)
    engine = f"minicnn-{backend}"
    return check(
        engine,
        type(mini_model).__name__,
        minicnn_pass(mini_model, X, Y, backend),
        reference,
        tolerance,
    )


@contextlib.contextmanager
def without_tf32():
    """cuDNN's convolutions and cuBLAS's products in float32 proper, then as they were."""
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def validate(models: list[str], engines: list[str], X: np.ndarray, Y: np.ndarray) -> dict:
    """Every engine in ``engines`` against torch-cpu, for every model; the errors by model and
    engine; engines not available are skipped.

    torch-cuda is checked with TF32 off (cuDNN's and cuBLAS's flags). With torch's defaults
    cuDNN may compute in TF32 (a 10-bit mantissa): on an H200, DeepCNN's fc1.weight gradient
    then differed by 0.24 of its largest value on 8 images, as when a rounding tips a ReLU or
    a pool's choice and moves a whole row; with TF32 off by 2.5e-6 (the CNN: 1.4e-6 either
    way). So the GPU must agree to ``TOLERANCE`` like any engine; the timings then run with
    torch's defaults."""
    import copy

    import minicnn
    from benchmarks.engines import SEED, available
    from minicnn.models import MODELS as MINICNN_MODELS
    from reference.convert import copy_to_torch
    from reference.models import MODELS as TORCH_MODELS

    report: dict[str, dict] = {}
    for name in models:
        minicnn.manual_seed(SEED)
        mini = MINICNN_MODELS[name]()
        reference_model = copy_to_torch(mini, TORCH_MODELS[name]())
        reference = torch_pass(reference_model, X, Y)
        report[name] = {}
        for engine in engines:
            if engine == "torch-cpu" or not available(engine)[0]:
                continue
            if engine == "torch-cuda":
                on_gpu = copy.deepcopy(reference_model).to("cuda")
                with without_tf32():
                    result = torch_pass(on_gpu, X, Y, device="cuda")
            else:
                backend = engine.removeprefix("minicnn-")
                result = minicnn_pass(mini, X, Y, backend)
            report[name][engine] = check(engine, name, result, reference, TOLERANCE)
    return report
