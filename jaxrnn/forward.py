"""The forward pass of the seed's vanilla RNN, in JAX.

    a_t = tanh(Waa a_{t-1} + Wax x_t + ba)          hidden state, (n_a, m)
    y_t = softmax(Wya a_t + by)                     prediction,   (n_y, m), softmax over axis 0

Public layouts follow the seed: `x (n_x, m, T_x)`, `a (n_a, m, T_x)`, `y (n_y, m, T_x)`.
Inside, every sequence is time-major with features last, `(T_x, m, n)` — the layout of
PyTorch's and cuDNN's RNNs — because then every product with a weight matrix is one plain
matrix product over all `T_x·m` tokens with no transposes, `lax.scan` slices contiguous
`(m, n)` steps along the leading axis, and the softmax runs along contiguous rows. The
input projection `x_t Wax^T` is one such product, hoisted out of the loop, so the scan
body does only the recurrent product, the bias and the tanh. In this layout the recurrence reads
`a_t = tanh(a_{t-1} Waa^T + x_t Wax^T + ba^T)` on row vectors — the same numbers.

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


def project_inputs(x: jnp.ndarray, Wax: jnp.ndarray) -> jnp.ndarray:
    """`x_t Wax^T` for every t at once: `(T, m, n_x)` -> `(T, m, n_a)`, accumulation dtype.

    The bias is added inside the scan, where it fuses with the tanh; added here it would
    cost a separate pass over the whole `(T, m, n_a)` array.
    """
    return jnp.einsum("tmx,ax->tma", x, Wax, preferred_element_type=accumulation_dtype(x.dtype))


def cell_step(Waa_T, ba_row, a_prev, projected_input):
    """One recurrence on `(m, n_a)` rows: `a_t = tanh(a_{t-1} Waa^T + x_t Wax^T + ba^T)`.

    Takes `Waa_T = Waa^T`, transposed once by the caller outside any loop (XLA's CPU backend
    runs a product with a transpose inside a scan body markedly slower), `ba_row = ba^T`
    `(1, n_a)` and the projected input `x_t Wax^T` in the accumulation dtype. Stores `a_t`
    in `a_prev.dtype`.
    """
    acc = projected_input.dtype
    pre_activation = jnp.dot(a_prev, Waa_T, preferred_element_type=acc) + projected_input + ba_row
    return jnp.tanh(pre_activation).astype(a_prev.dtype)


def hidden_states(x: jnp.ndarray, a0: jnp.ndarray, params) -> jnp.ndarray:
    """Runs the recurrence over `x (T, m, n_x)` from `a0 (m, n_a)`; returns `a_1..a_T` as `(T, m, n_a)`."""
    projected_inputs = project_inputs(x, params["Wax"])
    Waa_T = params["Waa"].T
    ba_row = params["ba"].astype(projected_inputs.dtype).T

    def step(a_prev, projected_input):
        a_next = cell_step(Waa_T, ba_row, a_prev, projected_input)
        return a_next, a_next

    _, states = jax.lax.scan(step, a0, projected_inputs)
    return states


def output_logits(states: jnp.ndarray, Wya: jnp.ndarray, by: jnp.ndarray) -> jnp.ndarray:
    """`o_t = a_t Wya^T + by^T` for states `(T, m, n_a)` -> `(T, m, n_y)`, accumulation dtype."""
    acc = accumulation_dtype(states.dtype)
    return jnp.einsum("tma,ya->tmy", states, Wya, preferred_element_type=acc) + by.astype(acc).T[None]


def predictions(states: jnp.ndarray, Wya: jnp.ndarray, by: jnp.ndarray) -> jnp.ndarray:
    """`y_t = softmax(o_t)` over the features: states `(T, m, n_a)` -> `(T, m, n_y)`."""
    return jax.nn.softmax(output_logits(states, Wya, by), axis=-1).astype(states.dtype)


def time_major(sequence: jnp.ndarray) -> jnp.ndarray:
    """Seed layout `(n, m, T)` -> internal `(T, m, n)` (and back: the map is its own inverse)."""
    return jnp.transpose(sequence, (2, 1, 0))


seed_layout = time_major


def forward_states(x, a0, params) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Internal layout in and out: `x (T, m, n_x)`, `a0 (m, n_a)` -> states `(T, m, n_a)`, y `(T, m, n_y)`."""
    states = hidden_states(x, a0, params)
    return states, predictions(states, params["Wya"], params["by"])


class Caches(NamedTuple):
    """What `rnn_forward` keeps for `rnn_backward`: a pytree of stacked arrays.

    Attributes:
      hidden_states: `a_1..a_T`, time-major with features last, `(T_x, m, n_a)`.
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
    states, y = forward_states(xt.T[None], a_prev.T, params)
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
    states, y = forward_states(time_major(x), a0.T, params)
    return seed_layout(states), seed_layout(y), Caches(states, a0, x, params)


def rnn_autodiff(x, a0, parameters):
    """The same forward as `rnn`, with no custom gradient: `jax.grad` differentiates it.

    The oracle the hand-derived backward is checked against, and the path for forward
    mode (`jax.jvp`, `jax.jacfwd`, `jax.linearize`), which a
    `jax.custom_vjp` function cannot serve.

    Args:
      x: `(n_x, m, T_x)`.
      a0: `(n_a, m)`.
      parameters: the parameter dict (see `rnn_cell_forward`).

    Returns:
      `(a (n_a, m, T_x), y_pred (n_y, m, T_x))`.
    """
    x, a0, params, _ = _validate.sequence_inputs("rnn_autodiff", x, a0, parameters)
    states, y = forward_states(time_major(x), a0.T, params)
    return seed_layout(states), seed_layout(y)
