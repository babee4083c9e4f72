"""One recurrent layer with an optional head, differentiated by the hand-derived backward.

`run_layer` is the single internal entry point behind `rnn`, `rnn_cross_entropy` and
`rnn_stack`: inputs already checked, the initial carry as a tuple of rows `(m, n_a)`, labels
time-major `(T, m)`. It returns `(a in the caller's layout, head output, final carry)`; the
head output is `y` in the caller's layout, per-token losses `(T, m)` or None.

With `gradient="hand"` the layer is a `jax.custom_vjp` (`_layer`) whose rule is
`_backward.sequence_backward`; with `"autodiff"` the same forward (`_forward`) is left to
`jax.grad`: the oracle. The cell (`config.cell`) is any of `jaxrnn._cells`; a carry is a tuple
of `(m, n_a)` rows, `h` first (`(a,)` for the vanilla cell, `(h, c)` for the LSTM).

Residuals: without checkpointing (`_AllStates`) the forward keeps its inputs, the per-step
carries and the cell's residuals (time-major) and, for the softmax head, `y`; the backward is `sequence_backward`
once. With `checkpoint_every=k` (`_SegmentStarts`) it keeps only the carry entering each
k-step segment; the backward walks the segments against the direction of the recurrence,
recomputes each segment's carries (and head) from its entry carry and runs the same
`sequence_backward` on it, carrying dL/dcarry across segment boundaries. Residual memory falls
from `T` steps to `T/k`, for one extra forward pass. Segments are read from and written to
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

from jaxrnn import _cells, _layout
from jaxrnn._backward import sequence_backward
from jaxrnn._forward import accumulation_dtype, hidden_states, valid_steps
from jaxrnn._heads import head_forward


class Config(NamedTuple):
    """The static options of one layer call (hashable: a `nondiff_argnums` argument).

    Attributes:
      layout: `"seed"`, `"batch_major"` or `"time_major"` (of `x`, `a` and `y`).
      reverse: run the recurrence from the last valid step back to the first.
      nonlinearity: `"tanh"` or `"relu"` (the vanilla cell's).
      checkpoint_every: None, or the (balanced) segment length k.
      head: None (no head), `"softmax"` (returns `y`) or `"cross_entropy"` (returns losses).
      ignore_index: a label value whose tokens have no loss, or None.
      cell: `"vanilla"`, `"gru"` or `"lstm"`.
    """

    layout: str = "seed"
    reverse: bool = False
    nonlinearity: str = "tanh"
    checkpoint_every: int | None = None
    head: str | None = "softmax"
    ignore_index: int | None = None
    cell: str = "vanilla"

    def cell_(self) -> _cells.Cell:
        return _cells.get(self.cell, self.nonlinearity)


def run_layer(config: Config, x, carry0, params, lengths, labels, gradient: str):
    """`(a, head output, final carry)` for checked inputs; see the module docstring."""
    if gradient == "autodiff":
        carries, _, head, final = _forward(config, x, carry0, params, lengths, labels)
        return _outputs(config, x, carries[0], head, final)
    return _layer(config, x, carry0, params, lengths, labels)


def _forward(config, x, carry0, params, lengths, labels):
    """Time-major `(carries, residuals, head output, final)` of the whole sequence."""
    carries, residuals, final = hidden_states(
        config.cell_(), _layout.to_time_major(x, config.layout), carry0, params, lengths, reverse=config.reverse
    )
    states = carries[0]
    valid = valid_steps(states.shape[0], lengths)
    head = head_forward(config.head, states, params, labels, valid, config.ignore_index)
    return carries, residuals, head, final


def _outputs(config, x, states, head, final):
    """Time-major results -> the caller's layout (losses stay `(T, m)`, in x's dtype)."""
    if config.head == "softmax":
        head = _layout.from_time_major(head, config.layout)
    elif config.head == "cross_entropy":
        head = head.astype(x.dtype)
    return _layout.from_time_major(states, config.layout), head, final


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _layer(config, x, carry0, params, lengths, labels):
    carries, _, head, final = _forward(config, x, carry0, params, lengths, labels)
    return _outputs(config, x, carries[0], head, final)


class _AllStates(NamedTuple):
    """Residuals without checkpointing: the inputs as given, the results time-major."""

    x: jax.Array
    carry0: tuple  # of (m, n_a)
    params: dict
    lengths: Any  # (m,) or None
    labels: Any  # (T, m) or None
    carries: tuple  # of (T, m, n_a): carry_1..carry_T, h first
    residuals: tuple  # the cell's, each (T, m, ·)
    y: Any  # (T, m, n_y) for the softmax head, else None


class _SegmentStarts(NamedTuple):
    """Residuals with `checkpoint_every=k`: the carry entering each k-step segment."""

    x: jax.Array
    carry0: tuple
    params: dict
    lengths: Any
    labels: Any
    segment_starts: tuple  # of (n_segments, m, n_a)


def _layer_fwd(config, x, carry0, params, lengths, labels):
    # With symbolic zeros on, primals arrive wrapped (`.value`); cotangents of outputs the
    # caller does not use arrive as `SymbolicZero` and are skipped instead of materialised.
    x, carry0, params, lengths, labels = jax.tree_util.tree_map(
        lambda p: p.value, (x, carry0, params, lengths, labels), is_leaf=_is_primal
    )
    if config.checkpoint_every is None:
        carries, cell_residuals, head, final = _forward(config, x, carry0, params, lengths, labels)
        y = head if config.head == "softmax" else None
        residuals = _AllStates(x, carry0, params, lengths, labels, carries, cell_residuals, y)
        return _outputs(config, x, carries[0], head, final), residuals
    outputs, segment_starts = _segmented_forward(config, x, carry0, params, lengths, labels)
    return outputs, _SegmentStarts(x, carry0, params, lengths, labels, segment_starts)


def _layer_bwd(config, residuals, cotangents):
    da, dhead, dfinal = (None if isinstance(c, SymbolicZero) else c for c in cotangents)
    x, carry0, params = residuals.x, residuals.carry0, residuals.params
    acc = accumulation_dtype(x.dtype)
    dfinal = tuple(
        jnp.zeros(part.shape, acc) if d is None or isinstance(d, SymbolicZero) else d.astype(acc)
        for part, d in zip(carry0, (None,) * len(carry0) if dfinal is None else dfinal)
    )
    if isinstance(residuals, _AllStates):
        grads, dx, d_carry0 = sequence_backward(
            config,
            config.cell_(),
            params,
            _layout.to_time_major(x, config.layout),
            carry0,
            residuals.carries,
            residuals.residuals,
            residuals.y,
            residuals.lengths,
            residuals.labels,
            _to_time_major(da, config.layout, acc),
            _head_cotangent(config, dhead, acc),
            dfinal,
        )
        dx = _layout.from_time_major(dx, config.layout)
    else:
        grads, dx, d_carry0 = _segmented_backward(config, residuals, da, dhead, dfinal)
    return (
        dx.astype(x.dtype),
        tuple(d.astype(part.dtype) for d, part in zip(d_carry0, carry0)),
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


class _Segment(NamedTuple):
    """One segment's forward results, time-major `(k, m, ·)`."""

    carries: tuple
    residuals: tuple
    head: Any
    final: tuple
    labels: Any


def _segment_forward(config, params, segments, index, carry_start):
    """Carries, residuals, head output and final carry of segment `index` from its entry carry."""
    k, layout = segments.k, config.layout
    carries, residuals, final = hidden_states(
        config.cell_(),
        _read(segments.x, index, k, layout),
        carry_start,
        params,
        segments.lengths,
        reverse=config.reverse,
        time_offset=index * k,
    )
    labels = None if segments.labels is None else jax.lax.dynamic_slice_in_dim(segments.labels, index * k, k)
    valid = valid_steps(k, segments.lengths, index * k)
    head = head_forward(config.head, carries[0], params, labels, valid, config.ignore_index)
    return _Segment(carries, residuals, head, final, labels)


def _segmented_forward(config, x, carry0, params, lengths, labels):
    """The forward pass segment by segment, keeping each segment's entry carry.

    Returns `((a, head output, final), segment_starts)`, `segment_starts` a carry of
    `(n_segments, m, n_a)`. When the caller does not use `a`, XLA drops its buffer and the
    forward holds one segment of carries at a time.
    """
    segments = _segments(config, x, lengths, labels)
    k, layout = segments.k, config.layout
    m, n_a = carry0[0].shape
    padded_shape = lambda n: {
        "seed": (n, m, segments.count * k),
        "batch_major": (m, segments.count * k, n),
        "time_major": (segments.count * k, m, n),
    }[layout]

    def segment(carry, index):
        carry_start, a, head = carry
        result = _segment_forward(config, params, segments, index, carry_start)
        a = _write(a, result.carries[0], index, k, layout)
        if config.head == "softmax":
            head = _write(head, result.head, index, k, layout)
        elif config.head == "cross_entropy":
            head = jax.lax.dynamic_update_slice_in_dim(head, result.head.astype(x.dtype), index * k, axis=0)
        return (result.final, a, head), carry_start

    head = None
    if config.head == "softmax":
        head = jnp.zeros(padded_shape(params["Wya"].shape[0]), x.dtype)
    elif config.head == "cross_entropy":
        head = jnp.zeros((segments.count * k, m), x.dtype)
    carry = (carry0, jnp.zeros(padded_shape(n_a), x.dtype), head)
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

    Returns `(grads, dx in the caller's layout, d_carry0)`.
    """
    layout, acc, params = config.layout, dfinal[0].dtype, residuals.params
    segments = _segments(config, residuals.x, residuals.lengths, residuals.labels)
    k, axis = segments.k, _layout.time_axis(layout)
    padding = segments.count * k - segments.T
    da = None if da is None else _pad_time(da, padding, axis)
    if dhead is not None and config.head == "softmax":
        dhead = _pad_time(dhead, padding, axis)
    elif dhead is not None and config.head == "cross_entropy":
        dhead = _pad_time(dhead, padding, 0)

    def segment(carry, inputs):
        d_from_later, grads_sum, dx = carry
        index, carry_start = inputs
        result = _segment_forward(config, params, segments, index, carry_start)
        da_s = None if da is None else _read(da, index, k, layout).astype(acc)
        dhead_s = None
        if dhead is not None and config.head == "softmax":
            dhead_s = _read(dhead, index, k, layout).astype(acc)
        elif dhead is not None and config.head == "cross_entropy":
            dhead_s = jax.lax.dynamic_slice_in_dim(dhead, index * k, k).astype(acc)
        x_s = _read(segments.x, index, k, layout)
        y = result.head if config.head == "softmax" else None
        grads, dx_s, d_start = sequence_backward(
            config,
            config.cell_(),
            params,
            x_s,
            carry_start,
            result.carries,
            result.residuals,
            y,
            segments.lengths,
            result.labels,
            da_s,
            dhead_s,
            d_from_later,
            index * k,
        )
        grads_sum = jax.tree_util.tree_map(jnp.add, grads_sum, grads)
        return (d_start, grads_sum, _write(dx, dx_s, index, k, layout)), None

    zero_grads = {name: jnp.zeros(p.shape, acc) for name, p in params.items()}
    carry = (dfinal, zero_grads, jnp.zeros(segments.x.shape, acc))
    inputs = (jnp.arange(segments.count, dtype=jnp.int32), residuals.segment_starts)
    (d_carry0, grads, dx), _ = jax.lax.scan(segment, carry, inputs, reverse=not config.reverse)
    return grads, jax.lax.slice_in_dim(dx, 0, segments.T, axis=axis), d_carry0


_layer.defvjp(_layer_fwd, _layer_bwd, symbolic_zeros=True)
