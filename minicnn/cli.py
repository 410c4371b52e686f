"""The ``minicnn`` command: ``minicnn train``, ``eval PATH``, ``download``, and the commands that
open the engine up for learning: ``summary``, ``show`` and ``gradcheck``.

Each subcommand is a ``Command`` in ``COMMANDS``: its name, help, options and the function that
runs it. A new one is one more ``register(Command(...))``, its logic in a module of its own
(as ``minicnn.teach``'s ``summarize``, ``show`` and ``gradcheck`` hold theirs).
Options of a config dataclass come from its fields (``add_dataclass_arguments``), so
``minicnn train --help`` always lists every ``TrainConfig`` field with its help and default.

Exit codes: 0 success, 1 an error (printed on one line), 2 a usage error (argparse), 130
interrupted by Ctrl-C after saving a resumable checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Callable, Sequence

import minicnn
from minicnn.data import DATA_DIR_HELP, DownloadError
from minicnn.teach import gradcheck, show, summarize
from minicnn.train import TrainConfig, TrainingDiverged, TrainingInterrupted, train

EXAMPLES = """examples:
  minicnn train                                  # the deck's run: CNN, 15 epochs, Adam 0.001
  minicnn train --engine torch --device cuda     # the same in PyTorch on a GPU
  minicnn train --epochs 2 --save runs/cnn.safetensors --plot runs/cnn.png
  minicnn train --epochs 4 --save runs/cnn.safetensors --resume runs/cnn.safetensors
  minicnn eval runs/cnn.safetensors --deck-eval
  minicnn download --data-dir data
  minicnn summary --model deep                   # shapes, the size formula, parameters
  minicnn show runs/cnn.safetensors              # kernels, feature maps, a prediction
  minicnn gradcheck                              # every backward pass against numerics
"""


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: ``add_arguments(parser)`` declares its options, ``run(args)`` returns the
    exit code."""

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}
METAVARS = {int: "N", float: "X", str: "PATH"}  # for options whose field names none


def register(command: Command) -> Command:
    """Add a subcommand to ``minicnn`` (in registration order in ``--help``)."""
    if command.name in COMMANDS:
        raise ValueError(f"minicnn: subcommand {command.name!r} is already registered")
    COMMANDS[command.name] = command
    return command


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per field of dataclass ``cls`` (``batch_size`` → ``--batch-size``), with the
    ``help``, ``choices`` and ``metavar`` in the field's metadata; a bool becomes ``--x/--no-x``.
    The default is appended to the help unless it is None or the help already explains it."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        meta, flag = field.metadata, f"--{field.name.replace('_', '-')}"
        if hints[field.name] is bool:
            add_switch(parser, flag, field.default, meta["help"])
            continue
        kind = next(
            t
            for t in typing.get_args(hints[field.name]) or (hints[field.name],)
            if t is not type(None)
        )
        text = meta["help"]
        if field.default is not None and "default" not in text:
            text += " (default: %(default)s)"
        metavar = meta.get("metavar") or (None if meta.get("choices") else METAVARS.get(kind))
        parser.add_argument(
            flag,
            type=kind,
            default=field.default,
            choices=meta.get("choices"),
            metavar=metavar,
            help=text,
        )


def add_switch(parser: argparse.ArgumentParser, flag: str, default: bool, text: str) -> None:
    """A ``--x/--no-x`` pair whose help ends with its default."""
    action = parser.add_argument(
        flag, action=argparse.BooleanOptionalAction, default=default, help=text
    )
    if "%(default)" not in action.help:  # some Python versions add it themselves
        action.help += " (default: %(default)s)"


def dataclass_from_args(cls: type, args: argparse.Namespace):
    """The ``cls`` instance that options added by ``add_dataclass_arguments`` describe."""
    return cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(cls)})


# -- train ----------------------------------------------------------------------------------


def _run_train(args: argparse.Namespace) -> int:
    try:
        train(dataclass_from_args(TrainConfig, args))
    except TrainingInterrupted:
        return 130  # the conventional 128 + SIGINT; train() printed how to resume
    return 0


register(
    Command(
        name="train",
        help="train the deck's CNN on MNIST and print its test accuracy",
        description="Train the deck's CNN (or DeepCNN) on MNIST with Adam, as the deck's PyTorch "
        "script does, with the minicnn engine or the torch reference, then print the accuracy on "
        "the test images. Each epoch prints the deck's line ('[Epoch: N] cost = ...') plus its "
        "time and speed. Ctrl-C finishes the batch, saves a checkpoint, prints the "
        "command that resumes it and exits with code 130.",
        add_arguments=lambda parser: add_dataclass_arguments(parser, TrainConfig),
        run=_run_train,
    )
)


# -- eval -----------------------------------------------------------------------------------


def _add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="a checkpoint written by minicnn train")
    parser.add_argument("--data-dir", metavar="DIR", default=None, help=DATA_DIR_HELP)
    add_switch(
        parser, "--deck-eval", False, "also run the deck's buggy evaluation (raw 0-255 pixels)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1000,
        metavar="N",
        help="test images per forward pass (default: %(default)s)",
    )
    parser.add_argument(
        "--test-limit",
        type=int,
        default=None,
        metavar="N",
        help="evaluate on the first N test images only (default: all)",
    )
    add_switch(parser, "--download", True, "download MNIST when it is not found")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for the kernels (default: all cores)",
    )


def _run_eval(args: argparse.Namespace) -> int:
    from minicnn.data import ensure_mnist, load_mnist, split_files
    from minicnn.io.checkpoint import load_checkpoint, load_model
    from minicnn.kernels.runtime.threads import set_num_threads
    from minicnn.train import accuracy
    from minicnn.train.minicnn_engine import compile_notice

    if args.batch_size < 1 or (args.test_limit is not None and args.test_limit < 1):
        raise ValueError("--batch-size and --test-limit must be at least 1")
    if args.threads is not None:
        set_num_threads(args.threads)
    model = load_model(args.path)
    saved = load_checkpoint(args.path, with_optimizer=False)
    found = ensure_mnist(args.data_dir, args.download, files=split_files(train=False))
    images, labels = load_mnist(found, train=False)  # (N, 28, 28), (N,): the test split only
    images, labels = images[: args.test_limit], labels[: args.test_limit]
    print(
        f"{args.path}: {saved.model_name} ({saved.dtype}), trained for {saved.epoch} "
        f"epoch(s), {saved.step} steps; {len(images)} test images"
    )
    with compile_notice():
        correct = accuracy(model, images, labels, batch_size=args.batch_size)
    print(f"Accuracy: {correct:.4f}")
    if args.deck_eval:
        deck = accuracy(model, images, labels, raw=True, batch_size=args.batch_size)
        print(
            f"Accuracy (the deck's evaluation, on raw 0-255 pixels although the model was "
            f"trained on 0-1 inputs): {deck:.4f}"
        )
    return 0


register(
    Command(
        name="eval",
        help="print a checkpoint's accuracy on the MNIST test images",
        description="Load a checkpoint written by 'minicnn train' (either engine) into minicnn and "
        "print its accuracy on the 10,000 MNIST test images, evaluated in batches without "
        "gradients, in eval mode.",
        add_arguments=_add_eval_arguments,
        run=_run_eval,
    )
)


# -- download -------------------------------------------------------------------------------


def _run_download(args: argparse.Namespace) -> int:
    from minicnn.data import download_mnist, find_mnist, resolve_data_dir

    try:
        root = find_mnist(args.data_dir)
    except FileNotFoundError:
        root = resolve_data_dir(args.data_dir)
    # every file there is checked against its published SHA-256; a damaged one is fetched again
    download_mnist(root)
    print(f"MNIST is in {find_mnist(root)} (checked against the published SHA-256 hashes)")
    return 0


register(
    Command(
        name="download",
        help="download MNIST (checked against the published SHA-256 hashes)",
        description="Download the four MNIST files into the data directory unless they are already "
        "there, verified against their published SHA-256 hashes. Offline, point minicnn at local "
        "copies with --data-dir DIR or MINICNN_DATA=DIR instead.",
        add_arguments=lambda parser: parser.add_argument(
            "--data-dir",
            metavar="DIR",
            default=None,
            help="where to put MNIST (default: $MINICNN_DATA, else ./data)",
        ),
        run=_run_download,
    )
)


# -- summary, show, gradcheck: the engine opened up (each command's logic in its module) ------

register(
    Command(
        name="summary",
        help="per layer: shapes, the size formula, parameters, mult-adds",
        description="Run the deck's CNN (or DeepCNN) on one 28x28 image and print, for every "
        "layer, its input and output shapes, the numbers put into the deck's output-size formula "
        "O = floor((I - K + 2P) / S) + 1, its parameters and its multiply-adds, then the totals.",
        add_arguments=summarize.add_arguments,
        run=summarize.run_command,
    )
)

register(
    Command(
        name="show",
        help="draw a checkpoint's kernels, feature maps and a prediction",
        description="Write PNGs for a checkpoint: the learned first-layer kernels, one test "
        "digit's feature maps after each block, and the digit's softmax probabilities. Needs "
        "matplotlib (pip install 'minicnn[plot]').",
        add_arguments=show.add_arguments,
        run=show.run_command,
    )
)

register(
    Command(
        name="gradcheck",
        help="check every backward pass against central differences",
        description="Central-difference gradient checks in float64 for every layer type (Conv2d "
        "with stride, padding, dilation and groups, the pools, ReLU, Linear, Flatten, Dropout with "
        "a fixed mask, CrossEntropyLoss): one relative error per gradient; exit code 1 when any "
        "exceeds the tolerance.",
        add_arguments=gradcheck.add_arguments,
        run=gradcheck.run_command,
    )
)


# -- main -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """``minicnn``'s parser, with one subparser per registered command."""
    parser = argparse.ArgumentParser(
        prog="minicnn",
        description="minicnn: the deck's MNIST CNN in a from-scratch NumPy/Numba engine that\n"
        "computes what PyTorch does. The deck is the study deck minicnn started from,\n"
        "'Likelion Study #AI. Team2 - Part. CNN' (2022-01-03): its CNN and DeepCNN, trained\n"
        "with Adam on MNIST. Run 'minicnn COMMAND --help' for a command's options.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"minicnn {minicnn.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS.values():
        sub = subparsers.add_parser(
            command.name, help=command.help, description=command.description
        )
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``minicnn`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (OSError, ValueError, DownloadError, TrainingDiverged) as error:
        print(f"minicnn {args.command}: error: {error}", file=sys.stderr)
        return 1
