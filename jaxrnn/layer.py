"""`jaxrnn.rnn`: the forward pass with the hand-derived backward registered as a `custom_vjp`.

Residuals: without checkpointing, the forward keeps `(x, a0, parameters, hidden states, y)`
and the backward is `backward.sequence_backward` once. With `checkpoint_every=k`, it keeps
only the state entering each k-step segment; the backward walks the segments in reverse,
recomputes each segment's states and predictions from its entry state, and runs the same
`sequence_backward` on it, carrying dL/da across segment boundaries. Memory for residuals
falls from `T` states to `T/k` (plus one segment's working set); the price is one extra
forward pass.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

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
        k to keep one state per k steps and recompute the rest during the backward pass.

    Returns:
      `(a (n_a, m, T_x), y_pred (n_y, m, T_x))`.
    """
    x, a0, params, _ = _validate.sequence_inputs("rnn", x, a0, parameters)
    every = _validate.positive_int_or_none("rnn", "checkpoint_every", checkpoint_every)
    return _rnn(every, x, a0, params)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _rnn(checkpoint_every, x, a0, params):
    states, y = forward_states(time_major(x), a0.T, params)
    return seed_layout(states), seed_layout(y)


def _rnn_fwd(checkpoint_every, x, a0, params):
    x, a0 = time_major(x), a0.T  # internal layout: (T, m, n_x), (m, n_a)
    states, y = forward_states(x, a0, params)
    outputs = (seed_layout(states), seed_layout(y))
    if checkpoint_every is None:
        return outputs, (x, a0, params, states, y)
    # The state entering segment s is a_{s·k} (a0 for s = 0).
    segment_starts = jnp.concatenate([a0[None], states[checkpoint_every - 1 :: checkpoint_every]])
    n_segments = math.ceil(x.shape[0] / checkpoint_every)
    return outputs, (x, a0, params, segment_starts[:n_segments])


def _rnn_bwd(checkpoint_every, residuals, cotangents):
    da, dy = (time_major(c) for c in cotangents)
    x, a0, params = residuals[:3]
    no_gradient_from_later_steps = jnp.zeros(a0.shape, accumulation_dtype(x.dtype))
    if checkpoint_every is None:
        states, y = residuals[3:]
        grads, dx, da0 = sequence_backward(x, a0, states, y, da, dy, no_gradient_from_later_steps, params)
    else:
        grads, dx, da0 = _segmented_backward(
            checkpoint_every, x, residuals[3], da, dy, no_gradient_from_later_steps, params
        )
    return (
        seed_layout(dx).astype(x.dtype),
        da0.T.astype(a0.dtype),
        {k: grads[k].astype(params[k].dtype) for k in params},
    )


def _segmented_backward(k, x, segment_starts, da, dy, da_final, params):
    """`sequence_backward` segment by segment, recomputing each segment's forward pass.

    Internal layout: `x (T, m, n_x)`, `da (T, m, n_a)`, `dy (T, m, n_y)`. The time axis is
    padded at the end to a multiple of k; padded steps get zero cotangents, so they
    contribute nothing (their dz_t = 0) and are cut from dx.
    """
    T = x.shape[0]
    n_segments = segment_starts.shape[0]
    pad = [(0, n_segments * k - T), (0, 0), (0, 0)]
    x_padded, da_padded, dy_padded = (jnp.pad(v, pad) for v in (x, da, dy))

    def segment(carry, inputs):
        da_from_later, grads_sum = carry
        index, a_start = inputs
        x_s, da_s, dy_s = (jax.lax.dynamic_slice_in_dim(v, index * k, k) for v in (x_padded, da_padded, dy_padded))
        states, y = forward_states(x_s, a_start, params)
        grads, dx_s, da_start = sequence_backward(x_s, a_start, states, y, da_s, dy_s, da_from_later, params)
        grads_sum = jax.tree_util.tree_map(jnp.add, grads_sum, grads)
        return (da_start, grads_sum), dx_s

    acc = da_final.dtype
    zero_grads = {name: jnp.zeros(p.shape, acc) for name, p in params.items()}
    (da0, grads), dx_segments = jax.lax.scan(
        segment, (da_final, zero_grads), (jnp.arange(n_segments), segment_starts), reverse=True
    )
    dx = dx_segments.reshape(n_segments * k, *x.shape[1:])[:T]  # (n_segments, k, m, n_x) -> (T, m, n_x)
    return grads, dx, da0


_rnn.defvjp(_rnn_fwd, _rnn_bwd)
