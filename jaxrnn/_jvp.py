"""Forward mode by hand: the layer's JVP, tangents carried forward through time, for any cell.

Differentiating the forward pass (`_forward.py`, `_heads.py`) along a direction — a tangent
`ẋ, ȧ0, Ẇax, Ẇaa, ḃa, …, Ẇya, ḃy` for every input — gives, by the product and chain rules,
for the pre-activations `p_t = Wax x_t + ba` and `q_t = Waa h_{t-1}` of every gate,

    ṗ_t = Ẇax x_t + Wax ẋ_t + ḃa                  (the drive, hoisted out of the loop)
    q̇_t = Ẇaa h_{t-1} + Waa ḣ_{t-1}                (next to the forward's Waa h_{t-1})
    ċarry_t = the cell's tangent step (`jaxrnn._cells`); vanilla: ȧ_t = f'(z_t) ⊙ (q̇_t + ṗ_t)
    ȯ_t = Ẇya h_t + Wya ḣ_t + ḃy        o_t = Wya h_t + by
    ẏ_t = y_t ⊙ (ȯ_t − Σ_k y_k ȯ_k)     softmax's Jacobian diag(y_t) − y_t y_t^T

Two of the terms depend on the step before, `Waa ḣ_{t-1}` and `Ẇaa h_{t-1}`, so one scan
carries the carry and its tangent side by side and computes them next to the forward's
`Waa h_{t-1}`. The rest is hoisted: the drive before the scan, its products each over all
`T·m` rows at once (as the forward hoists `Wax x_t`), and the output tangents after it.
(`Ẇaa h_{t-1}` too could be one product over all rows, in a second scan after the forward
one; on a 2-core CPU that measured slower, with two more `(T, m, n_a)` arrays.) It is the
backward pass mirrored: there, a reverse scan carries `dL/dcarry_t` and the weight gradients
are sums after it; here, a forward scan carries `ċarry_t` and the weight tangents enter as a
drive computed before it.

**Lengths.** With `v_t` ∈ {0, 1} (valid or padded, fixed by the integer lengths, so it has
no tangent) a step is `carry_t = v_t cell(carry_{t-1}) + (1 − v_t) carry_{t-1}` with output
`h_t = v_t cell(carry_{t-1})[h]`; differentiating,

    ċarry_t = v_t ċell_t + (1 − v_t) ċarry_{t-1}      a padded step freezes the tangent
    output tangent = v_t ḣ_t                           and outputs zero

and `ẏ_t = 0` there, since `y_t = 0`. **Direction.** `reverse=True` runs the same scan from
the last step down, as the forward does; `h_{t-1}` then means the carry each step starts from.

Tangents are carried in the accumulation dtype (float32 for bfloat16/float16) and returned
in the dtype of their outputs. No `jax.jvp`, `jax.linearize` or other transformation is used.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn import _batch, _cells, _layout, _validate
from jaxrnn._forward import (
    accumulation_dtype,
    bias_rows,
    cell_forward,
    masked_step,
    project_inputs,
    step_indices,
    step_is_valid,
    valid_steps,
)
from jaxrnn._heads import predictions
from jaxrnn._rnn import poisoned


def rnn_jvp(
    primals: tuple,
    tangents: tuple,
    *,
    seq_lengths: jax.Array | None = None,
    reverse: bool = False,
    nonlinearity: str = "tanh",
    layout: str = "batch_major",
    return_final_state: bool = False,
    cell: str = "vanilla",
):
    """The layer's outputs and their derivative along `tangents`, by the hand-derived forward mode.

    The same call and result as `jax.jvp(functools.partial(jaxrnn.rnn_autodiff, **options),
    primals, tangents)`, computed by the formulas of `jaxrnn._jvp` (no `jax.jvp` inside).
    Composes with `jax.jit` and `jax.vmap`: mapping it over a basis of tangents gives
    Jacobians column by column, as `jax.jacfwd` does.

    Args:
      primals: `(x, a0, parameters)` as for `rnn`: `x (B, T, n_x)` (the default layout; any
        number of batch dimensions), `(T, B, n_x)` or `(n_x, m, T_x)` (seed layout); `a0
        (B, n_a)` / `(n_a, m)` (an LSTM's a pair `(h0, c0)`), or None for zeros; `parameters`
        of `cell`, optionally with the softmax head `Wya, by`.
      tangents: `(ẋ, ȧ0, parameter tangents)` with the structure, shapes and dtypes of
        `primals`: None for `ȧ0` exactly when `a0` is None, a dict with the same keys.
      seq_lengths, reverse, nonlinearity, layout, return_final_state, cell: as in `rnn`. A
        padded step freezes the state's tangent and outputs a zero tangent.

    Returns:
      `((a, y), (ȧ, ẏ))`, or `((a, y, a_final), (ȧ, ẏ, ȧ_final))` with
      `return_final_state=True`; shapes and layouts as in `rnn` (`y` and `ẏ` None without
      a head), tangents in the dtype of `x`.
    """
    fn = "rnn_jvp"
    (x, a0, parameters), tangents = _validate.jvp_arguments(fn, primals, tangents)
    layout = _validate.choice(fn, "layout", layout, _layout.LAYOUTS)
    x, batch = _batch.of(x, layout)
    a0 = _batch.per_example(fn, "a0", a0, batch, trailing=1)
    seq_lengths = _batch.per_example(fn, "seq_lengths", seq_lengths, batch, trailing=0)
    x_dot, a0_dot, params_dot = tangents
    x_dot = _batch.sequence_like(fn, "tangents[0]", x_dot, batch)
    tangents = (x_dot, _batch.per_example(fn, "tangents[1]", a0_dot, batch, trailing=1), params_dot)
    options = _validate.layer_options(
        fn,
        reverse=reverse,
        nonlinearity=nonlinearity,
        checkpoint_every=None,
        gradient="autodiff",
        return_final_state=return_final_state,
        cell=cell,
    )
    checked = _validate.layer_inputs(fn, x, a0, parameters, seq_lengths, layout, head="optional", cell=options.cell)
    x_dot, a0_dot, params_dot = _validate.jvp_tangents(fn, tangents, checked, a0 is None, layout)
    lengths, poison = _validate.guard_lengths(checked.lengths, checked.sizes.T_x)
    # traced lengths outside [0, T]: that example's outputs are NaN, as in `rnn`
    carry0, params = poisoned(checked.carry0, poison), checked.params
    x, x_dot = _layout.to_time_major(checked.x, layout), _layout.to_time_major(x_dot, layout)

    (states, final), (states_dot, final_dot) = states_and_tangents(
        _cells.get(options.cell, options.nonlinearity),
        x,
        carry0,
        params,
        lengths,
        x_dot,
        a0_dot,
        params_dot,
        reverse=options.reverse,
    )
    y = y_dot = None
    if "Wya" in params:
        y = predictions(states, params, valid_steps(states.shape[0], lengths))
        y_dot = prediction_tangents(states, states_dot, y, params, params_dot)

    dtype = checked.x.dtype
    sequence = lambda v: None if v is None else _layout.from_time_major(v.astype(dtype), layout)
    state = lambda carry: _validate.public_state(tuple(v.astype(dtype) for v in carry), layout)
    outputs = (sequence(states), sequence(y))
    output_tangents = (sequence(states_dot), sequence(y_dot))
    restore = lambda values: tuple(_batch.restore_sequence(v, batch) for v in values)
    outputs, output_tangents = restore(outputs), restore(output_tangents)
    if options.return_final_state:
        final, final_dot = (_batch.restore_states(state(v), batch) for v in (final, final_dot))
        return (*outputs, final), (*output_tangents, final_dot)
    return outputs, output_tangents


def _rows_times(v: jax.Array, W: jax.Array, acc) -> jax.Array:
    """`v_t W^T` for every step at once, `(T, m, k)` -> `(T, m, n)`: one product over all `T·m` rows."""
    return jnp.einsum("tmk,nk->tmn", v, W.astype(v.dtype), preferred_element_type=acc)


def states_and_tangents(cell, x, carry0, params, lengths, x_dot, carry0_dot, params_dot, *, reverse):
    """The forward scan carrying each carry and its tangent side by side.

    Args:
      cell: a `jaxrnn._cells.Cell`.
      x, x_dot: `(T, m, n_x)`; carry0, carry0_dot: carries (tuples of `(m, n_a)`); params,
        params_dot: dicts with at least the cell's parameters; lengths, reverse: as in
        `_forward.hidden_states`.

    Returns:
      `((states, final), (states_dot, final_dot))`: the outputs `h_1..h_T` `(T, m, n_a)` (zero
      at padded steps) in the dtype of `x`, as `hidden_states` computes them, and the final
      carry; their tangents likewise, in the accumulation dtype.
    """
    acc = accumulation_dtype(x.dtype)
    projected_inputs = project_inputs(x, params["Wax"])  # Wax x_t
    drive = (
        _rows_times(x, params_dot["Wax"], acc)  # Ẇax x_t
        + _rows_times(x_dot, params["Wax"], acc)  # Wax ẋ_t
        + params_dot["ba"].astype(acc).T[None]  # ḃa
    )
    Waa_T, Waa_dot_T = params["Waa"].T, params_dot["Waa"].T  # transposed once, outside the loop
    Waa_T_acc = Waa_T.astype(acc)
    biases, biases_dot = bias_rows(cell, params, acc), bias_rows(cell, params_dot, acc)
    to_acc = lambda parts: tuple(p.astype(acc) for p in parts)

    def step(carry, inputs):
        (previous, previous_dot), (projected_input, drive_t, t) = carry, inputs
        new, residuals = cell_forward(cell, previous, projected_input, Waa_T, biases)
        hidden_dot = (
            previous_dot[0] @ Waa_T_acc  # Waa ḣ_{t-1}
            + jnp.dot(previous[0], Waa_dot_T, preferred_element_type=acc)  # Ẇaa h_{t-1}
        )
        new_dot = cell.tangent_step(
            to_acc(previous), previous_dot, to_acc(new), residuals, drive_t, hidden_dot, biases_dot
        )
        valid = step_is_valid(t, lengths)
        (carry_out, outputs), (carry_dot_out, outputs_dot) = (
            masked_step(previous, new, valid),
            masked_step(previous_dot, new_dot, valid),
        )
        return (carry_out, carry_dot_out), (outputs[0], outputs_dot[0])

    times = None if lengths is None else step_indices(x.shape[0])
    carry = (carry0, to_acc(carry0_dot))
    (final, final_dot), (states, states_dot) = jax.lax.scan(
        step, carry, (projected_inputs, drive, times), reverse=reverse
    )
    return (states, final), (states_dot, final_dot)


def prediction_tangents(states, states_dot, y, params, params_dot):
    """`ẏ_t` for every step, `(T, m, n_y)` in the dtype of `states_dot`; zero where `y_t` is (padding)."""
    acc = states_dot.dtype
    o_dot = (
        _rows_times(states, params_dot["Wya"], acc)  # Ẇya a_t
        + _rows_times(states_dot, params["Wya"], acc)  # Wya ȧ_t
        + params_dot["by"].astype(acc).T[None]  # ḃy
    )
    y = y.astype(acc)
    return y * (o_dot - jnp.sum(y * o_dot, axis=-1, keepdims=True))  # ẏ_t = y_t ⊙ (ȯ_t − Σ_k y_k ȯ_k)
