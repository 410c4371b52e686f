"""minicnn.optim against torch.optim: trajectories, state buffers, checkpoints and errors.

Tolerances. Our updates repeat torch's single-tensor operations in torch's order, but torch's
vectorised CPU kernels fuse multiply-adds and take a SIMD square root that is not always
correctly rounded, so each step may differ from torch by an ulp or two per operation. Over 50
steps that drifts to at most ~1e-13 relative in float64 (measured: 5e-14), so ``rtol=1e-12``
leaves margin while any wrong formula (operation order, bias correction, first-step momentum)
is off by 1e-8 or more. Entries that cancel to near zero (a momentum buffer, a parameter passing
through 0) carry an absolute error of a few ulps of the O(10) terms that made them, hence
``atol=1e-14`` (a few ulps of 10). float32 scales both by its epsilon: ``rtol=1e-6`` and
``atol=1e-5`` (~10 ulps of the largest entries, about 13).
"""

from __future__ import annotations

import copy
import itertools
import re

import numpy as np
import pytest
import torch

from minicnn.nn.module import Parameter
from minicnn.optim import SGD, Adam, AdamW
from minicnn.optim.optimizer import IMPLEMENTATION_KEYS

TOLERANCES = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=1e-6, atol=1e-5)}
SHAPES = [(3, 4), (5,), (2, 3, 2, 2), (64,)]
TORCH = {SGD: torch.optim.SGD, Adam: torch.optim.Adam, AdamW: torch.optim.AdamW}

SGD_GRID = [
    dict(lr=0.1, momentum=m, dampening=d, nesterov=n, weight_decay=wd, maximize=mx)
    for m, d, n, wd, mx in itertools.product(
        (0, 0.9), (0, 0.1), (False, True), (0, 1e-2), (False, True)
    )
    if not n or (m > 0 and d == 0)
]
ADAM_GRID = [
    dict(lr=0.01, betas=betas, eps=eps, weight_decay=wd, amsgrad=ams, maximize=mx)
    for wd, ams, mx, (betas, eps) in itertools.product(
        (0, 1e-2),
        (False, True),
        (False, True),
        # beta1 = 0.3 and 0 take lerp's other branch (weight 1 - beta1 >= 0.5)
        [((0.9, 0.999), 1e-8), ((0.3, 0.6), 1e-6), ((0.0, 0.99), 1e-3)],
    )
]
CASES = (
    [(SGD, kw) for kw in SGD_GRID]
    + [(Adam, kw) for kw in ADAM_GRID]
    + [(AdamW, kw) for kw in ADAM_GRID]
    + [(Adam, dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True))]
)
CHECKPOINT_CASES = [
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.1)),
    (Adam, dict(lr=0.01, weight_decay=1e-2, amsgrad=True)),
    (AdamW, dict(lr=0.01, betas=(0.5, 0.9), maximize=True)),
]


def make_params(dtype, seed=0):
    """The same random values as our Parameters and as torch Parameters."""
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    ours = [Parameter(v.copy()) for v in values]
    theirs = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in values]
    return ours, theirs


def gradient_stream(dtype, steps, seed=1):
    """Fresh gradients per step, about one in five None (skipped), the first one always None."""
    rng = np.random.default_rng(seed)
    stream = [
        [None if rng.random() < 0.2 else rng.standard_normal(s).astype(dtype) for s in SHAPES]
        for _ in range(steps)
    ]
    stream[0][0] = None  # a parameter whose state starts late: state order != param order
    return stream


def train(optimizer, params, stream):
    """Step ``optimizer`` once per entry of ``stream``; works for either engine."""
    for grads in stream:
        for p, g in zip(params, grads, strict=True):
            if g is None:
                p.grad = None
            else:
                p.grad = torch.from_numpy(g.copy()) if isinstance(p, torch.Tensor) else g.copy()
        optimizer.step()


def assert_same_as_torch(opt, params, torch_opt, torch_params, dtype):
    for p, t in zip(params, torch_params, strict=True):
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, t.detach().numpy(), **TOLERANCES[dtype])
        ours, theirs = opt.state.get(p, {}), torch_opt.state.get(t, {})
        assert list(ours) == list(theirs)
        for key, value in theirs.items():
            if key == "step":
                assert ours["step"] == float(value)
            else:
                assert ours[key].dtype == dtype
                np.testing.assert_allclose(ours[key], value.numpy(), **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls,kwargs", CASES)
def test_trajectory_matches_torch(cls, kwargs, dtype):
    params, torch_params = make_params(dtype)
    opt, torch_opt = cls(params, **kwargs), TORCH[cls](torch_params, **kwargs)
    arrays = [p.data for p in params]
    for grads in gradient_stream(dtype, 50):
        train(opt, params, [grads])
        train(torch_opt, torch_params, [grads])
        for p, g in zip(params, grads, strict=True):  # the gradient itself is left alone
            assert g is None or np.array_equal(p.grad, g)
    assert all(p.data is a for p, a in zip(params, arrays, strict=True))  # updated in place
    assert_same_as_torch(opt, params, torch_opt, torch_params, dtype)


@pytest.mark.parametrize("cls,kwargs", [(SGD, dict(momentum=0.9)), (Adam, {}), (AdamW, {})])
def test_param_groups_match_torch(cls, kwargs):
    params, torch_params = make_params(np.float64)

    def groups(ps):
        return [{"params": ps[:2], "lr": 0.1, "weight_decay": 0.05}, {"params": ps[2:]}]

    opt = cls(groups(params), lr=0.01, **kwargs)
    torch_opt = TORCH[cls](groups(torch_params), lr=0.01, **kwargs)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    stream = gradient_stream(np.float64, 20)
    train(opt, params, stream)
    train(torch_opt, torch_params, stream)
    assert_same_as_torch(opt, params, torch_opt, torch_params, np.float64)
    assert [g["params"] for g in opt.state_dict()["param_groups"]] == [[0, 1], [2, 3]]


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(set_to_none):
    params, _ = make_params(np.float32)
    opt = SGD(params, lr=0.1)
    grads = [np.ones(p.shape, np.float32) for p in params[1:]]
    for p, g in zip(params[1:], grads, strict=True):
        p.grad = g
    opt.zero_grad(set_to_none=set_to_none)
    assert params[0].grad is None
    for p, g in zip(params[1:], grads, strict=True):
        if set_to_none:
            assert p.grad is None
        else:  # zeroed in place, as torch's grad.zero_()
            assert p.grad is g and not g.any()


def fresh_copy(params):
    return [Parameter(p.data.copy()) for p in params]


def to_torch_params(params):
    return [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in params]


def state_dict_to_numpy(state_dict):
    """torch's optimizer state_dict with every tensor (``step`` too) as a NumPy array."""
    state = {
        index: {k: v.numpy().copy() if torch.is_tensor(v) else v for k, v in buffers.items()}
        for index, buffers in state_dict["state"].items()
    }
    return {"state": state, "param_groups": copy.deepcopy(state_dict["param_groups"])}


def state_dict_to_torch(state_dict):
    """Our state_dict as torch keeps it: arrays as tensors, ``step`` as a 0-d tensor."""
    state = {
        index: {
            k: torch.tensor(v) if k == "step" else torch.from_numpy(v.copy())
            for k, v in buffers.items()
        }
        for index, buffers in state_dict["state"].items()
    }
    return {"state": state, "param_groups": copy.deepcopy(state_dict["param_groups"])}


@pytest.mark.parametrize("cls,kwargs", CHECKPOINT_CASES)
def test_state_dict_round_trip_is_bit_exact(cls, kwargs):
    stream = gradient_stream(np.float64, 20)
    straight, _ = make_params(np.float64)
    train(cls(straight, **kwargs), straight, stream)

    params, _ = make_params(np.float64)
    opt = cls(params, **kwargs)
    train(opt, params, stream[:10])
    saved = opt.state_dict()
    snapshot = copy.deepcopy(saved)
    resumed = fresh_copy(params)
    fresh = cls(resumed, lr=0.5)  # the loaded groups bring back every hyperparameter
    fresh.load_state_dict(saved)
    train(fresh, resumed, stream[10:])
    train(opt, params, stream[10:])  # the saved dict is a snapshot, not live buffers

    for p, q in zip(straight, resumed, strict=True):
        np.testing.assert_array_equal(q.data, p.data)
    for p, q in zip(params, resumed, strict=True):
        assert fresh.state[q].keys() == opt.state[p].keys()
        for key, value in opt.state[p].items():
            np.testing.assert_array_equal(fresh.state[q][key], value)
    np.testing.assert_equal(saved, snapshot)


@pytest.mark.parametrize("cls,kwargs", CHECKPOINT_CASES)
def test_state_dict_crosses_engines(cls, kwargs):
    stream = gradient_stream(np.float64, 20)
    params, torch_params = make_params(np.float64)
    opt, torch_opt = cls(params, **kwargs), TORCH[cls](torch_params, **kwargs)
    train(opt, params, stream[:10])
    train(torch_opt, torch_params, stream[:10])

    ours, theirs = opt.state_dict(), torch_opt.state_dict()
    assert ours["state"].keys() == theirs["state"].keys()
    for index, buffers in theirs["state"].items():
        assert list(ours["state"][index]) == list(buffers)
        for key, value in buffers.items():
            np.testing.assert_allclose(ours["state"][index][key], value.numpy(), rtol=1e-12)
    for group, torch_group in zip(ours["param_groups"], theirs["param_groups"], strict=True):
        assert set(torch_group) - set(group) <= IMPLEMENTATION_KEYS
        assert group == {k: torch_group[k] for k in group}

    # each engine resumes from the other's checkpoint and follows the uninterrupted other
    from_torch = [Parameter(t.detach().numpy().copy()) for t in torch_params]
    ours_resumed = cls(from_torch)
    ours_resumed.load_state_dict(state_dict_to_numpy(theirs))
    from_ours = to_torch_params(params)
    torch_resumed = TORCH[cls](from_ours)
    torch_resumed.load_state_dict(state_dict_to_torch(ours))
    for optimizer, ps in [(opt, params), (torch_opt, torch_params)]:
        train(optimizer, ps, stream[10:])
    train(ours_resumed, from_torch, stream[10:])
    train(torch_resumed, from_ours, stream[10:])
    assert_same_as_torch(ours_resumed, from_torch, torch_opt, torch_params, np.float64)
    assert_same_as_torch(opt, params, torch_resumed, from_ours, np.float64)


INVALID = [
    (SGD, dict(lr=-1.0)),
    (SGD, dict(momentum=-0.5)),
    (SGD, dict(weight_decay=-1e-2)),
    (SGD, dict(nesterov=True)),
    (SGD, dict(nesterov=True, momentum=0.9, dampening=0.1)),
    (Adam, dict(lr=-1.0)),
    (Adam, dict(eps=-1e-8)),
    (Adam, dict(betas=(1.0, 0.999))),
    (Adam, dict(betas=(0.9, -0.1))),
    (Adam, dict(weight_decay=-1.0)),
    (AdamW, dict(betas=(0.9, 1.0))),
    (AdamW, dict(lr=float("nan"))),
]


@pytest.mark.parametrize("cls,kwargs", INVALID)
def test_invalid_hyperparameters_raise_torch_errors(cls, kwargs):
    with pytest.raises(ValueError) as torch_error:
        TORCH[cls]([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    message = f"{cls.__name__}: {torch_error.value}"
    with pytest.raises(ValueError, match=re.escape(message)):
        cls([Parameter(np.zeros(2))], **kwargs)


def test_invalid_params_raise():
    p, q = Parameter(np.zeros(2)), Parameter(np.zeros(3))
    with pytest.raises(TypeError, match="iterable of Parameters"):  # torch rejects a bare tensor
        SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="can only optimize Parameters.*ndarray"):
        SGD([p, np.zeros(2)], lr=0.1)
    with pytest.raises(TypeError, match="sets"):
        SGD([{"params": {p, q}}], lr=0.1)
    with pytest.raises(TypeError, match="learning rate must be a real number"):
        Adam([p], lr="0.1")
    with pytest.raises(ValueError, match="empty parameter list"):
        Adam([])
    with pytest.raises(ValueError, match="more than one parameter group"):
        Adam([{"params": [p]}, {"params": [q, p]}])
    # torch only warns about this ("in future, this will cause an error"); we raise now
    with pytest.raises(ValueError, match="duplicate parameters"):
        Adam([p, q, p])
    # torch checks only the defaults; a bad per-group value is rejected here too
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        SGD([{"params": [p], "lr": -1}], lr=0.1)


def test_bad_gradients_raise():
    p = Parameter(np.zeros((2, 3)))
    for cls in (SGD, Adam, AdamW):
        opt = cls([p])
        p.grad = np.zeros((3, 2))
        with pytest.raises(ValueError, match=r"gradient of shape \(3, 2\).*shape \(2, 3\)"):
            opt.step()
        p.grad = np.zeros((2, 3), np.float32)
        with pytest.raises(TypeError, match="dtype float32 for a parameter of dtype float64"):
            opt.step()
        p.grad = [[0.0] * 3] * 2
        with pytest.raises(TypeError, match="must be a NumPy array"):
            opt.step()


def test_load_state_dict_validates_and_changes_nothing_on_error():
    params, _ = make_params(np.float64)
    opt = Adam([{"params": params[:2]}, {"params": params[2:]}], lr=0.1)
    train(opt, params, gradient_stream(np.float64, 3))
    good = opt.state_dict()
    before = copy.deepcopy(good)

    one_group = Adam(fresh_copy(params))
    with pytest.raises(ValueError, match="has 2 parameter groups, the optimizer has 1"):
        one_group.load_state_dict(good)
    other = Adam([{"params": fresh_copy(params[:1])}, {"params": fresh_copy(params[1:])}])
    with pytest.raises(ValueError, match="group 0 holds 2 parameters, the optimizer's holds 1"):
        other.load_state_dict(good)
    bad_shape = copy.deepcopy(good)
    bad_shape["state"][3]["exp_avg"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"'exp_avg' has shape \(3,\)"):
        opt.load_state_dict(bad_shape)
    bad_index = copy.deepcopy(good)
    bad_index["state"][7] = bad_index["state"][1]
    with pytest.raises(ValueError, match="parameter 7"):
        opt.load_state_dict(bad_index)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})
    np.testing.assert_equal(opt.state_dict(), before)
