"""The engine's hand-derived backward pass (backpropagation through time), in `jax.numpy`.

For any cell (`jaxrnn._cells`), in the internal layout `(T, m, n)`. `da_t` is dL/dh_t from
outside the recurrence (the loss on the outputs, the head); `g_t` the gradient carried back
to `carry_t` from later steps; `v_t` 1 on a valid step and 0 on a padded one (`lengths`).
The reverse scan runs the cell's backward step on `d carry_t = (da_t + g_t[h], g_t[rest])`:

    (direct, d_input_t, d_hidden_t) = cell.backward_step(carry_t, carry_{t-1}, residuals_t, d carry_t)
    g_{t-1}[h] = Waa^T (v_t d_hidden_t) + (v_t direct[h] + (1 − v_t) g_t[h])
    g_{t-1}[c] =                           v_t direct[c] + (1 − v_t) g_t[c]
    dWaa = Σ_t d_hidden_t h_{t-1}^T,  dWax = Σ_t d_input_t x_t^T,  dba = Σ_t d_input_t,
    dx_t = Wax^T d_input_t,  d carry_0 = g_0

A padded step has no pre-activations: its `d_input` and `d_hidden` are 0 and the carried
gradient passes through it unchanged (its carry is the previous one). With every step valid
(`lengths=None`, the seed's case) the mask is skipped statically: one implementation, not
two. For the vanilla cell this is the seed's `dz_t = f'(z_t) ⊙ (da_t + Waa^T dz_{t+1})` with
`d_input = d_hidden = dz`. For `reverse=True` the recurrence runs from `T` down to 1, so
"previous" means `t+1` and the backward walks forward in time.

`recurrent_backward` holds only what depends on the previous step (the cell's backward step
and one `Waa^T` product) inside `lax.scan`; `weight_gradients` computes each sum over time as
one matrix product over all `T·m` rows after the scan. Everything here is written by hand: no
`jax.grad`, `jax.vjp` or transposition.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn._forward import accumulation_dtype, step_indices, step_is_valid, valid_steps
from jaxrnn._heads import counted_tokens, cross_entropy_targets, output_logits


def _to(dtype, parts):
    return None if parts is None else tuple(p.astype(dtype) for p in parts)


def recurrent_backward(cell, da, d_final, carries, residuals, previous, Waa, lengths, *, reverse, time_offset=0):
    """The reverse scan: the cell's pre-activation gradients at every step of one stretch.

    Args:
      cell: a `jaxrnn._cells.Cell`.
      da: `(T, m, n_a)`, accumulation dtype: dL/dh_t from outside the recurrence.
      d_final: a carry (tuple of `(m, n_a)`): the gradient flowing into the last carry processed
        from later steps (for a whole sequence: the cotangent of the final state).
      carries, residuals: the forward's per-step carries and residuals (`hidden_states`).
      previous: the carry each step started from (`previous_states`), or None when the cell
        does not read it.
      Waa: `(G·n_a, n_a)`; lengths, reverse, time_offset: as in the forward pass.

    Returns:
      `(d_input (T, m, G·n_a), d_hidden (likewise, or None where it equals d_input), d_start)`,
      accumulation dtype; `d_start` is dL/d(carry before the stretch).
    """
    acc = da.dtype
    Waa = Waa.astype(acc)

    def step(d_future, inputs):
        da_t, carry_t, previous_t, residuals_t, t = inputs
        valid = step_is_valid(t, lengths)
        d_carry = (da_t + d_future[0], *d_future[1:])  # dL/dcarry_t: from outside + from later steps
        direct, d_input, d_hidden = cell.backward_step(
            _to(acc, carry_t), _to(acc, previous_t), _to(acc, residuals_t), d_carry
        )
        if valid is not None:  # a padded step has no pre-activations
            d_input = jnp.where(valid, d_input, 0)
            d_hidden = None if d_hidden is None else jnp.where(valid, d_hidden, 0)
            # frozen carry: carry_t = carry_{t-1}, so g_t passes through
            direct = tuple(jnp.where(valid, 0 if d is None else d, g) for d, g in zip(direct, d_future))
        product = (d_input if d_hidden is None else d_hidden) @ Waa  # Waa^T d_hidden_t, on rows: d_hidden_t Waa
        d_h = product if direct[0] is None else product + direct[0]
        return (d_h, *direct[1:]), (d_input, d_hidden)

    times = None if lengths is None else step_indices(da.shape[0], time_offset)
    inputs = (da, carries, previous if cell.uses_previous else None, residuals, times)
    # The backward walks the forward's steps in the opposite order.
    d_start, (d_input, d_hidden) = jax.lax.scan(step, _to(acc, d_final), inputs, reverse=not reverse)
    return d_input, d_hidden, d_start


def previous_states(states, a_start, lengths, *, reverse, time_offset=0):
    """The state each step started from, `(T, m, n_a)`: `a_{t-1}` (or `a_{t+1}` in reverse).

    Forward: `a_start, a_1, …, a_{T-1}`; a valid step's predecessor is always valid. Reverse:
    `a_2, …, a_T, a_start`, except that the last valid step of a shorter sequence starts from
    `a_start` (its later steps were padding, through which the carry stayed `a_start`).
    Applies to each part of a carry alike.
    """
    if not reverse:
        return jnp.concatenate([a_start[None], states[:-1]])
    following = jnp.concatenate([states[1:], a_start[None]])
    if lengths is None:
        return following
    following_is_valid = valid_steps(states.shape[0], lengths, time_offset + 1)
    return jnp.where(following_is_valid[:, :, None], following, a_start[None])


def weight_gradients(cell, d_input, d_hidden, previous_h, x, Wax):
    """The sums over time, each one matrix product over all `T·m` rows.

    Args: `d_input`, `d_hidden` (or None: equal to `d_input`) `(T, m, G·n_a)`; `previous_h`
    `(T, m, n_a)`: `h_{t-1}` of each step; `x (T, m, n_x)`; `Wax (G·n_a, n_x)`.

    Returns `(grads with Wax, Waa, ba and the cell's extra biases; dx (T, m, n_x))` in the
    dtype of `d_input`.
    """
    acc = d_input.dtype
    rows = lambda v: v.reshape(-1, v.shape[-1]).astype(acc)  # (T, m, n) -> (T·m, n): free
    d_hidden = d_input if d_hidden is None else d_hidden
    grads = {
        "Waa": rows(d_hidden).T @ rows(previous_h),  # dL/dWaa = Σ_t d_hidden_t h_{t-1}^T
        "Wax": rows(d_input).T @ rows(x),  # dL/dWax = Σ_t d_input_t x_t^T
        "ba": jnp.sum(d_input, axis=(0, 1))[:, None],  # dL/dba = Σ_t Σ_m d_input_t
        **cell.extra_bias_gradients(d_hidden),
    }
    dx = d_input @ Wax.astype(acc)  # dL/dx_t = Wax^T d_input_t, on rows: d_input_t Wax
    return grads, dx


def hidden_backward(cell, da, d_final, carries, residuals, carry_start, x, params, lengths, *, reverse, time_offset=0):
    """Backpropagation through the recurrence over one stretch of time.

    Args:
      cell: a `jaxrnn._cells.Cell`.
      da: `(T, m, n_a)`, accumulation dtype: dL/dh_t from outside the recurrence.
      d_final: a carry: the gradient flowing into the last carry processed.
      carries, residuals: as `hidden_states` returns them; carry_start: the carry before the
        stretch; x: `(T, m, n_x)`.
      params: dict with `Wax, Waa, ba` (and the cell's extra biases); lengths, reverse,
        time_offset: as in the forward pass.

    Returns:
      `(grads, dx (T, m, n_x), d_start)`, accumulation dtype; `d_start` a carry.
    """
    previous = tuple(
        previous_states(part, start, lengths, reverse=reverse, time_offset=time_offset)
        for part, start in zip(carries, carry_start)
    )
    d_input, d_hidden, d_start = recurrent_backward(
        cell,
        da,
        d_final,
        carries,
        residuals,
        previous,
        params["Waa"],
        lengths,
        reverse=reverse,
        time_offset=time_offset,
    )
    grads, dx = weight_gradients(cell, d_input, d_hidden, previous[0], x, params["Wax"])
    return grads, dx, d_start


def logits_backward(do, states, params):
    """Backward through `o_t = Wya a_t + by`, given `do (T, m, n_y)` = dL/do_t (any head)."""
    acc = do.dtype
    grads = {
        "Wya": do.reshape(-1, do.shape[-1]).T @ states.reshape(-1, states.shape[-1]).astype(acc),  # Σ_t do_t a_t^T
        "by": jnp.sum(do, axis=(0, 1))[:, None],  # dL/dby = Σ_t Σ_m do_t
    }
    da = do @ params["Wya"].astype(acc)  # dL/da_t += Wya^T do_t, on rows: do_t Wya
    return grads, da


def softmax_backward(dy, y, states, params):
    """Backward through `y_t = softmax(Wya a_t + by)`; `(grads with Wya, by; da (T, m, n_a))`.

    `y` is zero at padded steps, so their `do_t` is zero: nothing flows from them.
    """
    acc = accumulation_dtype(y.dtype)
    y, dy = y.astype(acc), dy.astype(acc)
    do = y * (dy - jnp.sum(y * dy, axis=-1, keepdims=True))  # dL/do_t = y_t ⊙ (dy_t − y_t·dy_t)
    return logits_backward(do, states, params)


def cross_entropy_backward(dlosses, states, params, labels, counted):
    """Backward through `loss_t = c_t (logsumexp(o_t) − o_t[label_t])`, given `dlosses (T, m)`.

    The logits are recomputed here rather than kept from the forward pass (one product,
    which XLA may share with the forward's identical one in a jitted step): no
    `(T, m, n_y)` array lives between the passes.
    """
    acc = dlosses.dtype
    logits = output_logits(states, params["Wya"], params["by"])
    probabilities = jax.nn.softmax(logits, axis=-1)  # ŷ_t = softmax(o_t)
    if counted is not None:
        probabilities = jnp.where(counted[:, :, None], probabilities, 0)
    targets = cross_entropy_targets(labels, counted, logits.shape[-1], acc)
    do = dlosses[:, :, None] * (probabilities - targets)  # dL/do_t = g_t c_t ⊙ (ŷ_t − onehot(label_t))
    return logits_backward(do, states, params)


def sequence_backward(
    config, cell, params, x, carry_start, carries, residuals, y, lengths, labels, da, dhead, d_final, time_offset=0
):
    """The whole backward of one layer over one stretch of time: the `custom_vjp` rule.

    Internal layout throughout: `x (T, m, n_x)`, `carry_start` and `d_final` carries (tuples
    of `(m, n_a)`), `carries` and `residuals` as `hidden_states` returns them, `da (T, m, n_a)`,
    `y (T, m, n_y)` (softmax head) or `labels (T, m)` (cross-entropy head), `dhead` the head
    output's cotangent. `da` or `dhead` may be None when that output's cotangent is zero (the
    caller did not use it), which skips its work. `config` carries the static options (`head`,
    `ignore_index`, `reverse`).

    Returns `(grads for every parameter, dx, d_start)` in the accumulation dtype.
    """
    acc = d_final[0].dtype
    states = carries[0]  # the outputs h_t, which the head reads
    head_grads, da_head = {}, None
    if config.head is not None and dhead is None:
        head_grads = {k: jnp.zeros(params[k].shape, acc) for k in ("Wya", "by")}
    elif config.head == "softmax":
        head_grads, da_head = softmax_backward(dhead, y, states, params)
    elif config.head == "cross_entropy":
        counted = counted_tokens(labels, valid_steps(states.shape[0], lengths, time_offset), config.ignore_index)
        head_grads, da_head = cross_entropy_backward(dhead, states, params, labels, counted)
    if da is None:
        da = jnp.zeros(states.shape, acc) if da_head is None else da_head
    elif da_head is not None:
        da = da + da_head  # dL/dh_t from outside + Wya^T do_t
    hidden_grads, dx, d_start = hidden_backward(
        cell,
        da,
        d_final,
        carries,
        residuals,
        carry_start,
        x,
        params,
        lengths,
        reverse=config.reverse,
        time_offset=time_offset,
    )
    return {**hidden_grads, **head_grads}, dx, d_start
