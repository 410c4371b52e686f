"""Initialisers: torch's fan and gain rules, the distributions they draw, and seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import minicnn
from minicnn import init, nn
from minicnn import random as mrandom
from minicnn.models import CNN, DeepCNN

SHAPES = [(10, 20), (32, 1, 3, 3), (64, 32, 3, 3), (7, 5, 2, 4)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_torch(shape):
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.calculate_fan_in_and_fan_out(np.empty(shape)) == expected


@pytest.mark.parametrize(
    "args",
    [
        ("linear",),
        ("conv2d",),
        ("sigmoid",),
        ("tanh",),
        ("relu",),
        ("leaky_relu",),
        ("leaky_relu", 0.2),
        ("leaky_relu", math.sqrt(5)),
        ("selu",),
    ],
)
def test_gains_match_torch(args):
    assert init.calculate_gain(*args) == pytest.approx(torch.nn.init.calculate_gain(*args))


def _bound_and_std(name, shape, **kwargs):
    """torch's bound (uniform) or std (normal) for the initialiser, read off its definition."""
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    gain = kwargs.get("gain", 1.0)
    if name.startswith("xavier"):
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    else:
        fan = fan_in if kwargs.get("mode", "fan_in") == "fan_in" else fan_out
        a = kwargs.get("a", 0)
        std = torch.nn.init.calculate_gain(kwargs.get("nonlinearity", "leaky_relu"), a) / math.sqrt(
            fan
        )
    return math.sqrt(3.0) * std, std


@pytest.mark.parametrize("shape", [(300, 400), (256, 64, 3, 3)])
@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("xavier_uniform_", {}),
        ("xavier_uniform_", {"gain": 2.0}),
        ("xavier_normal_", {}),
        ("kaiming_uniform_", {"a": math.sqrt(5)}),
        ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}),
        ("kaiming_normal_", {"nonlinearity": "relu"}),
    ],
)
def test_initialisers_draw_torchs_distributions(shape, name, kwargs):
    array = np.empty(shape, dtype=np.float32)
    getattr(init, name)(array, generator=np.random.default_rng(0), **kwargs)
    bound, std = _bound_and_std(name, shape, **kwargs)
    assert array.dtype == np.float32
    if name.endswith("uniform_"):
        assert np.abs(array).max() <= bound
        assert np.abs(array).max() > 0.99 * bound  # the whole interval is used
        assert array.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    else:
        assert array.std() == pytest.approx(std, rel=0.02)
    assert abs(array.mean()) < 0.02 * std * 10


def test_default_layer_init_matches_torchs_bounds():
    # Conv2d and Linear: kaiming-uniform a=sqrt(5) weights (bound 1/sqrt(fan_in)) and
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) biases, as torch's reset_parameters
    for ours, fan_in in [(nn.Conv2d(16, 64, 3), 16 * 9), (nn.Linear(500, 300), 500)]:
        bound = 1 / math.sqrt(fan_in)
        for param in (ours.weight.data, ours.bias.data):
            assert np.abs(param).max() <= bound
        assert ours.weight.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_manual_seed_makes_models_reproducible():
    minicnn.manual_seed(777)
    a = CNN().state_dict()
    minicnn.manual_seed(777)
    b = CNN().state_dict()
    minicnn.manual_seed(778)
    c = CNN().state_dict()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["fc.weight"], c["fc.weight"])


def test_deck_models_use_xavier_on_their_linears():
    model = DeepCNN(generator=np.random.default_rng(0))
    for layer in (model.fc1, model.fc2):
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(layer.weight.data).max() <= bound
        assert np.abs(layer.weight.data).max() > 0.99 * bound


def test_bad_arguments():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(np.empty(5))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_uniform_(np.empty((3, 3)), mode="fan")
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(TypeError, match="float32 or float64"):
        init.uniform_(np.empty((2, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="seed"):
        minicnn.manual_seed(1.5)


# -- the same numbers as torch's CPU generator ------------------------------------------------


@pytest.mark.parametrize("kind", ["cnn", "deep"])
def test_manual_seed_gives_torchs_initial_weights_bit_for_bit(kind):
    from reference import models as reference

    minicnn.manual_seed(777)
    ours = {"cnn": CNN, "deep": DeepCNN}[kind]()
    torch.manual_seed(777)
    theirs = reference.MODELS[kind]().state_dict()
    for name, array in ours.state_dict().items():
        np.testing.assert_array_equal(array, theirs[name].numpy(), err_msg=name)


def test_float64_initial_weights_are_torchs_to_one_ulp():
    # torch fuses the multiply-add of x * (b - a) + a in double, minicnn rounds twice
    from reference import models as reference

    minicnn.manual_seed(3)
    ours = CNN(dtype=np.float64)
    torch.manual_seed(3)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        theirs = reference.CNN().state_dict()
    finally:
        torch.set_default_dtype(previous)
    for name, array in ours.state_dict().items():
        expected = theirs[name].numpy()
        assert np.abs(array - expected).max() <= np.spacing(np.abs(expected).max()), name


def test_unseeded_generator_starts_where_torchs_does():
    ours = np.empty((3, 5), dtype=np.float32)
    init.uniform_(ours, -2.0, 3.0, generator=mrandom.mt19937(mrandom.TORCH_DEFAULT_SEED))
    theirs = torch.empty(3, 5).uniform_(-2.0, 3.0, generator=torch.Generator())
    np.testing.assert_array_equal(ours, theirs.numpy())


def test_other_bit_generators_draw_numpys_uniform():
    a = init.uniform_(np.empty(1000), -1.0, 1.0, generator=np.random.default_rng(5))
    b = np.random.default_rng(5).uniform(-1.0, 1.0, size=1000)
    np.testing.assert_array_equal(a, b)


def test_generator_state_round_trips_through_json():
    import json

    generator = mrandom.mt19937(11)
    generator.random(7)
    state = json.loads(json.dumps(mrandom.get_state(generator)))
    expected = generator.random(5)
    mrandom.set_state(state, generator)
    np.testing.assert_array_equal(generator.random(5), expected)
    with pytest.raises(ValueError, match="MT19937"):
        mrandom.set_state(mrandom.get_state(np.random.default_rng(0)), generator)
