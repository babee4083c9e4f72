"""PyTorch interop: `torch.nn.RNN` weights in (`from_torch`) and out (`to_torch`), and its
stacked hidden state `h (num_layers · directions, B, hidden_size)` (`from_torch_hidden`,
`to_torch_hidden`).

    nn.RNN                                   jaxrnn (rnn_stack layers)
    weight_ih_l{k}[_reverse] (H, n_in)       Wax (n_a, n_x)
    weight_hh_l{k}[_reverse] (H, H)          Waa (n_a, n_a)
    bias_ih_l{k} + bias_hh_l{k} (H,)         ba (n_a, 1)
    nonlinearity, batch_first                nonlinearity=, layout="batch_major" | "time_major"

torch is imported only inside the functions that need it: reading a module, and `to_torch`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _validate
from jaxrnn._interop import check_shape, combine_biases, split_bias, target_dtype, to_numpy

_KEY = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?")
_SUFFIXES = ("", "_reverse")
_GATES = {4: "nn.LSTM's four gates", 3: "nn.GRU's three gates"}


def from_torch(module_or_state_dict, *, nonlinearity: str | None = None, batch_first: bool | None = None, dtype=None):
    """The weights of a `torch.nn.RNN` as `rnn_stack` layers, with the options that run them.

    Any `num_layers`, `bidirectional`, `nonlinearity`, `batch_first` and `bias`. The result
    computes the module's numbers: `rnn_stack(x, a0, layers, **options)` gives its output,
    and with `return_final_state=True` its `h_n` (`to_torch_hidden`); `from_torch_hidden`
    turns its `h_0` into `a0`; `seq_lengths` plays the part of a packed sequence.

    Args:
      module_or_state_dict: an `nn.RNN`, or its `state_dict()` — any mapping of the names
        `weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}` (`_reverse` for the
        second direction; no biases for `bias=False`) to torch tensors, numpy or JAX arrays.
      nonlinearity: `"tanh"` or `"relu"`, for a state dict (default `"tanh"`); a module's own
        setting is used, and a different one here raises.
      batch_first: for a state dict (default False), as `nonlinearity`.
      dtype: the dtype of the parameters; None keeps the weights' own.

    Returns:
      `(layers, options)`: `layers` a list, bottom first, of dicts `Wax, Waa, ba` (pairs
      `(forward, reverse)` for bidirectional layers; `layers[0]` is the dict `rnn` takes for a
      one-layer module); `options` `{"nonlinearity": ..., "layout": ...}` for `rnn_stack`/`rnn`:
      `"batch_major"` for `batch_first=True`, else `"time_major"`. `ba` is `bias_ih + bias_hh`
      (zeros for `bias=False`), rounded once; `to_torch(layers, like=...)` writes it back.
    """
    fn = "from_torch"
    state_dict, nonlinearity, batch_first = _read(fn, module_or_state_dict, nonlinearity, batch_first)
    arrays = {str(name): to_numpy(fn, f"state_dict['{name}']", value) for name, value in state_dict.items()}
    num_layers, directions, bias = _structure(fn, arrays)
    n_a = _check_shapes(fn, arrays, num_layers, directions, bias, "state_dict")
    dtype = target_dtype(fn, arrays, dtype)
    layers = []
    for l in range(num_layers):
        pair = []
        for suffix in _SUFFIXES[:directions]:
            key = f"l{l}{suffix}"
            ba = combine_biases(arrays.get(f"bias_ih_{key}"), arrays.get(f"bias_hh_{key}"), n_a, dtype)
            Wax, Waa = (jnp.asarray(arrays[f"{kind}_{key}"].astype(dtype)) for kind in ("weight_ih", "weight_hh"))
            pair.append({"Wax": Wax, "Waa": Waa, "ba": ba})
        layers.append(tuple(pair) if directions == 2 else pair[0])
    return layers, {"nonlinearity": nonlinearity, "layout": "batch_major" if batch_first else "time_major"}


def to_torch(layers, like=None, *, bias: bool | None = None) -> OrderedDict:
    """`rnn_stack` layers as a state dict that `nn.RNN.load_state_dict` accepts.

    The two biases are split as `jaxrnn._interop` describes: with `like`, `bias_hh` is
    `like`'s, bit for bit, and `bias_ih` is `like`'s wherever `like`'s `bias_ih + bias_hh`
    still equals `ba` (so `to_torch(from_torch(m)[0], like=m)` is bitwise `m.state_dict()`),
    `ba − bias_hh` elsewhere (a trained `ba`: the sum is `ba` up to rounding, ≤ 2 ulp). Without
    `like`, `bias_ih = ba` and `bias_hh = 0`, exactly.

    Args:
      layers: a list as `rnn_stack` takes it (or one parameter dict), without an output head
        (`nn.RNN` has none); all layers unidirectional or all bidirectional.
      like: the `nn.RNN` (or its state dict) to write over: it supplies `bias_hh`, and its keys
        and shapes must be those of `layers`. None: a fresh split.
      bias: False for an `nn.RNN(bias=False)` (then every `ba` must be zero); None: `like`'s,
        or True.

    Returns:
      an `OrderedDict` of torch tensors in `nn.RNN`'s key order, in the layers' dtype.
    """
    fn = "to_torch"
    torch = _import_torch(fn, "to_torch returns torch tensors")
    layers = _validate.layer_list(fn, [layers] if isinstance(layers, Mapping) else layers)
    if "Wya" in layers[-1][0]:
        raise ValueError(
            f"{fn}: layers[{len(layers) - 1}] has an output head (Wya, by), which nn.RNN does not have; "
            f"drop it from the dict (it maps to an nn.Linear: weight = Wya, bias = by[:, 0])"
        )
    directions = len(layers[0])
    for l, layer in enumerate(layers):
        if len(layer) != directions:
            raise ValueError(
                f"{fn}: layers[{l}] has {len(layer)} direction(s) and layers[0] {directions}; "
                f"an nn.RNN's layers are all bidirectional or all unidirectional"
            )
    like_arrays = None
    if like is not None:
        like_state, _, _ = _read(fn, like, None, None)
        like_arrays = {str(k): to_numpy(fn, f"like['{k}']", v) for k, v in like_state.items()}
        like_layers, like_directions, like_bias = _structure(fn, like_arrays, "like")
        _check_shapes(fn, like_arrays, like_layers, like_directions, like_bias, "like")
        if (like_layers, like_directions) != (len(layers), directions):
            raise ValueError(
                f"{fn}: like is an nn.RNN(num_layers={like_layers}, bidirectional={like_directions == 2}); "
                f"layers describe num_layers={len(layers)}, bidirectional={directions == 2}"
            )
        if bias is not None and bias != like_bias:
            raise ValueError(f"{fn}: bias={bias} contradicts like, which has bias={like_bias}")
        bias = like_bias
    bias = True if bias is None else bias
    state = OrderedDict()
    for l, layer in enumerate(layers):
        for d, (params, suffix) in enumerate(zip(layer, _SUFFIXES)):
            key = f"l{l}{suffix}"
            where = f"layers[{l}][{d}]" if directions == 2 else f"layers[{l}]"
            values = {f"weight_ih_{key}": params["Wax"], f"weight_hh_{key}": params["Waa"]}
            if like_arrays is not None:
                for (name, value), ours in zip(values.items(), ("Wax", "Waa")):
                    if value.shape != like_arrays[name].shape:
                        raise ValueError(
                            f"{fn}: {where}['{ours}'].shape={tuple(value.shape)} does not fit "
                            f"like['{name}'].shape={like_arrays[name].shape}; expected {like_arrays[name].shape}"
                        )
                like_biases = (like_arrays.get(f"bias_ih_{key}"), like_arrays.get(f"bias_hh_{key}"))
                biases = split_bias(fn, f"{where}['ba']", params["ba"], *like_biases, "like")
            elif bias:  # a fresh split: bias_ih = ba, bias_hh = 0
                ba = np.asarray(params["ba"])[:, 0]
                biases = (ba, np.zeros_like(ba))
            else:
                biases = split_bias(fn, f"{where}['ba']", params["ba"], None, None, "nn.RNN(bias=False)")
            if bias:
                values |= {f"bias_ih_{key}": biases[0], f"bias_hh_{key}": biases[1]}
            state |= {name: _tensor(torch, value) for name, value in values.items()}
    return OrderedDict((name, state[name]) for name in _names(len(layers), directions, bias))


def from_torch_hidden(h, layers) -> list:
    """PyTorch's `h_0 (num_layers · directions, B, hidden_size)` as `rnn_stack`'s `a0`: a list
    with one `(B, n_a)` state per layer (a pair for a bidirectional layer), for the
    `"batch_major"` and `"time_major"` layouts. `layers` gives the structure."""
    fn = "from_torch_hidden"
    h = jnp.asarray(h if isinstance(h, jax.Array) else to_numpy(fn, "h", h))
    directions = [len(layer) if isinstance(layer, (tuple, list)) else 1 for layer in layers]
    if h.ndim != 3 or h.shape[0] != sum(directions):
        raise ValueError(
            f"{fn}: h.shape={tuple(h.shape)}; expected (num_layers · directions, B, hidden_size) "
            f"with num_layers · directions = {sum(directions)} from layers"
        )
    a0, row = [], 0
    for count in directions:
        states = tuple(h[row + d] for d in range(count))
        a0.append(states if count == 2 else states[0])
        row += count
    return a0


def to_torch_hidden(final_states: list) -> jax.Array:
    """`rnn_stack`'s `final_states` (batch- or time-major) as PyTorch's
    `h_n (num_layers · directions, B, hidden_size)`, forward direction first in each layer."""
    return jnp.stack([s for layer in final_states for s in (layer if isinstance(layer, tuple) else (layer,))])


def _import_torch(fn: str, why: str):
    try:
        import torch
    except ImportError:
        raise ImportError(f"{fn}: {why}, so it needs PyTorch, which is not installed (pip install torch)") from None
    return torch


def _read(fn: str, source: Any, nonlinearity: str | None, batch_first: bool | None):
    """`(state_dict, nonlinearity, batch_first)` from an `nn.RNN` or a mapping."""
    if isinstance(source, Mapping):
        nonlinearity = "tanh" if nonlinearity is None else nonlinearity
        nonlinearity = _validate.choice(fn, "nonlinearity", nonlinearity, _validate.NONLINEARITIES)
        return source, nonlinearity, bool(batch_first)
    if not hasattr(source, "state_dict"):
        raise TypeError(
            f"{fn}: expected a torch.nn.RNN or its state_dict() (a mapping of names to arrays); "
            f"received {type(source).__name__}"
        )
    torch = _import_torch(fn, "reading a torch module")
    if isinstance(source, torch.nn.RNNBase) and not isinstance(source, torch.nn.RNN):
        raise TypeError(
            f"{fn}: received an nn.{type(source).__name__}; jaxrnn is the vanilla RNN and converts nn.RNN only "
            f"(tanh or relu), not gated cells"
        )
    if not isinstance(source, torch.nn.RNN):
        raise TypeError(f"{fn}: expected a torch.nn.RNN or its state_dict(); received {type(source).__name__}")
    for name, given in (("nonlinearity", nonlinearity), ("batch_first", batch_first)):
        if given is not None and given != getattr(source, name):
            raise ValueError(f"{fn}: {name}={given!r} contradicts the module's {name}={getattr(source, name)!r}")
    return source.state_dict(), source.nonlinearity, source.batch_first


def _names(num_layers: int, directions: int, bias: bool) -> list[str]:
    """`nn.RNN`'s state-dict keys, in its order."""
    kinds = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if bias else ())
    return [f"{kind}_l{l}{suffix}" for l in range(num_layers) for suffix in _SUFFIXES[:directions] for kind in kinds]


def _structure(fn: str, arrays: dict, what: str = "state_dict") -> tuple[int, int, bool]:
    """`(num_layers, directions, bias)` read from the keys, which must be exactly `nn.RNN`'s."""
    parsed = {name: _KEY.fullmatch(name) for name in arrays}
    matches = [m for m in parsed.values() if m]
    num_layers = 1 + max((int(m[2]) for m in matches), default=0)
    directions = 2 if any(m[3] for m in matches) else 1
    bias = any(m[1].startswith("bias") for m in matches)
    expected = _names(num_layers, directions, bias)
    missing = [name for name in expected if name not in arrays]
    unexpected = sorted(name for name in arrays if name not in expected)
    if missing or unexpected:
        hint = ""
        if any("." in name for name in unexpected):
            hint = "; for a model holding an nn.RNN, pass that module or its own state_dict()"
        raise ValueError(
            f"{fn}: {what} does not have the keys of an nn.RNN(num_layers={num_layers}, "
            f"bidirectional={directions == 2}, bias={bias}): missing {missing}, unexpected {unexpected}{hint}"
        )
    return num_layers, directions, bias


def _check_shapes(fn: str, arrays: dict, num_layers: int, directions: int, bias: bool, what: str) -> int:
    """Checks every weight's shape against `hidden_size` (the columns of `weight_hh_l0`); returns it."""
    first = arrays["weight_hh_l0"]
    if first.ndim != 2:
        raise ValueError(f"{fn}: {what}['weight_hh_l0'].shape={first.shape}; expected (hidden_size, hidden_size)")
    n_a = first.shape[1]
    if arrays["weight_ih_l0"].ndim != 2:
        shape = arrays["weight_ih_l0"].shape
        raise ValueError(f"{fn}: {what}['weight_ih_l0'].shape={shape}; expected (hidden_size, input_size)")
    n_x = arrays["weight_ih_l0"].shape[1]
    for name in _names(num_layers, directions, bias):
        kind, l = _KEY.fullmatch(name)[1], int(_KEY.fullmatch(name)[2])
        if kind == "weight_hh":
            expected, meaning = (n_a, n_a), "(hidden_size, hidden_size)"
        elif kind == "weight_ih" and l == 0:
            expected, meaning = (n_a, n_x), "(hidden_size, input_size)"
        elif kind == "weight_ih":
            expected = (n_a, directions * n_a)
            meaning = "(hidden_size, 2 · hidden_size)" if directions == 2 else "(hidden_size, hidden_size)"
        else:
            expected, meaning = (n_a,), "(hidden_size,)"
        received = arrays[name].shape
        gates = received[0] // n_a if received and n_a and received[0] % n_a == 0 else None
        hint = f" ({received[0]} rows are {_GATES[gates]}; jaxrnn converts nn.RNN only)" if gates in _GATES else ""
        check_shape(fn, f"{what}['{name}']", arrays[name], expected, meaning, hint)
    return n_a


def _tensor(torch, value):
    array = np.array(value)
    if array.dtype == jnp.bfloat16:
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(array)
