"""Training checkpoints that resume exactly and load unchanged into the torch reference models.

``save_checkpoint("run/ckpt.safetensors", model, model_name="cnn", optimizer=opt, ...)`` writes
one safetensors file, the whole checkpoint:

* its tensors are the model's ``state_dict()`` under torch's names and nothing else, so
  ``torch_model.load_state_dict(safetensors.torch.load_file(path))`` works strict, shared
  parameters included (DeepCNN's ``fc1.*`` and ``layer4.0.*`` are both there);
* its string ``__metadata__`` holds ``format`` (``"pt"``: torch's layout), ``checkpoint_format``
  (``"minicnn.io.checkpoint"``), ``checkpoint_version`` (``"2"``), ``model_name``, ``dtype``, and
  as JSON ``model_kwargs``, ``epoch``, ``step``, ``config``, ``rng_state`` (``{"default": ...}``
  plus any generators passed in), ``metrics``, ``optimizer`` (when one is given: ``name``,
  ``param_groups``, ``scalar_state`` such as ``step``, and ``arrays``: each buffer, e.g.
  ``state.0.exp_avg``, as ``{"dtype", "shape", "base64"}`` of its little-endian bytes) and
  ``checksum``, a SHA-256 over the metadata and every tensor, so a changed byte is caught.

The optimizer's arrays live in the metadata because any extra tensor would break torch's strict
``load_state_dict``; base64 costs a third more bytes, and buys a checkpoint that is one file.
It is written to a temporary file, fsynced and renamed over ``path``, so after a crash or a
``kill -9`` at any instant ``path`` holds the whole previous checkpoint or the whole new one;
it is read through one open file, so a reader never mixes two saves. A model or optimizer
holding NaN or infinity is refused: a diverged run is never saved as a good checkpoint.

Version 1 checkpoints (an older minicnn kept the optimizer's arrays in a second file,
``<stem>.optim.safetensors``) still load for their weights; they cannot resume.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import inspect
import json
import math
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from minicnn import random
from minicnn.io.safetensors import DTYPES, SafetensorsFile, save_file
from minicnn.models import MODELS
from minicnn.nn.module import FLOAT_DTYPES, Module

FORMAT, VERSION, OLD_VERSIONS = "minicnn.io.checkpoint", "2", ("1",)
_JSON_KEYS = ("model_kwargs", "epoch", "step", "config", "rng_state", "metrics")
_ARRAY_KEY = re.compile(r"state\.(\d+)\.(\w+)")
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
# epochs and steps beyond this are a damaged or crafted file, not a training run
_MAX_COUNT = 2**53


@dataclasses.dataclass
class Checkpoint:
    """Everything ``save_checkpoint`` wrote, validated; ``optimizer_state`` is ready for
    ``optimizer.load_state_dict`` (None when no optimizer was saved or it was not loaded)."""

    path: Path
    model_name: str
    dtype: np.dtype
    state_dict: OrderedDict[str, np.ndarray]
    model_kwargs: dict[str, Any]
    epoch: int
    step: int
    config: dict[str, Any]
    rng_state: dict[str, Any]
    metrics: list
    optimizer_name: str | None = None
    optimizer_state: dict[str, Any] | None = None


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where a version 1 checkpoint at ``path`` kept its optimizer state (``<stem>.optim.
    safetensors``); saving a version 2 checkpoint there removes that stale file."""
    path = Path(path)
    stem = path.name.removesuffix(".safetensors")
    return path.with_name(f"{stem}.optim.safetensors")


def save_checkpoint(
    path: str | os.PathLike,
    model: Module,
    *,
    model_name: str,
    optimizer=None,
    epoch: int = 0,
    step: int = 0,
    config: dict | None = None,
    rng_state: dict | None = None,
    metrics: list | None = None,
) -> Path:
    """Write ``model`` (and ``optimizer``'s state) to ``path``; returns ``path``.

    ``rng_state`` maps names to further generators' ``random.get_state(generator)`` (a
    Dropout's, a data loader's); the default generator's state is always saved as
    ``"default"``. ``config`` may be a dict or a dataclass; it, ``metrics`` and ``rng_state``
    must be JSON-serialisable.
    """
    path = Path(path)
    if MODELS.get(model_name) is not type(model):
        raise ValueError(
            f"save_checkpoint: model_name {model_name!r} does not name a {type(model).__name__} "
            f"(known: {', '.join(f'{k!r}: {v.__name__}' for k, v in MODELS.items())})"
        )
    for what, value in (("epoch", epoch), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"save_checkpoint: {what} must be an int >= 0, got {value!r}")
    state = model.state_dict()  # the live arrays; nothing is copied before the write
    dtypes = {array.dtype for array in state.values()}
    if len(dtypes) != 1 or not dtypes <= set(FLOAT_DTYPES):
        raise ValueError(
            f"save_checkpoint: parameters must be all float32 or all float64: {dtypes}"
        )
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    metadata = {
        "format": "pt",
        "checkpoint_format": FORMAT,
        "checkpoint_version": VERSION,
        "model_name": model_name,
        "dtype": dtypes.pop().name,
        "model_kwargs": _to_json(_model_kwargs(model), "model_kwargs"),
        "epoch": str(int(epoch)),
        "step": str(int(step)),
        "config": _to_json({} if config is None else config, "config"),
        "rng_state": _to_json({"default": random.get_state(), **(rng_state or {})}, "rng_state"),
        "metrics": _to_json([] if metrics is None else metrics, "metrics"),
    }
    _check_finite(state, "the model")
    if optimizer is not None:
        saved = optimizer.state_dict()
        arrays, scalars = {}, {}
        for index, buffers in saved["state"].items():
            for name, value in buffers.items():
                if isinstance(value, np.ndarray):
                    arrays[f"state.{index}.{name}"] = value
                else:
                    scalars.setdefault(str(index), {})[name] = value
        _check_finite(arrays, "the optimizer's state")
        info = {
            "name": type(optimizer).__name__,
            "param_groups": saved["param_groups"],
            "scalar_state": scalars,
            "arrays": {name: _encode(array) for name, array in arrays.items()},
        }
        metadata["optimizer"] = _to_json(info, "optimizer state")
    metadata["checksum"] = _checksum(state, metadata)
    save_file(state, path, metadata)
    # a version 1 checkpoint's optimizer file would now describe nothing
    sidecar_path(path).unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, *, with_optimizer: bool = True) -> Checkpoint:
    """Read and validate a checkpoint (and, unless told not to, its optimizer state).

    The file is opened once; its header and metadata are checked against the model they name
    before the tensors are read. Raises ``FileNotFoundError`` when ``path`` does not exist and
    ``ValueError`` naming the file and the fault for anything malformed, truncated, altered or
    mismatched.
    """
    path = Path(path)
    with SafetensorsFile(path) as file:
        meta = file.metadata
        fields = _checked_fields(meta, path)
        dtype = np.dtype(meta["dtype"])
        template = _build(meta["model_name"], dtype, fields["model_kwargs"], path)
        _check_entries(file.entries, template, path, dtype=dtype)
        tensors = file.tensors()
    state = _checked_state(tensors, template, path, dtype=dtype)
    if not _checksum(state, meta) == meta["checksum"]:
        raise ValueError(f"{path}: checksum mismatch: the file was changed after minicnn wrote it")
    checkpoint = Checkpoint(path, meta["model_name"], dtype, state, **fields)
    if with_optimizer and "optimizer" in meta and meta["checkpoint_version"] == VERSION:
        info = _from_json(meta["optimizer"], "optimizer", path)
        checkpoint.optimizer_state = _optimizer_state(info, path)
        checkpoint.optimizer_name = info["name"]
    return checkpoint


def load_model(path: str | os.PathLike) -> Module:
    """A new ``MODELS[model_name]`` with the checkpoint's dtype and weights (the optimizer's
    sidecar is not read, and the default generator is left as it was)."""
    checkpoint = load_checkpoint(path, with_optimizer=False)
    model = _build(checkpoint.model_name, checkpoint.dtype, checkpoint.model_kwargs, Path(path))
    model.load_state_dict(checkpoint.state_dict)
    return model


def load_weights(path: str | os.PathLike, model: Module) -> Module:
    """Load any safetensors file of this model's weights into ``model`` and return it.

    Meant for files written by torch (``safetensors.torch.save_file(m.state_dict())``, or
    ``save_model``, which keeps only one name of a shared tensor: the missing name is filled from
    its twin). Keys and shapes must match; the parameters take the file's float dtype.
    """
    path = Path(path)
    with SafetensorsFile(path) as file:
        _check_entries(_with_aliases(file.entries, model), model, path)
        tensors = file.tensors()
    model.load_state_dict(_checked_state(_with_aliases(tensors, model), model, path))
    return model


def restore_rng_state(rng_state: dict, generators: dict | None = None) -> None:
    """Put the default generator, and each named generator given, back in the saved state."""
    for name, generator in {"default": None, **(generators or {})}.items():
        if name not in rng_state:
            raise ValueError(f"restore_rng_state: no saved state for generator {name!r}")
        random.set_state(rng_state[name], generator)


# -- helpers --------------------------------------------------------------------------------


def _checked_fields(meta: dict[str, str], path: Path) -> dict[str, Any]:
    """The JSON fields of a checkpoint's metadata, after checking its format and every field."""
    if "checkpoint_format" not in meta:
        raise ValueError(
            f"{path}: not a minicnn checkpoint (no 'checkpoint_format' in its metadata); "
            "load plain weights with minicnn.io.checkpoint.load_weights(path, model)"
        )
    version = meta.get("checkpoint_version")
    if meta["checkpoint_format"] != FORMAT or version not in (VERSION, *OLD_VERSIONS):
        raise ValueError(
            f"{path}: unknown checkpoint format {meta['checkpoint_format']!r} version "
            f"{version!r} (this minicnn reads {FORMAT!r} versions "
            f"{', '.join((*OLD_VERSIONS, VERSION))})"
        )
    for key in ("model_name", "dtype", *_JSON_KEYS, "checksum"):
        if key not in meta:
            raise ValueError(f"{path}: checkpoint metadata lacks {key!r}")
    fields = {key: _from_json(meta[key], key, path) for key in _JSON_KEYS}
    for key, kind in (("model_kwargs", dict), ("config", dict), ("rng_state", dict)):
        if not isinstance(fields[key], kind):
            raise ValueError(f"{path}: metadata {key!r} must be a JSON {kind.__name__}")
    if not isinstance(fields["metrics"], list):
        raise ValueError(f"{path}: metadata 'metrics' must be a JSON list")
    for key in ("epoch", "step"):
        if not (_is_count(fields[key]) and fields[key] <= _MAX_COUNT):
            raise ValueError(
                f"{path}: metadata {key!r} must be an int from 0 to {_MAX_COUNT}, got {meta[key]!r}"
            )
    if meta["dtype"] not in ("float32", "float64"):
        raise ValueError(f"{path}: dtype {meta['dtype']!r} is neither float32 nor float64")
    return fields


def _with_aliases(tensors: dict, model: Module) -> dict:
    """``tensors`` with each missing name of a shared parameter filled from a present twin."""
    tensors = dict(tensors)
    for names in _aliases(model).values():
        present = [name for name in names if name in tensors]
        if present:
            for name in names:
                tensors.setdefault(name, tensors[present[0]])
    return tensors


def _aliases(model: Module) -> dict[int, list[str]]:
    aliases: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(param), []).append(name)
    return aliases


def _check_entries(entries: dict[str, tuple], model: Module, path: Path, dtype=None) -> None:
    """Check ``{name: (dtype, shape)}`` against ``model.state_dict()``: the same keys, shapes,
    and a float dtype (``dtype`` when given)."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in entries]
    unexpected = [key for key in entries if key not in expected]
    if missing or unexpected:
        raise ValueError(
            f"{path}: keys do not match {type(model).__name__}: missing {missing}, "
            f"unexpected {unexpected}"
        )
    for key, want in expected.items():
        got_dtype, got_shape = entries[key]
        if tuple(got_shape) != want.shape:
            model_class = type(model).__name__
            raise ValueError(
                f"{path}: {key!r} has shape {tuple(got_shape)}, {model_class} expects {want.shape}"
            )
        if got_dtype not in FLOAT_DTYPES or (dtype is not None and got_dtype != dtype):
            wanted = dtype if dtype is not None else "float32 or float64"
            raise ValueError(f"{path}: {key!r} has dtype {got_dtype}, expected {wanted}")


def _checked_state(tensors: dict, model: Module, path: Path, dtype=None):
    """``tensors`` in ``model.state_dict()``'s order after checking keys, shapes and dtypes,
    and that the names of one shared parameter hold identical values."""
    _check_entries({k: (v.dtype, v.shape) for k, v in tensors.items()}, model, path, dtype)
    for first, *others in _aliases(model).values():
        for other in others:
            a, b = tensors[first], tensors[other]
            if a.dtype != b.dtype or a.tobytes() != b.tobytes():
                raise ValueError(
                    f"{path}: {first!r} and {other!r} are one parameter of "
                    f"{type(model).__name__} but hold different values"
                )
    return OrderedDict((key, tensors[key]) for key in model.state_dict())


def _optimizer_state(info: Any, path: Path) -> dict[str, Any]:
    """The optimizer's ``state_dict()`` rebuilt from the metadata's ``optimizer`` object."""
    fields = {"name": str, "param_groups": list, "scalar_state": dict, "arrays": dict}
    if not isinstance(info, dict) or not all(isinstance(info.get(k), t) for k, t in fields.items()):
        raise ValueError(f"{path}: optimizer metadata must be an object with {sorted(fields)}")
    groups, indices = [], set()
    for group in info["param_groups"]:
        params = group.get("params") if isinstance(group, dict) else None
        if not isinstance(params, list) or not all(map(_is_count, params)):
            raise ValueError(f"{path}: optimizer param group {group!r} lacks a 'params' index list")
        indices.update(params)
        # JSON turned tuples (Adam's betas) into lists; torch and minicnn keep them as tuples
        groups.append(
            {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
        )
    state: dict[int, dict[str, Any]] = {}
    for index, scalars in info["scalar_state"].items():
        if not (index.isdigit() and isinstance(scalars, dict)):
            raise ValueError(f"{path}: malformed optimizer scalar state for {index!r}")
        state[int(index)] = dict(scalars)
    for key, encoded in info["arrays"].items():
        match = _ARRAY_KEY.fullmatch(key)
        if match is None:
            raise ValueError(
                f"{path}: unexpected optimizer array {key!r} (expected state.<index>.<name>)"
            )
        state.setdefault(int(match[1]), {})[match[2]] = _decode(encoded, key, path)
    stray = sorted(set(state) - indices)
    if stray:
        raise ValueError(f"{path}: optimizer state for parameters {stray} that no group holds")
    return {"state": dict(sorted(state.items())), "param_groups": groups}


def _encode(array: np.ndarray) -> dict[str, Any]:
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return {
        "dtype": _DTYPE_NAMES[little.dtype.newbyteorder("<")],
        "shape": list(array.shape),
        "base64": base64.b64encode(little.reshape(-1).view(np.uint8)).decode("ascii"),
    }


def _decode(encoded: Any, key: str, path: Path) -> np.ndarray:
    """The array ``_encode`` described, after checking its dtype, shape and byte count."""
    fields = ("dtype", "shape", "base64")
    if not (isinstance(encoded, dict) and sorted(encoded) == sorted(fields)):
        raise ValueError(f"{path}: optimizer array {key!r} must be an object with {fields}")
    dtype = DTYPES.get(encoded["dtype"]) if isinstance(encoded["dtype"], str) else None
    shape, text = encoded["shape"], encoded["base64"]
    if dtype is None or dtype not in FLOAT_DTYPES:
        raise ValueError(f"{path}: optimizer array {key!r} has dtype {encoded['dtype']!r}")
    if not (isinstance(shape, list) and len(shape) <= 8 and all(map(_is_count, shape))):
        raise ValueError(f"{path}: optimizer array {key!r} has shape {shape!r}")
    try:
        raw = base64.b64decode(text, validate=True) if isinstance(text, str) else None
    except (binascii.Error, ValueError):
        raw = None
    if raw is None or len(raw) != math.prod(shape) * dtype.itemsize:
        raise ValueError(
            f"{path}: optimizer array {key!r}: its base64 does not hold {shape} of {dtype}"
        )
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(shape)


def _check_finite(arrays: dict[str, np.ndarray], what: str) -> None:
    for name, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(
                f"save_checkpoint: {what} holds NaN or infinity in {name!r}; a diverged model "
                "is not saved as a checkpoint"
            )


def _build(model_name: str, dtype: np.dtype, kwargs: dict, path: Path) -> Module:
    """``MODELS[model_name](dtype=dtype, **kwargs)``, leaving the default generator untouched
    (initialising the weights would otherwise draw from it and shift a restored stream)."""
    if model_name not in MODELS:
        raise ValueError(f"{path}: unknown model_name {model_name!r} (known: {sorted(MODELS)})")
    saved = random.get_state()
    try:
        return MODELS[model_name](dtype=dtype, **kwargs)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: cannot build {model_name!r} with {kwargs}: {error}") from None
    finally:
        random.set_state(saved)


def _model_kwargs(model: Module) -> dict[str, Any]:
    """The constructor arguments (other than dtype and generator) the model keeps as attributes,
    e.g. DeepCNN's ``keep_prob``, so that ``load_model`` rebuilds the same model."""
    names = inspect.signature(type(model)).parameters
    return {
        n: getattr(model, n) for n in names if n not in ("dtype", "generator") and hasattr(model, n)
    }


def _to_json(value: Any, what: str) -> str:
    def default(item):
        if isinstance(item, (np.generic, np.ndarray)):
            return item.tolist()
        if isinstance(item, os.PathLike):
            return os.fspath(item)
        raise TypeError(f"save_checkpoint: {what} holds a {type(item).__name__}, not JSON-able")

    return json.dumps(value, default=default)


def _from_json(text: str, key: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{path}: metadata {key!r} is not valid JSON ({error})") from None


def _checksum(state: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
    """SHA-256 over the metadata (but this checksum) and every tensor's name, dtype, shape and
    bytes, in name order; the header's padding and layout do not enter it."""
    digest = hashlib.sha256()
    rest = {key: value for key, value in metadata.items() if key != "checksum"}
    digest.update(json.dumps(rest, sort_keys=True).encode())
    for name in sorted(state):
        array = state[name]
        little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        digest.update(json.dumps([name, little.dtype.str, list(array.shape)]).encode())
        digest.update(little.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
