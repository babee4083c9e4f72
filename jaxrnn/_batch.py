"""Any number of leading batch dimensions, in the batch- and time-major layouts (as Flax takes them).

`x (*batch, T, n)` (batch-major) or `(T, *batch, n)` (time-major), `*batch` zero or more axes,
runs as one batch axis of `B = prod(*batch)` examples: states `(*batch, n_a)` become
`(B, n_a)`, `seq_lengths (*batch,)` become `(B,)`, labels `(*batch, T)` / `(T, *batch)` become
`(B, T)` / `(T, B)`, and every result is given back with the caller's `*batch`. One batch axis
(the usual case) is left exactly as it is, and so is the seed layout, whose `(n, m, T)` has one.
Reshapes only: no copy of the data in row-major order.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Batch(NamedTuple):
    """The caller's batch dimensions (`dims`) and whether they differ from one axis (`reshaped`)."""

    dims: tuple
    reshaped: bool
    layout: str

    @property
    def size(self) -> int:
        return int(np.prod(self.dims, dtype=np.int64))


def of(x: Any, layout: str) -> tuple[Any, Batch]:
    """`x` with its batch dimensions made one axis, and the `Batch` that restores them."""
    if layout == "seed" or getattr(x, "ndim", 0) < 2:
        return x, Batch((), False, layout)  # the seed layout, or too few axes: the rank check says so
    dims = tuple(x.shape[:-2]) if layout == "batch_major" else tuple(x.shape[1:-1])
    batch = Batch(dims, len(dims) != 1, layout)
    return (_flatten(x, batch) if batch.reshaped else x), batch


def _flatten(value, batch: Batch):
    """`(*batch, T[, n])` -> `(B, T[, n])`; time-major `(T, *batch[, n])` -> `(T, B[, n])`."""
    if batch.layout == "time_major":
        return jnp.reshape(value, (value.shape[0], batch.size, *value.shape[1 + len(batch.dims) :]))
    return jnp.reshape(value, (batch.size, *value.shape[len(batch.dims) :]))


def sequence_like(fn: str, name: str, value: Any, batch: Batch, features: bool = True):
    """Another per-step array of the call (labels: `features=False`; a tangent of `x`) with `x`'s
    batch dimensions made one axis."""
    if value is None or not batch.reshaped:
        return value
    value = jnp.asarray(value)
    time_major = batch.layout == "time_major"
    found = tuple(value.shape[1 : 1 + len(batch.dims)]) if time_major else tuple(value.shape[: len(batch.dims)])
    if value.ndim != len(batch.dims) + 1 + features or found != batch.dims:
        dims = ", ".join(map(str, batch.dims))
        step = ("T, " + dims if time_major else dims + ", T") + (", n" if features else "")
        raise ValueError(
            f"{fn}: {name}.shape={tuple(value.shape)} does not have x's batch dimensions {batch.dims}; "
            f"expected ({step})"
        )
    return _flatten(value, batch)


def per_example(fn: str, name: str, value: Any, batch: Batch, trailing: int):
    """A per-example array or tree of them (states `(*batch, n_a)`: `trailing=1`; lengths
    `(*batch,)`: `trailing=0`) with its batch dimensions made one axis."""
    if value is None or not batch.reshaped:
        return value

    def flatten(path, leaf):
        leaf = jnp.asarray(leaf)
        where = name + jax.tree_util.keystr(path)
        if leaf.ndim != len(batch.dims) + trailing or tuple(leaf.shape[: len(batch.dims)]) != batch.dims:
            tail = tuple(leaf.shape[-trailing:]) if trailing and leaf.ndim else ()
            raise ValueError(
                f"{fn}: {where}.shape={tuple(leaf.shape)} does not have x's batch dimensions {batch.dims}; "
                f"expected {batch.dims + (tail if tail else ('…',) * trailing)}"
            )
        return jnp.reshape(leaf, (batch.size, *leaf.shape[len(batch.dims) :]))

    return jax.tree_util.tree_map_with_path(flatten, value)


def restore_sequence(value, batch: Batch):
    """A result `(B, T, …)` / `(T, B, …)` (or `(B, T)`, `(T, B)`) with the caller's batch dims."""
    if value is None or not batch.reshaped:
        return value
    if batch.layout == "time_major":
        return jnp.reshape(value, (value.shape[0], *batch.dims, *value.shape[2:]))
    return jnp.reshape(value, (*batch.dims, *value.shape[1:]))


def restore_states(tree, batch: Batch):
    """Per-example results `(B, …)` (a tree of them) with the caller's batch dims."""
    if tree is None or not batch.reshaped:
        return tree
    return jax.tree_util.tree_map(lambda v: jnp.reshape(v, (*batch.dims, *v.shape[1:])), tree)
