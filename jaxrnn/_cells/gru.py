"""The GRU cell, with PyTorch's equations and gate order (r, z, n), on `(m, n_a)` rows:

    r = σ(W_ir x + W_hr h + b_r)                   b_r = b_ir + b_hr
    z = σ(W_iz x + W_hz h + b_z)                   b_z = b_iz + b_hz
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h' = (1 − z) ⊙ n + z ⊙ h = n + z ⊙ (h − n)

Parameters: `Wax = [W_ir; W_iz; W_in] (3·n_a, n_x)`, `Waa = [W_hr; W_hz; W_hn] (3·n_a, n_a)`,
`ba = [b_r; b_z; b_in] (3·n_a, 1)` and `bhn = b_hn (n_a, 1)`, which sits inside the reset
product and so cannot be merged into `ba`. Residuals per step: `r, z, n` and `hn = W_hn h + b_hn`.

**Backward.** With `g = dL/dh'` by every path and `a_r, a_z, a_n` the three pre-activations:

    dn = g ⊙ (1 − z)                    dz = g ⊙ (h − n)
    da_n = dn ⊙ (1 − n²)                da_z = dz ⊙ z(1 − z)
    dr = da_n ⊙ hn                      da_r = dr ⊙ r(1 − r)
    d_input  = [da_r, da_z, da_n]       (for W_i·, ba)
    d_hidden = [da_r, da_z, r ⊙ da_n]   (for W_h·, b_hn: the reset gate scales W_hn h + b_hn)
    dL/dh = z ⊙ g  (direct)  +  Waa^T d_hidden  (the engine's product)

so the input and the recurrent weight gradients need two sums, not one.

**Forward mode.** With `ȧ_· = drive_· + hidden_dot_·`:

    ṙ = r(1 − r) ⊙ ȧ_r      ż = z(1 − z) ⊙ ȧ_z      ḣn = hidden_dot_n + ḃ_hn
    ṅ = (1 − n²) ⊙ (drive_n + ṙ ⊙ hn + r ⊙ ḣn)
    ḣ' = (1 − z) ⊙ ṅ + ż ⊙ (h − n) + z ⊙ ḣ
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn._cells.base import Cell, sigmoid_derivative, split, tanh_derivative


def _step(carry, projected, hidden, biases):
    (h_prev,) = carry
    h = h_prev.astype(hidden.dtype)
    input_r, input_z, input_n = split(projected + biases["ba"], 3)  # W_i· x + b
    hidden_r, hidden_z, hidden_n = split(hidden, 3)  # W_h· h
    r = jax.nn.sigmoid(input_r + hidden_r)
    z = jax.nn.sigmoid(input_z + hidden_z)
    hn = hidden_n + biases["bhn"]  # W_hn h + b_hn
    n = jnp.tanh(input_n + r * hn)
    h_next = n + z * (h - n)  # (1 − z) ⊙ n + z ⊙ h
    return (h_next.astype(h_prev.dtype),), (r, z, n, hn)


def _backward_step(carry, previous, residuals, d_carry):
    (g,), (h_prev,) = d_carry, previous
    r, z, n, hn = residuals
    dn = g * (1 - z)  # dL/dn = g ⊙ (1 − z)
    dz = g * (h_prev - n)  # dL/dz = g ⊙ (h − n)
    da_n = dn * tanh_derivative(n)  # through n = tanh(a_n)
    da_r = da_n * hn * sigmoid_derivative(r)  # dL/dr = da_n ⊙ hn, through r = σ(a_r)
    da_z = dz * sigmoid_derivative(z)  # through z = σ(a_z)
    d_input = jnp.concatenate([da_r, da_z, da_n], axis=-1)
    d_hidden = jnp.concatenate([da_r, da_z, r * da_n], axis=-1)  # a_n holds r ⊙ (W_hn h + b_hn)
    return (z * g,), d_input, d_hidden  # h' = … + z ⊙ h: the direct path to h


def _tangent_step(carry, carry_dot, new_carry, residuals, drive, hidden_dot, biases_dot):
    (h,), (h_dot,) = carry, carry_dot
    r, z, n, hn = residuals
    drive_r, drive_z, drive_n = split(drive, 3)
    hidden_dot_r, hidden_dot_z, hidden_dot_n = split(hidden_dot, 3)
    r_dot = sigmoid_derivative(r) * (drive_r + hidden_dot_r)  # ṙ = r(1 − r) ⊙ ȧ_r
    z_dot = sigmoid_derivative(z) * (drive_z + hidden_dot_z)  # ż = z(1 − z) ⊙ ȧ_z
    hn_dot = hidden_dot_n + biases_dot["bhn"]  # ḣn = (Ẇ_hn h + W_hn ḣ) + ḃ_hn
    n_dot = tanh_derivative(n) * (drive_n + r_dot * hn + r * hn_dot)  # ṅ = (1 − n²) ⊙ ȧ_n
    return ((1 - z) * n_dot + z_dot * (h - n) + z * h_dot,)  # ḣ' = (1 − z) ṅ + ż (h − n) + z ḣ


def _extra_bias_gradients(d_hidden):
    _, _, d_hn = split(d_hidden, 3)
    return {"bhn": jnp.sum(d_hn, axis=(0, 1))[:, None]}  # dL/db_hn = Σ_t r ⊙ da_n


GRU = Cell(
    name="gru",
    gates=3,
    carry=("h",),
    extra_biases=("bhn",),
    uses_previous=True,
    step=_step,
    backward_step=_backward_step,
    tangent_step=_tangent_step,
    extra_bias_gradients=_extra_bias_gradients,
)
