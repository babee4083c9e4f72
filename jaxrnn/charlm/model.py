"""The character model's parameters and carried state, for each cell (`--cell vanilla | gru | lstm`).

The parameters are one flat dict: the layer's (`Wax (G·n_a, V)`, `Waa (G·n_a, n_a)`,
`ba (G·n_a, 1)`, the GRU's `bhn (n_a, 1)`), the head's (`Wya (V, n_a)`, `by (V, 1)`) and,
when the initial state is learned (`--learn-initial-state`), `a0 (n_a,)` — for an LSTM the
pair `a0 (n_a,)`, `c0 (n_a,)`: its initial hidden state and cell state.

The state carried from one chunk to the next is `(m, n_a)` for the vanilla cell and the GRU,
and a `jaxrnn.LSTMState(h, c)` of two `(m, n_a)` arrays for an LSTM; the layer takes and
returns it in that form, and every function here keeps it so.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import LSTMState

INITIAL_STATE = {"vanilla": ("a0",), "gru": ("a0",), "lstm": ("a0", "c0")}  # the learned initial state's keys


def layer_parameters(params: dict) -> dict:
    """The layer's and the head's parameters: `params` without the learned initial state."""
    return {name: value for name, value in params.items() if name not in ("a0", "c0")}


def parameter_names(cell: str, learn_initial_state: bool) -> set[str]:
    """Every key of the parameter dict of a model of `cell`."""
    recurrent = {"Wax", "Waa", "ba", "bhn"} if cell == "gru" else {"Wax", "Waa", "ba"}
    return recurrent | {"Wya", "by"} | (set(INITIAL_STATE[cell]) if learn_initial_state else set())


def zero_state(cell: str, rows: int, n_a: int, dtype=np.float32):
    """The carried state of `rows` rows, all zeros (host arrays): `(rows, n_a)`, or an `LSTMState` of two."""
    if cell == "lstm":
        return LSTMState(np.zeros((rows, n_a), dtype), np.zeros((rows, n_a), dtype))
    return np.zeros((rows, n_a), dtype)


def initial_hidden(params: dict, rows: int, cell: str):
    """The initial state of `rows` rows: the learned one on every row (`a0`, and `c0` for an
    LSTM), or zeros; `(rows, n_a)`, or an `LSTMState` of two."""
    n_a = params["Waa"].shape[1]
    dtype = jnp.asarray(params["Waa"]).dtype
    parts = [
        jnp.broadcast_to(jnp.asarray(params[name])[None], (rows, n_a))
        if name in params
        else jnp.zeros((rows, n_a), dtype)
        for name in INITIAL_STATE[cell]
    ]
    return LSTMState(*parts) if cell == "lstm" else parts[0]


def hidden_part(state) -> jax.Array:
    """The hidden state `h` (what the head reads) of a carried state."""
    return state.h if isinstance(state, LSTMState) else state
