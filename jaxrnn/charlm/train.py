"""Training a character-level language model with the library's RNN: loss, train step, throughput.

The model reads one-hot characters, time-major `x (W, m, V)`, and predicts the next character
with `n_y = V` (the vocabulary size) through one recurrent layer of `--cell` (vanilla, GRU or
LSTM: `jaxrnn.charlm.model`): per-token cross-entropy from `jaxrnn.rnn_cross_entropy` (the
hand-derived backward) or `jaxrnn.rnn_cross_entropy_autodiff` (`jax.grad`), with each row's
length as `seq_lengths`, so padding costs no loss and no gradient. Rows start from the initial
state, learned (`a0`, and `c0` for an LSTM: parameters) or zero; the state at the end of a
chunk (an LSTM's pair `(h, c)`) is carried into the next one without its gradient (truncated
backpropagation through time).

optax does the update (`optimizer.py`). One `jax.jit`-compiled step runs data parallel over a
mesh (`parallel.py`) and takes the parameters and optimiser state as donated buffers: it
updates them in place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jaxrnn import init_parameters, rnn_cross_entropy, rnn_cross_entropy_autodiff
from jaxrnn._measure import interleaved_timings
from jaxrnn.charlm import parallel
from jaxrnn.charlm.checkpoint import Checkpoint
from jaxrnn.charlm.config import TrainConfig
from jaxrnn.charlm.data import Chunk
from jaxrnn.charlm.model import INITIAL_STATE, initial_hidden, layer_parameters, zero_state
from jaxrnn.charlm.optimizer import FINAL_LEARNING_RATE as FINAL_LEARNING_RATE  # benchmarks read it here
from jaxrnn.charlm.optimizer import make_optimizer, restore_opt_state

CROSS_ENTROPY = {"hand": rnn_cross_entropy, "autodiff": rnn_cross_entropy_autodiff}


class TrainState(NamedTuple):
    """The state of a run after `step` steps.

    Attributes:
      params: the model's parameters (see `jaxrnn.charlm.model`), replicated.
      opt_state: the optax state, replicated.
      hidden: the state carried into the next chunk, `(m, n_a)` (an LSTM's `LSTMState` of two),
        split over the batch axis.
      key: the run's `jax.random` key (host, uint32); the sample printed at step s draws from
        `fold_in(key, s)`.
      step: the number of steps taken.
    """

    params: dict[str, jax.Array]
    opt_state: Any
    hidden: Any
    key: np.ndarray
    step: int


class StepResult(NamedTuple):
    """What the host learns from one step: the summed loss of its characters and the stop code."""

    loss_sum: float
    stop: int


# Stop codes, agreed on by every process in each step (the largest wins): go on, stop for
# SIGINT (Ctrl-C), stop for SIGTERM, stop because a process failed.
CONTINUE, INTERRUPT, TERMINATE, ERROR = 0, 1, 2, 3


def chunk_loss(params, hidden, inputs, targets, lengths, reset, scale, cross_entropy=rnn_cross_entropy, cell="vanilla"):
    """The loss of one chunk, and the state to carry on.

    Args:
      params: the model's parameters (see `jaxrnn.charlm.model`), floating.
      hidden: the state carried into the chunk (a constant: truncated BPTT): `(m, n_a)`, or an
        LSTM's `LSTMState` of two.
      inputs, targets: `(m, W)` int32 ids; input `START` (-1) is the zero vector.
      lengths: `(m,)` int32, the real steps of each row; the steps after them are padding.
      reset: bool scalar: the rows start from the initial state (`a0`, or zeros) instead.
      scale: the divisor of the summed per-character losses (`loss_scale` of the data).
      cross_entropy: `rnn_cross_entropy` or `rnn_cross_entropy_autodiff`.
      cell: `"vanilla"`, `"gru"` or `"lstm"` (static).

    Returns:
      `(Σ losses / scale, (state after each row's last real step, like hidden, Σ losses))`.
    """
    initial = initial_hidden(params, inputs.shape[0], cell)
    start = jax.tree_util.tree_map(lambda a, h: jnp.where(reset, a, jax.lax.stop_gradient(h)), initial, hidden)
    x = jax.nn.one_hot(inputs.T, params["Wax"].shape[1], dtype=params["Wax"].dtype)  # (W, m, V); -1 -> 0
    losses, _, final = cross_entropy(
        x,
        start,
        layer_parameters(params),
        targets.T,
        seq_lengths=lengths,
        layout="time_major",
        return_final_state=True,
        cell=cell,
    )
    total = jnp.sum(losses)  # padding has loss 0 and no gradient
    return total / scale, (jax.lax.stop_gradient(final), total)


def make_train_step(config: TrainConfig, mesh: Mesh, loss_scale: float) -> Callable:
    """The step `(params, opt_state, hidden, chunk, stop) -> (params, opt_state, hidden, StepResult)`.

    `chunk` holds host arrays; they are laid out over `mesh` (rows split over the batch axis)
    before the call. `stop` is this process's stop code (`CONTINUE`, `INTERRUPT`, `ERROR`);
    the result's `stop` is the largest over every process, so all of them stop after the same
    step. `params` and `opt_state` are donated: use only the returned ones. The compiled step
    is cached per optimiser, gradient and mesh.
    """
    compiled = _compiled_step(_optimizer_settings(config), config.gradient, config.cell, mesh)
    rows, vector, replicated = parallel.rows(mesh), parallel.vector(mesh), parallel.replicated(mesh)
    scale = parallel.to_global(np.float32(loss_scale), replicated)

    def step(params, opt_state, hidden, chunk: Chunk, stop: int = CONTINUE):
        params, opt_state, hidden, status = compiled(
            params,
            opt_state,
            hidden,
            parallel.to_global(chunk.inputs, rows),
            parallel.to_global(chunk.targets, rows),
            parallel.to_global(chunk.lengths, vector),
            parallel.to_global(chunk.reset, replicated),
            scale,
            parallel.process_codes(stop, mesh),
        )
        loss_sum, agreed = parallel.to_host(status)
        return params, opt_state, hidden, StepResult(float(loss_sum), int(agreed))

    return step


def _optimizer_settings(config: TrainConfig) -> TrainConfig:
    """The config with only what the optimiser depends on (a cache key)."""
    return TrainConfig(
        **{name: getattr(config, name) for name in ("optimizer", "learning_rate", "beta2", "weight_decay")},
        **{name: getattr(config, name) for name in ("schedule", "warmup_steps", "steps", "clip", "clip_value")},
    )


@functools.lru_cache(maxsize=8)
def _compiled_step(optimizer_settings: TrainConfig, gradient: str, cell: str, mesh: Mesh):
    optimizer = make_optimizer(optimizer_settings)
    cross_entropy = CROSS_ENTROPY[gradient]

    def step(params, opt_state, hidden, inputs, targets, lengths, reset, scale, stop_codes):
        (_, (last_hidden, loss_sum)), grads = jax.value_and_grad(chunk_loss, has_aux=True)(
            params, hidden, inputs, targets, lengths, reset, scale, cross_entropy, cell
        )
        # optax mixes Python floats with int32 step counts; allow that promotion here only.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        status = jnp.stack([loss_sum.astype(jnp.float32), jnp.max(stop_codes).astype(jnp.float32)])
        return params, opt_state, last_hidden, status

    replicated, rows, vector = parallel.replicated(mesh), parallel.rows(mesh), parallel.vector(mesh)
    return jax.jit(
        step,
        in_shardings=(replicated, replicated, rows, rows, rows, vector, replicated, replicated, vector),
        out_shardings=(replicated, replicated, rows, replicated),
        # Parameters and optimiser state are updated in place; donating the (small) hidden state too
        # measured 3-10% slower on CPU (benchmarks/NOTES.md, "Donated buffers").
        donate_argnums=(0, 1),
    )


def initial_parameters(config: TrainConfig, vocabulary_size: int) -> dict[str, np.ndarray]:
    """`init_parameters` of `config.cell` from the seed, plus a zero initial state (`a0 (n_a,)`,
    and `c0 (n_a,)` for an LSTM) when it is learned."""
    init_key = jax.random.split(jax.random.PRNGKey(config.seed))[0]
    params = init_parameters(init_key, vocabulary_size, config.hidden_size, vocabulary_size, cell=config.cell)
    params = {name: np.asarray(value) for name, value in params.items()}
    if config.learn_initial_state:
        params |= {name: np.zeros(config.hidden_size, np.float32) for name in INITIAL_STATE[config.cell]}
    return params


def initial_state(config: TrainConfig, vocabulary_size: int, mesh: Mesh) -> TrainState:
    """Step 0: parameters from the seed, zero carried state, fresh optimiser state."""
    run_key = jax.random.split(jax.random.PRNGKey(config.seed))[1]
    params = initial_parameters(config, vocabulary_size)
    opt_state = jax.tree_util.tree_map(np.asarray, make_optimizer(config).init(params))
    hidden = zero_state(config.cell, config.batch_size, config.hidden_size)
    return place_state(params, opt_state, hidden, np.asarray(run_key), 0, mesh)


def place_state(params, opt_state, hidden, key, step: int, mesh: Mesh) -> TrainState:
    """A `TrainState` from host values: parameters and optimiser state replicated, carried state split."""
    replicated = parallel.replicated(mesh)
    return TrainState(
        parallel.tree_to_global(params, replicated),
        parallel.tree_to_global(opt_state, replicated),
        parallel.tree_to_global(hidden, parallel.rows(mesh)),
        np.asarray(key),
        step,
    )


def state_from_checkpoint(checkpoint: Checkpoint, config: TrainConfig, mesh: Mesh) -> TrainState:
    """The `TrainState` saved in `checkpoint` (checked by `load_checkpoint`), laid out over `mesh`."""
    opt_state = restore_opt_state(config, checkpoint.params, checkpoint.opt_state)
    return place_state(checkpoint.params, opt_state, checkpoint.hidden, checkpoint.key, checkpoint.step, mesh)


def benchmark_step(
    gradient: str,
    *,
    vocabulary_size: int = 94,
    hidden_size: int = TrainConfig.hidden_size,
    batch_size: int = TrainConfig.batch_size,
    chunk_length: int = TrainConfig.chunk_length,
    seed: int = 0,
) -> tuple[Callable[[], Any], int]:
    """One `jaxrnn train` step on random characters, as a zero-argument callable, and its tokens.

    Every call runs the same compiled train step as `jaxrnn train` (on every local device) and
    carries the state on. The default sizes are those of the default `jaxrnn train` (94
    characters: the default corpus). Returns `(run, tokens per call)`; `run()` returns the new
    state's arrays and the step's `StepResult`.
    """
    config = TrainConfig(
        hidden_size=hidden_size, batch_size=batch_size, chunk_length=chunk_length, gradient=gradient, seed=seed
    )
    mesh = parallel.batch_mesh()
    parallel.check_batch_divides(batch_size, mesh)
    state = initial_state(config, vocabulary_size, mesh)
    ids = np.random.default_rng(seed).integers(0, vocabulary_size, (batch_size, chunk_length + 1), dtype=np.int32)
    chunk = Chunk(ids[:, :-1], ids[:, 1:], np.full(batch_size, chunk_length, np.int32), np.asarray(False))
    train_step = make_train_step(config, mesh, loss_scale=batch_size * chunk_length)
    arrays = (state.params, state.opt_state, state.hidden)

    def run():
        nonlocal arrays
        *arrays, result = train_step(*arrays, chunk)
        return arrays, result

    return run, batch_size * chunk_length


def training_throughput(gradients=("hand", "autodiff"), *, repeats: int = 20, **sizes) -> dict[str, float]:
    """Tokens per second of the `jaxrnn train` step with each gradient, timed side by side.

    Args:
      gradients: names from `CROSS_ENTROPY`: "hand" (`rnn_cross_entropy`, the hand-derived
        backward) and/or "autodiff" (`jax.grad` of `rnn_cross_entropy_autodiff`).
      repeats: timed rounds; the variants run interleaved (A B A B …) and the median counts.
      **sizes: `vocabulary_size`, `hidden_size`, `batch_size`, `chunk_length`, `seed` (see
        `benchmark_step`).

    Returns:
      `{gradient: tokens per second}` (median step time).
    """
    steps = {name: benchmark_step(name, **sizes) for name in gradients}
    timings = interleaved_timings({name: run for name, (run, _) in steps.items()}, repeats)
    return {name: tokens / timings[name].median for name, (_, tokens) in steps.items()}
