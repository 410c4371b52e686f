"""reference.convert: minicnn ↔ torch weights, bit for bit, with named key and shape errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minicnn.models import MODELS
from reference import models as reference
from reference.convert import (
    copy_from_torch,
    copy_to_torch,
    from_torch_state_dict,
    to_torch_state_dict,
)

TORCH_MODELS = {"cnn": reference.CNN, "deep": reference.DeepCNN}
NAMES = list(TORCH_MODELS)


def make_model(name: str, dtype=np.float32, seed: int = 0):
    return MODELS[name](dtype=dtype, generator=np.random.default_rng(seed))


def make_torch(name: str, dtype=torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    return TORCH_MODELS[name]().to(dtype).eval()


def logits(model, torch_model) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(3).standard_normal((4, 1, 28, 28))  # (N, C, H, W) float64
    with torch.no_grad():
        theirs = torch_model.eval()(torch.from_numpy(x)).numpy()  # (N, 10)
    return model.eval()(x), theirs


def assert_bit_identical(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    for key, value in expected.items():
        a = actual[key].numpy() if isinstance(actual[key], torch.Tensor) else actual[key]
        b = value.numpy() if isinstance(value, torch.Tensor) else value
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), key


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_identical(name, dtype):
    model = make_model(name, dtype)
    torch_state = to_torch_state_dict(model)
    assert all(t.dtype == torch.from_numpy(np.zeros(1, dtype)).dtype for t in torch_state.values())
    back = from_torch_state_dict(torch_state)
    assert_bit_identical(back, model.state_dict())
    # copies, not views: changing the converted arrays leaves the model alone
    next(iter(back.values()))[...] = 7
    assert not (next(iter(model.parameters())).data == 7).all()


@pytest.mark.parametrize("name", NAMES)
def test_copy_to_torch_gives_the_same_logits(name):
    model = make_model(name, np.float64)
    torch_model = copy_to_torch(model, make_torch(name, torch.float64))
    assert_bit_identical(torch_model.state_dict(), model.state_dict())
    ours, theirs = logits(model, torch_model)
    assert np.abs(ours - theirs).max() <= 1e-10 * np.abs(theirs).max()


@pytest.mark.parametrize("name", NAMES)
def test_copy_from_torch_gives_the_same_logits(name):
    torch_model = make_torch(name).double()
    model = copy_from_torch(torch_model, make_model(name, np.float32))
    assert next(iter(model.parameters())).dtype == np.float64  # torch's dtype is kept
    assert_bit_identical(model.state_dict(), torch_model.state_dict())
    ours, theirs = logits(model, torch_model)
    assert np.abs(ours - theirs).max() <= 1e-10 * np.abs(theirs).max()


def test_float32_round_trip_through_torch_modules():
    model = make_model("deep")
    torch_model = copy_to_torch(model, make_torch("deep"))
    again = copy_from_torch(torch_model, make_model("deep", seed=1))
    assert_bit_identical(again.state_dict(), model.state_dict())


def test_shared_parameters_stay_shared():
    torch_state = to_torch_state_dict(make_model("deep"))
    assert torch_state["fc1.weight"] is torch_state["layer4.0.weight"]
    state = from_torch_state_dict(make_torch("deep"))
    assert state["fc1.bias"] is state["layer4.0.bias"]


def test_key_errors_name_the_keys():
    state = dict(make_model("cnn").state_dict())
    state["fc.weights"] = state.pop("fc.weight")
    with pytest.raises(ValueError, match=r"missing \['fc.weight'\], unexpected \['fc.weights'\]"):
        to_torch_state_dict(state, like=make_torch("cnn"))
    with pytest.raises(ValueError, match=r"missing \['layer3.0.weight'"):
        copy_to_torch(make_model("cnn"), make_torch("deep"))
    with pytest.raises(ValueError, match=r"unexpected \['layer3.0.weight'"):
        copy_from_torch(make_torch("deep"), make_model("cnn"))


def test_shape_errors_name_key_and_both_shapes():
    state = dict(make_model("cnn").state_dict())
    state["fc.bias"] = np.zeros(9, np.float32)
    with pytest.raises(ValueError, match=r"'fc.bias'.* expects shape \(10,\).* has \(9,\)"):
        to_torch_state_dict(state, like=make_torch("cnn"))
    torch_state = make_torch("cnn").state_dict()
    torch_state["layer1.0.weight"] = torch.zeros(32, 1, 5, 5)
    with pytest.raises(ValueError, match=r"'layer1.0.weight'.*\(32, 1, 3, 3\).*\(32, 1, 5, 5\)"):
        from_torch_state_dict(torch_state, like=make_model("cnn"))


def test_dtype_mismatch_is_refused_not_cast():
    torch_model = make_torch("cnn")  # float32
    before = {key: value.clone() for key, value in torch_model.state_dict().items()}
    with pytest.raises(ValueError, match=r"float64 in minicnn but torch.float32.*double\(\)"):
        copy_to_torch(make_model("cnn", np.float64), torch_model)
    assert_bit_identical(torch_model.state_dict(), before)


def test_bad_inputs():
    with pytest.raises(TypeError):
        to_torch_state_dict([1, 2])
    with pytest.raises(TypeError, match="'a' is a list"):
        to_torch_state_dict({"a": [1.0]})
    with pytest.raises(TypeError, match="'a' is a ndarray"):
        from_torch_state_dict({"a": np.zeros(2)})
    with pytest.raises(ValueError, match="bfloat16"):
        from_torch_state_dict({"a": torch.zeros(2, dtype=torch.bfloat16)})
