"""Equinox interop: the weights of `eqx.nn.GRUCell` and `eqx.nn.LSTMCell` in
(`from_equinox`) and out (`to_equinox`).

Equinox's cells are PyTorch's equations on one example, with PyTorch's weight layout and a
single input bias (the GRU's `b_hn` apart, as `bias_n`), so every array maps as it is:

    eqx.nn.GRUCell (gates r, z, n)           jaxrnn (cell="gru")
    weight_ih (3H, n_x), weight_hh (3H, H)   Wax, Waa
    bias (3H,), bias_n (H,)                  ba (3H, 1), bhn (H, 1)
    eqx.nn.LSTMCell (gates i, f, g, o)       jaxrnn (cell="lstm")
    weight_ih (4H, n_x), weight_hh (4H, H)   Wax, Waa
    bias (4H,)                               ba (4H, 1)
    state h (GRU), (h, c) (LSTM)             LSTMState(h, c) for the LSTM

`use_bias=False` reads as zero biases. A stack is a list of cells, bottom first, with a pair
`(forward, reverse)` for a bidirectional layer — the structure of `rnn_stack`'s layers. An
Equinox cell takes one example; `jax.vmap` over a batch of sequences scanned in time is
`rnn_stack` with `layout="batch_major"`. equinox is imported only inside these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _validate
from jaxrnn._interop import GATES, cell_of_layers, check_shape, split_gate_biases

__all__ = ["from_equinox", "to_equinox"]


def from_equinox(cells):
    """The weights of Equinox GRU or LSTM cells as `rnn_stack` layers, with the options that run them.

    Args:
      cells: an `eqx.nn.GRUCell` or `eqx.nn.LSTMCell`, or a list of them (a stack, bottom
        first), each layer a cell or a pair `(forward, reverse)` of cells for a bidirectional
        layer. All of one kind.

    Returns:
      `(layers, options)` as `from_torch` returns them: `layers` a list of parameter dicts
      `Wax, Waa, ba` (the GRU's also `bhn`), pairs for bidirectional layers — the arrays as they
      are, reshaped; `options` `{"cell": "gru" | "lstm", "layout": "batch_major"}`: `x (B, T,
      n_x)` is a batch of the sequences `(T, n_x)` the cells are scanned over.

    `from_equinox` is plain array operations, so it runs under `jax.jit` and `jax.grad`: a
    model can keep Equinox cells as its parameters and run them through `rnn_stack`.

    Raises:
      TypeError: another module than an Equinox GRU or LSTM cell, or a subclass with its own
        `__call__` (what jaxrnn cannot compute).
      ValueError: cells of different kinds, or no cells.
    """
    fn = "from_equinox"
    structure = _structure(fn, cells, "cells")
    found = {kind for layer in structure for _, _, kind in layer}
    if len(found) > 1:
        raise ValueError(f"{fn}: the cells are of different kinds {sorted(found)}; rnn_stack runs one cell")
    (cell,) = found
    layers = []
    for layer in structure:
        pair = tuple(_read(fn, path, module, kind) for path, module, kind in layer)
        layers.append(pair if len(pair) == 2 else pair[0])
    _validate.layer_list(fn, layers, cell=cell)  # widths chain from layer to layer, one dtype
    return layers, {"cell": cell, "layout": "batch_major"}


def to_equinox(layers, like=None, *, cell: str | None = None):
    """`rnn_stack` layers as Equinox cells: every array as it is (bitwise both ways).

    Args:
      layers: a list as `rnn_stack` takes it (or one parameter dict) of GRU or LSTM layers,
        without an output head.
      like: cells as `from_equinox` takes them, with the structure and sizes of `layers`:
        their `use_bias` (False: every `ba`, `bhn` must be zero) and dtypes are kept (values
        are cast, as loading weights does); `like` is not changed. None: new cells with
        biases, in the layers' dtype.
      cell: `"gru"` or `"lstm"`; None: read from `layers` (`bhn`: a GRU; `Waa` with `4·n_a`
        rows: an LSTM).

    Returns:
      cells in `like`'s structure: one cell for one parameter dict, else a list with a cell
      (or a pair of cells) per layer.
    """
    fn = "to_equinox"
    eqx = _import_equinox(fn)
    single = isinstance(layers, Mapping)
    cell = cell_of_layers(fn, layers, cell)
    if cell == "vanilla":
        raise ValueError(
            f"{fn}: layers are vanilla RNN layers; Equinox has no vanilla RNN cell (use jaxrnn.equinox.RNN)"
        )
    checked = _validate.layer_list(fn, [layers] if single else layers, cell=cell)
    if "Wya" in checked[-1][0]:
        raise ValueError(
            f"{fn}: layers[{len(checked) - 1}] has an output head (Wya, by), which an Equinox cell does not have; "
            f"drop it (it maps to an eqx.nn.Linear: weight = Wya, bias = by[:, 0])"
        )
    if like is None:
        kind = {"gru": eqx.nn.GRUCell, "lstm": eqx.nn.LSTMCell}[cell]
        targets = [
            [(f"layers[{l}]", _blank(eqx, kind, params), cell) for params in layer] for l, layer in enumerate(checked)
        ]
    else:
        targets = _structure(fn, like, "like")
        found = {kind for layer in targets for _, _, kind in layer}
        if found != {cell}:
            raise ValueError(f"{fn}: layers are {cell} layers; like holds {sorted(found)} cells")
        if [len(layer) for layer in targets] != [len(layer) for layer in checked]:
            raise ValueError(
                f"{fn}: like has {len(targets)} layer(s) with directions {[len(layer) for layer in targets]}; "
                f"layers has {len(checked)} with directions {[len(layer) for layer in checked]}"
            )
    out = []
    for l, (layer, target) in enumerate(zip(checked, targets)):
        where = [f"layers[{l}][{d}]" if len(layer) == 2 else f"layers[{l}]" for d in range(len(layer))]
        written = tuple(_write(fn, eqx, w, params, *t) for w, params, t in zip(where, layer, target))
        out.append(written if len(written) == 2 else written[0])
    return out[0] if (single and like is None) or _is_cell(like) else out


def _import_equinox(fn: str):
    try:
        import equinox
    except ImportError:
        raise ImportError(f"{fn}: Equinox cells need equinox, which is not installed (pip install equinox)") from None
    return equinox


def _is_cell(value: Any) -> bool:
    return not isinstance(value, (list, tuple, Mapping)) and value is not None


def _structure(fn: str, cells: Any, name: str) -> list[list[tuple[str, Any, str]]]:
    """`cells` as layers of `(path, cell, kind)`, bottom first."""
    if not isinstance(cells, (list, tuple)):
        return [[(name, cells, _kind(fn, name, cells))]]
    if not cells:
        raise ValueError(f"{fn}: {name} holds no cells")
    layers = []
    for l, layer in enumerate(cells):
        if isinstance(layer, (list, tuple)):
            if len(layer) != 2:
                raise ValueError(
                    f"{fn}: {name}[{l}] must be a cell or a pair (forward, reverse) of cells; "
                    f"received a {type(layer).__name__} of length {len(layer)}"
                )
            layers.append([(f"{name}[{l}][{d}]", c, _kind(fn, f"{name}[{l}][{d}]", c)) for d, c in enumerate(layer)])
        else:
            layers.append([(f"{name}[{l}]", layer, _kind(fn, f"{name}[{l}]", layer))])
    return layers


def _kind(fn: str, path: str, module: Any) -> str:
    """`"gru"` or `"lstm"` for Equinox's own cells; anything else is refused."""
    eqx = _import_equinox(fn)
    kinds = {eqx.nn.GRUCell: "gru", eqx.nn.LSTMCell: "lstm"}
    base = next((kind for kind in kinds if isinstance(module, kind)), None)
    if base is None or type(module).__call__ is not base.__call__:
        what = f"a subclass of eqx.nn.{base.__name__} with its own __call__" if base else type(module).__name__
        raise TypeError(f"{fn}: {path} is {what}; expected an eqx.nn.GRUCell or eqx.nn.LSTMCell, or a list of them")
    return kinds[base]


def _read(fn: str, path: str, module: Any, cell: str) -> dict:
    """One cell's parameter dict; checks every array's shape on the way."""
    G, n_a, n_x = GATES[cell], module.hidden_size, module.input_size
    rows = f"{G}·hidden_size"
    shapes = {
        "weight_ih": ((G * n_a, n_x), f"({rows}, input_size)"),
        "weight_hh": ((G * n_a, n_a), f"({rows}, hidden_size)"),
        "bias": ((G * n_a,), f"({rows},)"),
        "bias_n": ((n_a,), "(hidden_size,)"),
    }
    arrays = {}
    for name, (shape, meaning) in shapes.items():
        value = getattr(module, name, None)
        if value is not None:
            check_shape(fn, f"{path}.{name}", value, shape, meaning)
            arrays[name] = jnp.asarray(value)
    dtype = arrays["weight_ih"].dtype
    params = {"Wax": arrays["weight_ih"], "Waa": arrays["weight_hh"]}
    params["ba"] = arrays["bias"][:, None] if "bias" in arrays else jnp.zeros((G * n_a, 1), dtype)
    if cell == "gru":  # b_hn, inside r ⊙ (W_hn h + b_hn)
        params["bhn"] = arrays["bias_n"][:, None] if "bias_n" in arrays else jnp.zeros((n_a, 1), dtype)
    return params


def _blank(eqx, kind, params: dict):
    """A cell of `params`' sizes and dtype with biases, its arrays to be written (no draws)."""
    n_x = params["Wax"].shape[1]
    n_a = params["Waa"].shape[1]
    build = lambda: kind(n_x, n_a, use_bias=True, dtype=params["Wax"].dtype, key=jax.random.key(0))
    return eqx.filter_eval_shape(build)


def _write(fn: str, eqx, where: str, params: dict, path: str, module: Any, cell: str):
    """A copy of `module` holding `params`, in `module`'s dtypes."""
    for ours, name in (("Wax", "weight_ih"), ("Waa", "weight_hh")):
        expected = tuple(getattr(module, name).shape)
        if tuple(params[ours].shape) != expected:
            raise ValueError(
                f"{fn}: {where}['{ours}'].shape={tuple(params[ours].shape)} does not fit "
                f"{path}.{name}.shape={expected}; expected {expected}"
            )
    # One bias per gate (the GRU's n gate: b_in in bias, b_hn in bias_n): each takes its block as it is.
    G, n_a = GATES[cell], module.hidden_size
    slot = lambda present: np.zeros(n_a) if present else None
    inputs = [slot(module.bias is not None)] * G
    hiddens = [None] * (G - 1) + [slot(cell == "gru" and module.bias_n is not None)]
    inputs, hiddens = split_gate_biases(fn, where, params, cell, inputs, hiddens, f"{path} (use_bias=False)")
    values = {"weight_ih": params["Wax"], "weight_hh": params["Waa"]}
    if module.bias is not None:
        values["bias"] = np.concatenate(inputs)
    if cell == "gru" and module.bias_n is not None:
        values["bias_n"] = hiddens[2]
    dtypes = {name: getattr(module, name).dtype for name in values}
    return eqx.tree_at(
        lambda m: [getattr(m, name) for name in values],
        module,
        [jnp.asarray(value, dtypes[name]) for name, value in values.items()],
    )
