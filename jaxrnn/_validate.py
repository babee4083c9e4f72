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

from jaxrnn import _layout

RECURRENT_KEYS = ("Wax", "Waa", "ba")
HEAD_KEYS = ("Wya", "by")
PARAMETER_KEYS = RECURRENT_KEYS + HEAD_KEYS
NONLINEARITIES = ("tanh", "relu")
GRADIENTS = ("hand", "autodiff")

_PARAMETER_LAYOUT = {"Wax": "(n_a, n_x)", "Waa": "(n_a, n_a)", "Wya": "(n_y, n_a)", "ba": "(n_a, 1)", "by": "(n_y, 1)"}
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


def parameters(fn: str, params: Any, name: str = "parameters", head: str = "required"):
    """Checks one layer's parameter dict; returns it as a plain dict of arrays and `(n_x, n_a, n_y)`.

    `head`: `"required"` (all five keys), `"optional"` (`Wax, Waa, ba`, with or without
    `Wya, by`) or `"forbidden"` (exactly `Wax, Waa, ba`); `n_y` is None without a head.
    """
    if not isinstance(params, Mapping):
        raise TypeError(
            f"{fn}: {name} must be a dict with keys {_expected_keys(head)}; received {type(params).__name__}"
        )
    has_head = any(k in params for k in HEAD_KEYS)
    if head == "required" or (head == "optional" and has_head):
        expected = PARAMETER_KEYS
    else:
        expected = RECURRENT_KEYS
    missing = [k for k in expected if k not in params]
    extra = sorted(str(k) for k in params if k not in expected)
    if missing or extra:
        why = " (only a unidirectional top layer may carry an output head)" if head == "forbidden" and has_head else ""
        raise ValueError(
            f"{fn}: {name} must have exactly the keys {_expected_keys(head, has_head)}; "
            f"missing {missing}, unexpected {extra}{why}"
        )
    arrays = {k: as_float_array(fn, f"{name}['{k}']", params[k]) for k in expected}
    for k in expected:
        check_rank(fn, f"{name}['{k}']", arrays[k], 2, _PARAMETER_LAYOUT[k])
    n_a, n_x = arrays["Wax"].shape
    check_shape(fn, f"{name}['Waa']", arrays["Waa"], (n_a, n_a), f"n_a={n_a} from Wax")
    check_shape(fn, f"{name}['ba']", arrays["ba"], (n_a, 1), f"n_a={n_a} from Wax")
    n_y = None
    if "Wya" in arrays:
        n_y = arrays["Wya"].shape[0]
        check_shape(fn, f"{name}['Wya']", arrays["Wya"], (n_y, n_a), f"n_a={n_a} from Wax")
        check_shape(fn, f"{name}['by']", arrays["by"], (n_y, 1), f"n_y={n_y} from Wya")
    check_same_dtype(fn, {f"{name}['{k}']": arrays[k] for k in expected})
    return arrays, (n_x, n_a, n_y)


def _expected_keys(head: str, has_head: bool = True) -> str:
    if head == "required":
        return str(list(PARAMETER_KEYS))
    if head == "forbidden" or not has_head:
        return str(list(RECURRENT_KEYS)) + ("" if head == "forbidden" else f" (plus {list(HEAD_KEYS)} for a head)")
    return str(list(PARAMETER_KEYS))


def check_input_width(fn: str, params: dict, name: str, array: jax.Array, n_x_in: int, layout: str = "", *, key="Wax"):
    """`Wax (n_a, n_x)` must take inputs of width `n_x_in` (read from `array`'s layout)."""
    n_a, n_x = params["Wax"].shape
    if n_x_in != n_x:
        raise ValueError(
            f"{fn}: {key}.shape={tuple(params['Wax'].shape)} does not fit "
            f"{name}.shape={tuple(array.shape)}{layout}; expected (n_a, n_x) = ({n_a}, {n_x_in})"
        )


def sequence(fn: str, x: Any, layout: str, params: dict, key: str) -> tuple[jax.Array, int, int]:
    """Checks `x` in `layout` against the input width of `params['Wax']` (named `key`); returns `(x, m, T)`."""
    names = _NAMES[layout]
    x = as_float_array(fn, "x", x)
    check_rank(fn, "x", x, 3, names["x"])
    n_x_in, m, T = _layout.sizes(x.shape, layout)
    suffix = "" if layout == "seed" else f" {names['x']}"
    check_input_width(fn, params, "x", x, n_x_in, suffix, key=key)
    if T == 0:
        time = names["time"]
        raise ValueError(f"{fn}: x.shape={tuple(x.shape)} has {time}=0 time steps; expected {time} >= 1")
    return x, m, T


class LayerInputs(NamedTuple):
    """Checked inputs of one layer call: `a0` as rows `(m, n_a)`, `lengths` int32 or None."""

    x: jax.Array
    a0: jax.Array
    params: dict
    lengths: Any
    sizes: Sizes


def layer_inputs(fn: str, x, a0, params, seq_lengths, layout: str, head: str = "optional") -> LayerInputs:
    """Checks `x` and `a0` in `layout`, the parameters and `seq_lengths` of a layer call.

    `a0=None` means zeros. Returns `LayerInputs` with `a0` as rows `(m, n_a)`.
    """
    layout = choice(fn, "layout", layout, _layout.LAYOUTS)
    params, (n_x, n_a, n_y) = parameters(fn, params, head=head)
    names = _NAMES[layout]
    x, m, T = sequence(fn, x, layout, params, "parameters['Wax']")
    if a0 is None:
        a0 = jnp.zeros((m, n_a), x.dtype)
    else:
        a0 = as_float_array(fn, "a0", a0)
        check_rank(fn, "a0", a0, 2, names["a0"])
        expected = (n_a, m) if layout == "seed" else (m, n_a)
        why = f"n_a={n_a} from parameters['Waa'] and {names['batch']}={m} from x"
        check_shape(fn, "a0", a0, expected, why)
        a0 = _layout.state_to_rows(a0, layout)
    check_same_dtype(fn, {"x": x, "a0": a0, "parameters['Wax']": params["Wax"]})
    lengths = sequence_lengths(fn, seq_lengths, m, T, names)
    return LayerInputs(x, a0, params, lengths, Sizes(n_x, n_a, n_y, m, T))


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
    return checked.x, checked.a0.T, checked.params, checked.sizes


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


def layer_options(fn: str, *, nonlinearity, checkpoint_every, gradient, reverse=False, return_final_state=False):
    """Checks the static options shared by every layer call; returns them normalised."""
    reverse = static_bool(fn, "reverse", reverse)
    nonlinearity = choice(fn, "nonlinearity", nonlinearity, NONLINEARITIES)
    every = static_int_or_none(fn, "checkpoint_every", checkpoint_every)
    gradient = choice(fn, "gradient", gradient, GRADIENTS)
    if gradient == "autodiff" and every is not None:
        raise ValueError(
            f"{fn}: checkpoint_every={every} applies to the hand-derived backward (gradient='hand'); "
            f"with gradient='autodiff' wrap the call in jax.checkpoint instead"
        )
    return reverse, nonlinearity, every, gradient, static_bool(fn, "return_final_state", return_final_state)


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


def layer_list(fn: str, layers: Any, *, bidirectional_allowed: bool = True) -> list[tuple[dict, ...]]:
    """Checks a stack's layers, bottom first: each a dict, or a pair `(forward, reverse)` of
    dicts for a bidirectional layer; inputs chain (layer l takes layer l-1's output width);
    only a unidirectional top layer may have a head; one dtype throughout."""
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
            directions = [parameters(fn, layer, names[0], head="optional" if top else "forbidden")]
        elif bidirectional_allowed and isinstance(layer, (tuple, list)) and len(layer) == 2:
            names = [f"layers[{l}][0]", f"layers[{l}][1]"]
            directions = [parameters(fn, d, name, head="forbidden") for d, name in zip(layer, names)]
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
                f"layers[{l - 1}] ({below}); expected ({n_a}, {width})"
            )
        first = first or (names[0], params)
        check_same_dtype(fn, {f"{first[0]}['Wax']": first[1]["Wax"], f"{names[0]}['Wax']": params["Wax"]})
        checked.append(tuple(p for p, _ in directions))
        width = n_a * len(directions)
    return checked


def stack_inputs(fn: str, x: Any, a0: Any, layers: Any, seq_lengths: Any, layout: str) -> StackInputs:
    """Checks a stack call: `x` in `layout`, the layers, `a0` (None, or one state per layer and
    direction) and `seq_lengths`."""
    layout = choice(fn, "layout", layout, _layout.LAYOUTS)
    layers = layer_list(fn, layers)
    names = _NAMES[layout]
    bottom = "layers[0]" if len(layers[0]) == 1 else "layers[0][0]"
    x, m, T = sequence(fn, x, layout, layers[0][0], f"{bottom}['Wax']")
    check_same_dtype(fn, {"x": x, f"{bottom}['Wax']": layers[0][0]["Wax"]})
    states = initial_states(fn, a0, layers, m, layout, x.dtype)
    return StackInputs(x, states, layers, sequence_lengths(fn, seq_lengths, m, T, names), m, T)


def initial_states(fn: str, a0: Any, layers: list, m: int, layout: str, dtype, arg: str = "a0") -> list[tuple]:
    """`a0` for a stack: None (zeros), or a list with, per layer, a state (a pair of states for
    a bidirectional layer), each `(n_a, m)` in the seed layout or `(B, n_a)`. Returns rows."""
    if a0 is None:
        return [tuple(jnp.zeros((m, p["Waa"].shape[0]), dtype) for p in layer) for layer in layers]
    if not isinstance(a0, (list, tuple)) or len(a0) != len(layers):
        raise TypeError(
            f"{fn}: {arg} must be None or a list of {len(layers)} initial states, one per layer (a pair for a "
            f"bidirectional layer); received {type(a0).__name__}"
            + (f" of length {len(a0)}" if isinstance(a0, (list, tuple)) else "")
        )
    names = _NAMES[layout]
    states = []
    for l, (layer, value) in enumerate(zip(layers, a0)):
        if len(layer) == 2 and not (isinstance(value, (list, tuple)) and len(value) == 2):
            raise TypeError(
                f"{fn}: {arg}[{l}] must be a pair (forward, reverse) of states for the bidirectional layers[{l}]; "
                f"received {type(value).__name__}"
            )
        if len(layer) == 1 and isinstance(value, (list, tuple)):
            raise TypeError(f"{fn}: {arg}[{l}] must be one state {names['a0']} for the unidirectional layers[{l}]")
        values = value if len(layer) == 2 else (value,)
        pair = []
        for d, (params, state) in enumerate(zip(layer, values)):
            name = f"{arg}[{l}][{d}]" if len(layer) == 2 else f"{arg}[{l}]"
            state = as_float_array(fn, name, state)
            n_a = params["Waa"].shape[0]
            check_rank(fn, name, state, 2, names["a0"])
            expected = (n_a, m) if layout == "seed" else (m, n_a)
            check_shape(fn, name, state, expected, f"n_a={n_a} from layers[{l}] and {names['batch']}={m} from x")
            if state.dtype != dtype:
                raise TypeError(f"{fn}: {name}.dtype={state.dtype} differs from x.dtype={jnp.dtype(dtype)}")
            pair.append(_layout.state_to_rows(state, layout))
        states.append(tuple(pair))
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
    the shape and dtype of its primal. Returns `(x_dot, a0_dot as rows (m, n_a), params_dot)`;
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
        a0_dot = jnp.zeros(checked.a0.shape, checked.a0.dtype)
    else:
        a0_dot = _layout.state_to_rows(
            _tangent(fn, "tangents[1]", a0_dot, "a0", _layout.state_from_rows(checked.a0, layout)), layout
        )
    params_dot = {k: _tangent(fn, f"tangents[2]['{k}']", params_dot[k], f"parameters['{k}']", params[k]) for k in keys}
    return x_dot, a0_dot, params_dot


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
