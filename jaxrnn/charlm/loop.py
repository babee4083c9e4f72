"""The training loop: steps, held-out evaluation, progress, samples, checkpoints, and stopping.

Each step's loss comes back to the host at once: a non-finite loss stops the run at the step
where it appears (every process sees the same loss), and the last checkpoint written stays.
The held-out NLL is measured every `eval_every` steps and at the end; `best.npz` is the
checkpoint of the lowest one so far.

Ctrl-C (SIGINT) asks the run to stop: the step under way finishes, the next one tells every
process (the stop code each step agrees on), all of them stop after it, and the checkpoint is
written; `--resume` continues exactly as if never stopped. A second Ctrl-C stops at once. A
process that fails (it cannot write a file, say) tells the others the same way, so none is left
waiting in a collective. The state only moves on by whole steps (one assignment).
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from jaxrnn.charlm import parallel
from jaxrnn.charlm.checkpoint import BEST_NAME, Checkpoint, save_checkpoint
from jaxrnn.charlm.dataset import Data
from jaxrnn.charlm.display import make_display, plot_losses
from jaxrnn.charlm.errors import CharLMError
from jaxrnn.charlm.evaluate import heldout_nll
from jaxrnn.charlm.sample import generate
from jaxrnn.charlm.train import CONTINUE, ERROR, INTERRUPT, TrainConfig, TrainState, make_train_step

LOSS_PLOT_NAME = "loss.png"
SAMPLED_LINES = 8  # examples shown at each sample of a --lines run


class RunResult(NamedTuple):
    """How a run ended: its last state, the loss of every step, every held-out NLL, whether it
    was interrupted, and whether its checkpoint was written at the end."""

    state: TrainState
    losses: np.ndarray
    validation: np.ndarray
    interrupted: bool
    saved: bool = True


class _Run(NamedTuple):
    config: TrainConfig
    data: Data
    mesh: Mesh
    checkpoint_path: str
    main: bool


def run_training(
    config: TrainConfig,
    data: Data,
    state: TrainState,
    losses: list,
    validation: list,
    mesh: Mesh,
    checkpoint_path: str,
    on_step: Callable[[int], None] | None = None,
) -> RunResult:
    """Trains from `state` up to `config.steps` steps.

    Args:
      config: the run's configuration.
      data: the vocabulary, training batches and held-out set (`dataset.prepare`).
      state: where to start (step 0, or a restored checkpoint).
      losses: the mean loss per character of each step before `state.step`.
      validation: `(step, NLL)` of each evaluation before, as in the checkpoint.
      mesh: the devices (see `parallel.batch_mesh`).
      checkpoint_path: written every `config.checkpoint_every` steps, at the end, and when
        stopped; `best.npz` is written next to it.
      on_step: called with the step number after each step (a hook for callers and tests).

    Returns:
      A `RunResult`; the loss-curve PNG is written next to the checkpoint at the end.

    Raises:
      CharLMError: the loss became NaN or infinite (training diverged), or a process failed.
    """
    run = _Run(config, data, mesh, checkpoint_path, parallel.is_main_process())
    losses = [float(loss) for loss in losses[: state.step]]
    validation = [(int(step), float(nll)) for step, nll in validation if step <= state.step]
    best = min((nll for _, nll in validation), default=math.inf)
    train_step = make_train_step(config, mesh, data.train.loss_scale)
    display = make_display(config.steps, state.step, show=run.main)
    characters, failure, agreed = 0, None, False
    saved_step = state.step if state.step > 0 else None  # the checkpoint a resumed run started from
    try:
        with _Interrupts() as interrupts:
            if state.step == 0:
                _show_sample(run, state, display)
            while state.step < config.steps:
                chunk = data.train.chunk(state.step)
                code = ERROR if failure else INTERRUPT if interrupts.requested else CONTINUE
                params, opt_state, hidden, result = train_step(state.params, state.opt_state, state.hidden, chunk, code)
                losses.append(result.loss_sum / int(chunk.lengths.sum()))  # first: losses[: state.step] is whole
                state = TrainState(params, opt_state, hidden, state.key, state.step + 1)
                characters += int(chunk.lengths.sum())
                if not math.isfinite(losses[-1]):
                    kept = f"; {checkpoint_path} keeps step {saved_step}" if saved_step is not None else ""
                    raise CharLMError(
                        f"training diverged: the loss is {losses[-1]} at step {state.step}{kept} "
                        f"(lower --learning-rate, or clip with --clip global-norm)"
                    )
                if result.stop == ERROR:
                    raise failure or CharLMError("another process failed (see its message); every process stops")
                if result.stop == INTERRUPT:
                    agreed = True
                    raise KeyboardInterrupt
                if on_step is not None:
                    on_step(state.step)
                try:
                    if state.step % max(1, config.steps // 200) == 0 or state.step == config.steps:
                        display.update(state.step, _recent_mean(losses), characters)
                    if state.step % config.eval_every == 0 or state.step == config.steps:
                        best = _evaluate(run, state, losses, validation, best, display)
                    if state.step % config.sample_every == 0 or state.step == config.steps:
                        _show_sample(run, state, display)
                    if state.step % config.checkpoint_every == 0 and state.step < config.steps:
                        _save(run, checkpoint_path, state, losses, validation)
                        saved_step = state.step
                except (CharLMError, OSError) as err:
                    if jax.process_count() == 1:
                        raise
                    failure = err  # told to every process in the next step, then raised there
            _save(run, checkpoint_path, state, losses, validation)  # every process takes part, as in every save
            if failure is not None:  # it came at the last step: no step left to tell the others
                raise failure
    except KeyboardInterrupt:
        # A lone process cannot gather the others' state, and a second Ctrl-C inside a step may
        # have caught the state's buffers already handed (donated) to that step.
        saved = (jax.process_count() == 1 or agreed) and not _donated(state)
        if saved:
            _save(run, checkpoint_path, state, losses, validation)
        history = np.asarray(losses[: state.step], np.float32), _validation_array(validation)
        return RunResult(state, *history, interrupted=True, saved=saved)
    finally:
        display.close()
    if run.main:
        corpus = os.path.basename(config.data) if config.data else "standard-library docstrings"
        sizes = f"n_a={config.hidden_size}, batch {config.batch_size} × ≤{config.chunk_length}"
        title = f"{corpus}: {sizes}, {config.optimizer} lr {config.learning_rate}, {config.steps} steps"
        plot_path = os.path.join(os.path.dirname(checkpoint_path), LOSS_PLOT_NAME)
        plot_losses(np.asarray(losses), _validation_array(validation), plot_path, title)
    return RunResult(state, np.asarray(losses, np.float32), _validation_array(validation), interrupted=False)


class _Interrupts:
    """While active, the first SIGINT only sets `requested`; a second raises KeyboardInterrupt.

    Installed from the main thread only, and not where SIGINT is ignored (a background job) or
    handled outside Python.
    """

    def __enter__(self):
        self.requested, self._previous = False, None
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous not in (signal.SIG_IGN, None):  # None: a handler Python cannot put back
                self._previous = previous
                signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc_info):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _evaluate(run: _Run, state: TrainState, losses, validation: list, best: float, display) -> float:
    """Measures the held-out NLL, records it, writes `best.npz` when it is the lowest; returns the best."""
    if run.data.heldout is None:
        return best
    nll = heldout_nll(parallel.tree_to_host(state.params), run.data.heldout)
    if jax.process_count() > 1:  # every process decides on process 0's figure
        nll = float(multihost_utils.broadcast_one_to_all(np.float64(nll)))
    validation.append((state.step, nll))
    display.validation(state.step, nll)
    if nll < best:
        _save(run, os.path.join(os.path.dirname(run.checkpoint_path), BEST_NAME), state, losses, validation)
        return nll
    return best


def _donated(state: TrainState) -> bool:
    return any(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves((state.params, state.opt_state)))


def _recent_mean(losses: list) -> float:
    """The mean of the last 50 losses."""
    return float(np.mean(losses[-50:]))


def _validation_array(validation: list) -> np.ndarray:
    return np.asarray(validation, np.float64).reshape(-1, 2)


def _show_sample(run: _Run, state: TrainState, display) -> None:
    if not run.main or run.config.sample_length == 0:
        return
    samples = generate(
        parallel.tree_to_host(state.params),
        run.data.vocabulary,
        key=jax.random.fold_in(state.key, state.step),
        temperature=run.config.temperature,
        length=run.config.sample_length,
        lines=run.config.lines,
        num=SAMPLED_LINES if run.config.lines else 1,
    )
    indented = "\n".join("  | " + line for sample in samples for line in sample.split("\n"))
    display.message(f"sample at step {state.step}:\n{indented}")


def _save(run: _Run, path: str, state: TrainState, losses: list, validation: list) -> None:
    """Every process takes part (gathering the split hidden state); process 0 writes."""
    checkpoint = Checkpoint(
        config=run.config.to_dict(),
        vocabulary=run.data.vocabulary,
        step=state.step,
        params=parallel.tree_to_host(state.params),
        opt_state=[parallel.to_host(leaf) for leaf in jax.tree_util.tree_leaves(state.opt_state)],
        hidden=parallel.to_host(state.hidden),
        key=np.asarray(state.key),
        losses=np.asarray(losses[: state.step], np.float32),
        validation=_validation_array(validation),
        data_digest=run.data.digest,
    )
    if run.main:
        save_checkpoint(path, checkpoint)
