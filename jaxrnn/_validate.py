"""Shape, rank, key and dtype checks for the public functions.

Every check runs at trace time on static facts (shapes, dtypes, keys), so it fires
the same way eagerly, under `jax.jit` and under `jax.vmap` (where it sees the
per-example shapes). Every message names the function, the argument, what was
expected and what was received.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

PARAMETER_KEYS = ("Wax", "Waa", "Wya", "ba", "by")


class Sizes(NamedTuple):
    """The static sizes of one RNN problem."""

    n_x: int
    n_a: int
    n_y: int
    m: int
    T_x: int


def as_float_array(fn: str, name: str, value: Any) -> jnp.ndarray:
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


def check_rank(fn: str, name: str, array: jnp.ndarray, rank: int, layout: str) -> None:
    if array.ndim != rank:
        raise ValueError(
            f"{fn}: {name}.shape={tuple(array.shape)} has rank {array.ndim}; expected rank {rank}, {layout}"
        )


def check_shape(fn: str, name: str, array: jnp.ndarray, expected: tuple, why: str) -> None:
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{fn}: {name}.shape={tuple(array.shape)} does not fit {why}; expected {tuple(expected)}")


def check_same_dtype(fn: str, named_arrays: dict[str, jnp.ndarray]) -> None:
    (first_name, first), *rest = named_arrays.items()
    for name, array in rest:
        if array.dtype != first.dtype:
            raise TypeError(
                f"{fn}: {name}.dtype={array.dtype} differs from {first_name}.dtype={first.dtype}; "
                f"all arrays must share one floating dtype (cast them with .astype)"
            )


def parameters(fn: str, params: Any) -> tuple[dict[str, jnp.ndarray], tuple[int, int, int]]:
    """Checks the parameter dict; returns it as a plain dict of arrays and (n_x, n_a, n_y)."""
    if not isinstance(params, Mapping):
        raise TypeError(
            f"{fn}: parameters must be a dict with keys {list(PARAMETER_KEYS)}; received {type(params).__name__}"
        )
    missing = [k for k in PARAMETER_KEYS if k not in params]
    extra = sorted(str(k) for k in params if k not in PARAMETER_KEYS)
    if missing or extra:
        raise ValueError(
            f"{fn}: parameters must have exactly the keys {list(PARAMETER_KEYS)}; missing {missing}, unexpected {extra}"
        )
    arrays = {k: as_float_array(fn, f"parameters['{k}']", params[k]) for k in PARAMETER_KEYS}
    for k in ("Wax", "Waa", "Wya", "ba", "by"):
        check_rank(fn, f"parameters['{k}']", arrays[k], 2, _PARAMETER_LAYOUT[k])
    n_a, n_x = arrays["Wax"].shape
    n_y = arrays["Wya"].shape[0]
    check_shape(fn, "parameters['Waa']", arrays["Waa"], (n_a, n_a), f"n_a={n_a} from Wax")
    check_shape(fn, "parameters['Wya']", arrays["Wya"], (n_y, n_a), f"n_a={n_a} from Wax")
    check_shape(fn, "parameters['ba']", arrays["ba"], (n_a, 1), f"n_a={n_a} from Wax")
    check_shape(fn, "parameters['by']", arrays["by"], (n_y, 1), f"n_y={n_y} from Wya")
    check_same_dtype(fn, {f"parameters['{k}']": arrays[k] for k in PARAMETER_KEYS})
    return arrays, (n_x, n_a, n_y)


_PARAMETER_LAYOUT = {
    "Wax": "(n_a, n_x)",
    "Waa": "(n_a, n_a)",
    "Wya": "(n_y, n_a)",
    "ba": "(n_a, 1)",
    "by": "(n_y, 1)",
}


def check_input_width(fn: str, params: dict, name: str, array: jnp.ndarray, n_x_in: int, layout: str = "") -> None:
    """`Wax (n_a, n_x)` must take inputs of width `n_x_in` (read from `array`'s layout)."""
    n_a, n_x = params["Wax"].shape
    if n_x_in != n_x:
        raise ValueError(
            f"{fn}: parameters['Wax'].shape={tuple(params['Wax'].shape)} does not fit "
            f"{name}.shape={tuple(array.shape)}{layout}; expected (n_a, n_x) = ({n_a}, {n_x_in})"
        )


def sequence_inputs(fn: str, x: Any, a0: Any, params: Any):
    """Checks `x (n_x, m, T_x)`, `a0 (n_a, m)` and the parameters of a sequence call."""
    params, (n_x, n_a, n_y) = parameters(fn, params)
    x = as_float_array(fn, "x", x)
    a0 = as_float_array(fn, "a0", a0)
    check_rank(fn, "x", x, 3, "(n_x, m, T_x)")
    check_rank(fn, "a0", a0, 2, "(n_a, m)")
    n_x_in, m, T_x = x.shape
    check_input_width(fn, params, "x", x, n_x_in)
    if T_x == 0:
        raise ValueError(f"{fn}: x.shape={tuple(x.shape)} has T_x=0 time steps; expected T_x >= 1")
    check_shape(fn, "a0", a0, (n_a, m), f"n_a={n_a} from parameters['Waa'] and m={m} from x")
    check_same_dtype(fn, {"x": x, "a0": a0, "parameters['Wax']": params["Wax"]})
    return x, a0, params, Sizes(n_x, n_a, n_y, m, T_x)


def cell_inputs(fn: str, xt: Any, a_prev: Any, params: Any):
    """Checks `xt (n_x, m)`, `a_prev (n_a, m)` and the parameters of one cell step."""
    params, (_, n_a, _) = parameters(fn, params)
    xt = as_float_array(fn, "xt", xt)
    a_prev = as_float_array(fn, "a_prev", a_prev)
    check_rank(fn, "xt", xt, 2, "(n_x, m)")
    check_rank(fn, "a_prev", a_prev, 2, "(n_a, m)")
    n_x_in, m = xt.shape
    check_input_width(fn, params, "xt", xt, n_x_in)
    check_shape(fn, "a_prev", a_prev, (n_a, m), f"n_a={n_a} from parameters['Waa'] and m={m} from xt")
    check_same_dtype(fn, {"xt": xt, "a_prev": a_prev, "parameters['Wax']": params["Wax"]})
    return xt, a_prev, params


def batch_major_inputs(fn: str, x: Any, a0: Any, params: Any):
    """Checks `x (B, T, n_x)`, `a0 (B, n_a)` and the parameters; returns them and `(B, T)`."""
    params, (_, n_a, _) = parameters(fn, params)
    x = as_float_array(fn, "x", x)
    a0 = as_float_array(fn, "a0", a0)
    check_rank(fn, "x", x, 3, "(B, T, n_x)")
    check_rank(fn, "a0", a0, 2, "(B, n_a)")
    B, T, n_x_in = x.shape
    check_input_width(fn, params, "x", x, n_x_in, " (B, T, n_x)")
    if T == 0:
        raise ValueError(f"{fn}: x.shape={tuple(x.shape)} has T=0 time steps; expected T >= 1")
    check_shape(fn, "a0", a0, (B, n_a), f"B={B} from x and n_a={n_a} from parameters['Waa']")
    check_same_dtype(fn, {"x": x, "a0": a0, "parameters['Wax']": params["Wax"]})
    return x, a0, params, (B, T)


def matching_array(fn: str, name: str, value: Any, expected: tuple, dtype, why: str) -> jnp.ndarray:
    """Checks an array (an upstream gradient, a cached state) against the shape and dtype it must match."""
    array = as_float_array(fn, name, value)
    check_shape(fn, name, array, expected, why)
    if array.dtype != dtype:
        raise TypeError(
            f"{fn}: {name}.dtype={array.dtype} differs from the forward pass's dtype {np.dtype(dtype)}; "
            f"cast it with .astype"
        )
    return array


def integer_labels(fn: str, labels, expected_shape: tuple, layout: str, why: str) -> jnp.ndarray:
    """Checks that `labels` is an integer array of `expected_shape` (`layout` names its axes)."""
    try:
        labels = jnp.asarray(labels)
    except TypeError as err:
        raise TypeError(
            f"{fn}: labels must be an array of integer class indices; received {type(labels).__name__} ({err})"
        ) from None
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"{fn}: labels.dtype={labels.dtype} is not an integer dtype; expected integer class indices "
            f"in [0, n_y), shape {layout} (cast with .astype(jnp.int32))"
        )
    check_rank(fn, "labels", labels, len(expected_shape), layout)
    check_shape(fn, "labels", labels, expected_shape, why)
    return labels


def positive_int_or_none(fn: str, name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{fn}: {name}={value!r} must be None or a positive int; received {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{fn}: {name}={value!r} must be None or a positive int")
    return int(value)
