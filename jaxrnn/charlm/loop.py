"""The training loop: steps, progress, periodic samples, checkpoints, and Ctrl-C.

Ctrl-C (KeyboardInterrupt) at any point leaves the run consistent: the state only moves on
by whole steps (one assignment), so the checkpoint written on the way out is the state after
the last finished step, and `--resume` continues from it exactly as if never stopped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from jaxrnn.charlm import parallel
from jaxrnn.charlm.checkpoint import Checkpoint, save_checkpoint
from jaxrnn.charlm.corpus import Vocabulary
from jaxrnn.charlm.display import make_display, plot_losses
from jaxrnn.charlm.sample import generate
from jaxrnn.charlm.train import TrainConfig, TrainState, make_train_step

LOSS_PLOT_NAME = "loss.png"


class RunResult(NamedTuple):
    """How a run ended: its last state, the loss of every step, and whether Ctrl-C stopped it."""

    state: TrainState
    losses: np.ndarray
    interrupted: bool


def run_training(
    config: TrainConfig,
    vocabulary: Vocabulary,
    dataset,
    state: TrainState,
    losses: list,
    mesh: Mesh,
    checkpoint_path: str,
    on_step: Callable[[int], None] | None = None,
) -> RunResult:
    """Trains from `state` up to `config.steps` steps.

    Args:
      config: the run's configuration.
      vocabulary: the model's characters.
      dataset: a `TextStream` or `LineBatches` (`chunk(step)`).
      state: where to start (step 0, or a restored checkpoint).
      losses: the loss of each step before `state.step`.
      mesh: the devices (see `parallel.batch_mesh`).
      checkpoint_path: written every `config.checkpoint_every` steps, at the end, and on Ctrl-C.
      on_step: called with the step number after each step (a hook for callers and tests).

    Returns:
      A `RunResult`; the loss-curve PNG is written next to the checkpoint at the end.
    """
    main = parallel.is_main_process()
    losses = [float(loss) for loss in losses[: state.step]]
    train_step = make_train_step(config, mesh)
    display = make_display(config.steps, state.step, config.batch_size * config.chunk_length, show=main)
    shown = state.step  # losses[:shown] are host floats
    try:
        if state.step == 0:
            _show_sample(config, vocabulary, state, display, main)
        while state.step < config.steps:
            params, opt_state, hidden, loss = train_step(
                state.params, state.opt_state, state.hidden, dataset.chunk(state.step)
            )
            losses.append(loss)  # before the state moves on: losses[: state.step] is always whole
            state = TrainState(params, opt_state, hidden, state.key, state.step + 1)
            if on_step is not None:
                on_step(state.step)
            if state.step % max(1, config.steps // 200) == 0 or state.step == config.steps:
                shown = _to_floats(losses, shown)
                display.update(state.step, _recent_mean(losses[:shown]))
            if state.step % config.sample_every == 0 or state.step == config.steps:
                _show_sample(config, vocabulary, state, display, main)
            if state.step % config.checkpoint_every == 0 and state.step < config.steps:
                _save(checkpoint_path, config, vocabulary, state, losses, main)
    except KeyboardInterrupt:
        _save(checkpoint_path, config, vocabulary, state, losses, main)
        return RunResult(state, _host_losses(losses, state.step), interrupted=True)
    finally:
        display.close()
    _save(checkpoint_path, config, vocabulary, state, losses, main)
    history = _host_losses(losses, state.step)
    if main:
        corpus = os.path.basename(config.data) if config.data else "standard-library docstrings"
        sizes = f"n_a={config.hidden_size}, batch {config.batch_size} × {config.chunk_length}"
        title = f"{corpus}: {sizes}, {config.steps} steps"
        plot_losses(history, os.path.join(os.path.dirname(checkpoint_path), LOSS_PLOT_NAME), title)
    return RunResult(state, history, interrupted=False)


def _to_floats(losses: list, start: int) -> int:
    """Replaces the device scalars `losses[start:]` by floats in place; returns the new length."""
    end = len(losses)
    for i in range(start, end):
        losses[i] = _as_float(losses[i])
    return end


def _as_float(loss) -> float:
    return loss if isinstance(loss, float) else float(parallel.to_host(loss))


def _recent_mean(losses: list) -> float:
    """The mean of the last 50 finite losses (chunks of padding only have NaN)."""
    recent = np.asarray(losses[-50:], np.float64)
    recent = recent[np.isfinite(recent)]
    return float(recent.mean()) if recent.size else float("nan")


def _host_losses(losses: list, step: int) -> np.ndarray:
    return np.asarray([_as_float(v) for v in losses[:step]], np.float32)


def _show_sample(config, vocabulary, state, display, main) -> None:
    if not main or config.sample_length == 0:
        return
    params = parallel.tree_to_host(state.params)
    text = generate(
        params,
        vocabulary,
        key=jax.random.fold_in(state.key, state.step),
        temperature=config.temperature,
        length=config.sample_length,
        lines=config.lines,
    )
    indented = "\n".join("  | " + line for line in text.split("\n"))
    display.message(f"sample at step {state.step}:\n{indented}")


def _save(path, config, vocabulary, state, losses, main) -> None:
    """Every process takes part (gathering the split hidden state); process 0 writes."""
    checkpoint = Checkpoint(
        config=config.to_dict(),
        vocabulary=vocabulary,
        step=state.step,
        params=parallel.tree_to_host(state.params),
        opt_state=[parallel.to_host(leaf) for leaf in jax.tree_util.tree_leaves(state.opt_state)],
        hidden=parallel.to_host(state.hidden),
        key=np.asarray(state.key),
        losses=_host_losses(losses, state.step),
    )
    if main:
        save_checkpoint(path, checkpoint)
