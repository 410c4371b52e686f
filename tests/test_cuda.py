"""The GPU path: the reference models on CUDA agree with minicnn in float64, and ``minicnn
train --engine torch --device cuda`` trains, writes a checkpoint that loads on the CPU, and
resumes on the GPU as if it had not stopped (dropout's masks from the restored CUDA generator).

Skipped where torch sees no CUDA device (CI has none); on a GPU machine run
``python -m pytest tests/test_cuda.py``. What runs without a GPU (``--device cuda`` without
one is a clear error) is tested in test_cli.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import minicnn
from benchmarks.validate import errors, minicnn_pass, torch_pass
from minicnn.data import load_mnist
from minicnn.io.checkpoint import load_checkpoint, load_model
from minicnn.models import MODELS
from minicnn.train import accuracy, train
from tests.test_cli import EPOCH_LINE, accuracy_in, train_with_torch
from tests.test_resume import config, quiet

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason=f"torch {torch.__version__} sees no CUDA device"
)


@pytest.mark.parametrize("name", ["cnn", "deep"])
def test_reference_on_cuda_matches_minicnn_in_float64(name):
    from reference.convert import copy_to_torch
    from reference.models import MODELS as TORCH_MODELS

    minicnn.manual_seed(0)
    mini = MODELS[name](dtype=np.float64)
    on_gpu = copy_to_torch(mini, TORCH_MODELS[name]().double()).to("cuda")
    rng = np.random.default_rng(1)
    X = rng.random((16, 1, 28, 28))  # (N, C, H, W) float64 in [0, 1)
    Y = rng.integers(0, 10, 16)  # (N,) int64
    found = errors(torch_pass(on_gpu, X, Y, device="cuda"), minicnn_pass(mini, X, Y))
    assert found["max_error"] < 1e-10, found


def test_train_on_cuda_writes_a_checkpoint_that_loads_on_the_cpu(mnist_dir, tmp_path):
    path = tmp_path / "cuda.safetensors"
    code, out, err = train_with_torch("cuda", mnist_dir, path)
    assert code == 0, err
    assert "with torch on cuda" in out and EPOCH_LINE.search(out), out
    checkpoint = load_checkpoint(path)
    assert checkpoint.config["device"] == "cuda" and "torch_cuda" in checkpoint.rng_state
    images, labels = load_mnist(mnist_dir, train=False)
    # the same weights on the CPU in minicnn: at most a rare float32 tie flips a prediction
    ours = accuracy(load_model(path), images[:500], labels[:500])
    assert abs(ours - accuracy_in(out)) <= 2 / 500


def test_resume_on_cuda_continues_the_run(mnist_dir, tmp_path):
    """DeepCNN in float64: 1 epoch + resume + 1 epoch equals 2 epochs in one go. cuDNN may sum
    in another order from run to run, hence a tolerance; a wrong dropout mask after the resume
    (a CUDA generator not restored) would change the weights by far more."""
    cuda = {"device": "cuda", "dtype": "float64"}
    whole = config(mnist_dir, tmp_path, "whole", "torch", "deep", **cuda)
    whole_result = quiet(train, whole)
    first = config(mnist_dir, tmp_path, "split", "torch", "deep", epochs=1, **cuda)
    quiet(train, first)
    second = config(mnist_dir, tmp_path, "split", "torch", "deep", resume=first.save, **cuda)
    result = quiet(train, second)
    np.testing.assert_allclose(result.costs, whole_result.costs, rtol=1e-10)
    a, b = load_checkpoint(whole.save), load_checkpoint(second.save)
    assert (a.epoch, a.step) == (b.epoch, b.step) == (2, 2 * 4)
    for key, value in a.state_dict.items():
        np.testing.assert_allclose(b.state_dict[key], value, rtol=0, atol=1e-10, err_msg=key)
