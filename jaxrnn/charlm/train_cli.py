"""`jaxrnn train`: train a character-level language model with the seed's RNN.

    jaxrnn train                                   # standard-library docstrings, about a minute on 2 CPU cores
    jaxrnn train --data names.txt --lines          # one example per line
    jaxrnn train --out runs/charlm --resume        # continue a run (also after Ctrl-C)

Writes `checkpoint.npz` and `loss.png` into `--out`. Uses every device JAX sees (the batch is
split over them); several machines join one run with `--coordinator`, `--num-processes` and
`--process-id` (the same command on each). Bad input (data, checkpoint, output directory)
ends with one line on stderr and exit status 2; nothing existing is overwritten.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile

from jaxrnn.charlm.config import CLIPPING, GRADIENTS, OPTIMIZERS, RUN_OPTIONS, TrainConfig, flag
from jaxrnn.charlm.errors import CharLMError

DEFAULT_OUT = os.path.join("runs", "charlm")
INTERRUPTED = 130  # the shell's status for Ctrl-C

_HELP = {
    "data": "a UTF-8 text file (default: the standard library's docstrings)",
    "lines": "treat each line of --data as one example (like names)",
    "hidden_size": "hidden units n_a",
    "batch_size": "rows per step m, split over the devices",
    "chunk_length": "characters per row and step T (truncated backpropagation through time)",
    "optimizer": "optax optimiser",
    "learning_rate": "learning rate",
    "clip": "gradient clipping: per element (as in the course), by global norm, or none",
    "clip_value": "the clipping bound",
    "gradient": "backward pass: hand-derived (rnn_cross_entropy) or jax.grad (rnn_cross_entropy_autodiff)",
    "seed": "random seed (initial parameters, order of lines, samples)",
    "steps": "total training steps",
    "checkpoint_every": "write a checkpoint every N steps (and at the end, and on Ctrl-C)",
    "sample_every": "print a sample every N steps",
    "sample_length": "characters per printed sample",
    "temperature": "sampling temperature of the printed samples",
}
_CHOICES = {"optimizer": OPTIMIZERS, "clip": CLIPPING, "gradient": GRADIENTS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        default = getattr(defaults, field.name)
        if field.name == "lines":
            parser.add_argument("--lines", action="store_const", const=True, default=None, help=_HELP["lines"])
        elif field.name == "data":
            parser.add_argument("--data", metavar="PATH", help=_HELP["data"])
        else:
            help_text = f"{_HELP[field.name]} (default {default})"
            kind, choices = type(default), _CHOICES.get(field.name)
            parser.add_argument(flag(field.name), type=kind, default=None, choices=choices, help=help_text)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--resume", action="store_true", help="continue the run whose checkpoint is in --out")
    parser.add_argument("--overwrite", action="store_true", help="start afresh even if --out has a checkpoint")
    parser.add_argument("--devices", type=int, default=None, help="use the first N devices (default: all)")
    group = parser.add_argument_group("multi-process (several machines)")
    group.add_argument("--coordinator", help="host:port of process 0, for jax.distributed.initialize")
    group.add_argument("--num-processes", type=int, help="number of processes")
    group.add_argument("--process-id", type=int, help="this process's number, 0 … N-1")
    group.add_argument(
        "--coordinator-timeout", type=int, default=300, help="seconds to wait for every process (default 300)"
    )


def main(args: argparse.Namespace) -> int:
    try:
        return _train(args)
    except (CharLMError, OSError) as err:
        print(f"jaxrnn train: {err}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    distributed = (args.coordinator, args.num_processes, args.process_id)
    if any(value is not None for value in distributed):
        if any(value is None for value in distributed):
            raise CharLMError("a multi-process run needs all of --coordinator, --num-processes and --process-id")
        from jaxrnn.charlm.parallel import initialize_distributed

        initialize_distributed(*distributed, timeout_s=args.coordinator_timeout)

    import jax
    import numpy as np

    from jaxrnn.charlm import parallel
    from jaxrnn.charlm.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from jaxrnn.charlm.corpus import default_corpus, read_corpus
    from jaxrnn.charlm.data import corpus_vocabulary, make_dataset
    from jaxrnn.charlm.loop import LOSS_PLOT_NAME, run_training
    from jaxrnn.charlm.train import initial_state, state_from_checkpoint

    checkpoint_path = os.path.join(args.out, CHECKPOINT_NAME)
    explicit = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    explicit = {name: value for name, value in explicit.items() if value is not None}
    if "data" in explicit:
        explicit["data"] = os.path.abspath(explicit["data"])
    checkpoint = load_checkpoint(checkpoint_path) if args.resume else None
    if checkpoint is None:
        if os.path.exists(checkpoint_path) and not args.overwrite:
            raise CharLMError(
                f"{checkpoint_path} exists; continue it with --resume, replace it with --overwrite, "
                f"or choose another --out"
            )
        config = TrainConfig(**explicit)
    else:
        config = _resumed_config(checkpoint.config, explicit, checkpoint_path)

    text = read_corpus(config.data) if config.data is not None else default_corpus()
    vocabulary = corpus_vocabulary(text, config.lines)
    if checkpoint is not None and vocabulary != checkpoint.vocabulary:
        raise CharLMError(
            f"the data's vocabulary ({len(vocabulary)} characters) differs from that of {checkpoint_path} "
            f"({len(checkpoint.vocabulary)} characters); resume with the data it was trained on"
        )
    dataset = make_dataset(text, vocabulary, config.lines, config.batch_size, config.chunk_length, config.seed)
    mesh = parallel.batch_mesh(args.devices)
    parallel.check_batch_divides(config.batch_size, mesh)
    main_process = parallel.is_main_process()
    if main_process:
        _prepare_output(args.out)

    if checkpoint is None:
        state, losses = initial_state(config, len(vocabulary), mesh), []
    else:
        state = state_from_checkpoint(checkpoint, config, mesh)
        losses = list(checkpoint.losses)
        if state.step >= config.steps:
            if main_process:
                print(f"jaxrnn train: {checkpoint_path} is at step {state.step}; raise --steps to train on")
            return 0

    if main_process:
        corpus = config.data or "the standard library's docstrings"
        print(
            f"jaxrnn train: {corpus} ({len(text):,} characters, {len(vocabulary)} distinct"
            f"{', one example per line' if config.lines else ''})\n"
            f"  model n_a={config.hidden_size}, batch {config.batch_size} × {config.chunk_length} characters, "
            f"{config.optimizer} lr {config.learning_rate}, clip {config.clip} {config.clip_value}, "
            f"{config.gradient} gradient, seed {config.seed}\n"
            f"  steps {state.step} → {config.steps} on {mesh.devices.size} {mesh.devices.flat[0].platform} device(s)"
            f"{f' in {jax.process_count()} processes' if jax.process_count() > 1 else ''}; "
            f"writing {args.out}",
            flush=True,
        )
    result = run_training(config, vocabulary, dataset, state, losses, mesh, checkpoint_path)
    if not main_process:
        return INTERRUPTED if result.interrupted else 0
    if result.interrupted:
        print(
            f"jaxrnn train: interrupted at step {result.state.step}; saved {checkpoint_path}; "
            f"continue with: jaxrnn train --out {args.out} --resume",
            file=sys.stderr,
        )
        return INTERRUPTED
    recent = result.losses[-50:]
    recent = recent[np.isfinite(recent)]
    plot = os.path.join(args.out, LOSS_PLOT_NAME)
    print(
        f"jaxrnn train: done, step {result.state.step}, loss {recent.mean():.3f} "
        f"(mean of the last {len(recent)} steps); wrote {checkpoint_path}"
        f"{f' and {plot}' if os.path.exists(plot) else ''}"
    )
    return 0


def _resumed_config(saved: dict, explicit: dict, checkpoint_path: str) -> TrainConfig:
    """The checkpoint's configuration with the run options given again; the rest must agree."""
    for name, value in explicit.items():
        if name not in RUN_OPTIONS and value != saved.get(name):
            raise CharLMError(
                f"{flag(name)} {value} differs from {saved.get(name)} in {checkpoint_path}; "
                f"drop {flag(name)} to continue that run, or start a new one with another --out"
            )
    return TrainConfig.from_dict({**saved, **explicit})


def _prepare_output(out: str) -> None:
    """Creates `out` if needed and checks that files can be written in it."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise CharLMError(f"--out {out}: exists and is not a directory")
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise CharLMError(f"--out {out}: cannot write there ({err.strerror})") from None
