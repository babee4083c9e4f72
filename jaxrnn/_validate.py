"""Shape, rank, key, dtype and option checks for the public functions.

Every check runs at trace time on static facts (shapes, dtypes, keys, Python options), so
it fires the same way eagerly, under `jax.jit` and under `jax.vmap` (where it sees the
per-example shapes). Every message names the function, the argument, what was expected
and what was received. The one value check, `seq_lengths` in `[0, T]`, runs when the
lengths are concrete; traced lengths are guarded by the layer (see `guard_lengths`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _cells, _layout

RECURRENT_KEYS = ("Wax", "Waa", "ba")
HEAD_KEYS = ("Wya", "by")
PARAMETER_KEYS = RECURRENT_KEYS + HEAD_KEYS
NONLINEARITIES = ("tanh", "relu")
GRADIENTS = ("hand", "autodiff")
CELLS = _cells.CELL_NAMES
_GATES = {"vanilla": 1, "gru": 3, "lstm": 4}


def _rows(cell: str) -> str:
    """The rows of a cell's stacked weights, for messages: `n_a`, `3·n_a`, `4·n_a`."""
    gates = _GATES[cell]
    return "n_a" if gates == 1 else f"{gates}·n_a"


def _parameter_layout(cell: str, key: str) -> str:
    rows = _rows(cell)
    return {
        "Wax": f"({rows}, n_x)",
        "Waa": f"({rows}, n_a)",
        "ba": f"({rows}, 1)",
        "bhn": "(n_a, 1)",
        "Wya": "(n_y, n_a)",
        "by": "(n_y, 1)",
    }[key]


def recurrent_keys(cell: str) -> tuple[str, ...]:
    """The recurrent parameters of a cell: `Wax, Waa, ba` and its extra biases (the GRU's `bhn`)."""
    return RECURRENT_KEYS + _cells.get(cell).extra_biases


# Axis names of x, a0 and the labels in each layout, for messages.
_NAMES = {
    "seed": {"x": "(n_x, m, T_x)", "a0": "(n_a, m)", "labels": "(m, T_x)", "batch": "m", "time": "T_x"},
    "batch_major": {"x": "(B, T, n_x)", "a0": "(B, n_a)", "labels": "(B, T)", "batch": "B", "time": "T"},
    "time_major": {"x": "(T, B, n_x)", "a0": "(B, n_a)", "labels": "(T, B)", "batch": "B", "time": "T"},
}


class Sizes(NamedTuple):
    """The static sizes of one RNN problem (`n_y` is None for a layer without a head)."""

    n_x: int
    n_a: int
    n_y: int | None
    m: int
    T_x: int


def as_float_array(fn: str, name: str, value: Any) -> jax.Array:
    """Converts `value` to a JAX array and checks that its dtype is floating."""
    try:
        array = jnp.asarray(value)
    except TypeError as err:
        raise TypeError(f"{fn}: {name} must be an array of floats; received {type(value).__name__} ({err})") from None
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise TypeError(
            f"{fn}: {name}.dtype={array.dtype} is not a floating dtype; "
            f"expected float32, float64, bfloat16 or float16 (cast with .astype)"
        )
    return array


def floating_dtype(fn: str, dtype: Any, name: str = "dtype") -> np.dtype:
    """A floating dtype that JAX can hold in its current mode (float64 needs 64-bit mode)."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{fn}: {name}={dtype!r} is not a dtype; expected e.g. jnp.float32") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{fn}: {name}={dtype} is not a floating dtype")
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:
        raise ValueError(
            f"{fn}: {name}={dtype} needs 64-bit mode, which is off; "
            f"enable it (e.g. `with jax.enable_x64(True):`) or use {name}=jnp.float32"
        )
    return dtype


def integer_array(fn: str, name: str, value: Any, expected: str) -> jax.Array:
    """`value` as a JAX array of an integer dtype; `expected` says what it holds, for messages."""
    try:
        array = jnp.asarray(value)
    except TypeError as err:
        raise TypeError(f"{fn}: {name} must be {expected}; received {type(value).__name__} ({err})") from None
    if not jnp.issubdtype(array.dtype, jnp.integer):
        raise TypeError(
            f"{fn}: {name}.dtype={array.dtype} is not an integer dtype; expected {expected} "
            f"(cast with .astype(jnp.int32))"
        )
    return array


def check_rank(fn: str, name: str, array: jax.Array, rank: int, layout: str) -> None:
    if array.ndim != rank:
        raise ValueError(
            f"{fn}: {name}.shape={tuple(array.shape)} has rank {array.ndim}; expected rank {rank}, {layout}"
        )


def check_shape(fn: str, name: str, array: jax.Array, expected: tuple, why: str) -> None:
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{fn}: {name}.shape={tuple(array.shape)} does not fit {why}; expected {tuple(expected)}")


def check_same_dtype(fn: str, named_arrays: dict[str, jax.Array]) -> None:
    (first_name, first), *rest = named_arrays.items()
    for name, array in rest:
        if array.dtype != first.dtype:
            raise TypeError(
                f"{fn}: {name}.dtype={array.dtype} differs from {first_name}.dtype={first.dtype}; "
                f"all arrays must share one floating dtype (cast them with .astype)"
            )


def cell_option(fn: str, value: Any) -> str:
    """The `cell` option: `"vanilla"`, `"gru"` or `"lstm"`."""
    return choice(fn, "cell", value, CELLS)


def parameters(fn: str, params: Any, name: str = "parameters", head: str = "required", cell: str = "vanilla"):
    """Checks one layer's parameter dict; returns it as a plain dict of arrays and `(n_x, n_a, n_y)`.

    `head`: `"required"` (the recurrent keys and `Wya, by`), `"optional"` (with or without
    `Wya, by`) or `"forbidden"` (exactly the recurrent keys); `n_y` is None without a head.
    `cell` fixes the recurrent keys (`recurrent_keys`) and the rows of the stacked weights
    (`G·n_a`); parameters that look like another cell's get a hint naming it.
    """
    recurrent = recurrent_keys(cell)
    if not isinstance(params, Mapping):
        raise TypeError(
            f"{fn}: {name} must be a dict with keys {_expected_keys(head, recurrent)}; received {type(params).__name__}"
        )
    has_head = any(k in params for k in HEAD_KEYS)
    expected = recurrent + HEAD_KEYS if head == "required" or (head == "optional" and has_head) else recurrent
    missing = [k for k in expected if k not in params]
    extra = sorted(str(k) for k in params if k not in expected)
    if missing or extra:
        why = " (only a unidirectional top layer may carry an output head)" if head == "forbidden" and has_head else ""
        raise ValueError(
            f"{fn}: {name} must have exactly the keys {_expected_keys(head, recurrent, has_head)} of "
            f"{_article(cell)} {cell} layer; missing {missing}, unexpected {extra}{why}{_cell_hint(params, cell)}"
        )
    arrays = {k: as_float_array(fn, f"{name}['{k}']", params[k]) for k in expected}
    for k in expected:
        check_rank(fn, f"{name}['{k}']", arrays[k], 2, _parameter_layout(cell, k))
    rows, n_a = arrays["Waa"].shape
    gates = _GATES[cell]
    if rows != gates * n_a:
        raise ValueError(
            f"{fn}: {name}['Waa'].shape={(rows, n_a)} is not {_parameter_layout(cell, 'Waa')} for "
            f"{_article(cell)} {cell} layer: expected {(gates * n_a, n_a)} with n_a={n_a}{_cell_hint(params, cell)}"
        )
    n_x = arrays["Wax"].shape[1]
    from_waa = f"n_a={n_a} from Waa"
    check_shape(fn, f"{name}['Wax']", arrays["Wax"], (gates * n_a, n_x), f"{from_waa} ({_rows(cell)} rows)")
    check_shape(fn, f"{name}['ba']", arrays["ba"], (gates * n_a, 1), f"{from_waa} ({_rows(cell)} rows)")
    for k in _cells.get(cell).extra_biases:
        check_shape(fn, f"{name}['{k}']", arrays[k], (n_a, 1), from_waa)
    n_y = None
    if "Wya" in arrays:
        n_y = arrays["Wya"].shape[0]
        check_shape(fn, f"{name}['Wya']", arrays["Wya"], (n_y, n_a), from_waa)
        check_shape(fn, f"{name}['by']", arrays["by"], (n_y, 1), f"n_y={n_y} from Wya")
    check_same_dtype(fn, {f"{name}['{k}']": arrays[k] for k in expected})
    return arrays, (n_x, n_a, n_y)


def _cell_hint(params: Any, cell: str) -> str:
    """`; these look like a GRU's parameters: pass cell="gru"` where the keys or shapes say so."""
    try:
        rows, n_a = np.shape(params["Waa"])
    except (KeyError, TypeError, ValueError):
        return ""
    looks_like = [name for name, gates in _GATES.items() if rows == gates * n_a and name != cell]
    if "bhn" in params:
        looks_like = ["gru"] if cell != "gru" else []
    elif looks_like == ["gru"]:
        looks_like = []  # a GRU needs bhn as well
    name = looks_like[0] if looks_like else ""
    return f"; these look like {_article(name)} {name} layer's parameters: pass cell={name!r}" if looks_like else ""


def _article(cell: str) -> str:
    return "an" if cell == "lstm" else "a"


def _expected_keys(head: str, recurrent: tuple, has_head: bool = True) -> str:
    if head == "required" or (head == "optional" and has_head):
        return str(list(recurrent + HEAD_KEYS))
    return str(list(recurrent)) + ("" if head == "forbidden" else f" (plus {list(HEAD_KEYS)} for a head)")


def check_input_width(fn: str, params: dict, name: str, array: jax.Array, n_x_in: int, layout: str = "", *, key="Wax"):
    """`Wax (G·n_a, n_x)` must take inputs of width `n_x_in` (read from `array`'s layout)."""
    rows, n_x = params["Wax"].shape
    if n_x_in != n_x:
        gates = rows // params["Waa"].shape[1]
        raise ValueError(
            f"{fn}: {key}.shape={tuple(params['Wax'].shape)} does not fit {name}.shape={tuple(array.shape)}{layout}; "
            f"expected ({'n_a' if gates == 1 else f'{gates}·n_a'}, n_x) = ({rows}, {n_x_in})"
        )


def _layout_hint(shape: tuple, layout: str, n_x: int) -> str:
    """`; x fits layout="batch_major" (B, T, n_x)` when another layout reads `n_x` features off `shape`."""
    fits = [other for other in _layout.LAYOUTS if other != layout and _layout.sizes(shape, other)[0] == n_x]
    if not fits:
        return ""
    options = " or ".join(f"layout={other!r} {_NAMES[other]['x']}" for other in fits)
    return f". x would fit {options}: pass the layout your data has"


def sequence(fn: str, x: Any, layout: str, params: dict, key: str) -> tuple[jax.Array, int, int]:
    """Checks `x` in `layout` against the input width of `params['Wax']` (named `key`); returns `(x, m, T)`."""
    names = _NAMES[layout]
    x = as_float_array(fn, "x", x)
    if layout != "seed" and x.ndim < 2:
        any_batch = "(*batch, T, n_x)" if layout == "batch_major" else "(T, *batch, n_x)"
        raise ValueError(f"{fn}: x.shape={tuple(x.shape)} has rank {x.ndim}; expected {any_batch}, rank 2 or more")
    check_rank(fn, "x", x, 3, names["x"])
    n_x_in, m, T = _layout.sizes(x.shape, layout)
    suffix = "" if layout == "seed" else f" {names['x']}"
    rows, n_x = params["Wax"].shape
    if n_x_in != n_x:
        gates = rows // params["Waa"].shape[1]
        raise ValueError(
            f"{fn}: {key}.shape={tuple(params['Wax'].shape)} does not fit x.shape={tuple(x.shape)}{suffix}; "
            f"expected ({'n_a' if gates == 1 else f'{gates}·n_a'}, n_x) = ({rows}, {n_x_in})"
            f"{_layout_hint(tuple(x.shape), layout, n_x)}"
        )
    if T == 0:
        time = names["time"]
        raise ValueError(f"{fn}: x.shape={tuple(x.shape)} has {time}=0 time steps; expected {time} >= 1")
    return x, m, T


class LayerInputs(NamedTuple):
    """Checked inputs of one layer call: `carry0` a tuple of rows `(m, n_a)` (`(h,)`, or `(h, c)`
    for an LSTM), `lengths` int32 or None."""

    x: jax.Array
    carry0: tuple
    params: dict
    lengths: Any
    sizes: Sizes


def layer_inputs(
    fn: str, x, a0, params, seq_lengths, layout: str, head: str = "optional", cell: str = "vanilla"
) -> LayerInputs:
    """Checks `x` and `a0` in `layout`, the parameters and `seq_lengths` of a layer call.

    `a0=None` means zeros. Returns `LayerInputs` with `a0` as a carry of rows.
    """
    layout = choice(fn, "layout", layout, _layout.LAYOUTS)
    params, (n_x, n_a, n_y) = parameters(fn, params, head=head, cell=cell)
    x, m, T = sequence(fn, x, layout, params, "parameters['Wax']")
    why = f"n_a={n_a} from parameters['Waa']"
    carry0 = state(fn, "a0", a0, cell, n_a, m, layout, x.dtype, why)
    check_same_dtype(fn, {"x": x, "parameters['Wax']": params["Wax"]})
    lengths = sequence_lengths(fn, seq_lengths, m, T, _NAMES[layout])
    return LayerInputs(x, carry0, params, lengths, Sizes(n_x, n_a, n_y, m, T))


def state(fn: str, name: str, value: Any, cell: str, n_a: int, m: int, layout: str, dtype, why: str) -> tuple:
    """One layer's state as a carry of rows `(m, n_a)`: `(h,)`, or `(h, c)` for an LSTM.

    `value`: None (zeros); an array `(n_a, m)` (seed layout) or `(B, n_a)`; for an LSTM a pair
    `(h, c)` of them (a tuple, list or `LSTMState`). `why` says where `n_a` comes from.
    """
    names = _NAMES[layout]
    parts = _cells.get(cell).carry
    if value is None:
        return tuple(jnp.zeros((m, n_a), dtype) for _ in parts)
    if len(parts) == 2:
        if not (isinstance(value, (tuple, list)) and len(value) == 2):
            raise TypeError(
                f"{fn}: {name} must be an LSTM state: a pair (h, c) of arrays {names['a0']} "
                f"(jaxrnn.LSTMState, or a tuple); received {_describe(value)}"
            )
        values = [(f"{name}[{i}] ({part})", v) for i, (part, v) in enumerate(zip(parts, value))]
    elif isinstance(value, (tuple, list)):
        raise TypeError(
            f"{fn}: {name} must be one array {names['a0']} for a {cell} layer; received a {type(value).__name__} "
            f"(a pair (h, c) is an LSTM's state: pass cell='lstm')"
        )
    else:
        values = [(name, value)]
    rows = []
    for part_name, v in values:
        array = as_float_array(fn, part_name, v)
        if array.ndim == 3:
            raise ValueError(
                f"{fn}: {part_name}.shape={tuple(array.shape)} has rank 3, as PyTorch's stacked h_0 "
                f"(num_layers · directions, B, hidden_size); expected one layer's {names['a0']}: convert "
                f"PyTorch's with jaxrnn.from_torch_hidden"
            )
        check_rank(fn, part_name, array, 2, names["a0"])
        expected = (n_a, m) if layout == "seed" else (m, n_a)
        check_shape(fn, part_name, array, expected, f"{why} and {names['batch']}={m} from x")
        if array.dtype != dtype:
            raise TypeError(
                f"{fn}: {part_name}.dtype={array.dtype} differs from x.dtype={jnp.dtype(dtype)}; "
                f"all arrays must share one floating dtype (cast them with .astype)"
            )
        rows.append(_layout.state_to_rows(array, layout))
    return tuple(rows)


def _describe(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__}" + ("" if shape is None else f" of shape {tuple(shape)}")


def public_state(rows: tuple, layout: str):
    """A carry of rows as the caller sees it: one array, or an `LSTMState(h, c)`."""
    states = tuple(_layout.state_from_rows(r, layout) for r in rows)
    return states[0] if len(states) == 1 else _cells.LSTMState(*states)


def sequence_lengths(fn: str, value: Any, m: int, T: int, names: dict | None = None):
    """Checks `seq_lengths (m,)`: an integer array, and in `[0, T]` when its values are concrete."""
    if value is None:
        return None
    names = names or _NAMES["seed"]
    batch, time = names["batch"], names["time"]
    lengths = integer_array(fn, "seq_lengths", value, f"integer lengths ({batch},) in [0, {time}]")
    check_rank(fn, "seq_lengths", lengths, 1, f"({batch},)")
    check_shape(fn, "seq_lengths", lengths, (m,), f"{batch}={m} from x")
    try:
        concrete = np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return lengths  # traced: guarded inside the layer
    outside = np.flatnonzero((concrete < 0) | (concrete > T))
    if outside.size:
        i = int(outside[0])
        raise ValueError(
            f"{fn}: seq_lengths[{i}]={concrete[i]} is outside [0, {time}={T}]; every length must be "
            f"between 0 and the number of time steps in x"
        )
    return lengths


def guard_lengths(lengths, T: int):
    """`(lengths as int32, poison (m, 1))` for checked lengths; `(None, None)` without lengths.

    Traced lengths cannot be checked at trace time. `poison` is 0 for a length in `[0, T]` and
    NaN outside; the layer adds it to the initial state and runs all T steps of such an
    example, so its outputs, final state and every gradient it reaches are NaN: loud, never
    a silently truncated or extended sequence.
    """
    if lengths is None:
        return None, None
    out_of_range = (lengths < 0) | (lengths > T)
    poison = jnp.where(out_of_range[:, None], jnp.nan, 0.0)
    return jnp.where(out_of_range, T, lengths).astype(jnp.int32), poison


def sequence_inputs(fn: str, x: Any, a0: Any, params: Any):
    """Checks `x (n_x, m, T_x)`, `a0 (n_a, m)` and all five parameters (the seed's functions)."""
    if a0 is None:
        raise TypeError(f"{fn}: a0 must be an array (n_a, m); received None")
    checked = layer_inputs(fn, x, a0, params, None, "seed", head="required")
    return checked.x, checked.carry0[0].T, checked.params, checked.sizes


def cell_inputs(fn: str, xt: Any, a_prev: Any, params: Any):
    """Checks `xt (n_x, m)`, `a_prev (n_a, m)` and the parameters of one cell step."""
    params, (_, n_a, _) = parameters(fn, params)
    xt = as_float_array(fn, "xt", xt)
    a_prev = as_float_array(fn, "a_prev", a_prev)
    check_rank(fn, "xt", xt, 2, "(n_x, m)")
    check_rank(fn, "a_prev", a_prev, 2, "(n_a, m)")
    n_x_in, m = xt.shape
    check_input_width(fn, params, "xt", xt, n_x_in, key="parameters['Wax']")
    check_shape(fn, "a_prev", a_prev, (n_a, m), f"n_a={n_a} from parameters['Waa'] and m={m} from xt")
    check_same_dtype(fn, {"xt": xt, "a_prev": a_prev, "parameters['Wax']": params["Wax"]})
    return xt, a_prev, params


def matching_array(fn: str, name: str, value: Any, expected: tuple, dtype, why: str) -> jax.Array:
    """Checks an array (an upstream gradient, a cached state) against the shape and dtype it must match."""
    array = as_float_array(fn, name, value)
    check_shape(fn, name, array, expected, why)
    if array.dtype != dtype:
        raise TypeError(
            f"{fn}: {name}.dtype={array.dtype} differs from the forward pass's dtype {np.dtype(dtype)}; "
            f"cast it with .astype"
        )
    return array


def integer_labels(fn: str, labels, sizes: Sizes, layout: str) -> jax.Array:
    """Checks that `labels` is an integer array of the layout's `(m, T)`, `(B, T)` or `(T, B)`."""
    names = _NAMES[layout]
    labels = integer_array(fn, "labels", labels, f"integer class indices in [0, n_y), shape {names['labels']}")
    check_rank(fn, "labels", labels, 2, names["labels"])
    expected = (sizes.T_x, sizes.m) if layout == "time_major" else (sizes.m, sizes.T_x)
    why = f"{names['batch']}={sizes.m} and {names['time']}={sizes.T_x} from x"
    check_shape(fn, "labels", labels, expected, why)
    return labels


def label_values(fn: str, labels: jax.Array, lengths: Any, ignore_index: int | None, n_y: int, layout: str) -> None:
    """Concrete labels of counted tokens (inside `seq_lengths`, not `ignore_index`) must lie in
    `[0, n_y)`. Traced labels or lengths cannot be checked here: the layer makes such a token's
    loss and every gradient it reaches NaN instead (documented in `rnn_cross_entropy`)."""
    try:
        values = np.asarray(labels)
        concrete_lengths = None if lengths is None else np.asarray(lengths)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    by_example = values.T if layout == "time_major" else values  # (m, T)
    counted = np.ones(by_example.shape, bool)
    if concrete_lengths is not None:
        counted &= np.arange(by_example.shape[1])[None, :] < concrete_lengths[:, None]
    if ignore_index is not None:
        counted &= by_example != ignore_index
    bad = np.argwhere(counted & ((by_example < 0) | (by_example >= n_y)))
    if bad.size:
        i, t = (int(v) for v in bad[0])
        position = f"[{t}, {i}]" if layout == "time_major" else f"[{i}, {t}]"
        raise ValueError(
            f"{fn}: labels{position}={by_example[i, t]} is outside [0, n_y={n_y}) at a counted token "
            f"(inside seq_lengths and not ignore_index); {len(bad)} such label(s) in all. Every counted label "
            f"must be a class index; mark tokens without a loss with ignore_index"
        )


def choice(fn: str, name: str, value: Any, choices: tuple) -> Any:
    """A static option that must be one of `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{fn}: {name}={value!r} is not one of {list(choices)}")
    return value


def static_bool(fn: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        hint = _STATIC_HINT.format(name=name) if isinstance(value, jax.Array) else ""
        raise TypeError(f"{fn}: {name} must be a Python bool (a static option); received {type(value).__name__}{hint}")
    return bool(value)


_STATIC_HINT = (
    ". A traced value cannot choose how the layer is built: under jax.jit pass it with "
    "static_argnames=('{name}',) or bind it with functools.partial"
)


def static_int_or_none(fn: str, name: str, value: Any, minimum: int = 1) -> int | None:
    """None or a Python int `>= minimum`; a `jax.Array` (e.g. traced under jit) gets a clear error."""
    if value is None:
        return None
    if isinstance(value, jax.Array):
        raise TypeError(
            f"{fn}: {name} must be None or a static Python int; received a jax.Array" + _STATIC_HINT.format(name=name)
        )
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{fn}: {name}={value!r} must be None or a positive int; received {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{fn}: {name}={value!r} must be None or a positive int")
    return int(value)


positive_int_or_none = static_int_or_none


def ignore_index(fn: str, value: Any) -> int | None:
    """None or a static Python int (any sign: PyTorch pads labels with -100)."""
    if value is None:
        return None
    if isinstance(value, jax.Array) or isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{fn}: ignore_index must be None or a static Python int (e.g. -100); received {type(value).__name__}"
        )
    return int(value)


class Options(NamedTuple):
    """The static options of a layer call, checked."""

    reverse: bool
    nonlinearity: str
    checkpoint_every: int | None
    gradient: str
    return_final_state: bool
    cell: str


def layer_options(
    fn: str, *, nonlinearity, checkpoint_every, gradient, reverse=False, return_final_state=False, cell="vanilla"
) -> Options:
    """Checks the static options shared by every layer call; returns them normalised."""
    reverse = static_bool(fn, "reverse", reverse)
    cell_name = cell_option(fn, cell)
    nonlinearity = cell_nonlinearity(fn, cell_name, nonlinearity)
    every = static_int_or_none(fn, "checkpoint_every", checkpoint_every)
    gradient = choice(fn, "gradient", gradient, GRADIENTS)
    if gradient == "autodiff" and every is not None:
        raise ValueError(
            f"{fn}: checkpoint_every={every} applies to the hand-derived backward (gradient='hand'); "
            f"with gradient='autodiff' wrap the call in jax.checkpoint instead"
        )
    final = static_bool(fn, "return_final_state", return_final_state)
    return Options(reverse, nonlinearity, every, gradient, final, cell_name)


def cell_nonlinearity(fn: str, cell_name: str, nonlinearity: Any) -> str:
    """`nonlinearity` is the vanilla cell's choice; the gated cells' activations are fixed (tanh)."""
    nonlinearity = choice(fn, "nonlinearity", nonlinearity, NONLINEARITIES)
    if cell_name != "vanilla" and nonlinearity != "tanh":
        raise ValueError(
            f"{fn}: nonlinearity={nonlinearity!r} applies to the vanilla cell; a {cell_name} cell's activations "
            f"are fixed (sigmoid gates and tanh, as PyTorch's and Flax's)"
        )
    return nonlinearity


# Stacks.


class StackInputs(NamedTuple):
    """Checked inputs of a stack: per layer, a tuple of one (or two: forward, reverse)
    parameter dicts and of as many initial states as rows `(m, n_a)`."""

    x: jax.Array
    a0: list
    layers: list
    lengths: Any
    m: int
    T: int


def layer_list(
    fn: str, layers: Any, *, bidirectional_allowed: bool = True, cell: str = "vanilla"
) -> list[tuple[dict, ...]]:
    """Checks a stack's layers, bottom first: each a dict, or a pair `(forward, reverse)` of
    dicts for a bidirectional layer, all of `cell`; inputs chain (layer l takes layer l-1's
    output width); only a unidirectional top layer may have a head; one dtype throughout."""
    kind = "a parameter dict"
    if bidirectional_allowed:
        kind += ", or a pair (forward, reverse) of them for a bidirectional layer"
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(
            f"{fn}: layers must be a non-empty list of layers, each {kind}; received {type(layers).__name__}"
        )
    checked, width, first = [], None, None
    for l, layer in enumerate(layers):
        top = l == len(layers) - 1
        if isinstance(layer, Mapping):
            names = [f"layers[{l}]"]
            directions = [parameters(fn, layer, names[0], head="optional" if top else "forbidden", cell=cell)]
        elif bidirectional_allowed and isinstance(layer, (tuple, list)) and len(layer) == 2:
            names = [f"layers[{l}][0]", f"layers[{l}][1]"]
            directions = [parameters(fn, d, name, head="forbidden", cell=cell) for d, name in zip(layer, names)]
            (forward, _), (backward, _) = directions
            if backward["Wax"].shape != forward["Wax"].shape:
                raise ValueError(
                    f"{fn}: {names[1]}['Wax'].shape={tuple(backward['Wax'].shape)} differs from "
                    f"{names[0]}['Wax'].shape={tuple(forward['Wax'].shape)}; both directions of a "
                    f"bidirectional layer must have the same sizes"
                )
        elif not bidirectional_allowed and isinstance(layer, (tuple, list)):
            raise TypeError(
                f"{fn}: layers[{l}] is a pair of directions; a bidirectional layer needs the whole sequence, "
                f"so only unidirectional layers (dicts) can run step by step"
            )
        else:
            raise TypeError(f"{fn}: layers[{l}] must be {kind}; received {type(layer).__name__}")
        params, (n_x, n_a, _) = directions[0]
        if width is not None and n_x != width:
            below = f"2 × n_a = {width}, bidirectional" if len(checked[-1]) == 2 else f"n_a = {width}"
            raise ValueError(
                f"{fn}: {names[0]}['Wax'].shape={tuple(params['Wax'].shape)} does not fit the output of "
                f"layers[{l - 1}] ({below}); expected ({params['Wax'].shape[0]}, {width})"
            )
        first = first or (names[0], params)
        check_same_dtype(fn, {f"{first[0]}['Wax']": first[1]["Wax"], f"{names[0]}['Wax']": params["Wax"]})
        checked.append(tuple(p for p, _ in directions))
        width = n_a * len(directions)
    return checked


def stack_inputs(fn: str, x: Any, a0: Any, layers: Any, seq_lengths: Any, layout: str, cell: str) -> StackInputs:
    """Checks a stack call: `x` in `layout`, the layers, `a0` (None, or one state per layer and
    direction) and `seq_lengths`."""
    layout = choice(fn, "layout", layout, _layout.LAYOUTS)
    layers = layer_list(fn, layers, cell=cell)
    names = _NAMES[layout]
    bottom = "layers[0]" if len(layers[0]) == 1 else "layers[0][0]"
    x, m, T = sequence(fn, x, layout, layers[0][0], f"{bottom}['Wax']")
    check_same_dtype(fn, {"x": x, f"{bottom}['Wax']": layers[0][0]["Wax"]})
    states = initial_states(fn, a0, layers, m, layout, x.dtype, cell)
    return StackInputs(x, states, layers, sequence_lengths(fn, seq_lengths, m, T, names), m, T)


def initial_states(fn: str, a0: Any, layers: list, m: int, layout: str, dtype, cell: str, arg: str = "a0") -> list:
    """`a0` for a stack: None (zeros), or a list with, per layer, a state (a pair `(forward,
    reverse)` of states for a bidirectional layer), each as `state` takes it (an LSTM's is
    itself a pair `(h, c)`). Returns per layer a tuple of carries (one per direction)."""
    if a0 is not None and (not isinstance(a0, (list, tuple)) or len(a0) != len(layers)):
        hint = ""
        if getattr(a0, "ndim", None) == 3:
            hint = "; a PyTorch h_0 (num_layers · directions, B, hidden_size) converts with jaxrnn.from_torch_hidden"
        raise TypeError(
            f"{fn}: {arg} must be None or a list of {len(layers)} initial states, one per layer (a pair for a "
            f"bidirectional layer); received {_describe(a0)}{hint}"
        )
    states = []
    for l, layer in enumerate(layers):
        value = None if a0 is None else a0[l]
        if value is not None and len(layer) == 2 and not (isinstance(value, (list, tuple)) and len(value) == 2):
            raise TypeError(
                f"{fn}: {arg}[{l}] must be a pair (forward, reverse) of states for the bidirectional layers[{l}]; "
                f"received {_describe(value)}"
            )
        values = (None,) * len(layer) if value is None else (value if len(layer) == 2 else (value,))
        carries = []
        for d, (params, v) in enumerate(zip(layer, values)):
            name = f"{arg}[{l}][{d}]" if len(layer) == 2 else f"{arg}[{l}]"
            n_a = params["Waa"].shape[1]
            carries.append(state(fn, name, v, cell, n_a, m, layout, dtype, f"n_a={n_a} from layers[{l}]"))
        states.append(tuple(carries))
    return states


def dropout(fn: str, rate: Any, key: Any) -> float:
    """A dropout rate in `[0, 1)`; a positive rate needs a PRNG key."""
    if isinstance(rate, jax.Array) or isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)):
        raise TypeError(f"{fn}: dropout must be a static Python float in [0, 1); received {type(rate).__name__}")
    if not 0 <= rate < 1:
        raise ValueError(f"{fn}: dropout={rate!r} is outside [0, 1)")
    if rate > 0 and key is None:
        raise ValueError(
            f"{fn}: dropout={rate!r} needs a PRNG key (key=jax.random.key(...)) to draw its masks; "
            f"pass dropout=0.0 at inference"
        )
    return float(rate)


# Forward mode.


def jvp_arguments(fn: str, primals: Any, tangents: Any) -> tuple[tuple, tuple]:
    """Checks that `primals` is `(x, a0, parameters)` and `tangents` a triple like it (as `jax.jvp` takes them)."""
    for name, value, items in (
        ("primals", primals, "(x, a0, parameters)"),
        ("tangents", tangents, "(x_dot, a0_dot, parameters_dot), one tangent per primal"),
    ):
        if not isinstance(value, (tuple, list)) or len(value) != 3:
            length = f" of length {len(value)}" if isinstance(value, (tuple, list)) else ""
            raise TypeError(f"{fn}: {name} must be a tuple {items}; received {type(value).__name__}{length}")
    return tuple(primals), tuple(tangents)


def jvp_tangents(fn: str, tangents: tuple, checked: LayerInputs, a0_is_none: bool, layout: str):
    """Checks the tangents against checked primals: the structure of `primals` (None for `a0`'s
    tangent exactly when `a0` is None, a dict with the keys of `parameters`), and each tangent
    the shape and dtype of its primal. Returns `(x_dot, a0_dot as a carry of rows, params_dot)`;
    `a0_dot` is zeros when `a0` is None."""
    x_dot, a0_dot, params_dot = tangents
    if a0_is_none != (a0_dot is None):
        received = "None" if a0_dot is None else type(a0_dot).__name__
        expected = "None, as a0 is None (zeros, a constant)" if a0_is_none else "an array shaped like a0"
        raise TypeError(f"{fn}: tangents[1] (the tangent of a0) must be {expected}; received {received}")
    params = checked.params
    keys = list(params)
    if not isinstance(params_dot, Mapping):
        raise TypeError(
            f"{fn}: tangents[2] (the tangent of parameters) must be a dict with the keys {keys}; "
            f"received {type(params_dot).__name__}"
        )
    missing = [k for k in keys if k not in params_dot]
    extra = sorted(str(k) for k in params_dot if k not in params)
    if missing or extra:
        raise ValueError(
            f"{fn}: tangents[2] (the tangent of parameters) must have exactly the keys of parameters {keys}; "
            f"missing {missing}, unexpected {extra}"
        )
    x_dot = _tangent(fn, "tangents[0]", x_dot, "x", checked.x)
    if a0_is_none:
        a0_dot = tuple(jnp.zeros(part.shape, part.dtype) for part in checked.carry0)
    elif len(checked.carry0) == 1:
        a0_dot = (_layout.state_to_rows(_tangent(fn, "tangents[1]", a0_dot, "a0", _state(checked, 0, layout)), layout),)
    else:
        if not (isinstance(a0_dot, (tuple, list)) and len(a0_dot) == len(checked.carry0)):
            raise TypeError(
                f"{fn}: tangents[1] (the tangent of a0) must be a pair (h, c) like the LSTM state a0; "
                f"received {_describe(a0_dot)}"
            )
        a0_dot = tuple(
            _layout.state_to_rows(_tangent(fn, f"tangents[1][{i}]", v, f"a0[{i}]", _state(checked, i, layout)), layout)
            for i, v in enumerate(a0_dot)
        )
    params_dot = {k: _tangent(fn, f"tangents[2]['{k}']", params_dot[k], f"parameters['{k}']", params[k]) for k in keys}
    return x_dot, a0_dot, params_dot


def _state(checked: LayerInputs, part: int, layout: str) -> jax.Array:
    return _layout.state_from_rows(checked.carry0[part], layout)


def _tangent(fn: str, name: str, value: Any, primal_name: str, primal: jax.Array) -> jax.Array:
    """A tangent: an array of its primal's shape and dtype."""
    try:
        array = jnp.asarray(value)
    except TypeError as err:
        raise TypeError(
            f"{fn}: {name} (the tangent of {primal_name}) must be an array shaped like {primal_name}; "
            f"received {type(value).__name__} ({err})"
        ) from None
    if tuple(array.shape) != tuple(primal.shape):
        raise ValueError(
            f"{fn}: {name}.shape={tuple(array.shape)} differs from {primal_name}.shape={tuple(primal.shape)}; "
            f"expected {tuple(primal.shape)}: a tangent has the shape of its primal"
        )
    if array.dtype != primal.dtype:
        raise TypeError(
            f"{fn}: {name}.dtype={array.dtype} differs from {primal_name}.dtype={primal.dtype}; "
            f"expected {primal.dtype}: a tangent has the dtype of its primal (cast with .astype)"
        )
    return array
