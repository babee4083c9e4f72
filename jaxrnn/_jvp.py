"""Forward mode by hand: the layer's JVP, tangents carried forward through time.

Differentiating the forward pass (`_forward.py`, `_heads.py`) along a direction — a tangent
`ẋ, ȧ0, Ẇax, Ẇaa, ḃa, Ẇya, ḃy` for every input — gives, by the product and chain rules,

    ż_t = Ẇaa a_{t-1} + Waa ȧ_{t-1} + Ẇax x_t + Wax ẋ_t + ḃa      z_t = Waa a_{t-1} + Wax x_t + ba
    ȧ_t = f'(z_t) ⊙ ż_t                  f'(z_t) = 1 − a_t² (tanh), 1[a_t > 0] (relu)
    ȯ_t = Ẇya a_t + Wya ȧ_t + ḃy        o_t = Wya a_t + by
    ẏ_t = y_t ⊙ (ȯ_t − Σ_k y_k ȯ_k)     softmax's Jacobian diag(y_t) − y_t y_t^T

Two of the terms depend on the step before, `Waa ȧ_{t-1}` and `Ẇaa a_{t-1}`, so one scan
carries the state and its tangent side by side and computes them next to the forward's
`Waa a_{t-1}`. The rest is hoisted: the drive `s_t = Ẇax x_t + Wax ẋ_t + ḃa` before the scan,
its products each over all `T·m` rows at once (as the forward hoists `Wax x_t`), and the
output tangents after it. (`Ẇaa a_{t-1}` too could be one product over all rows, in a second
scan after the forward one; on a 2-core CPU that measured slower, with two more `(T, m, n_a)`
arrays.) It is the backward pass mirrored: there, a reverse scan carries `dL/da_t` and the
weight gradients are sums after it; here, a forward scan carries `ȧ_t` and the weight
tangents enter as a drive computed before it.

**Lengths.** With `v_t` ∈ {0, 1} (valid or padded, fixed by the integer lengths, so it has
no tangent) a step is `carry_t = v_t f(z_t) + (1 − v_t) carry_{t-1}` with output
`a_t = v_t f(z_t)`; differentiating,

    ċarry_t = v_t ȧ_t + (1 − v_t) ċarry_{t-1}      a padded step freezes the tangent
    output tangent = v_t ȧ_t                       and outputs zero

and `ẏ_t = 0` there, since `y_t = 0`. **Direction.** `reverse=True` runs the same scan from
the last step down, as the forward does; `a_{t-1}` then means the carry each step starts from.

Tangents are carried in the accumulation dtype (float32 for bfloat16/float16) and returned
in the dtype of their outputs. No `jax.jvp`, `jax.linearize` or other transformation is used.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn import _layout, _validate
from jaxrnn._backward import DERIVATIVES
from jaxrnn._forward import (
    accumulation_dtype,
    cell_step,
    masked_step,
    project_inputs,
    step_indices,
    step_is_valid,
    valid_steps,
)
from jaxrnn._heads import predictions


def rnn_jvp(
    primals: tuple,
    tangents: tuple,
    *,
    seq_lengths: jax.Array | None = None,
    reverse: bool = False,
    nonlinearity: str = "tanh",
    layout: str = "seed",
    return_final_state: bool = False,
):
    """The layer's outputs and their derivative along `tangents`, by the hand-derived forward mode.

    The same call and result as `jax.jvp(functools.partial(jaxrnn.rnn_autodiff, **options),
    primals, tangents)`, computed by the formulas of `jaxrnn._jvp` (no `jax.jvp` inside).
    Composes with `jax.jit` and `jax.vmap`: mapping it over a basis of tangents gives
    Jacobians column by column, as `jax.jacfwd` does.

    Args:
      primals: `(x, a0, parameters)` as for `rnn`: `x (n_x, m, T_x)` (seed layout),
        `(B, T, n_x)` or `(T, B, n_x)`; `a0 (n_a, m)` / `(B, n_a)`, or None for zeros;
        `parameters` with `Wax, Waa, ba` and optionally the softmax head `Wya, by`.
      tangents: `(ẋ, ȧ0, parameter tangents)` with the structure, shapes and dtypes of
        `primals`: None for `ȧ0` exactly when `a0` is None, a dict with the same keys.
      seq_lengths, reverse, nonlinearity, layout, return_final_state: as in `rnn`. A padded
        step freezes the state's tangent and outputs a zero tangent.

    Returns:
      `((a, y), (ȧ, ẏ))`, or `((a, y, a_final), (ȧ, ẏ, ȧ_final))` with
      `return_final_state=True`; shapes and layouts as in `rnn` (`y` and `ẏ` None without
      a head), tangents in the dtype of `x`.
    """
    fn = "rnn_jvp"
    (x, a0, parameters), tangents = _validate.jvp_arguments(fn, primals, tangents)
    reverse, nonlinearity, _, _, return_final_state = _validate.layer_options(
        fn,
        reverse=reverse,
        nonlinearity=nonlinearity,
        checkpoint_every=None,
        gradient="autodiff",
        return_final_state=return_final_state,
    )
    checked = _validate.layer_inputs(fn, x, a0, parameters, seq_lengths, layout, head="optional")
    x_dot, a0_dot, params_dot = _validate.jvp_tangents(fn, tangents, checked, a0 is None, layout)
    lengths, poison = _validate.guard_lengths(checked.lengths, checked.sizes.T_x)
    a0, params = checked.a0, checked.params
    if poison is not None:  # traced lengths outside [0, T]: that example's outputs are NaN, as in `rnn`
        a0 = a0 + poison.astype(a0.dtype)
    x, x_dot = _layout.to_time_major(checked.x, layout), _layout.to_time_major(x_dot, layout)

    (states, final), (states_dot, final_dot) = states_and_tangents(
        x, a0, params, lengths, x_dot, a0_dot, params_dot, reverse=reverse, nonlinearity=nonlinearity
    )
    y = y_dot = None
    if "Wya" in params:
        y = predictions(states, params, valid_steps(states.shape[0], lengths))
        y_dot = prediction_tangents(states, states_dot, y, params, params_dot)

    dtype = checked.x.dtype
    sequence = lambda v: None if v is None else _layout.from_time_major(v.astype(dtype), layout)
    state = lambda v: _layout.state_from_rows(v.astype(dtype), layout)
    outputs = (sequence(states), sequence(y))
    output_tangents = (sequence(states_dot), sequence(y_dot))
    if return_final_state:
        return (*outputs, state(final)), (*output_tangents, state(final_dot))
    return outputs, output_tangents


def _rows_times(v: jax.Array, W: jax.Array, acc) -> jax.Array:
    """`v_t W^T` for every step at once, `(T, m, k)` -> `(T, m, n)`: one product over all `T·m` rows."""
    return jnp.einsum("tmk,nk->tmn", v, W.astype(v.dtype), preferred_element_type=acc)


def states_and_tangents(x, a0, params, lengths, x_dot, a0_dot, params_dot, *, reverse, nonlinearity):
    """The forward scan carrying each state and its tangent side by side.

    Args:
      x, x_dot: `(T, m, n_x)`; a0, a0_dot: `(m, n_a)`; params, params_dot: dicts with at
        least `Wax, Waa, ba`; lengths, reverse, nonlinearity: as in `_forward.hidden_states`.

    Returns:
      `((states, final), (states_dot, final_dot))`: `a_1..a_T` `(T, m, n_a)` (zero at padded
      steps) in the dtype of `x`, as `hidden_states` computes them, and the final carry
      `(m, n_a)`; their tangents likewise, in the accumulation dtype.
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
    ba_row = params["ba"].astype(acc).T
    derivative = DERIVATIVES[nonlinearity]

    def step(carry, inputs):
        (a_prev, a_dot_prev), (projected_input, drive_t, t) = carry, inputs
        a_t = cell_step(Waa_T, ba_row, a_prev, projected_input, nonlinearity)  # a_t = f(z_t)
        z_dot = (
            a_dot_prev @ Waa_T_acc  # Waa ȧ_{t-1}
            + jnp.dot(a_prev, Waa_dot_T, preferred_element_type=acc)  # Ẇaa a_{t-1}
            + drive_t  # Ẇax x_t + Wax ẋ_t + ḃa
        )
        a_dot = derivative(a_t.astype(acc)) * z_dot  # ȧ_t = f'(z_t) ⊙ ż_t
        valid = step_is_valid(t, lengths)
        (a_carry, a_out), (a_dot_carry, a_dot_out) = (
            masked_step(a_prev, a_t, valid),
            masked_step(a_dot_prev, a_dot, valid),
        )
        return (a_carry, a_dot_carry), (a_out, a_dot_out)

    times = None if lengths is None else step_indices(x.shape[0])
    carry = (a0, a0_dot.astype(acc))
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
