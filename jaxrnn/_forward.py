"""The forward pass of the recurrence, in the internal time-major layout `(T, m, n)`.

    z_t = Waa a_{t-1} + Wax x_t + ba,    a_t = f(z_t),    f = tanh or relu

written on row vectors, `a_t = f(a_{t-1} Waa^T + x_t Wax^T + ba^T)`: the same numbers. The
input projection `x_t Wax^T` is one matrix product over all `T·m` rows, hoisted out of the
loop, so the scan body does only the recurrent product, the bias and `f`.

**Lengths.** With `lengths (m,)`, step `t` of example `i` is valid while `t < lengths[i]`
(`valid_t`, a mask). A padded step freezes the state and outputs zero:

    carry_t = valid_t ? f(z_t) : carry_{t-1}        output a_t = valid_t ? f(z_t) : 0

so the final carry is the state after the last valid step (`a0` when the length is 0). With
`lengths=None` every step is valid and the mask is skipped, statically: the seed's case.

**Direction.** `reverse=True` runs the same step with `lax.scan(reverse=True)`: time `T-1`
first. Padded steps `t >= lengths[i]` then come *first*, so the carry stays `a0` through them
and each sequence is read from its last valid step back to its first; outputs stay in the
original time order and padding stays at the end (Flax's `keep_order=True`), with no
gathers.

Matrix products take their operands in the input dtype and accumulate in
`accumulation_dtype` (float32 for bfloat16/float16); states are stored in the input dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def accumulation_dtype(dtype) -> jnp.dtype:
    """float32 for bfloat16/float16, otherwise the dtype itself."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def project_inputs(x: jax.Array, Wax: jax.Array) -> jax.Array:
    """`x_t Wax^T` for every t at once: `(T, m, n_x)` -> `(T, m, n_a)`, accumulation dtype.

    The bias is added inside the scan, where it fuses with `f`; added here it would cost a
    separate pass over the whole `(T, m, n_a)` array.
    """
    return jnp.einsum("tmx,ax->tma", x, Wax, preferred_element_type=accumulation_dtype(x.dtype))


def step_is_valid(t, lengths):
    """`(m, 1)` booleans, `t < lengths`: is step t a real step of each example? None: all are."""
    return None if lengths is None else (t < lengths)[:, None]


def step_indices(T: int, time_offset=0):
    """The global indices `time_offset .. time_offset + T - 1` of a stretch's steps, int32 (as the lengths)."""
    return jnp.arange(T, dtype=jnp.int32) + time_offset


def valid_steps(T: int, lengths, time_offset=0):
    """`(T, m)` booleans for steps `time_offset .. time_offset + T - 1`; None without lengths."""
    if lengths is None:
        return None
    return step_indices(T, time_offset)[:, None] < lengths[None, :]


def cell_step(Waa_T, ba_row, a_prev, projected_input, nonlinearity):
    """One step on `(m, n_a)` rows: `a_t = f(a_{t-1} Waa^T + x_t Wax^T + ba^T)`.

    Takes `Waa_T = Waa^T`, transposed once by the caller outside any loop (XLA's CPU backend
    runs a product with a transpose inside a scan body markedly slower), `ba_row = ba^T`
    `(1, n_a)` and the projected input `x_t Wax^T` in the accumulation dtype. Stores `a_t`
    in `a_prev.dtype`.
    """
    acc = projected_input.dtype
    pre_activation = jnp.dot(a_prev, Waa_T, preferred_element_type=acc) + projected_input + ba_row
    return ACTIVATIONS[nonlinearity](pre_activation).astype(a_prev.dtype)


def masked_step(a_prev, a_next, valid):
    """`(carry, output)` of a step: `(a_next, a_next)`, or for a padded step `(a_prev, 0)`."""
    if valid is None:
        return a_next, a_next
    return jnp.where(valid, a_next, a_prev), jnp.where(valid, a_next, jnp.zeros_like(a_next))


def hidden_states(x, a0, params, lengths, *, reverse, nonlinearity, time_offset=0):
    """Runs the recurrence over `x (T, m, n_x)` from `a0 (m, n_a)`.

    Args:
      x: `(T, m, n_x)`; a0: `(m, n_a)`; params: dict with `Wax, Waa, ba`.
      lengths: `(m,)` ints or None (every step valid).
      reverse: run from step `T-1` down to 0.
      nonlinearity: `"tanh"` or `"relu"`.
      time_offset: the global index of `x`'s first step (for segments of a longer sequence).

    Returns:
      `(states (T, m, n_a), final (m, n_a))`: `a_1..a_T` in time order (zero at padded
      steps) and the carry after the last step processed.
    """
    projected_inputs = project_inputs(x, params["Wax"])
    Waa_T = params["Waa"].T
    ba_row = params["ba"].astype(projected_inputs.dtype).T

    def step(a_prev, inputs):
        projected_input, t = inputs
        a_next = cell_step(Waa_T, ba_row, a_prev, projected_input, nonlinearity)
        return masked_step(a_prev, a_next, step_is_valid(t, lengths))

    times = None if lengths is None else step_indices(x.shape[0], time_offset)
    final, states = jax.lax.scan(step, a0, (projected_inputs, times), reverse=reverse)
    return states, final
