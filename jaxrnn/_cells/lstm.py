"""The LSTM cell, with PyTorch's equations and gate order (i, f, g, o), on `(m, n_a)` rows:

    i = σ(a_i)    f = σ(a_f)    g = tanh(a_g)    o = σ(a_o)       a = Wax x + Waa h + ba
    c' = f ⊙ c + i ⊙ g
    h' = o ⊙ tanh(c')

Parameters: `Wax = [W_ii; W_if; W_ig; W_io] (4·n_a, n_x)`, `Waa (4·n_a, n_a)` likewise,
`ba (4·n_a, 1)` = PyTorch's `b_ih + b_hh`. Carry `(h, c)`; residuals per step: `i, f, g, o`
(the engine keeps `h'` and `c'`, and gives the backward step `c`).

**Backward.** With `g_h = dL/dh'`, `g_c = dL/dc'` by every path (except through `h'`):

    do = g_h ⊙ tanh(c')
    dc' = g_c + g_h ⊙ o ⊙ (1 − tanh²(c'))        all that reaches c'
    di = dc' ⊙ g      df = dc' ⊙ c      dg = dc' ⊙ i
    d_input = d_hidden = [di ⊙ i(1 − i), df ⊙ f(1 − f), dg ⊙ (1 − g²), do ⊙ o(1 − o)]
    dL/dc = dc' ⊙ f  (direct)       dL/dh = Waa^T d_hidden  (the engine's product)

**Forward mode.** With `ȧ = drive + hidden_dot`:

    i̇ = i(1 − i) ⊙ ȧ_i    ḟ = f(1 − f) ⊙ ȧ_f    ġ = (1 − g²) ⊙ ȧ_g    ȯ = o(1 − o) ⊙ ȧ_o
    ċ' = ḟ ⊙ c + f ⊙ ċ + i̇ ⊙ g + i ⊙ ġ
    ḣ' = ȯ ⊙ tanh(c') + o ⊙ (1 − tanh²(c')) ⊙ ċ'
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn._cells.base import Cell, no_extra_bias_gradients, sigmoid_derivative, split, tanh_derivative


def _step(carry, projected, hidden, biases):
    h_prev, c_prev = carry
    a_i, a_f, a_g, a_o = split(hidden + projected + biases["ba"], 4)
    i, f, g, o = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jnp.tanh(a_g), jax.nn.sigmoid(a_o)
    c = f * c_prev.astype(hidden.dtype) + i * g  # c' = f ⊙ c + i ⊙ g
    h = o * jnp.tanh(c)  # h' = o ⊙ tanh(c')
    return (h.astype(h_prev.dtype), c.astype(c_prev.dtype)), (i, f, g, o)


def _backward_step(carry, previous, residuals, d_carry):
    (_, c), (_, c_prev), (g_h, g_c) = carry, previous, d_carry
    i, f, g, o = residuals
    tanh_c = jnp.tanh(c)
    do = g_h * tanh_c  # dL/do = g_h ⊙ tanh(c')
    dc = g_c + g_h * o * tanh_derivative(tanh_c)  # dL/dc' = g_c + g_h ⊙ o ⊙ (1 − tanh²(c'))
    d_gates = jnp.concatenate(
        [
            dc * g * sigmoid_derivative(i),  # dL/da_i = dc' ⊙ g ⊙ i(1 − i)
            dc * c_prev * sigmoid_derivative(f),  # dL/da_f = dc' ⊙ c ⊙ f(1 − f)
            dc * i * tanh_derivative(g),  # dL/da_g = dc' ⊙ i ⊙ (1 − g²)
            do * sigmoid_derivative(o),  # dL/da_o = do ⊙ o(1 − o)
        ],
        axis=-1,
    )
    return (None, dc * f), d_gates, None  # dL/dc = dc' ⊙ f; h reaches only the product


def _tangent_step(carry, carry_dot, new_carry, residuals, drive, hidden_dot, biases_dot):
    (_, c_prev), (_, c_prev_dot), (_, c) = carry, carry_dot, new_carry
    i, f, g, o = residuals
    a_i_dot, a_f_dot, a_g_dot, a_o_dot = split(hidden_dot + drive, 4)
    i_dot = sigmoid_derivative(i) * a_i_dot
    f_dot = sigmoid_derivative(f) * a_f_dot
    g_dot = tanh_derivative(g) * a_g_dot
    o_dot = sigmoid_derivative(o) * a_o_dot
    c_dot = f_dot * c_prev + f * c_prev_dot + i_dot * g + i * g_dot  # ċ' = ḟ c + f ċ + i̇ g + i ġ
    tanh_c = jnp.tanh(c)
    h_dot = o_dot * tanh_c + o * tanh_derivative(tanh_c) * c_dot  # ḣ' = ȯ tanh(c') + o (1 − tanh²(c')) ċ'
    return (h_dot, c_dot)


LSTM = Cell(
    name="lstm",
    gates=4,
    carry=("h", "c"),
    extra_biases=(),
    uses_previous=True,
    step=_step,
    backward_step=_backward_step,
    tangent_step=_tangent_step,
    extra_bias_gradients=no_extra_bias_gradients,
)
