"""The training loop: steps, held-out evaluation, progress, samples, checkpoints, and stopping.

Each step's loss comes back to the host at once: a non-finite loss stops the run at the step
where it appears (every process sees the same loss), and the last checkpoint written stays.
The held-out NLL is measured every `eval_every` steps and at the end; `best.npz` is the
checkpoint of the lowest one so far. `checkpoint.npz` is written first whenever `best.npz` is
(a full disk or a kill between the two leaves a `checkpoint.npz` at least as new as
`best.npz`, so the run can always be resumed), every `checkpoint_every` steps, at the end and
when stopped. A write that fails says which file and what on disk is still good.

Stopping (`signals.StopSignals`; SIGINT, SIGTERM): the step under way finishes, the next one
tells every process (the stop code each step agrees on; a lone process needs no next step),
all of them stop after it, and the checkpoint is written; `--resume` continues exactly as if
never stopped. In a multi-process run SIGTERM reaches JAX's preemption notifier instead, and
`reached_preemption_sync_point` names the step at which every process stops. A process that
fails (it cannot write a file, say) tells the others the same way, so none is left waiting in
a collective. The state only moves on by whole steps (one assignment).
"""

from __future__ import annotations

import math
import os
import sys
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
from jaxrnn.charlm.signals import Progress, StopSignals
from jaxrnn.charlm.train import CONTINUE, ERROR, INTERRUPT, TERMINATE, TrainConfig, TrainState, make_train_step

LOSS_PLOT_NAME = "loss.png"
SAMPLED_LINES = 8  # examples shown at each sample of a --lines run


class RunResult(NamedTuple):
    """How a run ended: its last state, the loss of every step, every held-out NLL, the stop
    code (`CONTINUE`: it ran to the end; `INTERRUPT`, `TERMINATE`: stopped by SIGINT or
    SIGTERM), and whether its checkpoint holds the last state."""

    state: TrainState
    losses: np.ndarray
    validation: np.ndarray
    stop: int = CONTINUE
    saved: bool = True

    @property
    def interrupted(self) -> bool:
        return self.stop != CONTINUE


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
    signals: StopSignals | None = None,
) -> RunResult:
    """Trains from `state` up to `config.steps` steps.

    Args:
      config: the run's configuration.
      data: the vocabulary, training batches and held-out set (`dataset.prepare`).
      state: where to start (step 0, or a restored checkpoint).
      losses: the mean loss per character of each step before `state.step`.
      validation: `(step, NLL)` of each evaluation before, as in the checkpoint.
      mesh: the devices (see `parallel.batch_mesh`).
      checkpoint_path: written every `config.checkpoint_every` steps, before each `best.npz`,
        at the end, and when stopped; `best.npz` is written next to it.
      on_step: called with the step number after each step (a hook for callers and tests).
      signals: the active `StopSignals` of the command, or None. A KeyboardInterrupt raised
        inside the loop (Ctrl-C without `signals`, or from `on_step`) stops a lone process too.

    Returns:
      A `RunResult`; the loss-curve PNG is written next to the checkpoint at the end.

    Raises:
      CharLMError: the loss became NaN or infinite (training diverged), a file could not be
        written (the message says which, and what on disk is still good), or a process failed.
    """
    run = _Run(config, data, mesh, checkpoint_path, parallel.is_main_process())
    signals = signals or StopSignals()  # never entered: nothing requested, nothing installed
    losses = [float(loss) for loss in losses[: state.step]]
    validation = [(int(step), float(nll)) for step, nll in validation if step <= state.step]
    best = min((nll for _, nll in validation), default=math.inf)
    train_step = make_train_step(config, mesh, data.train.loss_scale)
    display = make_display(config.steps, state.step, show=run.main)
    characters, failure, stop = 0, None, CONTINUE
    saved_step = state.step if state.step > 0 else None  # the checkpoint a resumed run started from
    progress = signals.progress
    progress.checkpoint_path, progress.step, progress.saved_step = checkpoint_path, state.step, saved_step
    progress.writer = run.main
    taken = 0  # steps taken by this process: JAX's preemption sync point counts from its first call
    try:
        try:
            if state.step == 0:
                _show_sample(run, state, display)
            while state.step < config.steps:
                if jax.process_count() == 1 and signals.requested != CONTINUE:
                    stop = signals.requested  # a lone process agrees with itself: no further step
                    break
                chunk = data.train.chunk(state.step)
                code = ERROR if failure else signals.requested
                params, opt_state, hidden, result = train_step(state.params, state.opt_state, state.hidden, chunk, code)
                losses.append(result.loss_sum / int(chunk.lengths.sum()))  # first: losses[: state.step] is whole
                state = TrainState(params, opt_state, hidden, state.key, state.step + 1)
                progress.step, taken = state.step, taken + 1
                characters += int(chunk.lengths.sum())
                if not math.isfinite(losses[-1]):
                    kept = f"; {checkpoint_path} keeps step {saved_step}" if saved_step is not None else ""
                    raise CharLMError(
                        f"training diverged: the loss is {losses[-1]} at step {state.step}{kept} "
                        f"(lower --learning-rate, or clip with --clip global-norm)"
                    )
                if result.stop == ERROR:
                    raise failure or CharLMError("another process failed (see its message); every process stops")
                if result.stop in (INTERRUPT, TERMINATE):
                    stop = result.stop
                    break
                if parallel.reached_preemption_sync_point(taken):  # SIGTERM reached a process of the run
                    stop = TERMINATE
                    break
                if on_step is not None:
                    on_step(state.step)
                try:
                    if state.step % max(1, config.steps // 200) == 0 or state.step == config.steps:
                        display.update(state.step, _recent_mean(losses), characters)
                    improved = False
                    if state.step % config.eval_every == 0 or state.step == config.steps:
                        improved, best = _evaluate(run, state, validation, best, display)
                    if state.step % config.sample_every == 0 or state.step == config.steps:
                        _show_sample(run, state, display)
                    due = state.step % config.checkpoint_every == 0 or state.step == config.steps
                    if due or improved:  # checkpoint.npz before best.npz: never older than it
                        _save(run, checkpoint_path, state, losses, validation, saved_step)
                        saved_step = progress.saved_step = state.step
                    if improved:
                        best_path = os.path.join(os.path.dirname(checkpoint_path), BEST_NAME)
                        _save(run, best_path, state, losses, validation, saved_step)
                except (CharLMError, OSError) as err:
                    if jax.process_count() == 1:
                        raise
                    failure = err  # told to every process in the next step, then raised there
            if saved_step != state.step:  # every process takes part, as in every save
                try:
                    _save(run, checkpoint_path, state, losses, validation, saved_step)
                    saved_step = progress.saved_step = state.step
                except (CharLMError, OSError) as err:
                    if jax.process_count() == 1:
                        raise
                    failure = failure or err
            if parallel.any_process_failed(failure is not None):  # no step left to tell the others
                raise failure or CharLMError("another process failed (see its message); every process stops")
        except KeyboardInterrupt:
            # A lone process cannot gather the others' state, and an interrupt inside a step may
            # have caught the state's buffers already handed (donated) to that step.
            if jax.process_count() > 1 or _donated(state):
                history = np.asarray(losses[: state.step], np.float32), _validation_array(validation)
                return RunResult(state, *history, stop=INTERRUPT, saved=False)
            if saved_step != state.step:
                _save(run, checkpoint_path, state, losses, validation, saved_step)
            stop = INTERRUPT
    finally:
        display.close()
    if stop != CONTINUE:
        return RunResult(state, np.asarray(losses[: state.step], np.float32), _validation_array(validation), stop)
    if run.main:
        _plot(run, losses, validation)
    return RunResult(state, np.asarray(losses, np.float32), _validation_array(validation))


def _evaluate(run: _Run, state: TrainState, validation: list, best: float, display) -> tuple[bool, float]:
    """Measures the held-out NLL and records it; returns `(whether it is the lowest so far, the lowest)`."""
    if run.data.heldout is None:
        return False, best
    nll = heldout_nll(parallel.tree_to_host(state.params), run.data.heldout, run.config.cell)
    if jax.process_count() > 1:  # every process decides on process 0's figure
        nll = float(multihost_utils.broadcast_one_to_all(np.float64(nll)))
    validation.append((state.step, nll))
    display.validation(state.step, nll)
    return nll < best, min(nll, best)


def _donated(state: TrainState) -> bool:
    return any(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves((state.params, state.opt_state)))


def _recent_mean(losses: list) -> float:
    """The mean of the last 50 losses."""
    return float(np.mean(losses[-50:]))


def _validation_array(validation: list) -> np.ndarray:
    return np.asarray(validation, np.float64).reshape(-1, 2)


def _show_sample(run: _Run, state: TrainState, display) -> None:
    """Samples from the model; only process 0 shows them, but every process draws them: with jax 0.12.1,
    a jitted computation that process 0 ran alone left the next training step's collectives waiting
    forever on a multi-process CPU run (jax 0.10.2 to 0.12.0.1 did not), so every process runs the
    same computations in the same order."""
    if run.config.sample_length == 0:
        return
    samples = generate(
        parallel.tree_to_host(state.params),
        run.data.vocabulary,
        key=jax.random.fold_in(state.key, state.step),
        cell=run.config.cell,
        temperature=run.config.temperature,
        length=run.config.sample_length,
        lines=run.config.lines,
        num=SAMPLED_LINES if run.config.lines else 1,
    )
    indented = "\n".join("  | " + line for sample in samples for line in sample.split("\n"))
    display.message(f"sample at step {state.step}:\n{indented}")


def _save(run: _Run, path: str, state: TrainState, losses: list, validation: list, saved_step: int | None) -> None:
    """Every process takes part (gathering the split carried state); process 0 writes.

    `saved_step`: the step `checkpoint.npz` holds now (None: none written), for the message
    when the write fails: `CharLMError` naming the file, the reason and what is still good.
    """
    checkpoint = Checkpoint(
        config=run.config.to_dict(),
        vocabulary=run.data.vocabulary,
        step=state.step,
        params=parallel.tree_to_host(state.params),
        opt_state=[parallel.to_host(leaf) for leaf in jax.tree_util.tree_leaves(state.opt_state)],
        hidden=parallel.tree_to_host(state.hidden),
        key=np.asarray(state.key),
        losses=np.asarray(losses[: state.step], np.float32),
        validation=_validation_array(validation),
        data_digest=run.data.digest,
    )
    if not run.main:
        return
    try:
        save_checkpoint(path, checkpoint)
    except OSError as err:
        reason = err.strerror or str(err)
        kept = Progress(run.checkpoint_path, state.step, saved_step).where()
        raise CharLMError(f"cannot write {err.filename or path}: {reason}; stopped {kept}") from None


def _plot(run: _Run, losses: list, validation: list) -> None:
    """The loss curves next to the checkpoint; a failed write is a note (the checkpoint is saved)."""
    config = run.config
    corpus = os.path.basename(config.data) if config.data else "standard-library docstrings"
    sizes = f"{config.cell} n_a={config.hidden_size}, batch {config.batch_size} × ≤{config.chunk_length}"
    title = f"{corpus}: {sizes}, {config.optimizer} lr {config.learning_rate}, {config.steps} steps"
    plot_path = os.path.join(os.path.dirname(run.checkpoint_path), LOSS_PLOT_NAME)
    try:
        plot_losses(np.asarray(losses), _validation_array(validation), plot_path, title)
    except OSError as err:
        print(
            f"note: cannot write {err.filename or plot_path}: {err.strerror or err} (the checkpoint is saved)",
            file=sys.stderr,
        )
