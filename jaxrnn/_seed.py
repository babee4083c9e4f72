"""The seed notebook's four functions, with its names, arguments and layouts.

`x (n_x, m, T_x)`, `a (n_a, m, T_x)`, `y (n_y, m, T_x)`, states `(n_a, m)`; tanh, full-length
sequences, left to right. They run the library's one forward (`_forward`, `_heads`) and one
backward (`_backward.hidden_backward`): `rnn_cell_backward` is that backward on one step,
`rnn_backward` on the whole sequence.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _cells, _layout, _validate
from jaxrnn._backward import hidden_backward
from jaxrnn._forward import accumulation_dtype, hidden_states
from jaxrnn._heads import predictions

_CELL = _cells.get("vanilla", "tanh")
_SEED = {"lengths": None, "reverse": False}


class Caches(NamedTuple):
    """What `rnn_forward` keeps for `rnn_backward`: a pytree of stacked arrays.

    Attributes:
      hidden_states: `a_1..a_T`, time-major with features last, `(T_x, m, n_a)`.
      a0: the initial hidden state `(n_a, m)`.
      x: the inputs `(n_x, m, T_x)`.
      parameters: the parameter dict used by the forward pass.
    """

    hidden_states: jax.Array
    a0: jax.Array
    x: jax.Array
    parameters: dict


def _forward(x, a0, params):
    """Internal layout: `x (T, m, n_x)`, `a0 (m, n_a)` -> `(states (T, m, n_a), y (T, m, n_y))`."""
    (states,), _, _ = hidden_states(_CELL, x, (a0,), params, **_SEED)
    return states, predictions(states, params, None)


def _backward(da, states, a0, x, params):
    """`hidden_backward` over a whole stretch from the seed's layouts; the seed's dict of gradients."""
    acc = accumulation_dtype(da.dtype)
    grads, dx, (da0,) = hidden_backward(
        _CELL,
        _layout.to_time_major(da, "seed").astype(acc),
        (jnp.zeros(a0.T.shape, acc),),
        (states,),
        (),
        (a0.T,),
        _layout.to_time_major(x, "seed"),
        params,
        **_SEED,
    )
    return {
        "dx": _layout.from_time_major(dx, "seed").astype(x.dtype),
        "da0": da0.T.astype(a0.dtype),
        **{f"d{k}": grads[k].astype(params[k].dtype) for k in ("Wax", "Waa", "ba")},
    }


def rnn_cell_forward(xt, a_prev, parameters):
    """One step of the RNN cell (the seed's `rnn_cell_forward`).

    Args:
      xt: input at step t, `(n_x, m)`.
      a_prev: hidden state at step t-1, `(n_a, m)`.
      parameters: dict with `Wax (n_a, n_x)`, `Waa (n_a, n_a)`, `Wya (n_y, n_a)`,
        `ba (n_a, 1)`, `by (n_y, 1)`.

    Returns:
      `(a_next (n_a, m), yt_pred (n_y, m), cache)` with `cache = (a_next, a_prev, xt, parameters)`.
    """
    xt, a_prev, params = _validate.cell_inputs("rnn_cell_forward", xt, a_prev, parameters)
    states, y = _forward(xt.T[None], a_prev.T, params)
    a_next, yt_pred = states[0].T, y[0].T
    return a_next, yt_pred, (a_next, a_prev, xt, params)


def rnn_forward(x, a0, parameters):
    """The forward pass over a whole sequence (the seed's `rnn_forward`).

    Args:
      x: inputs for every step, `(n_x, m, T_x)`.
      a0: initial hidden state, `(n_a, m)`.
      parameters: the parameter dict (see `rnn_cell_forward`).

    Returns:
      `(a (n_a, m, T_x), y_pred (n_y, m, T_x), caches)`; `caches` is a `Caches` pytree
      to hand to `rnn_backward`.
    """
    x, a0, params, _ = _validate.sequence_inputs("rnn_forward", x, a0, parameters)
    states, y = _forward(_layout.to_time_major(x, "seed"), a0.T, params)
    seed = lambda v: _layout.from_time_major(v, "seed")
    return seed(states), seed(y), Caches(states, a0, x, params)


def rnn_cell_backward(da_next, cache):
    """The backward pass of one cell step (the seed's `rnn_cell_backward`).

    Args:
      da_next: `(n_a, m)`: dL/da_next.
      cache: `(a_next, a_prev, xt, parameters)` from `rnn_cell_forward`.

    Returns:
      dict with `dxt (n_x, m)`, `da_prev (n_a, m)`, `dWax`, `dWaa`, `dba`.
    """
    fn = "rnn_cell_backward"
    a_next, a_prev, xt, parameters = _unpack(fn, "cache", cache)
    xt, a_prev, params = _validate.cell_inputs(fn, xt, a_prev, parameters)
    a_next = _validate.matching_array(fn, "cache[0] (a_next)", a_next, a_prev.shape, a_prev.dtype, "a_prev")
    da_next = _validate.matching_array(fn, "da_next", da_next, a_prev.shape, a_prev.dtype, "a_next")
    grads = _backward(da_next[:, :, None], a_next.T[None], a_prev, xt[:, :, None], params)
    return {"dxt": grads.pop("dx")[:, :, 0], "da_prev": grads.pop("da0"), **grads}


def rnn_backward(da, caches):
    """The backward pass over a whole sequence (the seed's `rnn_backward`).

    Args:
      da: `(n_a, m, T_x)`: dL/da_t for every step, from outside the recurrence.
      caches: the `Caches` returned by `rnn_forward`.

    Returns:
      dict with `dx (n_x, m, T_x)`, `da0 (n_a, m)`, `dWax`, `dWaa`, `dba`.
    """
    fn = "rnn_backward"
    states, a0, x, parameters = _unpack(fn, "caches", caches)
    x, a0, params, sizes = _validate.sequence_inputs(fn, x, a0, parameters)
    expected_states = (sizes.T_x, sizes.m, sizes.n_a)
    states = _validate.matching_array(fn, "caches.hidden_states", states, expected_states, x.dtype, "x")
    da = _validate.matching_array(fn, "da", da, (sizes.n_a, sizes.m, sizes.T_x), x.dtype, "caches (n_a, m, T_x)")
    return _backward(da, states, a0, x, params)


def _unpack(fn, name, value):
    if isinstance(value, Caches):
        return tuple(value)
    if not isinstance(value, (tuple, list)) or len(value) != 4:
        raise TypeError(
            f"{fn}: {name} must be the 4-tuple returned by the forward pass; received {type(value).__name__}"
        )
    return tuple(value)
