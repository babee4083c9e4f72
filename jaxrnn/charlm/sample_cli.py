"""`jaxrnn sample`: text from a checkpoint written by `jaxrnn train`.

jaxrnn sample --checkpoint runs/charlm/checkpoint.npz --prime "The " --temperature 0.7 --length 300
"""

from __future__ import annotations

import argparse
import os
import sys

from jaxrnn.charlm.errors import CharLMError

DEFAULT_CHECKPOINT = os.path.join("runs", "charlm", "checkpoint.npz")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", default=DEFAULT_CHECKPOINT, help=f"checkpoint of jaxrnn train (default {DEFAULT_CHECKPOINT})"
    )
    parser.add_argument("--prime", default="", help="text the model reads first; printed before the sample")
    parser.add_argument("--temperature", type=float, default=0.7, help="below 1: safer, above 1: wilder (default 0.7)")
    parser.add_argument("--length", type=int, default=300, help="characters to draw (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def main(args: argparse.Namespace) -> int:
    import jax

    from jaxrnn.charlm.checkpoint import load_checkpoint
    from jaxrnn.charlm.sample import generate

    try:
        checkpoint = load_checkpoint(args.checkpoint)
        text = generate(
            checkpoint.params,
            checkpoint.vocabulary,
            key=jax.random.PRNGKey(args.seed),
            prime=args.prime,
            temperature=args.temperature,
            length=args.length,
            lines=bool(checkpoint.config.get("lines", False)),
        )
    except CharLMError as err:
        print(f"jaxrnn sample: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0
