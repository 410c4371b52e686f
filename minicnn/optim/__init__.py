"""Optimizers with torch.optim's rules, state and checkpoint layout, on NumPy arrays.

Each optimizer updates ``p.data`` in place and skips parameters whose ``.grad`` is None. The
arithmetic follows torch's single-tensor CPU path operation by operation, so float64
trajectories agree with torch to round-off. Not bit for bit: torch's vectorised CPU kernels fuse
multiply-adds and use a SIMD square root that is not always correctly rounded, while NumPy
rounds every operation.
"""

from minicnn.optim.adam import Adam, AdamW
from minicnn.optim.optimizer import Optimizer
from minicnn.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]
