"""Parameter initialisation: one layer (`init_parameters`) and a stack (`init_stack`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _validate
from jaxrnn._forward import accumulation_dtype


def init_parameters(key, n_x: int, n_a: int, n_y: int | None = None, dtype=jnp.float32) -> dict[str, jax.Array]:
    """Initial parameters for one layer, in the seed's dict layout.

    - `Wax (n_a, n_x)` and `Wya (n_y, n_a)`: Glorot (Xavier) uniform, which keeps the
      variance of activations and gradients roughly constant through a linear map.
    - `Waa (n_a, n_a)`: orthogonal, so the linearised recurrence neither shrinks nor
      amplifies the hidden state at the start of training (all singular values are 1).
    - `ba (n_a, 1)`, `by (n_y, 1)`: zeros.

    Args:
      key: a `jax.random` key.
      n_x, n_a: input and hidden sizes (positive ints).
      n_y: output size of the softmax head, or None for a layer without a head.
      dtype: a floating dtype for every parameter.

    Returns:
      dict with keys `Wax, Waa, ba` and, with a head, `Wya, by`.
    """
    fn = "init_parameters"
    sizes = {"n_x": n_x, "n_a": n_a} | ({} if n_y is None else {"n_y": n_y})
    for name, size in sizes.items():
        _positive_int(fn, name, size)
    dtype = _validate.floating_dtype(fn, dtype)
    k_ax, k_aa, k_ya = jax.random.split(key, 3)
    glorot = jax.nn.initializers.glorot_uniform()
    orthogonal = jax.nn.initializers.orthogonal()
    # Drawn in at least float32 (QR has no bfloat16 kernel), then cast.
    draw = accumulation_dtype(dtype)
    params = {
        "Wax": glorot(k_ax, (n_a, n_x), draw).astype(dtype),
        "Waa": orthogonal(k_aa, (n_a, n_a), draw).astype(dtype),
        "ba": jnp.zeros((n_a, 1), dtype),
    }
    if n_y is not None:
        params |= {"Wya": glorot(k_ya, (n_y, n_a), draw).astype(dtype), "by": jnp.zeros((n_y, 1), dtype)}
    return params


def init_stack(
    key,
    n_x: int,
    n_a: int,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    n_y: int | None = None,
    dtype=jnp.float32,
) -> list:
    """Initial parameters for `rnn_stack`: a list, bottom first, of dicts (pairs of dicts when
    `bidirectional`), each as `init_parameters` draws it; layer l > 0 takes `n_a` (or `2·n_a`)
    inputs. With `n_y`, the top layer gets the softmax head (unidirectional stacks only)."""
    fn = "init_stack"
    _positive_int(fn, "num_layers", num_layers)
    if not isinstance(bidirectional, bool):
        raise TypeError(f"init_stack: bidirectional must be a bool; received {type(bidirectional).__name__}")
    if bidirectional and n_y is not None:
        raise ValueError(
            "init_stack: n_y gives the top layer a softmax head, which a bidirectional layer cannot carry; "
            "put your own head on the concatenated states"
        )
    directions = 2 if bidirectional else 1
    keys = jax.random.split(key, num_layers * directions)
    layers = []
    for l in range(num_layers):
        width = n_x if l == 0 else directions * n_a
        head = n_y if l == num_layers - 1 else None
        pair = tuple(init_parameters(keys[l * directions + d], width, n_a, head, dtype) for d in range(directions))
        layers.append(pair if bidirectional else pair[0])
    return layers


def _positive_int(fn, name, size):
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"{fn}: {name}={size!r} must be a positive int; received {type(size).__name__}")
    if size < 1:
        raise ValueError(f"{fn}: {name}={size!r} must be a positive int")
