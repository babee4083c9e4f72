"""PyTorch interop: the weights of `torch.nn.RNN`, `nn.GRU` and `nn.LSTM` in (`from_torch`) and
out (`to_torch`). The stacked states `h_0`/`h_n` (and `c_0`/`c_n`) are in `_torch_hidden`.

    PyTorch (G gates: RNN 1, GRU 3 r,z,n, LSTM 4 i,f,g,o)   jaxrnn (rnn_stack layers)
    weight_ih_l{k}[_reverse] (G·H, n_in)                    Wax (G·n_a, n_x)
    weight_hh_l{k}[_reverse] (G·H, H)                       Waa (G·n_a, n_a)
    bias_ih_l{k} + bias_hh_l{k} (G·H,)                      ba (G·n_a, 1)
      GRU: the n gate's b_in, and b_hn                      ba[2n_a:] = b_in, bhn (n_a, 1) = b_hn
    nn.RNN / nn.GRU / nn.LSTM, nonlinearity                 cell="vanilla" / "gru" / "lstm", nonlinearity=
    batch_first                                             layout="batch_major" | "time_major"

torch is imported only inside the functions that need it: reading a module, and `to_torch`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxrnn import _validate
from jaxrnn._interop import (
    CELL_OF_GATES,
    GATES,
    cell_of_layers,
    cell_option,
    check_shape,
    gate_biases,
    split_gate_biases,
    target_dtype,
    to_numpy,
)
from jaxrnn._torch_hidden import from_torch_hidden, to_torch_hidden

__all__ = ["from_torch", "from_torch_hidden", "to_torch", "to_torch_hidden"]

_KEY = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?")
_SUFFIXES = ("", "_reverse")
_WEIGHTS = {"Wax": "weight_ih", "Waa": "weight_hh"}
_MODULES = {"vanilla": "nn.RNN", "gru": "nn.GRU", "lstm": "nn.LSTM"}
_PROJECTION = (
    "an nn.LSTM with proj_size > 0, whose state is projected (h = W_hr (o ⊙ tanh(c))); jaxrnn's LSTM has no "
    "projection: use proj_size=0"
)


class _Source(NamedTuple):
    """What a module or state dict says: its arrays, its cell (None: read it from the shapes)
    and its options (None: the caller's or the default)."""

    state: Mapping
    cell: str | None
    nonlinearity: str | None
    batch_first: bool | None


class _Structure(NamedTuple):
    num_layers: int
    directions: int
    bias: bool
    cell: str
    n_a: int


def from_torch(
    module_or_state_dict,
    *,
    cell: str | None = None,
    nonlinearity: str | None = None,
    batch_first: bool | None = None,
    dtype=None,
):
    """The weights of a `torch.nn.RNN`, `nn.GRU` or `nn.LSTM` as `rnn_stack` layers, with the
    options that run them.

    Any `num_layers`, `bidirectional`, `batch_first` and `bias`, and `nn.RNN`'s `nonlinearity`.
    The result computes the module's numbers: `rnn_stack(x, a0, layers, **options)` gives its
    output, and with `return_final_state=True` its `h_n` (an LSTM's `(h_n, c_n)`; see
    `to_torch_hidden`); `from_torch_hidden` turns its `h_0` (or `(h_0, c_0)`) into `a0`;
    `seq_lengths` plays the part of a packed sequence. `dropout` is training-time only:
    `rnn_stack(..., dropout=, key=)` places it the same way.

    Args:
      module_or_state_dict: an `nn.RNN`, `nn.GRU` or `nn.LSTM`, or its `state_dict()` — any
        mapping of the names `weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`
        (`_reverse` for the second direction; no biases for `bias=False`) to torch tensors,
        numpy or JAX arrays. A state dict's cell is read from its gate count: `weight_hh_l0`
        with `4·H` rows is an LSTM's, `3·H` a GRU's, `H` an `nn.RNN`'s.
      cell: `"vanilla"`, `"gru"` or `"lstm"`, to state what the source must be; one that
        contradicts the module's type or the state dict's shapes raises.
      nonlinearity: `"tanh"` or `"relu"`, for an `nn.RNN`'s state dict (default `"tanh"`); a
        module's own setting is used, and a different one here raises. GRU and LSTM: tanh only.
      batch_first: for a state dict (default False), as `nonlinearity`.
      dtype: the dtype of the parameters; None keeps the weights' own.

    Returns:
      `(layers, options)`: `layers` a list, bottom first, of parameter dicts `Wax, Waa, ba`
      (the GRU's also `bhn`; pairs `(forward, reverse)` for bidirectional layers; `layers[0]`
      is the dict `rnn` takes for a one-layer module); `options` `{"cell": ..., "layout": ...}`
      for `rnn_stack`/`rnn`, with `"nonlinearity"` for the vanilla cell: `layout` is
      `"batch_major"` for `batch_first=True`, else `"time_major"`. `ba` is `bias_ih + bias_hh`
      (zeros for `bias=False`), rounded once — the GRU's n-gate rows `b_in` alone, `bhn` its
      `b_hn` — and `to_torch(layers, like=...)` writes them back.

    Raises:
      ValueError: what jaxrnn cannot compute: an `nn.LSTM` with `proj_size > 0`.
      TypeError: a module other than `nn.RNN`, `nn.GRU`, `nn.LSTM` or a state dict.
    """
    fn = "from_torch"
    source = _read(fn, module_or_state_dict, cell, nonlinearity, batch_first)
    arrays = {str(name): to_numpy(fn, f"state_dict['{name}']", value) for name, value in source.state.items()}
    structure = _structure(fn, arrays, source.cell or cell)
    cell = structure.cell
    nonlinearity = _validate.cell_nonlinearity(fn, cell, "tanh" if source.nonlinearity is None else source.nonlinearity)
    dtype = target_dtype(fn, arrays, dtype)
    G, n_a = GATES[cell], structure.n_a
    layers = []
    for l in range(structure.num_layers):
        pair = []
        for suffix in _SUFFIXES[: structure.directions]:
            key = f"l{l}{suffix}"
            blocks = [_gates(arrays.get(f"bias_{kind}_{key}"), G) for kind in ("ih", "hh")]
            params = {ours: jnp.asarray(arrays[f"{name}_{key}"].astype(dtype)) for ours, name in _WEIGHTS.items()}
            pair.append(params | gate_biases(cell, *blocks, n_a, dtype))
        layers.append(tuple(pair) if structure.directions == 2 else pair[0])
    layout = "batch_major" if source.batch_first else "time_major"
    options = {"cell": cell} | ({"nonlinearity": nonlinearity} if cell == "vanilla" else {})
    return layers, options | {"layout": layout}


def to_torch(layers, like=None, *, cell: str | None = None, bias: bool | None = None) -> OrderedDict:
    """`rnn_stack` layers as a state dict that `nn.RNN`, `nn.GRU` or `nn.LSTM.load_state_dict` accepts.

    The biases are split as `jaxrnn._interop` describes: with `like`, `bias_hh` is `like`'s,
    bit for bit, and `bias_ih` is `like`'s wherever `like`'s `bias_ih + bias_hh` still equals
    `ba` (so `to_torch(from_torch(m)[0], like=m)` is bitwise `m.state_dict()`), `ba − bias_hh`
    elsewhere (a trained `ba`: the sum is `ba` up to rounding, ≤ 2 ulp). The GRU's n gate is
    exact either way: `bias_ih`'s n rows are `ba`'s, `bias_hh`'s are `bhn`. Without `like`,
    `bias_ih = ba` and `bias_hh = 0` (the GRU's n rows: `bhn`), exactly.

    Args:
      layers: a list as `rnn_stack` takes it (or one parameter dict), without an output head
        (PyTorch's modules have none); all layers unidirectional or all bidirectional.
      like: the module (or its state dict) to write over: it supplies `bias_hh`, and its cell,
        keys and shapes must be those of `layers`. None: a fresh split.
      cell: `"vanilla"`, `"gru"` or `"lstm"`, which `layers` must be; None: read from `layers`
        (`bhn`: a GRU; `Waa` with `4·n_a` rows: an LSTM). `like` must be a module of that cell.
      bias: False for a module built with `bias=False` (then every `ba` and `bhn` must be
        zero); None: `like`'s, or True.

    Returns:
      an `OrderedDict` of torch tensors in the module's key order, in the layers' dtype.
    """
    fn = "to_torch"
    torch = _import_torch(fn, "to_torch returns torch tensors")
    single = isinstance(layers, Mapping)
    cell = cell_of_layers(fn, layers, cell)
    like_arrays, like_structure = None, None
    if like is not None:
        like_source = _read(fn, like, None, None, None)
        like_arrays = {str(k): to_numpy(fn, f"like['{k}']", v) for k, v in like_source.state.items()}
        like_structure = _structure(fn, like_arrays, like_source.cell, "like")
        if like_structure.cell != cell:
            raise ValueError(f"{fn}: layers are {cell} layers; like is an {_MODULES[like_structure.cell]}'s weights")
    layers = _validate.layer_list(fn, [layers] if single else layers, cell=cell)
    if "Wya" in layers[-1][0]:
        raise ValueError(
            f"{fn}: layers[{len(layers) - 1}] has an output head (Wya, by), which {_MODULES[cell]} does not have; "
            f"drop it from the dict (it maps to an nn.Linear: weight = Wya, bias = by[:, 0])"
        )
    directions = len(layers[0])
    for l, layer in enumerate(layers):
        if len(layer) != directions:
            raise ValueError(
                f"{fn}: layers[{l}] has {len(layer)} direction(s) and layers[0] {directions}; "
                f"an {_MODULES[cell]}'s layers are all bidirectional or all unidirectional"
            )
    if like_structure is not None:
        if (like_structure.num_layers, like_structure.directions) != (len(layers), directions):
            raise ValueError(
                f"{fn}: like is an {_MODULES[cell]}(num_layers={like_structure.num_layers}, "
                f"bidirectional={like_structure.directions == 2}); layers describe num_layers={len(layers)}, "
                f"bidirectional={directions == 2}"
            )
        if bias is not None and bias != like_structure.bias:
            raise ValueError(f"{fn}: bias={bias} contradicts like, which has bias={like_structure.bias}")
        bias = like_structure.bias
    bias = True if bias is None else bias
    target = "like" if like is not None else f"an {_MODULES[cell]}(bias=False)"
    state = OrderedDict()
    for l, layer in enumerate(layers):
        for d, (params, suffix) in enumerate(zip(layer, _SUFFIXES)):
            key = f"l{l}{suffix}"
            where = f"layers[{l}][{d}]" if directions == 2 else f"layers[{l}]"
            values = {f"{name}_{key}": params[ours] for ours, name in _WEIGHTS.items()}
            if like_arrays is not None:
                for (name, value), ours in zip(values.items(), _WEIGHTS):
                    if value.shape != like_arrays[name].shape:
                        raise ValueError(
                            f"{fn}: {where}['{ours}'].shape={tuple(value.shape)} does not fit "
                            f"like['{name}'].shape={like_arrays[name].shape}; expected {like_arrays[name].shape}"
                        )
                written = [_gates(like_arrays.get(f"bias_{kind}_{key}"), GATES[cell]) for kind in ("ih", "hh")]
            elif bias:  # a fresh split: bias_ih = ba (the GRU's n rows too), bias_hh = 0 (its n rows: bhn)
                ba = np.asarray(params["ba"])[:, 0]
                written = [_gates(ba, GATES[cell]), _gates(np.zeros_like(ba), GATES[cell])]
            else:
                written = [[None] * GATES[cell]] * 2
            inputs, hiddens = split_gate_biases(fn, where, params, cell, *written, target)
            if bias:
                values |= {f"bias_ih_{key}": np.concatenate(inputs), f"bias_hh_{key}": np.concatenate(hiddens)}
            state |= {name: _tensor(torch, value) for name, value in values.items()}
    return OrderedDict((name, state[name]) for name in _names(len(layers), directions, bias))


def _gates(bias: np.ndarray | None, G: int) -> list:
    """A bias `(G·H,)` as its `G` gate blocks `(H,)`; None as `G` Nones."""
    if bias is None:
        return [None] * G
    n_a = bias.shape[0] // G
    return [bias[k * n_a : (k + 1) * n_a] for k in range(G)]


def _import_torch(fn: str, why: str):
    try:
        import torch
    except ImportError:
        raise ImportError(f"{fn}: {why}, so it needs PyTorch, which is not installed (pip install torch)") from None
    return torch


def _read(fn: str, source: Any, cell: str | None, nonlinearity: str | None, batch_first: bool | None) -> _Source:
    """The arrays and settings of a module or a mapping."""
    if isinstance(source, Mapping):
        if nonlinearity is not None:
            _validate.choice(fn, "nonlinearity", nonlinearity, _validate.NONLINEARITIES)
        return _Source(source, None, nonlinearity, bool(batch_first))
    if not hasattr(source, "state_dict"):
        raise TypeError(
            f"{fn}: expected a torch.nn.RNN, nn.GRU or nn.LSTM, or its state_dict() (a mapping of names to arrays); "
            f"received {type(source).__name__}"
        )
    torch = _import_torch(fn, "reading a torch module")
    kinds = {torch.nn.RNN: "vanilla", torch.nn.GRU: "gru", torch.nn.LSTM: "lstm"}
    found = next((name for kind, name in kinds.items() if isinstance(source, kind)), None)
    if found is None:
        raise TypeError(
            f"{fn}: expected a torch.nn.RNN, nn.GRU or nn.LSTM, or its state_dict(); received {type(source).__name__}"
        )
    cell_option(fn, cell, found, f"the module (an nn.{type(source).__name__})")
    if getattr(source, "proj_size", 0) > 0:
        raise ValueError(f"{fn}: the module has proj_size={source.proj_size}: {_PROJECTION}")
    settings = {"batch_first": source.batch_first}
    if found == "vanilla":
        settings["nonlinearity"] = source.nonlinearity
    elif nonlinearity is not None:
        _validate.cell_nonlinearity(fn, found, nonlinearity)
    for name, given in (("nonlinearity", nonlinearity), ("batch_first", batch_first)):
        if name in settings and given is not None and given != settings[name]:
            raise ValueError(f"{fn}: {name}={given!r} contradicts the module's {name}={settings[name]!r}")
    return _Source(source.state_dict(), found, settings.get("nonlinearity"), source.batch_first)


def _names(num_layers: int, directions: int, bias: bool) -> list[str]:
    """PyTorch's state-dict keys, in its order (the same for the three modules)."""
    kinds = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if bias else ())
    return [f"{kind}_l{l}{suffix}" for l in range(num_layers) for suffix in _SUFFIXES[:directions] for kind in kinds]


def _structure(fn: str, arrays: dict, cell: str | None, what: str = "state_dict") -> _Structure:
    """The structure read from the keys, which must be exactly PyTorch's, and the shapes, which
    must fit one cell: `cell`, or the one whose gate count `weight_hh_l0` has."""
    projections = sorted(name for name in arrays if re.fullmatch(r"weight_hr_l\d+(_reverse)?", name))
    if projections:
        raise ValueError(f"{fn}: {what} has {projections}: {_PROJECTION}")
    matches = [m for m in map(_KEY.fullmatch, arrays) if m]
    num_layers = 1 + max((int(m[2]) for m in matches), default=0)
    directions = 2 if any(m[3] for m in matches) else 1
    bias = any(m[1].startswith("bias") for m in matches)
    expected = _names(num_layers, directions, bias)
    missing = [name for name in expected if name not in arrays]
    unexpected = sorted(name for name in arrays if name not in expected)
    if missing or unexpected:
        hint = ""
        if any("." in name for name in unexpected):
            hint = "; for a model holding an nn.RNN, nn.GRU or nn.LSTM, pass that module or its own state_dict()"
        raise ValueError(
            f"{fn}: {what} does not have the keys of a PyTorch RNN, GRU or LSTM (num_layers={num_layers}, "
            f"bidirectional={directions == 2}, bias={bias}): missing {missing}, unexpected {unexpected}{hint}"
        )
    cell, n_a = _cell(fn, arrays, cell, what)
    G = GATES[cell]
    n_x = arrays["weight_ih_l0"].shape[-1] if arrays["weight_ih_l0"].ndim else 0
    rows = "hidden_size" if G == 1 else f"{G}·hidden_size"
    width = "2 · hidden_size" if directions == 2 else "hidden_size"
    meanings = {
        "weight_hh": ((G * n_a, n_a), f"({rows}, hidden_size)"),
        "weight_ih": ((G * n_a, directions * n_a), f"({rows}, {width})"),
        "bias": ((G * n_a,), f"({rows},)"),
    }
    for name in expected:
        kind, l = _KEY.fullmatch(name)[1], int(_KEY.fullmatch(name)[2])
        shape, meaning = meanings["bias" if kind.startswith("bias") else kind]
        if kind == "weight_ih" and l == 0:
            shape, meaning = (G * n_a, n_x), f"({rows}, input_size)"
        check_shape(fn, f"{what}['{name}']", arrays[name], shape, meaning, f" for an {_MODULES[cell]}")
    return _Structure(num_layers, directions, bias, cell, n_a)


def _cell(fn: str, arrays: dict, cell: str | None, what: str) -> tuple[str, int]:
    """`(cell, hidden_size)` from `weight_hh_l0 (G·hidden_size, hidden_size)`."""
    shape = arrays["weight_hh_l0"].shape
    rows, n_a = shape if len(shape) == 2 else (0, 0)
    found = CELL_OF_GATES.get(rows // n_a) if n_a and rows % n_a == 0 else None
    if found is None:
        raise ValueError(
            f"{fn}: {what}['weight_hh_l0'].shape={shape}; expected (G·hidden_size, hidden_size) with G = 1 "
            f"(nn.RNN), 3 (nn.GRU) or 4 (nn.LSTM)"
        )
    return cell_option(fn, cell, found, f"{what}['weight_hh_l0'].shape={shape} ({_MODULES[found]})"), n_a


def _tensor(torch, value):
    array = np.array(value)
    if array.dtype == jnp.bfloat16:
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(array)
