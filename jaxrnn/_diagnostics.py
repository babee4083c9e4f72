"""Gradients through time: dL/da_t for every step, from the hand-derived backward.

For a loss L of the outputs of `rnn`, the total gradient with respect to the hidden
state `a_t` has two parts: what reaches `a_t` directly (from the loss on `a_t` and
through the output layer `y_t = softmax(Wya a_t + by)`), and what comes back through the
recurrence from later steps:

    dL/da_t = (outside)_t + Wya^T do_t + Waa^T dz_{t+1},     dz_t = (1 - a_t²) ⊙ dL/da_t

Its norm as a function of t shows how far back in time a loss can move the hidden
states: products of `Waa^T diag(1 - a_t²)` shrink it (vanishing gradients) or grow it
(exploding gradients). Everything here is the hand-derived backward of
`jaxrnn._backward`; no `jax.grad`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _cells, _validate
from jaxrnn._backward import recurrent_backward, softmax_backward
from jaxrnn._forward import accumulation_dtype
from jaxrnn._layout import from_time_major, to_time_major
from jaxrnn._seed import rnn_forward


class GradientsThroughTime(NamedTuple):
    """dL/da_t for every step and its norms, in the accumulation dtype.

    Attributes:
      da: `(n_a, m, T_x)`: the total dL/da_t, including the path through later steps.
      norms: `(T_x,)`: ‖dL/da_t‖ over the whole batch (Frobenius norm of the `(n_a, m)` slice).
      norms_per_example: `(m, T_x)`: ‖dL/da_t‖ of each example (2-norm over `n_a`).
    """

    da: jax.Array
    norms: jax.Array
    norms_per_example: jax.Array


def gradients_through_time(x, a0, parameters, da, dy) -> GradientsThroughTime:
    """The total dL/da_t at every step, and its norms, for a loss L of `rnn`'s outputs.

    The loss enters through its gradients with respect to the two outputs of
    `jaxrnn.rnn(x, a0, parameters) -> (a, y)`, the same cotangents the `custom_vjp` rule
    receives. For example, for a cross-entropy on the last step only,
    `L = -Σ_i log y[c_i, i, T]`, pass `da = jnp.zeros_like(a)` and `dy = -onehot(c) / y` at step T, zero
    elsewhere. Wrap the call in `jax.jit` to compile it.

    Args:
      x: inputs `(n_x, m, T_x)`.
      a0: initial hidden state `(n_a, m)`.
      parameters: the parameter dict (see `jaxrnn.rnn`).
      da: `(n_a, m, T_x)`: dL/da_t from outside the recurrence (the cotangent of `a`).
      dy: `(n_y, m, T_x)`: dL/dy_t (the cotangent of `y`).

    Returns:
      `GradientsThroughTime(da (n_a, m, T_x), norms (T_x,), norms_per_example (m, T_x))`,
      in the accumulation dtype (float32 for bfloat16/float16 inputs).
    """
    fn = "gradients_through_time"
    x, a0, params, sizes = _validate.sequence_inputs(fn, x, a0, parameters)
    da = _validate.matching_array(fn, "da", da, (sizes.n_a, sizes.m, sizes.T_x), x.dtype, "the output a (n_a, m, T_x)")
    dy = _validate.matching_array(fn, "dy", dy, (sizes.n_y, sizes.m, sizes.T_x), x.dtype, "the output y (n_y, m, T_x)")
    acc = accumulation_dtype(x.dtype)
    _, y, caches = rnn_forward(x, a0, params)
    states = caches.hidden_states  # a_1..a_T in the internal layout (T, m, n_a)
    time_major = lambda v: to_time_major(v, "seed")
    _, da_through_output = softmax_backward(time_major(dy), time_major(y), states, params)
    da_outside = time_major(da).astype(acc) + da_through_output  # (outside)_t + Wya^T do_t
    no_gradient_after_the_end = jnp.zeros(states.shape[1:], acc)
    dz, _, _ = recurrent_backward(
        _cells.get("vanilla", "tanh"),
        da_outside,
        (no_gradient_after_the_end,),
        (states,),
        (),
        None,
        params["Waa"],
        None,
        reverse=False,
    )
    dz, da_outside = from_time_major(dz, "seed"), from_time_major(da_outside, "seed")  # (n_a, m, T)
    # Waa^T dz_{t+1} for t = 1..T-1, one product over all steps; nothing comes after a_T.
    from_later_steps = jnp.einsum("ba,bmt->amt", params["Waa"].astype(acc), dz[:, :, 1:])
    from_later_steps = jnp.concatenate([from_later_steps, jnp.zeros((*a0.shape, 1), acc)], axis=2)
    da_total = da_outside + from_later_steps  # dL/da_t = (outside)_t + Wya^T do_t + Waa^T dz_{t+1}
    return GradientsThroughTime(
        da=da_total,
        norms=jnp.sqrt(jnp.sum(da_total**2, axis=(0, 1))),
        norms_per_example=jnp.sqrt(jnp.sum(da_total**2, axis=0)),
    )
