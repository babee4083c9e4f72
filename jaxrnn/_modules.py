"""What the Flax NNX and Equinox modules (`jaxrnn.nnx`, `jaxrnn.equinox`) share: their
options, and one call of `rnn_stack` with their carry conventions. Imports neither framework."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _validate
from jaxrnn._stack import rnn_stack

MODULE_LAYOUTS = ("batch_major", "time_major")


class Options(NamedTuple):
    """A module's static options, as `rnn_stack` takes them."""

    nonlinearity: str
    layout: str
    checkpoint_every: int | None
    gradient: str


def options(fn: str, nonlinearity: str, layout: str, checkpoint_every: int | None, gradient: str) -> Options:
    checked = _validate.layer_options(
        fn,
        reverse=False,
        nonlinearity=nonlinearity,
        checkpoint_every=checkpoint_every,
        gradient=gradient,
        return_final_state=True,
    )
    layout = _validate.choice(fn, "layout", layout, MODULE_LAYOUTS)
    return Options(checked.nonlinearity, layout, checked.checkpoint_every, checked.gradient)


def checked_layers(fn: str, layers: Any) -> list:
    """`layers` as `rnn_stack` takes them (dicts, tuples for bidirectional layers), checked."""
    return [pair if len(pair) == 2 else pair[0] for pair in _validate.layer_list(fn, layers)]


def run(layers: list, inputs: Any, carry: Any, seq_lengths: Any, options: Options):
    """`(outputs, carry)` of the stack on `inputs`, which are cast to the parameters' dtype.

    `inputs`: `(B, T, n_x)` (`(T, B, n_x)` time-major), or one sequence `(T, n_x)`, whose
    `carry` leaves are then `(n_a,)` and `seq_lengths` a scalar. `carry`: None (zeros), for
    one layer its state (a pair for a bidirectional layer), for more a list of them. Outputs:
    the head's probabilities when the top layer has one, else the top layer's states.
    """
    params = layers[0][0] if isinstance(layers[0], tuple) else layers[0]
    dtype = params["Wax"].dtype
    x = jnp.asarray(inputs, dtype)
    single = x.ndim == 2
    batch_axis = 1 if options.layout == "time_major" else 0
    if single:
        x = jnp.expand_dims(x, batch_axis)
        carry = jax.tree.map(lambda state: jnp.asarray(state)[None], carry)
        seq_lengths = None if seq_lengths is None else jnp.reshape(seq_lengths, (1,))
    if carry is not None:
        carry = jax.tree.map(lambda state: jnp.asarray(state, dtype), [carry] if len(layers) == 1 else carry)
    a, y, final_states = rnn_stack(
        x, carry, layers, seq_lengths=seq_lengths, return_final_state=True, **options._asdict()
    )
    outputs = a if y is None else y
    carry = final_states[0] if len(layers) == 1 else final_states
    if single:
        outputs = jnp.squeeze(outputs, batch_axis)
        carry = jax.tree.map(lambda state: state[0], carry)
    return outputs, carry
