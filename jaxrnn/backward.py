"""The hand-derived backward pass (backpropagation through time), in `jax.numpy`.

Notation: `z_t = Waa a_{t-1} + Wax x_t + ba`, `a_t = tanh(z_t)`, `o_t = Wya a_t + by`,
`y_t = softmax(o_t)`. The comments give each gradient on column vectors, as in the seed;
the code computes it in the internal layout of `forward.py`, where each step is an
`(m, n)` block of row vectors, so `Waa^T dz_t` is written `dz_t @ Waa`. `da_t` is dL/da_t
from everything except `a_{t+1}`; the carried term `Waa^T dz_{t+1}` adds the path through
the recurrence.

There is one implementation, used by all entry points:

- `hidden_backward` = `recurrent_backward` + `weight_gradients`. `recurrent_backward` walks
  the recurrence back with `lax.scan(reverse=True)`: the scan body holds only what depends
  on the previous step (the tanh derivative and one `Waa^T` product). The weight gradients
  are sums over time, so `weight_gradients` computes each as one matrix product over the
  stacked `dz_t` after the scan.
- `output_layer_backward` adds the softmax/output path (the seed stops before it).
- `rnn_cell_backward` and `rnn_backward` (the seed's names) are `hidden_backward` on one
  step and on the whole sequence; the `custom_vjp` rule of `jaxrnn.rnn` is
  `output_layer_backward` followed by `hidden_backward`.

Everything here is written by hand: no `jax.grad`, `jax.vjp` or transposition.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn import _validate
from jaxrnn.forward import Caches, accumulation_dtype, seed_layout, time_major


def cell_backward_step(Waa, a_next, da_next):
    """One step back through `a_t = tanh(z_t)` on `(m, n_a)` rows; returns `(dz_t, da_{t-1})`."""
    dz = (1 - a_next**2) * da_next  # dL/dz_t = (1 - a_t²) ⊙ dL/da_t      (tanh' = 1 - tanh²)
    da_prev = dz @ Waa  # dL/da_{t-1} through the recurrence: Waa^T dz_t, here on rows: dz_t Waa
    return dz, da_prev


def recurrent_backward(da, da_final, states, Waa):
    """The reverse scan: dz_t for every step of one stretch of time.

    Args:
      da: `(T, m, n_a)`, accumulation dtype: dL/da_t from outside the recurrence.
      da_final: `(m, n_a)`: gradient flowing into the last state from later steps (zeros
        for a whole sequence).
      states: `(T, m, n_a)`: `a_1..a_T` of the stretch.
      Waa: `(n_a, n_a)`.

    Returns:
      `(dz (T, m, n_a), da_start (m, n_a))`, accumulation dtype; `da_start` is dL/d(state
      before the stretch) = `Waa^T dz_1`.
    """
    acc = da.dtype
    Waa = Waa.astype(acc)

    def step(da_from_future, inputs):
        da_t, a_t = inputs
        dz_t, da_prev = cell_backward_step(Waa, a_t.astype(acc), da_t + da_from_future)
        return da_prev, dz_t

    da_start, dz = jax.lax.scan(step, da_final.astype(acc), (da, states), reverse=True)
    return dz, da_start


def weight_gradients(dz, states, a_start, x, Wax):
    """The sums over time, each one matrix product over all `T·m` rows of `dz (T, m, n_a)`.

    Args:
      dz: `(T, m, n_a)`; states: `(T, m, n_a)`; a_start: `(m, n_a)`; x: `(T, m, n_x)`;
      Wax: `(n_a, n_x)`.

    Returns:
      `(grads with Wax, Waa, ba; dx (T, m, n_x))` in the dtype of `dz`.
    """
    acc = dz.dtype
    rows = lambda v: v.reshape(-1, v.shape[-1]).astype(acc)  # (T, m, n) -> (T·m, n): free
    prev_states = jnp.concatenate([a_start[None], states[:-1]])  # a_0..a_{T-1}
    grads = {
        "Waa": rows(dz).T @ rows(prev_states),  # dL/dWaa = Σ_t dz_t a_{t-1}^T
        "Wax": rows(dz).T @ rows(x),  # dL/dWax = Σ_t dz_t x_t^T
        "ba": jnp.sum(dz, axis=(0, 1))[:, None],  # dL/dba = Σ_t Σ_m dz_t
    }
    dx = dz @ Wax.astype(acc)  # dL/dx_t = Wax^T dz_t, on rows: dz_t Wax
    return grads, dx


def hidden_backward(da, da_final, states, a_start, x, params):
    """Backpropagation through the recurrence over one stretch of time.

    Args:
      da: `(T, m, n_a)`, accumulation dtype: dL/da_t from outside the recurrence.
      da_final: `(m, n_a)`: gradient flowing into the last state from later steps.
      states: `(T, m, n_a)`: `a_1..a_T` of the stretch.
      a_start: `(m, n_a)`: the state before the stretch (`a0` for a whole sequence).
      x: `(T, m, n_x)`: the inputs of the stretch.
      params: the parameter dict.

    Returns:
      `(grads, dx, da_start)`: `grads` has `Wax, Waa, ba` in the accumulation dtype,
      `dx (T, m, n_x)` and `da_start (m, n_a)` likewise.
    """
    dz, da_start = recurrent_backward(da, da_final, states, params["Waa"])
    grads, dx = weight_gradients(dz, states, a_start, x, params["Wax"])
    return grads, dx, da_start


def output_layer_backward(dy, y, states, params):
    """Backward through `y_t = softmax(Wya a_t + by)` for every t.

    Args:
      dy: `(T, m, n_y)`: dL/dy_t.
      y: `(T, m, n_y)`: the softmax outputs.
      states: `(T, m, n_a)`: the hidden states.
      params: the parameter dict.

    Returns:
      `(grads, da)`: `grads` has `Wya, by`; `da (T, m, n_a)` is dL/da_t through the output
      layer; all in the accumulation dtype.
    """
    acc = accumulation_dtype(y.dtype)
    y, dy = y.astype(acc), dy.astype(acc)
    do = y * (dy - jnp.sum(y * dy, axis=-1, keepdims=True))  # dL/do_t = y_t ⊙ (dy_t − y_t·dy_t)
    return logits_backward(do, states, params)


def logits_backward(do, states, params):
    """Backward through `o_t = Wya a_t + by`, given `do (T, m, n_y)` = dL/do_t (any loss head)."""
    acc = do.dtype
    grads = {
        "Wya": do.reshape(-1, do.shape[-1]).T @ states.reshape(-1, states.shape[-1]).astype(acc),  # Σ_t do_t a_t^T
        "by": jnp.sum(do, axis=(0, 1))[:, None],  # dL/dby = Σ_t Σ_m do_t
    }
    da = do @ params["Wya"].astype(acc)  # dL/da_t += Wya^T do_t, on rows: do_t Wya
    return grads, da


def sequence_backward(x, a_start, states, y, da, dy, da_final, params):
    """The whole backward of `(a, y) = rnn(x, a_start)` over one stretch (the custom_vjp rule).

    Internal layout throughout: `x (T, m, n_x)`, `a_start (m, n_a)`, `states, da (T, m, n_a)`,
    `y, dy (T, m, n_y)`, `da_final (m, n_a)`; `da` or `dy` may be None when that output's
    cotangent is zero (the caller did not use it), which skips its work. Returns `(grads for
    all five parameters, dx, da_start)` in the accumulation dtype.
    """
    acc = da_final.dtype
    if dy is None:
        output_grads = {"Wya": jnp.zeros(params["Wya"].shape, acc), "by": jnp.zeros(params["by"].shape, acc)}
        da_total = jnp.zeros(states.shape, acc) if da is None else da.astype(acc)
    else:
        output_grads, da_through_output = output_layer_backward(dy, y, states, params)
        da_total = da_through_output if da is None else da.astype(acc) + da_through_output
    hidden_grads, dx, da_start = hidden_backward(da_total, da_final, states, a_start, x, params)
    return {**hidden_grads, **output_grads}, dx, da_start


def rnn_cell_backward(da_next, cache):
    """The backward pass of one cell step (the seed's `rnn_cell_backward`).

    Args:
      da_next: `(n_a, m)`: dL/da_next.
      cache: `(a_next, a_prev, xt, parameters)` from `rnn_cell_forward`.

    Returns:
      dict with `dxt (n_x, m)`, `da_prev (n_a, m)`, `dWax`, `dWaa`, `dba`.
    """
    fn = "rnn_cell_backward"
    a_next, a_prev, xt, parameters = _unpack(fn, "cache", cache, 4)
    xt, a_prev, params = _validate.cell_inputs(fn, xt, a_prev, parameters)
    a_next = _validate.matching_array(fn, "cache[0] (a_next)", a_next, a_prev.shape, a_prev.dtype, "a_prev")
    da_next = _validate.matching_array(fn, "da_next", da_next, a_prev.shape, a_prev.dtype, "a_next")
    acc = accumulation_dtype(da_next.dtype)
    grads, dx, da_prev = hidden_backward(
        da_next.T.astype(acc)[None], jnp.zeros(a_prev.T.shape, acc), a_next.T[None], a_prev.T, xt.T[None], params
    )
    return {
        "dxt": dx[0].T.astype(xt.dtype),
        "da_prev": da_prev.T.astype(a_prev.dtype),
        **{f"d{k}": grads[k].astype(params[k].dtype) for k in ("Wax", "Waa", "ba")},
    }


def rnn_backward(da, caches):
    """The backward pass over a whole sequence (the seed's `rnn_backward`).

    Args:
      da: `(n_a, m, T_x)`: dL/da_t for every step, from outside the recurrence.
      caches: the `Caches` returned by `rnn_forward`.

    Returns:
      dict with `dx (n_x, m, T_x)`, `da0 (n_a, m)`, `dWax`, `dWaa`, `dba`.
    """
    fn = "rnn_backward"
    states, a0, x, parameters = _unpack(fn, "caches", caches, 4)
    x, a0, params, sizes = _validate.sequence_inputs(fn, x, a0, parameters)
    expected_states = (sizes.T_x, sizes.m, sizes.n_a)
    states = _validate.matching_array(fn, "caches.hidden_states", states, expected_states, x.dtype, "x")
    da = _validate.matching_array(fn, "da", da, (sizes.n_a, sizes.m, sizes.T_x), x.dtype, "caches (n_a, m, T_x)")
    acc = accumulation_dtype(da.dtype)
    grads, dx, da0 = hidden_backward(
        time_major(da).astype(acc), jnp.zeros(a0.T.shape, acc), states, a0.T, time_major(x), params
    )
    return {
        "dx": seed_layout(dx).astype(x.dtype),
        "da0": da0.T.astype(a0.dtype),
        **{f"d{k}": grads[k].astype(params[k].dtype) for k in ("Wax", "Waa", "ba")},
    }


def _unpack(fn, name, value, length):
    if isinstance(value, Caches):
        return tuple(value)
    if not isinstance(value, (tuple, list)) or len(value) != length:
        raise TypeError(
            f"{fn}: {name} must be the {length}-tuple returned by the forward pass; received {type(value).__name__}"
        )
    return tuple(value)
