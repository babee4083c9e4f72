"""PyTorch's stacked states and jaxrnn's per-layer ones: `from_torch_hidden`, `to_torch_hidden`.

PyTorch stacks the states of all layers and directions on one leading axis, forward first in
each layer: `h (num_layers · directions, B, H)`, an LSTM's a pair `(h, c)` of them. jaxrnn's
`a0` and `final_states` are a list with one state per layer — a pair `(forward, reverse)` for a
bidirectional layer — each `(B, H)`, an LSTM's an `LSTMState(h, c)`. The gradient with respect
to `a0` has `a0`'s structure, so `to_torch_hidden` also turns it into PyTorch's `(dh_0, dc_0)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn._cells import LSTMState
from jaxrnn._interop import cell_of_layers, to_numpy


def from_torch_hidden(h, layers) -> list:
    """PyTorch's `h_0 (num_layers · directions, B, hidden_size)` — an LSTM's pair `(h_0, c_0)`
    — as `rnn_stack`'s `a0`: a list with one `(B, n_a)` state per layer (a pair `(forward,
    reverse)` for a bidirectional layer; an LSTM's each an `LSTMState(h, c)`), for the
    `"batch_major"` and `"time_major"` layouts. `layers` (as `rnn_stack` takes them) gives the
    structure and the cell."""
    fn = "from_torch_hidden"
    cell = cell_of_layers(fn, layers)
    directions = [len(layer) if isinstance(layer, (tuple, list)) else 1 for layer in layers]
    first = layers[0][0] if isinstance(layers[0], (tuple, list)) else layers[0]
    n_a = jnp.shape(first["Waa"])[1]
    pair = isinstance(h, (tuple, list))
    if (cell == "lstm") != pair:
        expected = "a pair (h_0, c_0) of arrays" if cell == "lstm" else "one array h_0"
        raise TypeError(
            f"{fn}: h must be {expected} for {cell} layers; received "
            f"{f'a {type(h).__name__} of length {len(h)}' if pair else type(h).__name__}"
        )
    if pair and len(h) != 2:
        raise TypeError(f"{fn}: h must be a pair (h_0, c_0) for lstm layers; received a {type(h).__name__} of {len(h)}")
    parts = [(f"h[{i}]", part) for i, part in enumerate(h)] if pair else [("h", h)]
    stacked = []
    for name, value in parts:
        value = jnp.asarray(value if isinstance(value, jax.Array) else to_numpy(fn, name, value))
        if value.ndim != 3 or value.shape[0] != sum(directions) or value.shape[2] != n_a:
            raise ValueError(
                f"{fn}: {name}.shape={tuple(value.shape)}; expected (num_layers · directions, B, hidden_size) "
                f"with num_layers · directions = {sum(directions)} and hidden_size = {n_a} from layers"
            )
        stacked.append(value)
    a0, row = [], 0
    for count in directions:
        states = tuple(LSTMState(*(s[row + d] for s in stacked)) if pair else stacked[0][row + d] for d in range(count))
        a0.append(states if count == 2 else states[0])
        row += count
    return a0


def to_torch_hidden(final_states: list, *, cell: str | None = None, layers: list | None = None):
    """`rnn_stack`'s `final_states` (batch- or time-major) — or a gradient with respect to
    `a0`, which has their structure — as PyTorch's `h_n (num_layers · directions, B,
    hidden_size)`, forward direction first in each layer; an LSTM's as the pair `(h_n, c_n)`.

    An `LSTMState` is an LSTM's state; a plain pair of arrays is read as a bidirectional
    layer's `(forward, reverse)` states — what `rnn_stack` returns for the vanilla cell and the
    GRU — unless `cell="lstm"` or `layers` (an LSTM's) say it is an LSTM's `(h, c)`.

    Args:
      final_states: a list with one entry per layer: a state `(B, H)` or `LSTMState(h, c)`, or
        a pair `(forward, reverse)` of them for a bidirectional layer.
      cell: `"lstm"` to read plain pairs as `(h, c)`; another cell to read them as directions.
      layers: the stack's layers, as `rnn_stack` takes them: their cell and directions, against
        which `final_states` are checked.

    Returns:
      `h_n`, or `(h_n, c_n)` for an LSTM.
    """
    fn = "to_torch_hidden"
    if not isinstance(final_states, (list, tuple)) or not final_states:
        raise TypeError(
            f"{fn}: final_states must be a non-empty list of states, one per layer; received {_kind(final_states)}"
        )
    directions = None
    if layers is not None:
        cell = cell_of_layers(fn, layers, cell)
        directions = [len(layer) if isinstance(layer, (tuple, list)) else 1 for layer in layers]
        if len(directions) != len(final_states):
            raise ValueError(f"{fn}: final_states has {len(final_states)} layer(s); layers has {len(directions)}")
    is_state = lambda s: isinstance(s, LSTMState)
    lstm = cell == "lstm" if cell is not None else any(map(is_state, jax.tree.leaves(final_states, is_leaf=is_state)))
    states = []
    for l, entry in enumerate(final_states):
        nested = isinstance(entry, (tuple, list)) and not is_state(entry) and _is_pair(entry[0] if entry else None)
        bidirectional = (
            (nested if lstm else isinstance(entry, (tuple, list))) if directions is None else directions[l] == 2
        )
        if bidirectional and not _is_pair(entry):
            raise ValueError(f"{fn}: final_states[{l}] must be a pair (forward, reverse); received {_kind(entry)}")
        for d, state in enumerate(entry if bidirectional else (entry,)):
            states.append(_state(fn, f"final_states[{l}]" + (f"[{d}]" if bidirectional else ""), state, lstm))
    shapes = {tuple(part.shape) for state in states for part in state}
    if len(shapes) > 1:
        raise ValueError(f"{fn}: the states have different shapes {sorted(shapes)}; expected one (B, hidden_size)")
    stacked = [jnp.stack([state[i] for state in states]) for i in range(2 if lstm else 1)]
    return tuple(stacked) if lstm else stacked[0]


def _is_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2


def _state(fn: str, name: str, value: Any, lstm: bool) -> tuple:
    """One state as a tuple of `(B, H)` arrays: `(h,)`, or `(h, c)` for an LSTM."""
    if lstm and not _is_pair(value):
        raise TypeError(f"{fn}: {name} must be an LSTM state (h, c); received {_kind(value)}")
    parts = tuple(value) if lstm else (value,)
    for part in parts:
        if isinstance(part, (tuple, list, Mapping)) or jnp.ndim(part) != 2:
            expected = "an LSTM state (h, c) of arrays (B, hidden_size)" if lstm else "an array (B, hidden_size)"
            hint = "" if lstm else " (an LSTM's (h, c) pairs: pass cell='lstm' or layers=)"
            raise ValueError(f"{fn}: {name} must be {expected}; received {_kind(value)}{hint}")
    return parts


def _kind(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    shape = getattr(value, "shape", None)
    return type(value).__name__ + ("" if shape is None else f" of shape {tuple(shape)}")
