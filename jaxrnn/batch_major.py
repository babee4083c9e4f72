"""The layer in the batch-major layout of Flax and Equinox: `(B, T, features)`.

`x (B, T, n_x)`, `a0 (B, n_a)`, `a (B, T, n_a)`, `y (B, T, n_y)`, `labels (B, T)`: the
seed's `(features, m, T_x)` layout with the axes moved, `B = m`, `T = T_x`. Each function
checks its inputs in its own layout, transposes at the boundary and calls `jaxrnn.rnn` or
`jaxrnn.rnn_cross_entropy`, so the gradient is the same hand-derived `custom_vjp` (the
transposes are linear; JAX transposes them back). Parameters stay the plain dict of the
seed's layout — a pytree that optax, `jax.tree_util` and checkpointing take as it is.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrnn import _validate
from jaxrnn.cross_entropy import rnn_cross_entropy
from jaxrnn.layer import rnn


def rnn_batch_major(x, a0, parameters, *, checkpoint_every=None):
    """`jaxrnn.rnn` for batch-major arrays.

    Args:
      x: inputs `(B, T, n_x)`.
      a0: initial hidden state `(B, n_a)`.
      parameters: the seed-layout dict `Wax (n_a, n_x)`, `Waa (n_a, n_a)`, `Wya (n_y, n_a)`,
        `ba (n_a, 1)`, `by (n_y, 1)`, all of the dtype of `x`.
      checkpoint_every: as in `jaxrnn.rnn`.

    Returns:
      `(a (B, T, n_a), y (B, T, n_y))`.
    """
    fn = "rnn_batch_major"
    x, a0, params, _ = _validate.batch_major_inputs(fn, x, a0, parameters)
    every = _validate.positive_int_or_none(fn, "checkpoint_every", checkpoint_every)
    a, y = rnn(_seed_inputs(x), a0.T, params, checkpoint_every=every)
    return _batch_major(a), _batch_major(y)


def rnn_cross_entropy_batch_major(x, a0, parameters, labels):
    """`jaxrnn.rnn_cross_entropy` for batch-major arrays.

    Args:
      x: inputs `(B, T, n_x)`.
      a0: initial hidden state `(B, n_a)`.
      parameters: the seed-layout dict (see `rnn_batch_major`).
      labels: integer class indices `(B, T)` in `[0, n_y)`; out-of-range values give NaN.

    Returns:
      `(losses (B, T), a (B, T, n_a))`: per-token `−log softmax(o_t)[label]` in the dtype of `x`,
      and the hidden states (carry `a[:, -1]` into the next chunk of a sequence).
    """
    fn = "rnn_cross_entropy_batch_major"
    x, a0, params, (B, T) = _validate.batch_major_inputs(fn, x, a0, parameters)
    labels = _validate.integer_labels(fn, labels, (B, T), "(B, T)", f"B={B} and T={T} from x")
    losses, a = rnn_cross_entropy(_seed_inputs(x), a0.T, params, labels)
    return losses, _batch_major(a)


def _seed_inputs(x):
    """`(B, T, n_x)` -> `(n_x, B, T)`."""
    return jnp.transpose(x, (2, 0, 1))


def _batch_major(sequence):
    """`(n, B, T)` -> `(B, T, n)`."""
    return jnp.transpose(sequence, (1, 2, 0))
