"""The `jaxrnn` command line: one sub-command per module.

Each module named in `COMMANDS` provides `add_arguments(parser)` and `main(args) -> int`.
The modules import their optional dependencies (rich, matplotlib, Flax, PyTorch) only
inside the code that needs them, so every sub-command's `--help` works without them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "verify": ("jaxrnn.verify", "compare the hand-derived gradients with jax.grad and finite differences"),
    "bench": ("jaxrnn.bench", "time and memory of a gradient step: hand VJP vs autodiff, Flax and PyTorch"),
    "compare": ("jaxrnn.compare", "the hand-derived backward next to jax.grad: jaxpr size, residuals, memory, time"),
    "train": ("jaxrnn.charlm.train_cli", "train a character-level language model with the RNN"),
    "sample": ("jaxrnn.charlm.sample_cli", "generate text from a checkpoint of jaxrnn train"),
    "eval": ("jaxrnn.charlm.eval_cli", "held-out NLL (nats and bits per character) of a checkpoint of jaxrnn train"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxrnn", description="Recurrent layers in JAX (vanilla RNN, GRU, LSTM) with a hand-derived backward."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(module=module)
        importlib.import_module(module).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return importlib.import_module(args.module).main(args)


if __name__ == "__main__":
    sys.exit(main())
