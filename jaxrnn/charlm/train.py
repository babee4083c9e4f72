"""Training a character-level language model with the seed's RNN: optimiser, loss, train step, throughput.

The model reads one-hot characters `x (V, m, T)` and predicts the next character with
`n_y = V` (the vocabulary size): per-token cross-entropy from `jaxrnn.rnn_cross_entropy`
(the hand-derived backward) or `jaxrnn.rnn_cross_entropy_autodiff` (`jax.grad`), averaged over
the real (weight 1) characters of a chunk. optax does the update: gradient clipping (per
element as in the course, or by global norm), then Adam (or SGD). The hidden state at the
end of a chunk is carried into the next one without its gradient (truncated backpropagation
through time). One `jax.jit`-compiled step runs data parallel over a mesh (`parallel.py`).
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
from jaxrnn.charlm.errors import CharLMError

CROSS_ENTROPY = {"hand": rnn_cross_entropy, "autodiff": rnn_cross_entropy_autodiff}


class TrainState(NamedTuple):
    """The state of a run after `step` steps.

    Attributes:
      params: the RNN's parameters (`Wax (n_a, V)`, `Waa`, `Wya (V, n_a)`, `ba`, `by`), replicated.
      opt_state: the optax state, replicated.
      hidden: `(n_a, m)`, the hidden state carried into the next chunk, split over the batch axis.
      key: the run's `jax.random` key (host, uint32); the sample printed at step s draws from
        `fold_in(key, s)`.
      step: the number of steps taken.
    """

    params: dict[str, jax.Array]
    opt_state: Any
    hidden: jax.Array
    key: np.ndarray
    step: int


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Gradient clipping, then Adam or SGD, as `config` says."""
    return _optimizer(config.optimizer, config.learning_rate, config.clip, config.clip_value)


def _optimizer(name, learning_rate, clip, clip_value):
    clipping = {
        "value": optax.clip(clip_value),  # g ← min(max(g, −c), c), per element (the course's np.clip)
        "global-norm": optax.clip_by_global_norm(clip_value),  # g ← g · min(1, c / ‖g‖₂) over every leaf
        "none": optax.identity(),
    }[clip]
    update = optax.adam(learning_rate) if name == "adam" else optax.sgd(learning_rate)
    return optax.chain(clipping, update)


def chunk_loss(params, hidden, inputs, targets, weights, cross_entropy=rnn_cross_entropy):
    """Mean cross-entropy over the real characters of one chunk, and the hidden state to carry on.

    Args:
      params: the parameter dict (`Wax (n_a, V)`, …), floating.
      hidden: `(n_a, m)`, the state entering the chunk (treated as a constant).
      inputs, targets: `(m, T)` int32 ids; input `START` (-1) is the zero vector.
      weights: `(m, T)` float32, 0 where the target is padding.
      cross_entropy: `rnn_cross_entropy` or `rnn_cross_entropy_autodiff`.

    Returns:
      `(loss, last hidden state (n_a, m))`.
    """
    vocabulary_size = params["Wax"].shape[1]
    x = jax.nn.one_hot(inputs, vocabulary_size, axis=0, dtype=params["Wax"].dtype)  # (V, m, T); -1 -> 0
    losses, a = cross_entropy(x, jax.lax.stop_gradient(hidden), params, targets)
    # L = Σ w ⊙ loss / Σ w: padding (w = 0) adds nothing, to the value or to the gradient.
    weights = weights.astype(losses.dtype)
    loss = jnp.sum(weights * losses) / jnp.maximum(jnp.sum(weights), 1.0)
    return loss, jax.lax.stop_gradient(a[:, :, -1])


def make_train_step(config: TrainConfig, mesh: Mesh) -> Callable:
    """The jit-compiled step `(params, opt_state, hidden, chunk) -> (params, opt_state, hidden, loss)`.

    `chunk` holds host arrays; they are laid out over `mesh` (rows split over the batch axis)
    before the call. A chunk without real characters (all padding) changes nothing and has loss
    NaN. The compiled step is cached per optimiser, gradient and mesh.
    """
    compiled = _compiled_step(
        (config.optimizer, config.learning_rate, config.clip, config.clip_value), config.gradient, mesh
    )
    row_sharding, replicated = parallel.rows(mesh), parallel.replicated(mesh)

    def step(params, opt_state, hidden, chunk: Chunk):
        inputs, targets, weights = (parallel.to_global(v, row_sharding) for v in chunk[:3])
        return compiled(
            params, opt_state, hidden, inputs, targets, weights, parallel.to_global(chunk.reset, replicated)
        )

    return step


@functools.lru_cache(maxsize=8)
def _compiled_step(optimizer_settings, gradient, mesh):
    optimizer = _optimizer(*optimizer_settings)
    cross_entropy = CROSS_ENTROPY[gradient]

    def step(params, opt_state, hidden, inputs, targets, weights, reset):
        hidden = jnp.where(reset, jnp.zeros_like(hidden), hidden)
        (loss, last_hidden), grads = jax.value_and_grad(chunk_loss, has_aux=True)(
            params, hidden, inputs, targets, weights, cross_entropy
        )
        # optax mixes Python floats with int32 step counts; allow that promotion here only.
        with jax.numpy_dtype_promotion("standard"):
            updates, new_opt_state = optimizer.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
        has_targets = jnp.sum(weights) > 0
        only_with_targets = lambda new, old: jnp.where(has_targets, new, old)
        params = jax.tree_util.tree_map(only_with_targets, new_params, params)
        opt_state = jax.tree_util.tree_map(only_with_targets, new_opt_state, opt_state)
        return params, opt_state, last_hidden, jnp.where(has_targets, loss, jnp.nan)

    replicated, columns, rows = parallel.replicated(mesh), parallel.columns(mesh), parallel.rows(mesh)
    return jax.jit(
        step,
        in_shardings=(replicated, replicated, columns, rows, rows, rows, replicated),
        out_shardings=(replicated, replicated, columns, replicated),
    )


def initial_state(config: TrainConfig, vocabulary_size: int, mesh: Mesh) -> TrainState:
    """Step 0: parameters from `init_parameters` and the seed, zero hidden state, fresh optimiser state."""
    init_key, run_key = jax.random.split(jax.random.PRNGKey(config.seed))
    params = jax.tree_util.tree_map(
        np.asarray, init_parameters(init_key, vocabulary_size, config.hidden_size, vocabulary_size)
    )
    opt_state = jax.tree_util.tree_map(np.asarray, make_optimizer(config).init(params))
    hidden = np.zeros((config.hidden_size, config.batch_size), np.float32)
    return place_state(params, opt_state, hidden, np.asarray(run_key), 0, mesh)


def place_state(params, opt_state, hidden, key, step: int, mesh: Mesh) -> TrainState:
    """A `TrainState` from host values: parameters and optimiser state replicated, hidden state split."""
    replicated = parallel.replicated(mesh)
    return TrainState(
        parallel.tree_to_global(params, replicated),
        parallel.tree_to_global(opt_state, replicated),
        parallel.to_global(hidden, parallel.columns(mesh)),
        np.asarray(key),
        step,
    )


def state_from_checkpoint(checkpoint: Checkpoint, config: TrainConfig, mesh: Mesh) -> TrainState:
    """The `TrainState` saved in `checkpoint`, laid out over `mesh` (`config` names the optimiser)."""
    opt_state = restore_opt_state(config, checkpoint.params, checkpoint.opt_state)
    return place_state(checkpoint.params, opt_state, checkpoint.hidden, checkpoint.key, checkpoint.step, mesh)


def restore_opt_state(config: TrainConfig, params, leaves: list[np.ndarray]):
    """The optimiser state of `config` with the given leaves; `CharLMError` if they do not fit it."""
    template = make_optimizer(config).init(params)
    expected = jax.tree_util.tree_leaves(template)
    fits = len(leaves) == len(expected) and all(
        np.shape(a) == np.shape(b) and np.asarray(a).dtype == np.asarray(b).dtype for a, b in zip(leaves, expected)
    )
    if not fits:
        raise CharLMError(
            f"the checkpoint's optimiser state ({len(leaves)} arrays) does not fit --optimizer {config.optimizer} "
            f"--clip {config.clip} ({len(expected)} arrays)"
        )
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), leaves)


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
    state's arrays and the loss.
    """
    config = TrainConfig(
        hidden_size=hidden_size, batch_size=batch_size, chunk_length=chunk_length, gradient=gradient, seed=seed
    )
    mesh = parallel.batch_mesh()
    parallel.check_batch_divides(batch_size, mesh)
    state = initial_state(config, vocabulary_size, mesh)
    ids = np.random.default_rng(seed).integers(0, vocabulary_size, (batch_size, chunk_length + 1), dtype=np.int32)
    chunk = Chunk(ids[:, :-1], ids[:, 1:], np.ones((batch_size, chunk_length), np.float32), np.asarray(False))
    train_step = make_train_step(config, mesh)
    arrays = (state.params, state.opt_state, state.hidden)

    def run():
        nonlocal arrays
        *arrays, loss = train_step(*arrays, chunk)
        return arrays, loss

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
