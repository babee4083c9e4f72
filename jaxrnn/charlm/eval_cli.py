"""`jaxrnn eval`: the held-out NLL of a checkpoint of `jaxrnn train`, on its own held-out set or any file.

    jaxrnn eval --checkpoint runs/names/best.npz                  # the run's held-out set
    jaxrnn eval --checkpoint runs/names/best.npz --data test.txt  # every line of test.txt
    jaxrnn eval --checkpoint runs/charlm/checkpoint.npz --data book.txt --no-lines

Prints the mean negative log-likelihood per character in nats and bits, measured as during
training (`jaxrnn.charlm.evaluate`): the same figure `jaxrnn train` reports for the same data.
"""

from __future__ import annotations

import argparse
import sys

from jaxrnn.charlm.errors import CharLMError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint.npz or best.npz of jaxrnn train")
    parser.add_argument(
        "--data", metavar="PATH", help="a UTF-8 file to evaluate on, all of it (default: the run's held-out set)"
    )
    parser.add_argument(
        "--lines",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read --data as one example per line (default: as the model was trained)",
    )


def main(args: argparse.Namespace) -> int:
    try:
        print(_evaluate(args))
    except (CharLMError, OSError) as err:
        print(f"jaxrnn eval: {err}", file=sys.stderr)
        return 2
    return 0


def _evaluate(args: argparse.Namespace) -> str:
    from jaxrnn.charlm.checkpoint import load_checkpoint
    from jaxrnn.charlm.config import TrainConfig
    from jaxrnn.charlm.corpus import DEFAULT_CORPUS_NAME, read_corpus, text_lines
    from jaxrnn.charlm.dataset import prepare, read_texts
    from jaxrnn.charlm.evaluate import bits, heldout_lines, heldout_nll, heldout_text

    checkpoint = load_checkpoint(args.checkpoint)
    config = TrainConfig.from_dict(checkpoint.config)
    vocabulary = checkpoint.vocabulary
    if args.data is None:
        if args.lines is not None:
            raise CharLMError("--lines and --no-lines choose how to read --data; give --data too")
        data = prepare(config, *read_texts(config))
        if data.digest != checkpoint.data_digest:
            raise CharLMError(
                f"the data of {args.checkpoint} ({config.data or DEFAULT_CORPUS_NAME}) changed since it was "
                f"trained; pass --data to evaluate on a file"
            )
        if data.heldout is None:
            raise CharLMError(f"the run of {args.checkpoint} has no held-out set; pass --data to evaluate on a file")
        heldout, what = data.heldout, "held-out set"
    else:
        text = read_corpus(args.data)
        lines = config.lines if args.lines is None else args.lines
        if lines:
            if "\n" not in vocabulary:
                raise CharLMError(f"--lines: the model of {args.checkpoint} has no end-of-line character")
            encoded = [vocabulary.encode(line, f"--data {args.data}") for line in text_lines(text)]
            heldout = heldout_lines(encoded, int(vocabulary.encode("\n")[0]))
        else:
            heldout = heldout_text(vocabulary.encode(text, f"--data {args.data}"))
        what = args.data
    nll = heldout_nll(checkpoint.params, heldout, config.cell)
    return (
        f"{what}: {nll:.4f} nats/char ({bits(nll):.4f} bits/char) over {heldout.characters:,} characters "
        f"({heldout.description}), {config.cell} model of step {checkpoint.step}"
    )
