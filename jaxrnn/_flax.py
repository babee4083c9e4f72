"""Flax interop: `SimpleCell` weights in (`from_flax`) and out (`to_flax`), for NNX modules
and Linen variables.

Flax's `SimpleCell` computes `h' = f(x W_i + b_i + h W_h)` with kernels laid out `(in, out)`:

    Flax (NNX: dense_i / dense_h, Linen: i / h)      jaxrnn (rnn_stack layers)
    dense_i.kernel (n_x, n_a)                        Wax (n_a, n_x)   (transposed: exact)
    dense_h.kernel (n_a, n_a)                        Waa (n_a, n_a)   (transposed)
    dense_i.bias (n_a,) [+ dense_h.bias]             ba (n_a, 1)
    activation_fn jax.numpy.tanh / jax.nn.relu       nonlinearity="tanh" / "relu"
    RNN(time_major=)                                 layout="time_major" / "batch_major"

A layer is an `nnx.RNN(nnx.SimpleCell)`, an `nnx.Bidirectional` of two of them (outputs
concatenated forward first, as in `rnn_stack`), or a bare `nnx.SimpleCell`; a stack is an
`nnx.Sequential` or a list of layers, bottom first. Linen variables (`model.init(...)`) of
`nn.SimpleCell`, `nn.RNN`, `nn.Bidirectional` and `nn.Sequential` (`layers_0`, `layers_1`, …)
are read by their parameter names; their activation and time axis are not in the variables,
so they come from the keywords. flax is imported only where an NNX module is handled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _validate
from jaxrnn._interop import check_shape, combine_biases, split_bias

_ACTIVATIONS = {jnp.tanh: "tanh", jax.nn.relu: "relu"}
_LINEN_LAYER = re.compile(r"layers_(\d+)")


class _Cell(NamedTuple):
    """One SimpleCell: where it is, its two dense layers (an `nnx.Linear` or a Linen dict) and
    its activation (None where the variables do not say)."""

    path: str
    dense_i: Any
    dense_h: Any
    nonlinearity: str | None


class _Layer(NamedTuple):
    cells: list  # one _Cell, or two (forward, backward)
    time_major: bool | None


def from_flax(module_or_variables, *, nonlinearity: str | None = None, time_major: bool | None = None):
    """The weights of a Flax `SimpleCell` RNN as `rnn_stack` layers, with the options that run them.

    Args:
      module_or_variables: an `nnx.RNN(nnx.SimpleCell(...))`, an `nnx.Bidirectional` of two,
        an `nnx.SimpleCell`, or an `nnx.Sequential`, `nnx.List` or list of layers (a stack,
        bottom first);
        or Linen variables (`{"params": ...}`, or the params) of `nn.SimpleCell`, `nn.RNN`,
        `nn.Bidirectional`, `nn.Sequential` or a list of them.
      nonlinearity: `"tanh"` or `"relu"`: the activation of Linen cells (default tanh); an NNX
        cell's own `activation_fn` is used, and a different value here raises.
      time_major: the time axis for Linen variables and bare cells (default False, Flax's);
        an NNX `RNN`'s own setting is used, and a different value here raises.

    Returns:
      `(layers, options)` as `from_torch` returns them: `layers` a list, bottom first, of
      dicts `Wax, Waa, ba` (pairs for bidirectional layers); `options` `{"nonlinearity": ...,
      "layout": "batch_major" | "time_major"}` for `rnn_stack`. Kernels are transposed (exact);
      `ba` is the cell's bias (the sum of both when its recurrent dense layer has one too).

    Raises:
      what jaxrnn cannot compute: another cell (LSTM, GRU), `residual=True`, an activation
      other than tanh and relu, a unidirectional `reverse=True` layer (convert its cell and
      call `jaxrnn.rnn(..., reverse=True)`), a custom `merge_fn`.
    """
    fn = "from_flax"
    stack = _stack(fn, module_or_variables, "module")
    found = {cell.nonlinearity for layer in stack for cell in layer.cells} - {None}
    nonlinearity = _agree(fn, "nonlinearity", found, nonlinearity, "tanh")
    _validate.choice(fn, "nonlinearity", nonlinearity, _validate.NONLINEARITIES)
    time_major = _agree(fn, "time_major", {layer.time_major for layer in stack} - {None}, time_major, False)
    layers = []
    for layer in stack:
        pair = tuple(_read_cell(fn, cell) for cell in layer.cells)
        layers.append(pair if len(pair) == 2 else pair[0])
    _validate.layer_list(fn, layers)  # widths chain from layer to layer, one dtype
    return layers, {"nonlinearity": nonlinearity, "layout": "time_major" if time_major else "batch_major"}


def to_flax(layers, like):
    """`rnn_stack` layers written into a copy of the Flax model `like`; `like` is not changed.

    Kernels are transposed back (exact). Biases follow `jaxrnn._interop`: a cell with one bias
    (Flax's `SimpleCell`) takes `ba` as it is, so Flax → jaxrnn → Flax is bitwise identical;
    a cell with two keeps its recurrent bias and puts the rest in the input bias. Values are
    cast to `like`'s dtypes, as loading weights into a module does.

    Args:
      layers: a list as `rnn_stack` takes it (or one parameter dict), without an output head.
      like: an NNX module or Linen variables, as `from_flax` takes them, with the structure and
        sizes of `layers`.

    Returns:
      the copy: the same kind of object as `like` (an NNX module, a list of them, or a dict of
      Linen variables).
    """
    fn = "to_flax"
    layers = _validate.layer_list(fn, [layers] if isinstance(layers, Mapping) else layers)
    if "Wya" in layers[-1][0]:
        raise ValueError(
            f"{fn}: layers[{len(layers) - 1}] has an output head (Wya, by), which a Flax SimpleCell RNN does not "
            f"have; drop it (it maps to an nnx.Linear: kernel = Wya.T, bias = by[:, 0])"
        )
    _stack(fn, like, "like")  # what `like` is, before copying it
    copy = _copy(like)
    stack = _stack(fn, copy, "like")
    if [len(layer.cells) for layer in stack] != [len(layer) for layer in layers]:
        raise ValueError(
            f"{fn}: like has {len(stack)} layer(s) with directions {[len(layer.cells) for layer in stack]}; "
            f"layers has {len(layers)} with directions {[len(layer) for layer in layers]}"
        )
    for l, (layer, params_pair) in enumerate(zip(stack, layers)):
        for d, (cell, params) in enumerate(zip(layer.cells, params_pair)):
            where = f"layers[{l}][{d}]" if len(params_pair) == 2 else f"layers[{l}]"
            _write_cell(fn, cell, params, where)
    return copy


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
    if "forward_rnn" in params and "backward_rnn" in params:
        cells = [_linen_layer(fn, f"{path}['{d}']", params[d]).cells[0] for d in ("forward_rnn", "backward_rnn")]
        return _Layer(cells, None)
    if "cell" in params:
        path, params = f"{path}['cell']", params["cell"]
    if set(params) != {"i", "h"}:
        raise ValueError(
            f"{fn}: {path} has the keys {sorted(params)}; expected a SimpleCell's 'i' and 'h' "
            f"(in an 'RNN' under 'cell', or a 'Bidirectional' under 'forward_rnn' and 'backward_rnn')"
        )
    return _Layer([_Cell(path, params["i"], params["h"], None)], None)


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
        return _Layer(cells, module.time_major)
    if isinstance(module, nnx.RNN):
        if module.reverse:
            raise ValueError(
                f"{fn}: {path} is a reverse RNN outside nnx.Bidirectional; rnn_stack runs unidirectional layers "
                f"forward: convert its cell (from_flax({path}.cell)) and call jaxrnn.rnn(..., reverse=True)"
            )
        return _Layer([_nnx_cell(fn, path, module, nnx)], module.time_major)
    if isinstance(module, nnx.SimpleCell):
        return _Layer([_nnx_cell(fn, path, module, nnx)], None)
    raise TypeError(
        f"{fn}: {path} is a {type(module).__name__}; expected an nnx.RNN(nnx.SimpleCell), an nnx.Bidirectional "
        f"of two, an nnx.SimpleCell, an nnx.Sequential or list of them, or Linen variables"
    )


def _nnx_cell(fn: str, path: str, module: Any, nnx) -> _Cell:
    cell = module
    if isinstance(module, nnx.RNN):
        path, cell = f"{path}.cell", module.cell
    if not isinstance(cell, nnx.SimpleCell):
        raise TypeError(f"{fn}: {path} is an nnx.{type(cell).__name__}; jaxrnn is the vanilla RNN: nnx.SimpleCell")
    if cell.residual:
        raise ValueError(f"{fn}: {path} has residual=True (h' = f(... + h)), which jaxrnn does not compute")
    activation = _ACTIVATIONS.get(cell.activation_fn)
    if activation is None:
        name = getattr(cell.activation_fn, "__name__", repr(cell.activation_fn))
        raise ValueError(
            f"{fn}: {path}.activation_fn is {name}; jaxrnn computes jax.numpy.tanh and jax.nn.relu (nnx.tanh, nnx.relu)"
        )
    return _Cell(path, cell.dense_i, cell.dense_h, activation)


def _get(dense: Any, name: str):
    """A dense layer's `kernel` or `bias` (None when it has none), from NNX or Linen."""
    if isinstance(dense, Mapping):
        return dense.get(name)
    variable = getattr(dense, name, None)
    return None if variable is None else variable[...]


def _read_cell(fn: str, cell: _Cell) -> dict:
    names = _names(cell)
    for dense, which in ((cell.dense_i, "dense_i"), (cell.dense_h, "dense_h")):
        unknown = isinstance(dense, Mapping) and not set(dense) <= {"kernel", "bias"}
        if unknown or _get(dense, "kernel") is None:
            found = sorted(dense) if isinstance(dense, Mapping) else type(dense).__name__
            raise ValueError(f"{fn}: {names[which]} must hold 'kernel' (and 'bias'); received {found}")
    kernel_i, kernel_h = (jnp.asarray(_get(d, "kernel")) for d in (cell.dense_i, cell.dense_h))
    bias_i, bias_h = (_get(d, "bias") for d in (cell.dense_i, cell.dense_h))
    _validate.check_rank(fn, f"{names['dense_i']}.kernel", kernel_i, 2, "(in_features, hidden_features)")
    n_a = kernel_i.shape[1]
    check_shape(fn, f"{names['dense_h']}.kernel", kernel_h, (n_a, n_a), "(hidden_features, hidden_features)")
    for bias, which in ((bias_i, "dense_i"), (bias_h, "dense_h")):
        if bias is not None:
            check_shape(fn, f"{names[which]}.bias", bias, (n_a,), "(hidden_features,)")
    biases = [None if b is None else np.asarray(b) for b in (bias_i, bias_h)]
    return {"Wax": kernel_i.T, "Waa": kernel_h.T, "ba": combine_biases(*biases, n_a, kernel_i.dtype)}


def _write_cell(fn: str, cell: _Cell, params: dict, where: str) -> None:
    names = _names(cell)
    like = _read_cell(fn, cell)  # checks the target's structure
    for ours, dense, which in (("Wax", cell.dense_i, "dense_i"), ("Waa", cell.dense_h, "dense_h")):
        if params[ours].shape != like[ours].shape:
            expected = tuple(like[ours].shape)
            raise ValueError(
                f"{fn}: {where}['{ours}'].shape={tuple(params[ours].shape)} does not fit like's "
                f"{names[which]}.kernel.shape={expected[::-1]}; expected {expected}"
            )
        _set(dense, "kernel", params[ours].T)
    like_biases = (_get(cell.dense_i, "bias"), _get(cell.dense_h, "bias"))
    biases = split_bias(fn, f"{where}['ba']", params["ba"], *like_biases, f"like's {cell.path}")
    for dense, bias in zip((cell.dense_i, cell.dense_h), biases):
        if bias is not None:
            _set(dense, "bias", bias)


def _set(dense: Any, name: str, value: Any) -> None:
    """Replaces a kernel or bias, in the dtype it had."""
    if isinstance(dense, Mapping):
        dense[name] = jnp.asarray(value, dense[name].dtype)
    else:
        variable = getattr(dense, name)
        variable.set_value(jnp.asarray(value, variable[...].dtype))


def _names(cell: _Cell) -> dict:
    """How messages name the cell's two dense layers."""
    if isinstance(cell.dense_i, Mapping):
        return {"dense_i": f"{cell.path}['i']", "dense_h": f"{cell.path}['h']"}
    return {"dense_i": f"{cell.path}.dense_i", "dense_h": f"{cell.path}.dense_h"}


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
