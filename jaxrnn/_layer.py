"""One recurrent layer with an optional head, differentiated by the hand-derived backward.

`run_layer` is the single internal entry point behind `rnn`, `rnn_cross_entropy` and
`rnn_stack`: inputs already checked, `a0` as rows `(m, n_a)`, labels time-major `(T, m)`. It
returns `(a in the caller's layout, head output, final state (m, n_a))`; the head output is
`y` in the caller's layout, per-token losses `(T, m)` or None.

With `gradient="hand"` the layer is a `jax.custom_vjp` (`_layer`) whose rule is
`_backward.sequence_backward`; with `"autodiff"` the same forward (`_forward`) is left to
`jax.grad`: the oracle.

Residuals: without checkpointing (`_AllStates`) the forward keeps its inputs, the hidden
states (time-major) and, for the softmax head, `y`; the backward is `sequence_backward`
once. With `checkpoint_every=k` (`_SegmentStarts`) it keeps only the state entering each
k-step segment; the backward walks the segments against the direction of the recurrence,
recomputes each segment's states (and head) from its entry state and runs the same
`sequence_backward` on it, carrying dL/da across segment boundaries. Residual memory falls
from `T` states to `T/k`, for one extra forward pass. Segments are read from and written to
the caller's layout one `k`-step slice at a time: no full-length transposed copy of `x`,
`da`, `dy` or `dx` is held. When k does not divide T, time is zero-padded to a multiple of
k and the padded steps are masked (frozen), so they change neither the final state nor any
gradient.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero

from jaxrnn import _layout
from jaxrnn._backward import sequence_backward
from jaxrnn._forward import accumulation_dtype, hidden_states, valid_steps
from jaxrnn._heads import head_forward


class Config(NamedTuple):
    """The static options of one layer call (hashable: a `nondiff_argnums` argument).

    Attributes:
      layout: `"seed"`, `"batch_major"` or `"time_major"` (of `x`, `a` and `y`).
      reverse: run the recurrence from the last valid step back to the first.
      nonlinearity: `"tanh"` or `"relu"`.
      checkpoint_every: None, or the (balanced) segment length k.
      head: None (no head), `"softmax"` (returns `y`) or `"cross_entropy"` (returns losses).
      ignore_index: a label value whose tokens have no loss, or None.
    """

    layout: str = "seed"
    reverse: bool = False
    nonlinearity: str = "tanh"
    checkpoint_every: int | None = None
    head: str | None = "softmax"
    ignore_index: int | None = None


def run_layer(config: Config, x, a0, params, lengths, labels, gradient: str):
    """`(a, head output, final state)` for checked inputs; see the module docstring."""
    if gradient == "autodiff":
        return _outputs(config, x, *_forward(config, x, a0, params, lengths, labels))
    return _layer(config, x, a0, params, lengths, labels)


def _forward(config, x, a0, params, lengths, labels):
    """Time-major `(states, head output, final)` of the whole sequence."""
    states, final = hidden_states(
        _layout.to_time_major(x, config.layout),
        a0,
        params,
        lengths,
        reverse=config.reverse,
        nonlinearity=config.nonlinearity,
    )
    valid = valid_steps(states.shape[0], lengths)
    return states, head_forward(config.head, states, params, labels, valid, config.ignore_index), final


def _outputs(config, x, states, head, final):
    """Time-major results -> the caller's layout (losses stay `(T, m)`, in x's dtype)."""
    if config.head == "softmax":
        head = _layout.from_time_major(head, config.layout)
    elif config.head == "cross_entropy":
        head = head.astype(x.dtype)
    return _layout.from_time_major(states, config.layout), head, final


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _layer(config, x, a0, params, lengths, labels):
    return _outputs(config, x, *_forward(config, x, a0, params, lengths, labels))


class _AllStates(NamedTuple):
    """Residuals without checkpointing: the inputs as given, the results time-major."""

    x: jax.Array
    a0: jax.Array  # (m, n_a)
    params: dict
    lengths: Any  # (m,) or None
    labels: Any  # (T, m) or None
    states: jax.Array  # (T, m, n_a): a_1..a_T
    y: Any  # (T, m, n_y) for the softmax head, else None


class _SegmentStarts(NamedTuple):
    """Residuals with `checkpoint_every=k`: the state entering each k-step segment."""

    x: jax.Array
    a0: jax.Array
    params: dict
    lengths: Any
    labels: Any
    segment_starts: jax.Array  # (n_segments, m, n_a)


def _layer_fwd(config, x, a0, params, lengths, labels):
    # With symbolic zeros on, primals arrive wrapped (`.value`); cotangents of outputs the
    # caller does not use arrive as `SymbolicZero` and are skipped instead of materialised.
    x, a0, params, lengths, labels = jax.tree_util.tree_map(
        lambda p: p.value, (x, a0, params, lengths, labels), is_leaf=_is_primal
    )
    if config.checkpoint_every is None:
        states, head, final = _forward(config, x, a0, params, lengths, labels)
        y = head if config.head == "softmax" else None
        return _outputs(config, x, states, head, final), _AllStates(x, a0, params, lengths, labels, states, y)
    outputs, segment_starts = _segmented_forward(config, x, a0, params, lengths, labels)
    return outputs, _SegmentStarts(x, a0, params, lengths, labels, segment_starts)


def _layer_bwd(config, residuals, cotangents):
    da, dhead, dfinal = (None if isinstance(c, SymbolicZero) else c for c in cotangents)
    x, a0, params = residuals.x, residuals.a0, residuals.params
    acc = accumulation_dtype(x.dtype)
    dfinal = jnp.zeros(a0.shape, acc) if dfinal is None else dfinal.astype(acc)
    if isinstance(residuals, _AllStates):
        grads, dx, da0 = sequence_backward(
            config,
            params,
            _layout.to_time_major(x, config.layout),
            a0,
            residuals.states,
            residuals.y,
            residuals.lengths,
            residuals.labels,
            _to_time_major(da, config.layout, acc),
            _head_cotangent(config, dhead, acc),
            dfinal,
        )
        dx = _layout.from_time_major(dx, config.layout)
    else:
        grads, dx, da0 = _segmented_backward(config, residuals, da, dhead, dfinal)
    return (
        dx.astype(x.dtype),
        da0.astype(a0.dtype),
        {k: grads[k].astype(params[k].dtype) for k in params},
        None,  # lengths are integers: no cotangent
        None,  # labels likewise
    )


def _is_primal(value):
    return isinstance(value, CustomVJPPrimal)


def _to_time_major(sequence, layout, dtype):
    return None if sequence is None else _layout.to_time_major(sequence, layout).astype(dtype)


def _head_cotangent(config, dhead, acc):
    """The head output's cotangent, time-major; None when the caller did not use it."""
    if dhead is None or config.head is None:
        return None
    return _to_time_major(dhead, config.layout, acc) if config.head == "softmax" else dhead.astype(acc)


# Checkpointed segments.


def _padded_lengths(lengths, m, T, padded_T):
    """Lengths that mask the padding steps `T..padded_T-1` (None when there are none)."""
    if lengths is None and padded_T > T:
        return jnp.full((m,), T, jnp.int32)
    return lengths


def _pad_time(sequence, padding, axis):
    widths = [(0, 0)] * sequence.ndim
    widths[axis] = (0, padding)
    return jnp.pad(sequence, widths)


def _read(sequence, index, k, layout):
    """Segment `index` of a padded sequence in `layout`, as internal `(k, m, n)`."""
    segment = jax.lax.dynamic_slice_in_dim(sequence, index * k, k, axis=_layout.time_axis(layout))
    return _layout.to_time_major(segment, layout)


def _write(sequence, segment, index, k, layout):
    """Writes internal `(k, m, n)` `segment` into `sequence` (in `layout`) at segment `index`."""
    segment = _layout.from_time_major(segment, layout)
    return jax.lax.dynamic_update_slice_in_dim(sequence, segment, index * k, axis=_layout.time_axis(layout))


class _Segments(NamedTuple):
    """The padded inputs of a checkpointed call; `k`-step segment `s` starts at step `s·k`."""

    k: int
    count: int
    T: int
    x: jax.Array  # caller's layout, time padded
    lengths: Any
    labels: Any  # (padded T, m) or None


def _segments(config, x, lengths, labels):
    k = config.checkpoint_every
    _, m, T = _layout.sizes(x.shape, config.layout)
    count = -(-T // k)
    padding = count * k - T
    x = _pad_time(x, padding, _layout.time_axis(config.layout))
    labels = None if labels is None else _pad_time(labels, padding, 0)
    return _Segments(k, count, T, x, _padded_lengths(lengths, m, T, count * k), labels)


def _segment_forward(config, params, segments, index, a_start):
    """States `(k, m, n_a)`, head output and final state of segment `index` from its entry state."""
    k, layout = segments.k, config.layout
    states, final = hidden_states(
        _read(segments.x, index, k, layout),
        a_start,
        params,
        segments.lengths,
        reverse=config.reverse,
        nonlinearity=config.nonlinearity,
        time_offset=index * k,
    )
    labels = None if segments.labels is None else jax.lax.dynamic_slice_in_dim(segments.labels, index * k, k)
    valid = valid_steps(k, segments.lengths, index * k)
    return states, head_forward(config.head, states, params, labels, valid, config.ignore_index), final, labels


def _segmented_forward(config, x, a0, params, lengths, labels):
    """The forward pass segment by segment, keeping each segment's entry state.

    Returns `((a, head output, final), segment_starts (n_segments, m, n_a))`. When the caller
    does not use `a`, XLA drops its buffer and the forward holds one segment of states at a time.
    """
    segments = _segments(config, x, lengths, labels)
    k, layout = segments.k, config.layout
    m, n_a = a0.shape
    padded_shape = lambda n: {
        "seed": (n, m, segments.count * k),
        "batch_major": (m, segments.count * k, n),
        "time_major": (segments.count * k, m, n),
    }[layout]

    def segment(carry, index):
        a_start, a, head = carry
        states, head_s, final, _ = _segment_forward(config, params, segments, index, a_start)
        a = _write(a, states, index, k, layout)
        if config.head == "softmax":
            head = _write(head, head_s, index, k, layout)
        elif config.head == "cross_entropy":
            head = jax.lax.dynamic_update_slice_in_dim(head, head_s.astype(x.dtype), index * k, axis=0)
        return (final, a, head), a_start

    head = None
    if config.head == "softmax":
        head = jnp.zeros(padded_shape(params["Wya"].shape[0]), x.dtype)
    elif config.head == "cross_entropy":
        head = jnp.zeros((segments.count * k, m), x.dtype)
    carry = (a0, jnp.zeros(padded_shape(n_a), x.dtype), head)
    indices = jnp.arange(segments.count, dtype=jnp.int32)
    (final, a, head), segment_starts = jax.lax.scan(segment, carry, indices, reverse=config.reverse)
    cut = lambda v: jax.lax.slice_in_dim(v, 0, segments.T, axis=_layout.time_axis(layout))
    if config.head == "softmax":
        head = cut(head)
    elif config.head == "cross_entropy":
        head = head[: segments.T]
    return (cut(a), head, final), segment_starts


def _segmented_backward(config, residuals, da, dhead, dfinal):
    """`sequence_backward` segment by segment, recomputing each segment's forward pass.

    Returns `(grads, dx in the caller's layout, da0 (m, n_a))`.
    """
    layout, acc, params = config.layout, dfinal.dtype, residuals.params
    segments = _segments(config, residuals.x, residuals.lengths, residuals.labels)
    k, axis = segments.k, _layout.time_axis(layout)
    padding = segments.count * k - segments.T
    da = None if da is None else _pad_time(da, padding, axis)
    if dhead is not None and config.head == "softmax":
        dhead = _pad_time(dhead, padding, axis)
    elif dhead is not None and config.head == "cross_entropy":
        dhead = _pad_time(dhead, padding, 0)

    def segment(carry, inputs):
        da_from_later, grads_sum, dx = carry
        index, a_start = inputs
        states, head, _, labels = _segment_forward(config, params, segments, index, a_start)
        da_s = None if da is None else _read(da, index, k, layout).astype(acc)
        dhead_s = None
        if dhead is not None and config.head == "softmax":
            dhead_s = _read(dhead, index, k, layout).astype(acc)
        elif dhead is not None and config.head == "cross_entropy":
            dhead_s = jax.lax.dynamic_slice_in_dim(dhead, index * k, k).astype(acc)
        x_s = _read(segments.x, index, k, layout)
        y = head if config.head == "softmax" else None
        grads, dx_s, da_start = sequence_backward(
            config, params, x_s, a_start, states, y, segments.lengths, labels, da_s, dhead_s, da_from_later, index * k
        )
        grads_sum = jax.tree_util.tree_map(jnp.add, grads_sum, grads)
        return (da_start, grads_sum, _write(dx, dx_s, index, k, layout)), None

    zero_grads = {name: jnp.zeros(p.shape, acc) for name, p in params.items()}
    carry = (dfinal, zero_grads, jnp.zeros(segments.x.shape, acc))
    inputs = (jnp.arange(segments.count, dtype=jnp.int32), residuals.segment_starts)
    (da0, grads, dx), _ = jax.lax.scan(segment, carry, inputs, reverse=not config.reverse)
    return grads, jax.lax.slice_in_dim(dx, 0, segments.T, axis=axis), da0


_layer.defvjp(_layer_fwd, _layer_bwd, symbolic_zeros=True)
