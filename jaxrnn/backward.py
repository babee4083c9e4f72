"""The hand-derived backward pass (backpropagation through time), in `jax.numpy`.

Notation: `z_t = Waa a_{t-1} + Wax x_t + ba`, `a_t = tanh(z_t)`, `o_t = Wya a_t + by`,
`y_t = softmax(o_t)`. `da_t` is dL/da_t from everything except `a_{t+1}`; the carried
term `Waa^T dz_{t+1}` adds the path through the recurrence.

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
from jaxrnn.forward import Caches, accumulation_dtype, time_major


def cell_backward_step(Waa, a_next, da_next):
    """One step back through `a_t = tanh(z_t)`; returns `(dz_t, da_{t-1})`."""
    dz = (1 - a_next**2) * da_next  # dL/dz_t = (1 - a_t²) ⊙ dL/da_t      (tanh' = 1 - tanh²)
    da_prev = Waa.T @ dz  # dL/da_{t-1} (through the recurrence) = Waa^T dz_t
    return dz, da_prev


def recurrent_backward(da, da_final, states, Waa):
    """The reverse scan: dz_t for every step of one stretch of time.

    Args:
      da: `(T, n_a, m)`, time-major, accumulation dtype: dL/da_t from outside the recurrence.
      da_final: `(n_a, m)`: gradient flowing into the last state from later steps (zeros
        for a whole sequence).
      states: `(T, n_a, m)`: `a_1..a_T` of the stretch.
      Waa: `(n_a, n_a)`.

    Returns:
      `(dz (T, n_a, m), da_start (n_a, m))`, accumulation dtype; `da_start` is dL/d(state
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
    """The sums over time, each one matrix product over the stacked `dz (T, n_a, m)`.

    Returns `(grads with Wax, Waa, ba, dx (n_x, m, T))` in the dtype of `dz`.
    """
    acc = dz.dtype
    prev_states = jnp.concatenate([a_start[None], states[:-1]]).astype(acc)  # a_0..a_{T-1}
    grads = {
        "Waa": jnp.einsum("tam,tbm->ab", dz, prev_states),  # dL/dWaa = Σ_t dz_t a_{t-1}^T
        "Wax": jnp.einsum("tam,xmt->ax", dz, x.astype(acc)),  # dL/dWax = Σ_t dz_t x_t^T
        "ba": jnp.sum(dz, axis=(0, 2))[:, None],  # dL/dba = Σ_t Σ_m dz_t
    }
    dx = jnp.einsum("ax,tam->xmt", Wax.astype(acc), dz)  # dL/dx_t = Wax^T dz_t
    return grads, dx


def hidden_backward(da, da_final, states, a_start, x, params):
    """Backpropagation through the recurrence over one stretch of time.

    Args:
      da: `(T, n_a, m)`, time-major, accumulation dtype: dL/da_t from outside the recurrence.
      da_final: `(n_a, m)`: gradient flowing into the last state from later steps.
      states: `(T, n_a, m)`: `a_1..a_T` of the stretch.
      a_start: `(n_a, m)`: the state before the stretch (`a0` for a whole sequence).
      x: `(n_x, m, T)`: the inputs of the stretch.
      params: the parameter dict.

    Returns:
      `(grads, dx, da_start)`: `grads` has `Wax, Waa, ba` in the accumulation dtype,
      `dx (n_x, m, T)` and `da_start (n_a, m)` likewise.
    """
    dz, da_start = recurrent_backward(da, da_final, states, params["Waa"])
    grads, dx = weight_gradients(dz, states, a_start, x, params["Wax"])
    return grads, dx, da_start


def output_layer_backward(dy, y, states, params):
    """Backward through `y_t = softmax(Wya a_t + by)` for every t.

    Args:
      dy: `(n_y, m, T)`: dL/dy_t.
      y: `(n_y, m, T)`: the softmax outputs.
      states: `(T, n_a, m)`: the hidden states.
      params: the parameter dict.

    Returns:
      `(grads, da)`: `grads` has `Wya, by`; `da (T, n_a, m)` is dL/da_t through the output
      layer; all in the accumulation dtype.
    """
    acc = accumulation_dtype(y.dtype)
    y, dy = y.astype(acc), dy.astype(acc)
    do = y * (dy - jnp.sum(y * dy, axis=0, keepdims=True))  # dL/do_t = y_t ⊙ (dy_t − y_t·dy_t)
    return logits_backward(do, states, params)


def logits_backward(do, states, params):
    """Backward through `o_t = Wya a_t + by`, given `do (n_y, m, T)` = dL/do_t (any loss head)."""
    acc = do.dtype
    grads = {
        "Wya": jnp.einsum("ymt,tam->ya", do, states.astype(acc)),  # dL/dWya = Σ_t do_t a_t^T
        "by": jnp.sum(do, axis=(1, 2))[:, None],  # dL/dby = Σ_t Σ_m do_t
    }
    da = jnp.einsum("ya,ymt->tam", params["Wya"].astype(acc), do)  # dL/da_t += Wya^T do_t
    return grads, da


def sequence_backward(x, a_start, states, y, da, dy, da_final, params):
    """The whole backward of `(a, y) = rnn(x, a_start)` over one stretch (the custom_vjp rule).

    `da (n_a, m, T)` and `dy (n_y, m, T)` are the cotangents of the two outputs; returns
    `(grads for all five parameters, dx, da_start)` in the accumulation dtype.
    """
    output_grads, da_through_output = output_layer_backward(dy, y, states, params)
    da_total = time_major(da).astype(da_through_output.dtype) + da_through_output
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
    a_next = _validate.cotangent(fn, "cache[0] (a_next)", a_next, a_prev.shape, a_prev.dtype, "a_prev")
    da_next = _validate.cotangent(fn, "da_next", da_next, a_prev.shape, a_prev.dtype, "a_next")
    acc = accumulation_dtype(da_next.dtype)
    grads, dx, da_prev = hidden_backward(
        da_next.astype(acc)[None], jnp.zeros_like(da_next, acc), a_next[None], a_prev, xt[:, :, None], params
    )
    return {
        "dxt": dx[:, :, 0].astype(xt.dtype),
        "da_prev": da_prev.astype(a_prev.dtype),
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
    expected_states = (sizes.T_x, sizes.n_a, sizes.m)
    states = _validate.cotangent(fn, "caches.hidden_states", states, expected_states, x.dtype, "x")
    da = _validate.cotangent(fn, "da", da, (sizes.n_a, sizes.m, sizes.T_x), x.dtype, "caches (n_a, m, T_x)")
    acc = accumulation_dtype(da.dtype)
    grads, dx, da0 = hidden_backward(time_major(da).astype(acc), jnp.zeros_like(a0, acc), states, a0, x, params)
    return {
        "dx": dx.astype(x.dtype),
        "da0": da0.astype(a0.dtype),
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
