"""The vanilla cell (the seed's), on `(m, n_a)` rows:

    z_t = Waa a_{t-1} + Wax x_t + ba,    a_t = f(z_t),    f = tanh or relu

**Backward.** With `g_t = dL/da_t` by every path (the engine's `d_carry`):

    dz_t = f'(z_t) ⊙ g_t          f'(z) = 1 − a_t² (tanh), 1[a_t > 0] (relu)

and `z_t` is both the input and the recurrent pre-activation, so `d_input = d_hidden = dz_t`;
the engine adds `dL/da_{t-1} = Waa^T dz_t` (on rows `dz_t Waa`). No other path reaches
`a_{t-1}`: `direct` is None.

**Forward mode.** `ȧ_t = f'(z_t) ⊙ ż_t`, `ż_t = (Ẇaa a_{t-1} + Waa ȧ_{t-1}) + (Ẇax x_t + Wax ẋ_t + ḃa)`:
the engine's `hidden_dot + drive`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxrnn._cells.base import Cell, no_extra_bias_gradients

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}
DERIVATIVES = {
    "tanh": lambda a: 1 - a**2,  # tanh'(z) = 1 − tanh(z)² = 1 − a²
    "relu": lambda a: (a > 0).astype(a.dtype),  # relu'(z) = 1[z > 0] = 1[a > 0]
}


def _step(nonlinearity, carry, projected, hidden, biases):
    (a_prev,) = carry
    a = ACTIVATIONS[nonlinearity](hidden + projected + biases["ba"])  # a_t = f(Waa a_{t-1} + Wax x_t + ba)
    return (a.astype(a_prev.dtype),), ()


def _backward_step(nonlinearity, carry, previous, residuals, d_carry):
    (a,), (g,) = carry, d_carry
    dz = DERIVATIVES[nonlinearity](a) * g  # dL/dz_t = f'(z_t) ⊙ dL/da_t
    return (None,), dz, None


def _tangent_step(nonlinearity, carry, carry_dot, new_carry, residuals, drive, hidden_dot, biases_dot):
    (a,) = new_carry
    return (DERIVATIVES[nonlinearity](a) * (hidden_dot + drive),)  # ȧ_t = f'(z_t) ⊙ ż_t


@functools.cache
def vanilla_cell(nonlinearity: str) -> Cell:
    """The vanilla cell with `f` = `nonlinearity` (`"tanh"` or `"relu"`)."""
    return Cell(
        name="vanilla",
        gates=1,
        carry=("a",),
        extra_biases=(),
        uses_previous=False,
        step=functools.partial(_step, nonlinearity),
        backward_step=functools.partial(_backward_step, nonlinearity),
        tangent_step=functools.partial(_tangent_step, nonlinearity),
        extra_bias_gradients=no_extra_bias_gradients,
    )
