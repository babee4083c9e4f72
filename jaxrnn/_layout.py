"""The three public sequence layouts and the internal one.

- `"seed"`: the seed notebook's `(n, m, T)`, features first; states `(n_a, m)`.
- `"batch_major"`: Flax's and Equinox's `(B, T, n)`; states `(B, n_a)`.
- `"time_major"`: PyTorch's and cuDNN's `(T, B, n)`; states `(B, n_a)`.

Inside, every sequence is time-major, `(T, m, n)`: every product with a weight matrix is then
one plain GEMM over all `T·m` rows, and `lax.scan` slices contiguous `(m, n)` steps off the
leading axis. `"time_major"` input is used as it is, with no transposes at all.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LAYOUTS = ("seed", "batch_major", "time_major")

SEQUENCE_SHAPES = {"seed": "(n, m, T)", "batch_major": "(B, T, n)", "time_major": "(T, B, n)"}
STATE_SHAPES = {"seed": "(n_a, m)", "batch_major": "(B, n_a)", "time_major": "(B, n_a)"}
LOSS_SHAPES = {"seed": "(m, T)", "batch_major": "(B, T)", "time_major": "(T, B)"}

# Where each layout keeps (features, batch, time).
_AXES = {"seed": (0, 1, 2), "batch_major": (2, 0, 1), "time_major": (2, 1, 0)}


def sizes(sequence_shape: tuple, layout: str) -> tuple[int, int, int]:
    """`(features, batch, time)` of a sequence's shape in `layout`."""
    features, batch, time = _AXES[layout]
    return sequence_shape[features], sequence_shape[batch], sequence_shape[time]


def time_axis(layout: str) -> int:
    return _AXES[layout][2]


def to_time_major(sequence: jax.Array, layout: str) -> jax.Array:
    """A sequence in `layout` -> internal `(T, m, n)`."""
    features, batch, time = _AXES[layout]
    return sequence if layout == "time_major" else jnp.transpose(sequence, (time, batch, features))


def from_time_major(sequence: jax.Array, layout: str) -> jax.Array:
    """Internal `(T, m, n)` -> the sequence in `layout`."""
    if layout == "time_major":
        return sequence
    features, batch, time = _AXES[layout]
    permutation = [0, 0, 0]
    permutation[features], permutation[batch], permutation[time] = 2, 1, 0  # internal (T, m, n) axes
    return jnp.transpose(sequence, permutation)


def state_to_rows(state: jax.Array, layout: str) -> jax.Array:
    """A state in `layout` -> internal rows `(m, n_a)`."""
    return state.T if layout == "seed" else state


state_from_rows = state_to_rows  # the map is its own inverse


def losses_from_time_major(losses: jax.Array, layout: str) -> jax.Array:
    """Per-token values `(T, m)` -> `(m, T)` (seed), `(B, T)` (batch-major) or `(T, B)` (time-major)."""
    return losses if layout == "time_major" else losses.T


def labels_to_time_major(labels: jax.Array, layout: str) -> jax.Array:
    """Labels in `layout` (`(m, T)`, `(B, T)` or `(T, B)`) -> `(T, m)`."""
    return losses_from_time_major(labels, layout)
