"""The hand-derived backward pass (backpropagation through time), in `jax.numpy`.

Notation: `z_t = Waa a_{t-1} + Wax x_t + ba`, `a_t = f(z_t)` (`f` = tanh or relu),
`o_t = Wya a_t + by`, `y_t = softmax(o_t)`. The comments give each gradient on column
vectors, as in the seed; the code computes it in the internal layout `(T, m, n)`, where each
step is an `(m, n)` block of row vectors, so `Waa^T dz_t` is written `dz_t @ Waa`. `da_t` is
dL/da_t from everything except `a_{t+1}`; the carried term adds the path through the
recurrence.

    dz_t     = v_t ⊙ f'(z_t) ⊙ (da_t + g_t)          f'(z) = 1 − a_t² (tanh), 1[a_t > 0] (relu)
    g_{t-1}  = Waa^T dz_t + (1 − v_t) ⊙ g_t          g_T = dL/d(final state)
    dWaa = Σ_t dz_t a_{t-1}^T,  dWax = Σ_t dz_t x_t^T,  dba = Σ_t dz_t,  dx_t = Wax^T dz_t,  da0 = g_0

`v_t` is 1 on a valid step and 0 on a padded one (`lengths`): a padded step has no `z_t`,
its state is the previous one, so its `dz_t` is 0 and the carried gradient passes through
it unchanged. With every step valid (`lengths=None`, the seed's case) this is
`dz_t = f'(z_t) ⊙ (da_t + Waa^T dz_{t+1})`, and the mask is skipped statically: one
implementation, not two. For `reverse=True` the recurrence runs from `T` down to 1, so
"previous" means `t+1` and the backward walks forward in time.

`recurrent_backward` holds only what depends on the previous step (`f'` and one `Waa^T`
product) inside `lax.scan`; `weight_gradients` computes each sum over time as one matrix
product over all `T·m` rows after the scan. Everything here is written by hand: no
`jax.grad`, `jax.vjp` or transposition.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn._forward import accumulation_dtype, step_indices, step_is_valid, valid_steps
from jaxrnn._heads import counted_tokens, cross_entropy_targets, output_logits

DERIVATIVES = {
    "tanh": lambda a: 1 - a**2,  # tanh'(z) = 1 − tanh(z)² = 1 − a²
    "relu": lambda a: (a > 0).astype(a.dtype),  # relu'(z) = 1[z > 0] = 1[a > 0]
}


def cell_backward_step(Waa, a_t, da_t, da_from_future, valid, nonlinearity):
    """One step back on `(m, n_a)` rows; returns `(dz_t, dL/da_{t-1})`.

    `da_t`: the gradient reaching `a_t` from outside the recurrence; `da_from_future`: the
    carried `g_t` from the step after; `valid`: `(m, 1)` booleans or None (all valid).
    """
    dz = DERIVATIVES[nonlinearity](a_t) * (da_t + da_from_future)  # dL/dz_t = f'(z_t) ⊙ dL/da_t
    if valid is None:
        return dz, dz @ Waa  # dL/da_{t-1} = Waa^T dz_t, on rows: dz_t Waa
    dz = jnp.where(valid, dz, 0)  # a padded step has no z_t: dz_t = 0
    passed_through = jnp.where(valid, 0, da_from_future)  # frozen state: a_t = a_{t-1}
    return dz, dz @ Waa + passed_through  # g_{t-1} = Waa^T dz_t + (1 − v_t) ⊙ g_t


def recurrent_backward(da, da_final, states, Waa, lengths, *, reverse, nonlinearity, time_offset=0):
    """The reverse scan: dz_t for every step of one stretch of time.

    Args:
      da: `(T, m, n_a)`, accumulation dtype: dL/da_t from outside the recurrence.
      da_final: `(m, n_a)`: gradient flowing into the last state processed from later steps
        (for a whole sequence: the cotangent of the final state).
      states: `(T, m, n_a)`: `a_1..a_T` of the stretch (zero at padded steps).
      Waa: `(n_a, n_a)`.
      lengths: `(m,)` or None; reverse, nonlinearity, time_offset: as in the forward pass.

    Returns:
      `(dz (T, m, n_a), da_start (m, n_a))`, accumulation dtype; `da_start` is dL/d(state
      before the stretch).
    """
    acc = da.dtype
    Waa = Waa.astype(acc)

    def step(da_from_future, inputs):
        da_t, a_t, t = inputs
        valid = step_is_valid(t, lengths)
        dz_t, da_prev = cell_backward_step(Waa, a_t.astype(acc), da_t, da_from_future, valid, nonlinearity)
        return da_prev, dz_t

    times = None if lengths is None else step_indices(da.shape[0], time_offset)
    # The backward walks the forward's steps in the opposite order.
    da_start, dz = jax.lax.scan(step, da_final.astype(acc), (da, states, times), reverse=not reverse)
    return dz, da_start


def previous_states(states, a_start, lengths, *, reverse, time_offset=0):
    """The state each step started from, `(T, m, n_a)`: `a_{t-1}` (or `a_{t+1}` in reverse).

    Forward: `a_start, a_1, …, a_{T-1}`; a valid step's predecessor is always valid. Reverse:
    `a_2, …, a_T, a_start`, except that the last valid step of a shorter sequence starts from
    `a_start` (its later steps were padding, through which the carry stayed `a_start`).
    """
    if not reverse:
        return jnp.concatenate([a_start[None], states[:-1]])
    following = jnp.concatenate([states[1:], a_start[None]])
    if lengths is None:
        return following
    following_is_valid = valid_steps(states.shape[0], lengths, time_offset + 1)
    return jnp.where(following_is_valid[:, :, None], following, a_start[None])


def weight_gradients(dz, states, a_start, x, Wax, lengths, *, reverse, time_offset=0):
    """The sums over time, each one matrix product over all `T·m` rows of `dz (T, m, n_a)`.

    Returns `(grads with Wax, Waa, ba; dx (T, m, n_x))` in the dtype of `dz`.
    """
    acc = dz.dtype
    rows = lambda v: v.reshape(-1, v.shape[-1]).astype(acc)  # (T, m, n) -> (T·m, n): free
    prev_states = previous_states(states, a_start, lengths, reverse=reverse, time_offset=time_offset)
    grads = {
        "Waa": rows(dz).T @ rows(prev_states),  # dL/dWaa = Σ_t dz_t a_{t-1}^T
        "Wax": rows(dz).T @ rows(x),  # dL/dWax = Σ_t dz_t x_t^T
        "ba": jnp.sum(dz, axis=(0, 1))[:, None],  # dL/dba = Σ_t Σ_m dz_t
    }
    dx = dz @ Wax.astype(acc)  # dL/dx_t = Wax^T dz_t, on rows: dz_t Wax
    return grads, dx


def hidden_backward(da, da_final, states, a_start, x, params, lengths, *, reverse, nonlinearity, time_offset=0):
    """Backpropagation through the recurrence over one stretch of time.

    Args:
      da: `(T, m, n_a)`, accumulation dtype: dL/da_t from outside the recurrence.
      da_final: `(m, n_a)`: gradient flowing into the last state processed.
      states: `(T, m, n_a)`; a_start: `(m, n_a)`: the state before the stretch; x: `(T, m, n_x)`.
      params: dict with `Wax, Waa, ba`; lengths, reverse, nonlinearity, time_offset: as forward.

    Returns:
      `(grads with Wax, Waa, ba; dx (T, m, n_x); da_start (m, n_a))`, accumulation dtype.
    """
    options = {"reverse": reverse, "time_offset": time_offset}
    dz, da_start = recurrent_backward(
        da, da_final, states, params["Waa"], lengths, nonlinearity=nonlinearity, **options
    )
    grads, dx = weight_gradients(dz, states, a_start, x, params["Wax"], lengths, **options)
    return grads, dx, da_start


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


def sequence_backward(config, params, x, a_start, states, y, lengths, labels, da, dhead, da_final, time_offset=0):
    """The whole backward of one layer over one stretch of time: the `custom_vjp` rule.

    Internal layout throughout: `x (T, m, n_x)`, `a_start (m, n_a)`, `states, da (T, m, n_a)`,
    `y (T, m, n_y)` (softmax head) or `labels (T, m)` (cross-entropy head), `dhead` the
    head output's cotangent, `da_final (m, n_a)`. `da` or `dhead` may be None when that
    output's cotangent is zero (the caller did not use it), which skips its work. `config`
    carries the static options (`head`, `ignore_index`, `reverse`, `nonlinearity`).

    Returns `(grads for every parameter, dx, da_start)` in the accumulation dtype.
    """
    acc = da_final.dtype
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
        da = da + da_head  # dL/da_t from outside + Wya^T do_t
    hidden_grads, dx, da_start = hidden_backward(
        da,
        da_final,
        states,
        a_start,
        x,
        params,
        lengths,
        reverse=config.reverse,
        nonlinearity=config.nonlinearity,
        time_offset=time_offset,
    )
    return {**hidden_grads, **head_grads}, dx, da_start
