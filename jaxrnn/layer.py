"""`jaxrnn.rnn`: the forward pass with the hand-derived backward registered as a `custom_vjp`.

Residuals: without checkpointing (`_AllStates`), the forward keeps `(x, a0, parameters,
hidden states, y)` and the backward is `backward.sequence_backward` once. With
`checkpoint_every=k` (`_SegmentStarts`), it keeps only the state entering each k-step
segment; the backward walks the segments in reverse, recomputes each segment's states and
predictions from its entry state, and runs the same `sequence_backward` on it, carrying
dL/da across segment boundaries. Memory for residuals falls from `T` states to `T/k` (plus
one segment's working set); the price is one extra forward pass.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero

from jaxrnn import _validate
from jaxrnn.backward import sequence_backward
from jaxrnn.forward import accumulation_dtype, forward_states, seed_layout, time_major


def rnn(x, a0, parameters, *, checkpoint_every=None):
    """The RNN forward pass, differentiated by the hand-derived backward.

    Same values as `rnn_autodiff`; reverse mode (`jax.grad`, `jax.vjp`, and grad-of-grad)
    runs the hand-written backward of `jaxrnn.backward`. Forward mode (`jax.jvp`,
    `jax.jacfwd`) is not defined for a `custom_vjp` function and raises a `TypeError`;
    use `rnn_autodiff` for it.

    Args:
      x: inputs `(n_x, m, T_x)`.
      a0: initial hidden state `(n_a, m)`.
      parameters: dict with `Wax (n_a, n_x)`, `Waa (n_a, n_a)`, `Wya (n_y, n_a)`,
        `ba (n_a, 1)`, `by (n_y, 1)`, all of the dtype of `x`.
      checkpoint_every: None to keep every hidden state for the backward pass, or an int
        k to keep one state per k steps (ceil(T_x / k) segments of balanced length) and
        recompute the rest during the backward pass.

    Returns:
      `(a (n_a, m, T_x), y_pred (n_y, m, T_x))`.
    """
    x, a0, params, sizes = _validate.sequence_inputs("rnn", x, a0, parameters)
    every = _validate.positive_int_or_none("rnn", "checkpoint_every", checkpoint_every)
    if every is not None:
        # Same number of segments, lengths balanced: the padding stays under one step per
        # segment (k = 1000 on T = 5 runs one 5-step segment, not a 1000-step one).
        n_segments = math.ceil(sizes.T_x / every)
        every = math.ceil(sizes.T_x / n_segments)
    return _rnn(every, x, a0, params)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _rnn(checkpoint_every, x, a0, params):
    states, y = forward_states(time_major(x), a0.T, params)
    return seed_layout(states), seed_layout(y)


class _AllStates(NamedTuple):
    """Residuals without checkpointing. Inputs as given, results in the internal layout."""

    x: jnp.ndarray  # (n_x, m, T)
    a0: jnp.ndarray  # (n_a, m)
    params: dict
    states: jnp.ndarray  # (T, m, n_a): a_1..a_T
    y: jnp.ndarray  # (T, m, n_y)


class _SegmentStarts(NamedTuple):
    """Residuals with `checkpoint_every=k`: the state entering each k-step segment."""

    x: jnp.ndarray  # (n_x, m, T)
    a0: jnp.ndarray  # (n_a, m)
    params: dict
    segment_starts: jnp.ndarray  # (n_segments, m, n_a): a_0, a_k, a_2k, ...


def _rnn_fwd(checkpoint_every, x, a0, params):
    # With symbolic zeros on, primals arrive wrapped (`.value`); cotangents of outputs the
    # caller does not use arrive as `SymbolicZero` and are skipped instead of materialised.
    x, a0, params = jax.tree_util.tree_map(lambda p: p.value, (x, a0, params), is_leaf=_is_primal)
    if checkpoint_every is None:
        states, y = forward_states(time_major(x), a0.T, params)
        return (seed_layout(states), seed_layout(y)), _AllStates(x, a0, params, states, y)
    a, y, segment_starts = _segmented_forward(checkpoint_every, x, a0.T, params)
    return (a, y), _SegmentStarts(x, a0, params, segment_starts)


def _rnn_bwd(checkpoint_every, residuals, cotangents):
    da, dy = (None if isinstance(c, SymbolicZero) else c for c in cotangents)
    x, a0, params = residuals.x, residuals.a0, residuals.params
    no_gradient_from_later_steps = jnp.zeros(a0.T.shape, accumulation_dtype(x.dtype))
    if isinstance(residuals, _AllStates):
        da, dy = (None if c is None else time_major(c) for c in (da, dy))
        grads, dx, da0 = sequence_backward(
            time_major(x), a0.T, residuals.states, residuals.y, da, dy, no_gradient_from_later_steps, params
        )
        dx = seed_layout(dx)
    else:
        grads, dx, da0 = _segmented_backward(
            checkpoint_every, x, residuals.segment_starts, da, dy, no_gradient_from_later_steps, params
        )
    return (
        dx.astype(x.dtype),
        da0.T.astype(a0.dtype),
        {k: grads[k].astype(params[k].dtype) for k in params},
    )


def _is_primal(value):
    return isinstance(value, CustomVJPPrimal)


# Checkpointed segments. Sequences stay in the seed layout `(n, m, T)` and each segment is
# read (and its results written) as a `(n, m, k)` slice, transposed to the internal layout
# only one segment at a time: no full-length transposed copy of x, da, dy or dx is ever
# held. When k does not divide T, time is zero-padded at the end to a multiple of k; padded
# steps get zero cotangents, so they contribute nothing (their dz_t = 0) and are cut.


def _pad_time(sequence, k):
    return jnp.pad(sequence, [(0, 0), (0, 0), (0, -sequence.shape[-1] % k)])


def _read_segment(sequence, index, k):
    """Segment `index` of a padded seed-layout `(n, m, T)` sequence, as internal `(k, m, n)`."""
    return time_major(jax.lax.dynamic_slice_in_dim(sequence, index * k, k, axis=2))


def _write_segment(sequence, segment, index, k):
    """Writes internal `(k, m, n)` `segment` into seed-layout `sequence` at segment `index`."""
    return jax.lax.dynamic_update_slice_in_dim(sequence, seed_layout(segment), index * k, axis=2)


def _segmented_forward(k, x, a0, params):
    """The forward pass segment by segment, keeping each segment's entry state.

    Returns `(a (n_a, m, T), y (n_y, m, T), segment_starts (n_segments, m, n_a))`. When
    the caller does not use `a`, XLA drops its buffer and the forward holds one segment
    of hidden states at a time.
    """
    T = x.shape[-1]
    x = _pad_time(x, k)
    n_segments = x.shape[-1] // k
    dtype = x.dtype
    m, n_a, n_y = a0.shape[0], a0.shape[1], params["Wya"].shape[0]

    def segment(carry, index):
        a_start, a, y = carry
        states, y_s = forward_states(_read_segment(x, index, k), a_start, params)
        a, y = _write_segment(a, states, index, k), _write_segment(y, y_s, index, k)
        return (states[-1], a, y), a_start

    empty = lambda n: jnp.zeros((n, m, n_segments * k), dtype)
    (_, a, y), segment_starts = jax.lax.scan(segment, (a0, empty(n_a), empty(n_y)), jnp.arange(n_segments))
    return a[:, :, :T], y[:, :, :T], segment_starts


def _segmented_backward(k, x, segment_starts, da, dy, da_final, params):
    """`sequence_backward` segment by segment, recomputing each segment's forward pass.

    Seed layout `x (n_x, m, T)`, `da (n_a, m, T)` or None, `dy (n_y, m, T)` or None;
    returns `(grads, dx (n_x, m, T), da0 (m, n_a))`.
    """
    T = x.shape[-1]
    x, da, dy = (None if v is None else _pad_time(v, k) for v in (x, da, dy))

    def segment(carry, inputs):
        da_from_later, grads_sum, dx = carry
        index, a_start = inputs
        x_s, da_s, dy_s = (None if v is None else _read_segment(v, index, k) for v in (x, da, dy))
        states, y = forward_states(x_s, a_start, params)
        grads, dx_s, da_start = sequence_backward(x_s, a_start, states, y, da_s, dy_s, da_from_later, params)
        grads_sum = jax.tree_util.tree_map(jnp.add, grads_sum, grads)
        return (da_start, grads_sum, _write_segment(dx, dx_s, index, k)), None

    acc = da_final.dtype
    zero_grads = {name: jnp.zeros(p.shape, acc) for name, p in params.items()}
    indices = jnp.arange(segment_starts.shape[0])
    carry = (da_final, zero_grads, jnp.zeros(x.shape, acc))
    (da0, grads, dx), _ = jax.lax.scan(segment, carry, (indices, segment_starts), reverse=True)
    return grads, dx[:, :, :T], da0


_rnn.defvjp(_rnn_fwd, _rnn_bwd, symbolic_zeros=True)
