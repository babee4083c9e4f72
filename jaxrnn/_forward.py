"""The engine's forward pass, in the internal time-major layout `(T, m, n)`, for any cell.

    carry_t = cell(carry_{t-1}, x_t)          vanilla: a_t = f(Waa a_{t-1} + Wax x_t + ba)

written on row vectors. The input products `x_t Wax^T` of every step and gate are one matrix
product over all `T·m` rows, hoisted out of the loop; each scan step does the one recurrent
product `h_{t-1} Waa^T` for all gates, and the cell's elementwise work (`jaxrnn._cells`).

**Lengths.** With `lengths (m,)`, step `t` of example `i` is valid while `t < lengths[i]`
(`valid_t`, a mask). A padded step freezes the carry and outputs zero:

    carry_t = valid_t ? cell(carry_{t-1}, x_t) : carry_{t-1}      output_t = valid_t ? carry_t : 0

so the final carry is the carry after the last valid step (`carry_0` when the length is 0).
With `lengths=None` every step is valid and the mask is skipped, statically: the seed's case.

**Direction.** `reverse=True` runs the same step with `lax.scan(reverse=True)`: time `T-1`
first. Padded steps `t >= lengths[i]` then come *first*, so the carry stays `carry_0` through
them and each sequence is read from its last valid step back to its first; outputs stay in the
original time order and padding stays at the end (Flax's `keep_order=True`), with no gathers.

Matrix products take their operands in the input dtype and accumulate in
`accumulation_dtype` (float32 for bfloat16/float16); carries are stored in the input dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def accumulation_dtype(dtype) -> jnp.dtype:
    """float32 for bfloat16/float16, otherwise the dtype itself."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def project_inputs(x: jax.Array, Wax: jax.Array) -> jax.Array:
    """`x_t Wax^T` for every t at once: `(T, m, n_x)` -> `(T, m, G·n_a)`, accumulation dtype.

    The bias is added inside the scan, where it fuses with the cell's elementwise work; added
    here it would cost a separate pass over the whole `(T, m, G·n_a)` array.
    """
    return jnp.einsum("tmx,ax->tma", x, Wax, preferred_element_type=accumulation_dtype(x.dtype))


def bias_rows(cell, params, dtype) -> dict:
    """The cell's biases as rows `(1, k)` in `dtype` (`ba` and any `extra_biases`), for the step."""
    return {k: params[k].astype(dtype).T for k in ("ba", *cell.extra_biases)}


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


def cell_forward(cell, carry, projected, Waa_T, biases):
    """One step of `cell` from `carry` (a tuple of `(m, n_a)` rows): `(carry', residuals)`.

    Does the step's one product, `hidden = h_{t-1} Waa^T` for all gates, taking
    `Waa_T = Waa^T` transposed once by the caller outside any loop (XLA's CPU backend runs a
    product with a transpose inside a scan body markedly slower), the projected input
    `x_t Wax^T` and the bias rows (`bias_rows`) in the accumulation dtype.
    """
    hidden = jnp.dot(carry[0], Waa_T, preferred_element_type=projected.dtype)  # h_{t-1} Waa^T
    return cell.step(carry, projected, hidden, biases)


def masked_step(previous, new, valid):
    """`(carry, output)` of a step, each part by part: `(new, new)`, or for a padded step `(previous, 0)`."""
    if valid is None:
        return new, new
    carry = tuple(jnp.where(valid, n, p) for p, n in zip(previous, new))
    return carry, tuple(jnp.where(valid, n, jnp.zeros_like(n)) for n in new)


def hidden_states(cell, x, carry0, params, lengths, *, reverse, time_offset=0):
    """Runs the recurrence of `cell` over `x (T, m, n_x)` from `carry0`.

    Args:
      cell: a `jaxrnn._cells.Cell`.
      x: `(T, m, n_x)`; carry0: a tuple of `(m, n_a)` rows, `h` first.
      params: dict with `Wax, Waa, ba` and the cell's extra biases.
      lengths: `(m,)` ints or None (every step valid).
      reverse: run from step `T-1` down to 0.
      time_offset: the global index of `x`'s first step (for segments of a longer sequence).

    Returns:
      `(carries, residuals, final)`: `carries` a tuple like `carry0` of `(T, m, n_a)`
      sequences in time order, zero at padded steps (`carries[0]` holds the outputs
      `h_1..h_T`); `residuals` the cell's per-step residuals `(T, m, n_a)` in the input dtype
      (any value at padded steps); `final` the carry after the last step processed.
    """
    projected_inputs = project_inputs(x, params["Wax"])
    Waa_T = params["Waa"].T
    biases = bias_rows(cell, params, projected_inputs.dtype)
    dtype = x.dtype

    def step(carry, inputs):
        projected_input, t = inputs
        new, residuals = cell_forward(cell, carry, projected_input, Waa_T, biases)
        carry, outputs = masked_step(carry, new, step_is_valid(t, lengths))
        return carry, (outputs, tuple(r.astype(dtype) for r in residuals))

    times = None if lengths is None else step_indices(x.shape[0], time_offset)
    final, (carries, residuals) = jax.lax.scan(step, carry0, (projected_inputs, times), reverse=reverse)
    return carries, residuals, final
