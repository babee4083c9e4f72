"""`jaxrnn train`: train a character-level language model with the library's RNN (docs/training.md).

    jaxrnn train                                   # standard-library docstrings, about a minute on 2 CPU cores
    jaxrnn train --data names.txt --lines --cell lstm   # one example per line, an LSTM
    jaxrnn train --out runs/charlm --resume        # continue a run (also after Ctrl-C or SIGTERM)

Holds out part of the data (or reads `--val-data`) and reports the held-out NLL every
`--eval-every` steps. Writes `checkpoint.npz`, `best.npz` (the lowest held-out NLL so far) and
`loss.png` into `--out`. Uses every device JAX sees (the batch is split over them); several
machines join one run with `--coordinator`, `--num-processes` and `--process-id` (the same
command on each).

Exit status: 0 done; 2 bad input (data, flags, checkpoint, output directory: one line on
stderr, nothing existing overwritten), a failed write, a diverged run or a lost process; 130
stopped by SIGINT (Ctrl-C), 143 by SIGTERM, the checkpoint saved in both.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import signal
import sys
import tempfile

from jaxrnn.charlm.config import CELLS, CLIPPING, GRADIENTS, OPTIMIZERS, RUN_OPTIONS, SCHEDULES, TrainConfig, flag
from jaxrnn.charlm.errors import CharLMError

DEFAULT_OUT = os.path.join("runs", "charlm")
INTERRUPTED = 130  # the shell's status for Ctrl-C (128 + SIGINT), before the run's signal handlers are in place
DEFAULT_HEARTBEAT_TIMEOUT_S = 30

_HELP = {
    "data": "a UTF-8 text file (default: the standard library's docstrings)",
    "lines": "treat each line of --data as one example (like names)",
    "val_data": "held-out data, a UTF-8 file (default: hold out part of --data)",
    "val_fraction": "fraction of --data held out: lines drawn from --seed with --lines, else the tail of the text; "
    "0 for none (default: min(1000 lines, 10%%) with --lines, else 10%% of the text up to 100,000 characters)",
    "eval_every": "measure the held-out NLL every N steps (and at the end)",
    "hidden_size": "hidden units n_a",
    "cell": "the recurrent cell: the seed's vanilla RNN, a GRU or an LSTM",
    "learn_initial_state": "learn the initial state (a0; an LSTM's a0 and c0) (default: zeros)",
    "batch_size": "rows per step m, split over the devices",
    "chunk_length": "the most characters per row and step T (truncated backpropagation through time)",
    "optimizer": "optax optimiser",
    "learning_rate": "peak learning rate",
    "beta2": "Adam's second-moment decay",
    "weight_decay": "AdamW's decoupled weight decay, on the matrices Wax, Waa, Wya (not biases, not the initial state)",
    "schedule": "learning rate after the warmup: cosine down to a tenth at --steps, or constant",
    "warmup_steps": "steps of linear warmup from 0",
    "clip": "gradient clipping: by global norm, per element (as in the course), or none",
    "clip_value": "the clipping bound",
    "gradient": "backward pass: hand-derived (rnn_cross_entropy) or jax.grad (rnn_cross_entropy_autodiff)",
    "seed": "random seed (initial parameters, held-out lines, order of lines, samples)",
    "steps": "total training steps",
    "checkpoint_every": "write a checkpoint every N steps (also before each best.npz, at the end, on SIGINT/SIGTERM)",
    "sample_every": "print a sample every N steps",
    "sample_length": "characters per printed sample",
    "temperature": "sampling temperature of the printed samples",
}
_CHOICES = {"cell": CELLS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "clip": CLIPPING, "gradient": GRADIENTS}
_PATHS = ("data", "val_data")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        default = getattr(defaults, field.name)
        if isinstance(default, bool):
            parser.add_argument(
                flag(field.name), action=argparse.BooleanOptionalAction, default=None, help=_HELP[field.name]
            )
        elif field.name in _PATHS:
            parser.add_argument(flag(field.name), metavar="PATH", help=_HELP[field.name])
        elif field.name == "val_fraction":
            parser.add_argument(flag(field.name), type=float, default=None, help=_HELP[field.name])
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
    group.add_argument(
        "--heartbeat-timeout",
        type=int,
        default=DEFAULT_HEARTBEAT_TIMEOUT_S,
        help="seconds of silence after which a process counts as lost and every process stops with exit 2 "
        f"(default {DEFAULT_HEARTBEAT_TIMEOUT_S}); one that exits or is killed is noticed at once",
    )


def main(args: argparse.Namespace) -> int:
    try:
        return _train(args)
    except (CharLMError, OSError) as err:
        print(f"jaxrnn train: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the run's signal handlers were in place
        print("jaxrnn train: interrupted before training started; nothing was written", file=sys.stderr)
        return INTERRUPTED


def _train(args: argparse.Namespace) -> int:
    distributed = (args.coordinator, args.num_processes, args.process_id)
    multi_process = any(value is not None for value in distributed)
    if multi_process:
        if any(value is None for value in distributed):
            raise CharLMError("a multi-process run needs all of --coordinator, --num-processes and --process-id")
        if args.heartbeat_timeout < 1:
            raise CharLMError(f"--heartbeat-timeout {args.heartbeat_timeout:g}: expected at least 1 (seconds)")
        from jaxrnn.charlm.parallel import initialize_distributed
        from jaxrnn.charlm.peers import JAX_TIMEOUT_FACTOR

        heartbeat = JAX_TIMEOUT_FACTOR * args.heartbeat_timeout
        initialize_distributed(*distributed, timeout_s=args.coordinator_timeout, heartbeat_timeout_s=heartbeat)

    from jaxrnn.charlm.parallel import jax_handles_sigterm
    from jaxrnn.charlm.signals import STOP_CODES, Progress, StopSignals

    progress, watch = Progress(), None
    handled = [signum for signum in STOP_CODES if not (signum == signal.SIGTERM and jax_handles_sigterm())]
    if multi_process:
        from jaxrnn.charlm.peers import watch_peers

        watch = watch_peers(args.coordinator, args.heartbeat_timeout, progress)
    try:
        with StopSignals(progress, tuple(handled)) as signals:
            status = _run(args, signals)
    except (CharLMError, OSError):
        if watch is not None:
            watch.close()  # an orderly end, agreed by every process: not a lost process
        raise
    except BaseException:  # unexpected: the others must stop too, so no goodbye
        if watch is not None:  # a failed collective may be the first sign of a lost process: let the watch say so
            watch.linger()
        raise
    if watch is not None:
        watch.close()
    return status


def _run(args: argparse.Namespace, signals) -> int:
    import jax
    import numpy as np

    from jaxrnn.charlm import parallel
    from jaxrnn.charlm.checkpoint import BEST_NAME, CHECKPOINT_NAME, remove_stale_temporary_files
    from jaxrnn.charlm.evaluate import bits
    from jaxrnn.charlm.loop import LOSS_PLOT_NAME, run_training
    from jaxrnn.charlm.signals import describe, exit_status
    from jaxrnn.charlm.train import initial_state, state_from_checkpoint

    checkpoint_path = os.path.join(args.out, CHECKPOINT_NAME)
    setup, digest, failure, created = None, "", None, []
    try:
        setup = _setup(args, checkpoint_path, created)
        digest = _run_digest(*setup)
    except (CharLMError, OSError) as err:
        _remove_empty(created)
        if jax.process_count() == 1:
            raise
        failure = str(err)  # every process learns of it in agree_at_start, then stops
    try:
        parallel.agree_at_start(digest, failure)
    except CharLMError:
        _remove_empty(created)  # a refused start leaves no empty --out behind
        raise
    config, data, checkpoint, mesh = setup
    main_process = parallel.is_main_process()
    if main_process:
        stale = remove_stale_temporary_files(args.out, (CHECKPOINT_NAME, BEST_NAME, LOSS_PLOT_NAME))
        if stale:
            print(
                f"jaxrnn train: removed {len(stale)} temporary file(s) of a write cut short (kill -9?) from "
                f"{args.out}: {', '.join(stale)}",
                flush=True,
            )

    if checkpoint is None:
        state, losses, validation = initial_state(config, len(data.vocabulary), mesh), [], []
    else:
        state = state_from_checkpoint(checkpoint, config, mesh)
        losses, validation = list(checkpoint.losses), checkpoint.validation.tolist()
        if state.step >= config.steps:
            if main_process:
                print(f"jaxrnn train: {checkpoint_path} is at step {state.step}; raise --steps to train on")
            return 0

    if main_process:
        _print_start(args, config, data, state.step, mesh)
    result = run_training(config, data, state, losses, validation, mesh, checkpoint_path, signals=signals)
    if result.interrupted:
        status = exit_status(result.stop)
        if main_process:
            saved = (
                f"saved {checkpoint_path}" if result.saved else f"not saved (stopped inside a step): {checkpoint_path}"
            )
            print(
                f"jaxrnn train: {describe(result.stop)} at step {result.state.step}; {saved}; "
                f"continue with: jaxrnn train --out {args.out} --resume",
                file=sys.stderr,
            )
        return status
    if not main_process:
        return 0
    written = [checkpoint_path] + [
        os.path.join(args.out, name)
        for name in (BEST_NAME, LOSS_PLOT_NAME)
        if os.path.exists(os.path.join(args.out, name))
    ]
    heldout = ""
    if len(result.validation):
        (_, last), best = result.validation[-1], result.validation[np.argmin(result.validation[:, 1])]
        heldout = (
            f", held-out {last:.4f} nats/char ({bits(last):.4f} bits/char; best {best[1]:.4f} at step {int(best[0])})"
        )
    print(
        f"jaxrnn train: done, step {result.state.step}, loss {np.mean(result.losses[-50:]):.3f} "
        f"(mean of the last {min(50, len(result.losses))} steps){heldout}; wrote {', '.join(written)}"
    )
    return 0


def _setup(args: argparse.Namespace, checkpoint_path: str, created: list[str]):
    """`(config, data, checkpoint or None, mesh)`, every input checked; creates `--out` on process 0
    (the directories it made are appended to `created`)."""
    from jaxrnn.charlm import parallel
    from jaxrnn.charlm.checkpoint import load_checkpoint
    from jaxrnn.charlm.dataset import prepare, read_texts

    explicit = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    explicit = {name: value for name, value in explicit.items() if value is not None}
    for name in _PATHS:
        if name in explicit:
            explicit[name] = os.path.abspath(explicit[name])
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

    text, val_text = read_texts(config)
    data = prepare(config, text, val_text)
    if checkpoint is not None:
        _check_same_data(config, data, text, checkpoint, checkpoint_path)
    mesh = parallel.batch_mesh(args.devices)
    parallel.check_batch_divides(config.batch_size, mesh)
    if parallel.is_main_process():
        _prepare_output(args.out, created)
    return config, data, checkpoint, mesh


def _run_digest(config: TrainConfig, data, checkpoint, mesh) -> str:
    """sha256 of what must be the same on every process: settings, data, vocabulary, starting step."""
    settings = {name: value for name, value in config.to_dict().items() if name not in _PATHS}
    facts = [json.dumps(settings, sort_keys=True), data.digest, data.vocabulary.characters]
    facts.append(str(0 if checkpoint is None else checkpoint.step))
    return hashlib.sha256("\0".join(facts).encode("utf-8")).hexdigest()


def _check_same_data(config: TrainConfig, data, text: str, checkpoint, checkpoint_path: str) -> None:
    from jaxrnn.charlm.corpus import is_stable_default_corpus, python_version

    if data.vocabulary == checkpoint.vocabulary and data.digest == checkpoint.data_digest:
        return
    if config.data is None and not is_stable_default_corpus(text):
        raise CharLMError(
            f"Python {python_version()} builds another default corpus than the one {checkpoint_path} was trained on "
            f"(docstrings change between Python releases; 3.11, 3.12 and 3.13 build the same one): resume it under "
            f"Python 3.11–3.13, or start a new run with another --out"
        )
    what = (
        f"vocabulary ({len(data.vocabulary)} characters) differs from that of {checkpoint_path} "
        f"({len(checkpoint.vocabulary)} characters)"
        if data.vocabulary != checkpoint.vocabulary
        else f"text differs from the text {checkpoint_path} was trained on (sha256 {data.digest[:12]}… "
        f"against {checkpoint.data_digest[:12]}…)"
    )
    raise CharLMError(
        f"the data's {what}; resume with the data it was trained on, or start a new run with another --out"
    )


def _print_start(args, config: TrainConfig, data, step: int, mesh) -> None:
    import jax

    from jaxrnn.charlm.corpus import DEFAULT_CORPUS_NAME
    from jaxrnn.charlm.dataset import describe_heldout

    corpus = config.data or DEFAULT_CORPUS_NAME
    schedule = f"warmup {config.warmup_steps}, {config.schedule}"
    decay = f", weight decay {config.weight_decay}" if config.optimizer == "adamw" else ""
    clip = "no clipping" if config.clip == "none" else f"clip {config.clip} {config.clip_value}"
    initial = ("learned " if config.learn_initial_state else "zero ") + ("a0, c0" if config.cell == "lstm" else "a0")
    print(
        f"jaxrnn train: {corpus} ({data.characters:,} characters, {len(data.vocabulary)} distinct"
        f"{', one example per line' if config.lines else ''}); {describe_heldout(config, data)}\n"
        f"  model {config.cell} n_a={config.hidden_size} ({initial}), "
        f"batch {config.batch_size} × ≤{config.chunk_length} characters, "
        f"{config.optimizer} lr {config.learning_rate} ({schedule}{decay}), {clip}, "
        f"{config.gradient} gradient, seed {config.seed}\n"
        f"  steps {step} → {config.steps} on {mesh.devices.size} {mesh.devices.flat[0].platform} device(s)"
        f"{f' in {jax.process_count()} processes' if jax.process_count() > 1 else ''}; "
        f"writing {args.out}",
        flush=True,
    )


def _resumed_config(saved: dict, explicit: dict, checkpoint_path: str) -> TrainConfig:
    """The checkpoint's configuration with the run options given again; the rest must agree."""
    for name, value in explicit.items():
        if name not in RUN_OPTIONS and value != saved.get(name):
            raise CharLMError(
                f"{flag(name)} {value} differs from {saved.get(name)} in {checkpoint_path}; "
                f"drop {flag(name)} to continue that run, or start a new one with another --out"
            )
    return TrainConfig.from_dict({**saved, **explicit})


def _prepare_output(out: str, created: list[str]) -> None:
    """Creates `out` if needed (appending each directory made to `created`) and checks that files
    can be written in it."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise CharLMError(f"--out {out}: exists and is not a directory")
    missing, parent = [], os.path.abspath(out)
    while not os.path.exists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    try:
        for directory in reversed(missing):
            os.mkdir(directory)
            created.append(directory)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        _remove_empty(created)
        raise CharLMError(f"--out {out}: cannot write there ({err.strerror})") from None


def _remove_empty(created: list[str]) -> None:
    """Removes the directories this run made, deepest first, while they are empty."""
    for directory in reversed(created):
        try:
            os.rmdir(directory)  # only ever removes an empty directory
        except OSError:
            return
    created.clear()
