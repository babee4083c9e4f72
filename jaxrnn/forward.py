"""The forward pass of the seed's vanilla RNN, in JAX.

    a_t = tanh(Waa a_{t-1} + Wax x_t + ba)          hidden state, (n_a, m)
    y_t = softmax(Wya a_t + by)                     prediction,   (n_y, m), softmax over axis 0

Public layouts follow the seed: `x (n_x, m, T_x)`, `a (n_a, m, T_x)`, `y (n_y, m, T_x)`.
Inside, hidden states are stacked time-major, `(T_x, n_a, m)`, because `lax.scan`
stacks along the leading axis; the input projection `Wax x_t + ba` is one matrix
product for all time steps, hoisted out of the loop, so the scan body does only the
recurrent product and the tanh.

Matrix products take their operands in the input dtype and accumulate in
`accumulation_dtype` (float32 for bfloat16/float16 inputs), so low-precision models keep
float32 sums; hidden states are stored in the input dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _validate


def accumulation_dtype(dtype) -> jnp.dtype:
    """float32 for bfloat16/float16, otherwise the dtype itself."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def project_inputs(x: jnp.ndarray, Wax: jnp.ndarray, ba: jnp.ndarray) -> jnp.ndarray:
    """`Wax x_t + ba` for every t at once: x `(n_x, m, T)` -> `(T, n_a, m)`, accumulation dtype."""
    acc = accumulation_dtype(x.dtype)
    return jnp.einsum("ax,xmt->tam", Wax, x, preferred_element_type=acc) + ba.astype(acc)[None]


def cell_step(Waa: jnp.ndarray, a_prev: jnp.ndarray, projected_input: jnp.ndarray) -> jnp.ndarray:
    """One recurrence: `a_t = tanh(Waa a_{t-1} + (Wax x_t + ba))`, stored in `a_prev.dtype`."""
    acc = projected_input.dtype
    pre_activation = jnp.dot(Waa, a_prev, preferred_element_type=acc) + projected_input
    return jnp.tanh(pre_activation).astype(a_prev.dtype)


def hidden_states(projected_inputs: jnp.ndarray, a0: jnp.ndarray, Waa: jnp.ndarray) -> jnp.ndarray:
    """Runs the recurrence over `(T, n_a, m)` projected inputs; returns `a_1..a_T` as `(T, n_a, m)`."""

    def step(a_prev, projected_input):
        a_next = cell_step(Waa, a_prev, projected_input)
        return a_next, a_next

    _, states = jax.lax.scan(step, a0, projected_inputs)
    return states


def output_logits(states: jnp.ndarray, Wya: jnp.ndarray, by: jnp.ndarray) -> jnp.ndarray:
    """`o_t = Wya a_t + by` for time-major states `(T, n_a, m)` -> `(n_y, m, T)`, accumulation dtype."""
    acc = accumulation_dtype(states.dtype)
    return jnp.einsum("ya,tam->ymt", Wya, states, preferred_element_type=acc) + by.astype(acc)[:, :, None]


def predictions(states: jnp.ndarray, Wya: jnp.ndarray, by: jnp.ndarray) -> jnp.ndarray:
    """`y_t = softmax(Wya a_t + by)` for time-major states `(T, n_a, m)` -> `(n_y, m, T)`."""
    return jax.nn.softmax(output_logits(states, Wya, by), axis=0).astype(states.dtype)


def time_major(sequence: jnp.ndarray) -> jnp.ndarray:
    """`(n, m, T)` -> `(T, n, m)`."""
    return jnp.moveaxis(sequence, -1, 0)


def seed_layout(sequence: jnp.ndarray) -> jnp.ndarray:
    """`(T, n, m)` -> `(n, m, T)`."""
    return jnp.moveaxis(sequence, 0, -1)


def forward_states(x, a0, params) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Validated arrays in, `(hidden states (T, n_a, m), y (n_y, m, T))` out."""
    states = hidden_states(project_inputs(x, params["Wax"], params["ba"]), a0, params["Waa"])
    return states, predictions(states, params["Wya"], params["by"])


class Caches(NamedTuple):
    """What `rnn_forward` keeps for `rnn_backward`: a pytree of stacked arrays.

    Attributes:
      hidden_states: `a_1..a_T`, time-major `(T_x, n_a, m)`.
      a0: the initial hidden state `(n_a, m)`.
      x: the inputs `(n_x, m, T_x)`.
      parameters: the parameter dict used by the forward pass.
    """

    hidden_states: jnp.ndarray
    a0: jnp.ndarray
    x: jnp.ndarray
    parameters: dict


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
    projected = project_inputs(xt[:, :, None], params["Wax"], params["ba"])[0]
    a_next = cell_step(params["Waa"], a_prev, projected)
    yt_pred = predictions(a_next[None], params["Wya"], params["by"])[:, :, 0]
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
    states, y_pred = forward_states(x, a0, params)
    return seed_layout(states), y_pred, Caches(states, a0, x, params)


def rnn_autodiff(x, a0, parameters):
    """The same forward as `rnn`, with no custom gradient: `jax.grad` differentiates it.

    The oracle the hand-derived backward is checked against, and the path for forward
    mode (`jax.jvp`, `jax.jacfwd`, `jax.hessian` by forward-over-reverse), which a
    `jax.custom_vjp` function cannot serve.

    Args:
      x: `(n_x, m, T_x)`.
      a0: `(n_a, m)`.
      parameters: the parameter dict (see `rnn_cell_forward`).

    Returns:
      `(a (n_a, m, T_x), y_pred (n_y, m, T_x))`.
    """
    x, a0, params, _ = _validate.sequence_inputs("rnn_autodiff", x, a0, parameters)
    states, y_pred = forward_states(x, a0, params)
    return seed_layout(states), y_pred
