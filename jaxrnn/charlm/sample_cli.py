"""`jaxrnn sample`: text from a checkpoint written by `jaxrnn train`.

    jaxrnn sample --checkpoint runs/charlm/checkpoint.npz --prime "The " --temperature 0.7 --length 300
    jaxrnn sample --checkpoint runs/names/best.npz --num 20 --prime "ja"     # 20 names starting with "ja"

A model trained with `--lines` gives one example per line (`--num` of them, default 10), each
starting with `--prime`; any other model gives `--num` texts (default 1), separated by a blank line.
"""

from __future__ import annotations

import argparse
import os
import sys

from jaxrnn.charlm.errors import CharLMError

DEFAULT_CHECKPOINT = os.path.join("runs", "charlm", "checkpoint.npz")
DEFAULT_NUM = {True: 10, False: 1}  # lines mode: examples; text mode: texts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", default=DEFAULT_CHECKPOINT, help=f"checkpoint of jaxrnn train (default {DEFAULT_CHECKPOINT})"
    )
    parser.add_argument("--prime", default="", help="text each sample starts with (the model reads it first)")
    parser.add_argument("--temperature", type=float, default=0.7, help="below 1: safer, above 1: wilder (default 0.7)")
    parser.add_argument("--top-k", type=int, default=None, help="draw only among the K most likely characters")
    parser.add_argument(
        "--length", type=int, default=300, help="characters to draw per sample; the most per line with --lines (300)"
    )
    parser.add_argument(
        "--num", type=int, default=None, help="number of samples (default: 10 lines for a --lines model, else 1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def main(args: argparse.Namespace) -> int:
    import jax

    from jaxrnn.charlm.checkpoint import load_checkpoint
    from jaxrnn.charlm.config import TrainConfig
    from jaxrnn.charlm.sample import generate

    try:
        checkpoint = load_checkpoint(args.checkpoint)
        config = TrainConfig.from_dict(checkpoint.config)
        lines = config.lines
        samples = generate(
            checkpoint.params,
            checkpoint.vocabulary,
            key=jax.random.PRNGKey(args.seed),
            cell=config.cell,
            prime=args.prime,
            temperature=args.temperature,
            top_k=args.top_k,
            length=args.length,
            lines=lines,
            num=DEFAULT_NUM[lines] if args.num is None else args.num,
        )
    except CharLMError as err:
        print(f"jaxrnn sample: {err}", file=sys.stderr)
        return 2
    print(("\n" if lines else "\n\n").join(samples))
    return 0
