"""Training the deck's models: the application on top of the library.

- ``config``: ``TrainConfig``, the run's options (the CLI's ``minicnn train`` is built from it);
- ``loop``: ``train(config)``, the deck's script as one function, with checkpoints and resume;
- ``protocol``: the engine interface the loop drives; ``minicnn_engine`` is minicnn's engine,
  ``reference.engine`` the PyTorch one (imported only for ``--engine torch``);
- ``console``: the progress bar, Ctrl-C handling and the plot;
- ``outputs``: what a run writes, checked before it starts and listed when it ends.

    from minicnn.train import TrainConfig, train
    result = train(TrainConfig(epochs=1))
"""

from minicnn.train.config import TRAJECTORY_FIELDS, TrainConfig, metrics_path, train_command
from minicnn.train.loop import (
    BatchInfo,
    TrainingDiverged,
    TrainingInterrupted,
    TrainResult,
    train,
)
from minicnn.train.minicnn_engine import MinicnnEngine, accuracy

__all__ = [
    "TRAJECTORY_FIELDS",
    "BatchInfo",
    "MinicnnEngine",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "accuracy",
    "metrics_path",
    "train",
    "train_command",
]
