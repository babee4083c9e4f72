"""Flax interop: the weights of `SimpleCell`, `GRUCell`, `LSTMCell` and `OptimizedLSTMCell`
RNNs in (`from_flax`) and out (`to_flax`), for NNX modules and Linen variables.

Flax lays kernels out `(in, out)` and keeps either one dense layer for all gates (NNX's
`dense_i`/`dense_h`, gates on the columns in PyTorch's order) or one per gate (Linen's, and
NNX's `LSTMCell`); jaxrnn stacks the gates on the rows of `Wax`, `Waa` (transposed: exact):

    Flax cell (input denses | recurrent denses)       jaxrnn (rnn_stack layers)
    SimpleCell   NNX dense_i | dense_h, Linen i | h   cell="vanilla"   ba = b_i (+ b_h)
    GRUCell      NNX dense_i | dense_h (r, z, n)      cell="gru"       ba = b_i, bhn = 0 (NNX has no b_hn)
                 Linen ir, iz, in | hr, hz, hn                         ba = [b_ir; b_iz; b_in], bhn = b_hn
    LSTMCell     NNX ii, if_, ig, io | hi, hf, hg, ho cell="lstm"      ba = [b_hi; b_hf; b_hg; b_ho]
                 Linen ii, if, ig, io | hi, hf, hg, ho
    OptimizedLSTMCell NNX dense_i | dense_h (i,f,g,o) cell="lstm"      ba = b_h
    RNN(time_major=)                                  layout="time_major" / "batch_major"

Flax's GRUCell has biases on its input denses and on `hn` only (NNX: on `dense_i` only); its
LSTM cells on the recurrent denses only, and their carry is `(c, h)` where jaxrnn's is
`LSTMState(h, c)`. The equations are PyTorch's, which jaxrnn computes, with Flax's default
`gate_fn=sigmoid` and `activation_fn=tanh`; others are refused.

A layer is an `nnx.RNN(cell)`, an `nnx.Bidirectional` of two of them (outputs concatenated
forward first, as in `rnn_stack`; both may share one cell), or a bare cell; a stack is an
`nnx.Sequential` or a list of layers, bottom first. Linen variables (`model.init(...)`) of
`nn.RNN`, `nn.Bidirectional` (a shared cell appears under `forward_rnn` alone) and
`nn.Sequential` (`layers_0`, `layers_1`, …) are read by their parameter names; their
activations, time axis and `merge_fn` are not in the variables, so they come from the keywords
(`merge_fn` has no default: it must be stated). flax is imported only where an NNX module is
handled.

Reading is array operations only, so it also runs on traced weights: inside `nnx.jit` or
`nnx.grad` on a module, under `jax.jit` on Linen variables (`jaxrnn.nnx.RNN(cell)` reads its
Flax cell this way on every call, so gradients reach the cell's `nnx.Param`s).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _validate
from jaxrnn._interop import GATES, cell_of_layers, check_shape, gate_biases, host_array, split_gate_biases

_ACTIVATIONS = {jnp.tanh: "tanh", jax.nn.relu: "relu"}
_LINEN_LAYER = re.compile(r"layers_(\d+)")
# Linen parameter names: (input denses, recurrent denses) of each cell.
_LINEN_CELLS = {
    "vanilla": (("i",), ("h",)),
    "gru": (("ir", "iz", "in"), ("hr", "hz", "hn")),
    "lstm": (("ii", "if", "ig", "io"), ("hi", "hf", "hg", "ho")),
}
_LINEN_NAMES = {"vanilla": "SimpleCell", "gru": "GRUCell", "lstm": "LSTMCell or OptimizedLSTMCell"}


class _Cell(NamedTuple):
    """One Flax cell: where it is, what it is (`kind` names it in messages), its input and
    recurrent dense layers as `(name, dense)` (an `nnx.Linear` or a Linen dict) — one for all
    gates, or one per gate — and its activation (None where the variables do not say)."""

    path: str
    kind: str
    cell: str
    inputs: list
    hiddens: list
    nonlinearity: str | None


class _Layer(NamedTuple):
    """One layer: its cells (one, or two: forward, backward — the same one when shared), its time
    axis and, for two, how their outputs merge (None where the source does not say: Linen)."""

    cells: list
    time_major: bool | None
    merge: str | None = None


def from_flax(
    module_or_variables,
    *,
    nonlinearity: str | None = None,
    time_major: bool | None = None,
    merge_fn: Any = None,
):
    """The weights of a Flax RNN as `rnn_stack` layers, with the options that run them.

    Args:
      module_or_variables: an `nnx.RNN` of an `nnx.SimpleCell`, `GRUCell`, `LSTMCell` or
        `OptimizedLSTMCell`, an `nnx.Bidirectional` of two, a bare cell, or an
        `nnx.Sequential`, `nnx.List` or list of layers (a stack, bottom first); or Linen
        variables (`{"params": ...}`, or the params) of those cells in `nn.RNN`,
        `nn.Bidirectional`, `nn.Sequential` or a list of them. All layers one cell.
      nonlinearity: `"tanh"` or `"relu"`: the activation of Linen `SimpleCell`s (default
        tanh); an NNX cell's own `activation_fn` is used, and a different value here raises.
        Gated cells: tanh only.
      time_major: the time axis for Linen variables and bare cells (default False, Flax's);
        an NNX `RNN`'s own setting is used, and a different value here raises.
      merge_fn: how a bidirectional layer merges its two directions: `"concatenate"` (or Flax's
        default function itself), the only merge `rnn_stack` computes; other values raise.
        Required for Linen variables holding an `nn.Bidirectional`, which do not record it; an
        NNX `Bidirectional`'s own `merge_fn` is read (and refused unless it concatenates).

    Returns:
      `(layers, options)` as `from_torch` returns them: `layers` a list, bottom first, of
      parameter dicts `Wax, Waa, ba` (the GRU's also `bhn`; pairs for bidirectional layers);
      `options` `{"cell": ..., "layout": "batch_major" | "time_major"}` for `rnn_stack`, with
      `"nonlinearity"` for `SimpleCell`s. Kernels are transposed (exact); `ba` and `bhn` are
      the cell's biases as the module docstring maps them (a sum only where a gate has two).
      An LSTM's Flax carry `(c, h)` is jaxrnn's `LSTMState(h, c)`.

    Raises:
      TypeError: for another cell (`MGUCell`, `ConvLSTMCell`, a subclass with its own
        `__call__`) or an object that is not a Flax model or its variables.
      ValueError: for what else jaxrnn cannot compute: `residual=True`, a `gate_fn` other than
        sigmoid, an activation other than tanh (and ReLU for `SimpleCell`), layers of different
        cells, a unidirectional `reverse=True` layer (convert its cell and call
        `jaxrnn.rnn(..., reverse=True)`, or run it in `jaxrnn.nnx.RNN(cell, reverse=True)`), a
        custom `merge_fn`, Linen variables of a Bidirectional without `merge_fn=`.
    """
    return read("from_flax", module_or_variables, "module", nonlinearity, time_major, merge_fn)


def read(fn: str, source: Any, name: str, nonlinearity=None, time_major=None, merge_fn=None):
    """`from_flax`, its messages naming `fn` and `source` as `name` (e.g. `jaxrnn.nnx.RNN`'s cell)."""
    stack = _stack(fn, source, name)
    _merge(fn, stack, merge_fn)
    cell = _agree(fn, "cell", {c.cell for layer in stack for c in layer.cells}, None, None)
    found = {c.nonlinearity for layer in stack for c in layer.cells} - {None}
    nonlinearity = _agree(fn, "nonlinearity", found, nonlinearity, "tanh")
    nonlinearity = _validate.cell_nonlinearity(fn, cell, nonlinearity)
    time_major = _agree(fn, "time_major", {layer.time_major for layer in stack} - {None}, time_major, False)
    layers = []
    for layer in stack:
        pair = tuple(_read_cell(fn, c) for c in layer.cells)
        layers.append(pair if len(pair) == 2 else pair[0])
    _validate.layer_list(fn, layers, cell=cell)  # widths chain from layer to layer, one dtype
    options = {"cell": cell} | ({"nonlinearity": nonlinearity} if cell == "vanilla" else {})
    return layers, options | {"layout": "time_major" if time_major else "batch_major"}


def to_flax(layers, like):
    """`rnn_stack` layers written into a copy of the Flax model `like`; `like` is not changed.

    Kernels are transposed back (exact). Biases follow `jaxrnn._interop`: a gate with one bias
    takes its `ba` block as it is (the GRU's `b_in`, `b_hn` too), so Flax → jaxrnn → Flax is
    bitwise identical; a gate with two keeps its recurrent bias and puts the rest in the input
    bias; a bias `like` has no place for (an NNX `GRUCell`'s `bhn`) must be zero. Values are
    cast to `like`'s dtypes, as loading weights into a module does.

    Args:
      layers: a list as `rnn_stack` takes it (or one parameter dict), without an output head,
        of the cell `like` holds.
      like: an NNX module or Linen variables, as `from_flax` takes them, with the structure and
        sizes of `layers`.

    Returns:
      the copy: the same kind of object as `like` (an NNX module, a list of them, or a dict of
      Linen variables).
    """
    fn = "to_flax"
    _stack(fn, like, "like")  # what `like` is, before copying it
    copy = _copy(like)
    stack = _stack(fn, copy, "like")
    cell = _agree(fn, "cell", {c.cell for layer in stack for c in layer.cells}, None, None)
    found = cell_of_layers(fn, layers)
    if found != cell:
        raise ValueError(f"{fn}: layers are {found} layers; like holds {stack[0].cells[0].kind}s")
    layers = _validate.layer_list(fn, [layers] if isinstance(layers, Mapping) else layers, cell=cell)
    if "Wya" in layers[-1][0]:
        raise ValueError(
            f"{fn}: layers[{len(layers) - 1}] has an output head (Wya, by), which a Flax RNN does not have; "
            f"drop it (it maps to an nnx.Linear: kernel = Wya.T, bias = by[:, 0])"
        )
    if [len(layer.cells) for layer in stack] != [len(layer) for layer in layers]:
        raise ValueError(
            f"{fn}: like has {len(stack)} layer(s) with directions {[len(layer.cells) for layer in stack]}; "
            f"layers has {len(layers)} with directions {[len(layer) for layer in layers]}"
        )
    for l, (layer, params_pair) in enumerate(zip(stack, layers)):
        if len(params_pair) == 2 and _shared(layer):
            forward, backward = params_pair
            if any(not np.array_equal(forward[k], backward[k]) for k in forward):
                raise ValueError(
                    f"{fn}: like's {layer.cells[0].path} is one cell shared by both directions of a bidirectional "
                    f"layer; layers[{l}][0] and layers[{l}][1] differ, so it cannot hold both"
                )
        for d, (c, params) in enumerate(zip(layer.cells, params_pair)):
            _write_cell(fn, c, params, f"layers[{l}][{d}]" if len(params_pair) == 2 else f"layers[{l}]")
    return copy


def _shared(layer: _Layer) -> bool:
    """Whether a bidirectional layer's two directions are one cell (one set of weights)."""
    forward, backward = layer.cells
    return forward.inputs[0][1] is backward.inputs[0][1]


def _merge(fn: str, stack: list[_Layer], merge_fn: Any) -> None:
    """Checks that every bidirectional layer concatenates its directions: an NNX module's own
    `merge_fn` (`_nnx_layer` refuses others), and for Linen variables, which do not record it,
    the `merge_fn` given — there is no default to guess."""
    if merge_fn is not None:
        _check_merge_fn(fn, merge_fn)
        return
    for layer in stack:
        if len(layer.cells) == 2 and layer.merge is None:
            where = layer.cells[0].path.split("['forward_rnn']")[0]
            raise ValueError(
                f"{fn}: {where} is a Linen nn.Bidirectional, whose merge_fn the variables do not record; "
                f'pass merge_fn="concatenate" if it is Flax\'s default (the only merge rnn_stack computes)'
            )


def _check_merge_fn(fn: str, merge_fn: Any) -> None:
    """`merge_fn` must concatenate: the string `"concatenate"` or Flax's default merge function."""
    if isinstance(merge_fn, str) and merge_fn == "concatenate":
        return
    if callable(merge_fn):
        from flax.linen.recurrent import _concatenate as linen_concatenate
        from flax.nnx.nn.recurrent import _concatenate as nnx_concatenate

        if merge_fn is linen_concatenate or merge_fn is nnx_concatenate:
            return
    raise ValueError(
        f"{fn}: merge_fn={_name(merge_fn)}; rnn_stack concatenates the two directions (Flax's default "
        f'merge_fn, merge_fn="concatenate"), and nothing else: convert each direction on its own and merge them '
        f"in jaxrnn.nnx.Bidirectional(forward_rnn, backward_rnn, merge_fn=...)"
    )


def _agree(fn: str, name: str, found: set, given: Any, default: Any) -> Any:
    """The one value of a setting the model states (`found`) and the caller may give."""
    if len(found) > 1:
        raise ValueError(f"{fn}: the layers have different {name} settings {sorted(found)}; rnn_stack takes one")
    if found and given is not None and given != next(iter(found)):
        raise ValueError(f"{fn}: {name}={given!r} contradicts the model's {name}={next(iter(found))!r}")
    return next(iter(found)) if found else (default if given is None else given)


def _stack(fn: str, source: Any, name: str) -> list[_Layer]:
    """The layers of `source`, bottom first, as `_Layer`s."""
    if isinstance(source, Mapping):
        params = source["params"] if "params" in source else source
        prefix = f"{name}['params']" if "params" in source else name
        numbered = {k: _LINEN_LAYER.fullmatch(str(k)) for k in params}
        if params and all(numbered.values()):
            items = [(f"{prefix}['{k}']", params[k]) for k in sorted(params, key=lambda k: int(numbered[k][1]))]
        else:
            items = [(prefix, params)]
    elif isinstance(source, (list, tuple)):
        items = [(f"{name}[{l}]", item) for l, item in enumerate(source)]
    else:
        nnx = _import_nnx(fn)
        if isinstance(source, nnx.Sequential):
            items = [(f"{name}.layers[{l}]", item) for l, item in enumerate(source.layers)]
        elif isinstance(source, nnx.List):
            items = [(f"{name}[{l}]", item) for l, item in enumerate(source)]
        else:
            items = [(name, source)]
    if not items:
        raise ValueError(f"{fn}: {name} holds no layers")
    return [
        _linen_layer(fn, path, item) if isinstance(item, Mapping) else _nnx_layer(fn, path, item)
        for path, item in items
    ]


def _linen_layer(fn: str, path: str, params: Mapping) -> _Layer:
    if set(params) in ({"forward_rnn", "backward_rnn"}, {"forward_rnn"}):  # forward_rnn alone: one shared cell
        directions = ("forward_rnn", "backward_rnn" if "backward_rnn" in params else "forward_rnn")
        cells = [_linen_layer(fn, f"{path}['{d}']", params[d]).cells[0] for d in directions]
        return _Layer(cells, None, None)
    if "cell" in params:
        path, params = f"{path}['cell']", params["cell"]
    found = next((cell for cell, names in _LINEN_CELLS.items() if set(params) == {*names[0], *names[1]}), None)
    if found is None:
        expected = "; ".join(f"{_LINEN_NAMES[c]}: {sorted({*i, *h})}" for c, (i, h) in _LINEN_CELLS.items())
        raise ValueError(
            f"{fn}: {path} has the keys {sorted(params)}; expected the parameters of a Flax cell jaxrnn computes "
            f"({expected}), in an 'RNN' under 'cell', or a 'Bidirectional' under 'forward_rnn' and 'backward_rnn'"
        )
    inputs, hiddens = ([(n, params[n]) for n in names] for names in _LINEN_CELLS[found])
    return _Layer([_Cell(path, f"Linen {_LINEN_NAMES[found]}", found, inputs, hiddens, None)], None)


def _nnx_layer(fn: str, path: str, module: Any) -> _Layer:
    nnx = _import_nnx(fn)
    if isinstance(module, nnx.Bidirectional):
        from flax.nnx.nn.recurrent import _concatenate

        if module.merge_fn is not _concatenate:
            raise ValueError(
                f"{fn}: {path}.merge_fn is {getattr(module.merge_fn, '__name__', module.merge_fn)}; rnn_stack "
                f"concatenates the two directions (Flax's default merge_fn), and nothing else"
            )
        cells = [_nnx_cell(fn, f"{path}.{d}", getattr(module, d), nnx) for d in ("forward_rnn", "backward_rnn")]
        return _Layer(cells, module.time_major, "concatenate")
    if isinstance(module, nnx.RNN):
        if module.reverse:
            raise ValueError(
                f"{fn}: {path} is a reverse RNN outside nnx.Bidirectional; rnn_stack runs unidirectional layers "
                f"forward: convert its cell (from_flax({path}.cell)) and call jaxrnn.rnn(..., reverse=True)"
            )
        return _Layer([_nnx_cell(fn, path, module, nnx)], module.time_major)
    if isinstance(module, nnx.RNNCellBase):
        return _Layer([_nnx_cell(fn, path, module, nnx)], None)
    raise TypeError(
        f"{fn}: {path} is a {type(module).__name__}; expected an nnx.RNN of a SimpleCell, GRUCell, LSTMCell or "
        f"OptimizedLSTMCell, an nnx.Bidirectional of two, a bare cell, an nnx.Sequential or list of them, or "
        f"Linen variables"
    )


def _nnx_cell(fn: str, path: str, module: Any, nnx) -> _Cell:
    cell = module
    if isinstance(module, nnx.RNN):
        path, cell = f"{path}.cell", module.cell
    kinds = {
        nnx.SimpleCell: "vanilla",
        nnx.GRUCell: "gru",
        nnx.LSTMCell: "lstm",
        nnx.OptimizedLSTMCell: "lstm",
    }
    base = next((kind for kind in kinds if isinstance(cell, kind)), None)
    if base is None or type(cell).__call__ is not base.__call__:
        what = f"a subclass of nnx.{base.__name__} with its own __call__" if base else f"an nnx.{type(cell).__name__}"
        raise TypeError(
            f"{fn}: {path} is {what}; jaxrnn computes Flax's nnx.SimpleCell, GRUCell, LSTMCell and OptimizedLSTMCell"
        )
    name = kinds[base]
    nonlinearity = None
    if name == "vanilla":
        if cell.residual:
            raise ValueError(f"{fn}: {path} has residual=True (h' = f(... + h)), which jaxrnn does not compute")
        nonlinearity = _ACTIVATIONS.get(cell.activation_fn)
        if nonlinearity is None:
            raise ValueError(
                f"{fn}: {path}.activation_fn is {_name(cell.activation_fn)}; jaxrnn computes jax.numpy.tanh and "
                f"jax.nn.relu (nnx.tanh, nnx.relu)"
            )
    else:
        for attribute, expected, names in (
            ("gate_fn", jax.nn.sigmoid, "jax.nn.sigmoid (nnx.sigmoid)"),
            ("activation_fn", jnp.tanh, "jax.numpy.tanh (nnx.tanh)"),
        ):
            if getattr(cell, attribute) is not expected:
                raise ValueError(
                    f"{fn}: {path}.{attribute} is {_name(getattr(cell, attribute))}; jaxrnn's {name} cell computes "
                    f"Flax's default {names}, as PyTorch does"
                )
    if base is nnx.LSTMCell:
        inputs = [(n, getattr(cell, n)) for n in ("ii", "if_", "ig", "io")]
        hiddens = [(n, getattr(cell, n)) for n in ("hi", "hf", "hg", "ho")]
    else:
        inputs, hiddens = [("dense_i", cell.dense_i)], [("dense_h", cell.dense_h)]
    return _Cell(path, f"nnx.{base.__name__}", name, inputs, hiddens, nonlinearity)


def _name(function: Any) -> str:
    return getattr(function, "__name__", repr(function))


def _get(dense: Any, name: str):
    """A dense layer's `kernel` or `bias` (None when it has none), from NNX or Linen."""
    if isinstance(dense, Mapping):
        return dense.get(name)
    variable = getattr(dense, name, None)
    return None if variable is None else variable[...]


def _dense_name(cell: _Cell, name: str) -> str:
    return f"{cell.path}['{name}']" if isinstance(cell.inputs[0][1], Mapping) else f"{cell.path}.{name}"


def _read_cell(fn: str, cell: _Cell) -> dict:
    """The cell's parameter dict; checks every kernel's and bias's shape on the way."""
    G = GATES[cell.cell]
    for name, dense in cell.inputs + cell.hiddens:
        unknown = isinstance(dense, Mapping) and not set(dense) <= {"kernel", "bias"}
        if unknown or _get(dense, "kernel") is None:
            found = sorted(dense) if isinstance(dense, Mapping) else type(dense).__name__
            raise ValueError(f"{fn}: {_dense_name(cell, name)} must hold 'kernel' (and 'bias'); received {found}")
    first_name, first = cell.hiddens[0]
    kernel = jnp.asarray(_get(first, "kernel"))
    _validate.check_rank(fn, f"{_dense_name(cell, first_name)}.kernel", kernel, 2, "(hidden_features, features)")
    n_a = kernel.shape[0]
    n_x = (jnp.shape(_get(cell.inputs[0][1], "kernel")) or (0,))[0]
    kernels, biases = {}, {}
    for side, denses, rows in (("input", cell.inputs, n_x), ("hidden", cell.hiddens, n_a)):
        per_dense = n_a * G // len(denses)  # the columns of each: G·n_a fused, n_a per gate
        for name, dense in denses:
            where = _dense_name(cell, name)
            columns = "hidden_features" if per_dense == n_a else f"{G}·hidden_features"
            meaning = f"({'in_features' if side == 'input' else 'hidden_features'}, {columns})"
            check_shape(fn, f"{where}.kernel", _get(dense, "kernel"), (rows, per_dense), meaning)
            if _get(dense, "bias") is not None:
                check_shape(fn, f"{where}.bias", _get(dense, "bias"), (per_dense,), f"({columns},)")
        kernels[side] = jnp.concatenate([jnp.asarray(_get(d, "kernel")) for _, d in denses], axis=1)
        biases[side] = _bias_blocks(denses, G, n_a)
    params = {"Wax": kernels["input"].T, "Waa": kernels["hidden"].T}
    return params | gate_biases(cell.cell, biases["input"], biases["hidden"], n_a, kernel.dtype)


def _bias_blocks(denses: list, G: int, n_a: int) -> list:
    """Each gate's bias `(n_a,)` from `denses` (one dense layer for all gates, or one per gate);
    None where a dense layer has no bias."""
    blocks = []
    for _, dense in denses:
        bias = _get(dense, "bias")
        blocks += [None if bias is None else host_array(bias)[k * n_a : (k + 1) * n_a] for k in range(G // len(denses))]
    return blocks


def _write_cell(fn: str, cell: _Cell, params: dict, where: str) -> None:
    like = _read_cell(fn, cell)  # checks the target's structure
    G, n_a = GATES[cell.cell], like["Waa"].shape[1]
    for ours, denses in (("Wax", cell.inputs), ("Waa", cell.hiddens)):
        if params[ours].shape != like[ours].shape:
            name, dense = denses[0]
            per_gate = f" (one of {len(denses)} per-gate kernels)" if len(denses) > 1 else ""
            raise ValueError(
                f"{fn}: {where}['{ours}'].shape={tuple(params[ours].shape)} does not fit like's "
                f"{_dense_name(cell, name)}.kernel.shape={tuple(jnp.shape(_get(dense, 'kernel')))}{per_gate}; "
                f"expected {tuple(like[ours].shape)}"
            )
    like_biases = (_bias_blocks(cell.inputs, G, n_a), _bias_blocks(cell.hiddens, G, n_a))
    target = f"like's {cell.path} ({cell.kind})"
    inputs, hiddens = split_gate_biases(fn, where, params, cell.cell, *like_biases, target)
    for ours, denses, written in (("Wax", cell.inputs, inputs), ("Waa", cell.hiddens, hiddens)):
        width = G * n_a // len(denses)
        for j, (_, dense) in enumerate(denses):
            _set(dense, "kernel", params[ours].T[:, j * width : (j + 1) * width])
            count = width // n_a
            gate_blocks = written[j * count : (j + 1) * count]
            if gate_blocks[0] is not None:
                _set(dense, "bias", np.concatenate(gate_blocks))


def _set(dense: Any, name: str, value: Any) -> None:
    """Replaces a kernel or bias, in the dtype it had."""
    if isinstance(dense, Mapping):
        dense[name] = jnp.asarray(value, dense[name].dtype)
    else:
        variable = getattr(dense, name)
        variable.set_value(jnp.asarray(value, variable[...].dtype))


def _copy(like: Any) -> Any:
    """A copy to write into: dicts copied down to the arrays, NNX modules cloned."""
    if isinstance(like, Mapping):
        return {k: _copy(v) for k, v in like.items()}
    if isinstance(like, (list, tuple)):
        return type(like)(_copy(item) for item in like)
    if hasattr(like, "shape"):
        return like
    return _import_nnx("to_flax").clone(like)


def _import_nnx(fn: str):
    try:
        from flax import nnx
    except ImportError:
        raise ImportError(
            f"{fn}: reading a Flax NNX module needs flax, which is not installed (pip install flax)"
        ) from None
    return nnx
