"""What the Flax NNX and Equinox modules (`jaxrnn.nnx`, `jaxrnn.equinox`) share: their
options, one call of the layer or the stack, their carry conventions, and Flax's reversed
output order. Imports neither framework.

A module's carry is jaxrnn's state in the framework's convention: an array `(*batch, n_a)` for
the vanilla cell and the GRU, a pair for an LSTM — `(c, h)` in Flax (`order="ch"`), `(h, c)` in
Equinox (`order="hc"`), `LSTMState(h, c)` inside jaxrnn; a pair `(forward, backward)` of them
for a bidirectional layer, a list of those, bottom first, for a stack of more than one layer.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _validate
from jaxrnn._cells import LSTMState
from jaxrnn._rnn import rnn
from jaxrnn._stack import rnn_stack

MODULE_LAYOUTS = ("batch_major", "time_major")


class Options(NamedTuple):
    """A module's static options, as `rnn_stack` takes them."""

    cell: str
    nonlinearity: str
    layout: str
    checkpoint_every: int | None
    gradient: str


def options(fn: str, cell: str, nonlinearity: str, layout: str, checkpoint_every: int | None, gradient: str) -> Options:
    checked = _validate.layer_options(
        fn,
        nonlinearity=nonlinearity,
        checkpoint_every=checkpoint_every,
        gradient=gradient,
        cell=cell,
    )
    layout = _validate.choice(fn, "layout", layout, MODULE_LAYOUTS)
    return Options(checked.cell, checked.nonlinearity, layout, checked.checkpoint_every, checked.gradient)


def checked_layers(fn: str, layers: Any, cell: str) -> list:
    """`layers` as `rnn_stack` takes them (dicts, tuples for bidirectional layers), checked."""
    return [pair if len(pair) == 2 else pair[0] for pair in _validate.layer_list(fn, layers, cell=cell)]


def run(fn: str, layers: list, inputs: Any, states: Any, seq_lengths: Any, options: Options, reverse: bool = False):
    """`(outputs, final states)` of the stack on `inputs`, which are cast to the parameters' dtype.

    `inputs`: `(*batch, T, n_x)` (`(T, *batch, n_x)` time-major), one sequence `(T, n_x)`
    included. `states`: None (zeros), or jaxrnn's states (`to_states`), as the result is.
    Outputs: the head's probabilities when the top layer has one, else the top layer's states.
    `reverse` reads each sequence from its last valid step back (one unidirectional layer
    only), outputs in the original order.
    """
    bottom = layers[0][0] if isinstance(layers[0], tuple) else layers[0]
    dtype = bottom["Wax"].dtype
    x = jnp.asarray(inputs, dtype)
    if states is not None:
        states = jax.tree.map(lambda state: jnp.asarray(state, dtype), states)
    if reverse:
        if len(layers) != 1 or isinstance(layers[0], tuple):
            raise ValueError(
                f"{fn}: reverse=True runs one unidirectional layer backwards; this module has {len(layers)} layer(s)"
                f"{', bidirectional' if isinstance(layers[0], tuple) else ''}: use bidirectional=True (or "
                f"jaxrnn.nnx.Bidirectional) for both directions"
            )
        a, y, final = rnn(
            x, states, layers[0], seq_lengths=seq_lengths, reverse=True, return_final_state=True, **options._asdict()
        )
    else:
        a0 = None if states is None else ([states] if len(layers) == 1 else states)
        a, y, finals = rnn_stack(x, a0, layers, seq_lengths=seq_lengths, return_final_state=True, **options._asdict())
        final = finals[0] if len(layers) == 1 else finals
    return (a if y is None else y), final


def flip_sequences(outputs: jax.Array, seq_lengths: Any, layout: str) -> jax.Array:
    """Flax's `flip_sequences`: each sequence's first `seq_lengths` steps in reverse order, in
    place, and the steps after them reversed among themselves (all steps without lengths).

    `outputs`: `(*batch, T, n)` (`(T, *batch, n)` time-major); `seq_lengths`: `(*batch,)` or None.
    Applied to `reverse=True` outputs (original order), it gives Flax's `keep_order=False` order.
    """
    time_axis = 0 if layout == "time_major" else outputs.ndim - 2
    if seq_lengths is None:
        return jnp.flip(outputs, time_axis)
    T = outputs.shape[time_axis]
    lengths = jnp.asarray(seq_lengths)
    steps = jnp.arange(T - 1, -1, -1, dtype=lengths.dtype)  # T−1−t
    if layout == "time_major":
        index = (jnp.reshape(steps, (T,) + (1,) * lengths.ndim) + lengths[None]) % T  # (T, *batch)
    else:
        index = (jnp.reshape(steps, (1,) * lengths.ndim + (T,)) + lengths[..., None]) % T  # (*batch, T)
    return jnp.take_along_axis(outputs, index[..., None], axis=time_axis)


def new_states(layers: list, cell: str, draw):
    """jaxrnn's states for `layers`, each array `draw(n_a)` (an LSTM's `c` drawn before `h`, as Flax does)."""

    def state(params, _):
        n_a = params["Waa"].shape[1]
        if cell != "lstm":
            return draw(n_a)
        c = draw(n_a)
        return LSTMState(draw(n_a), c)

    return _per_layer(layers[0] if len(layers) == 1 else layers, layers, state)


def to_states(fn: str, name: str, carry: Any, layers: list, cell: str, order: str):
    """A module's `carry` (see the module docstring) as jaxrnn's states; None stays None."""
    if carry is None or cell != "lstm":
        return carry
    first, second = ("c", "h") if order == "ch" else ("h", "c")

    def state(value, where):
        if not (isinstance(value, (tuple, list)) and len(value) == 2):
            raise TypeError(
                f"{fn}: {where} must be an LSTM carry: a pair ({first}, {second}) of arrays (*batch, hidden); "
                f"received {type(value).__name__}"
            )
        parts = dict(zip((first, second), value))
        return LSTMState(parts["h"], parts["c"])

    return _per_layer(carry, layers, state, fn, name)


def from_states(states: Any, layers: list, cell: str, order: str):
    """jaxrnn's final states as a module's carry (`order` `"ch"`: Flax's, `"hc"`: Equinox's)."""
    if cell != "lstm":
        return states
    state = (lambda s, _: (s.c, s.h)) if order == "ch" else (lambda s, _: (s.h, s.c))
    return _per_layer(states, layers, state)


def _per_layer(carry: Any, layers: list, state, fn: str = "", name: str = ""):
    """`state(value, where)` applied to every state in `carry`, which follows `layers`."""
    if len(layers) == 1:
        return _layer_states(fn, name, carry, layers[0], state)
    if not (isinstance(carry, (list, tuple)) and len(carry) == len(layers)):
        raise TypeError(
            f"{fn}: {name} must be a list of {len(layers)} carries, one per layer (bottom first); "
            f"received {type(carry).__name__}"
        )
    return [_layer_states(fn, f"{name}[{l}]", c, layer, state) for l, (c, layer) in enumerate(zip(carry, layers))]


def _layer_states(fn: str, name: str, carry: Any, layer: Any, state):
    if not isinstance(layer, tuple):
        return state(carry, name)
    if not (isinstance(carry, (list, tuple)) and len(carry) == 2):
        raise TypeError(
            f"{fn}: {name} must be a pair (forward, backward) of carries for a bidirectional layer; "
            f"received {type(carry).__name__}"
        )
    return tuple(state(c, f"{name}[{d}]") for d, c in enumerate(carry))
