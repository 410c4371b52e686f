"""``minicnn.checkpoint``, the public path of ``minicnn.io.checkpoint`` (where the code lives)."""

from minicnn.io.checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_model,
    load_weights,
    restore_rng_state,
    save_checkpoint,
    sidecar_path,
)

__all__ = [
    "Checkpoint",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "restore_rng_state",
    "save_checkpoint",
    "sidecar_path",
]
