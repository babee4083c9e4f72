"""Parameter initialisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.forward import accumulation_dtype


def init_parameters(key, n_x: int, n_a: int, n_y: int, dtype=jnp.float32) -> dict[str, jax.Array]:
    """Initial parameters for the RNN, in the seed's dict layout.

    - `Wax (n_a, n_x)` and `Wya (n_y, n_a)`: Glorot (Xavier) uniform, which keeps the
      variance of activations and gradients roughly constant through a linear map.
    - `Waa (n_a, n_a)`: orthogonal, so the linearised recurrence neither shrinks nor
      amplifies the hidden state at the start of training (all singular values are 1).
    - `ba (n_a, 1)`, `by (n_y, 1)`: zeros.

    Args:
      key: a `jax.random` key.
      n_x, n_a, n_y: input, hidden and output sizes (positive ints).
      dtype: a floating dtype for every parameter.

    Returns:
      dict with keys `Wax, Waa, Wya, ba, by`.
    """
    for name, size in (("n_x", n_x), ("n_a", n_a), ("n_y", n_y)):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise TypeError(f"init_parameters: {name}={size!r} must be a positive int; received {type(size).__name__}")
        if size < 1:
            raise ValueError(f"init_parameters: {name}={size!r} must be a positive int")
    try:
        dtype = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"init_parameters: dtype={dtype!r} is not a dtype; expected e.g. jnp.float32") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"init_parameters: dtype={dtype} is not a floating dtype")
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:
        raise ValueError(
            f"init_parameters: dtype={dtype} needs 64-bit mode, which is off; "
            f"enable it (e.g. `with jax.enable_x64(True):`) or use float32"
        )
    k_ax, k_aa, k_ya = jax.random.split(key, 3)
    glorot = jax.nn.initializers.glorot_uniform()
    orthogonal = jax.nn.initializers.orthogonal()
    # Drawn in at least float32 (QR has no bfloat16 kernel), then cast.
    draw = accumulation_dtype(dtype)
    return {
        "Wax": glorot(k_ax, (n_a, n_x), draw).astype(dtype),
        "Waa": orthogonal(k_aa, (n_a, n_a), draw).astype(dtype),
        "Wya": glorot(k_ya, (n_y, n_a), draw).astype(dtype),
        "ba": jnp.zeros((n_a, 1), dtype),
        "by": jnp.zeros((n_y, 1), dtype),
    }
