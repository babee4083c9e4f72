"""What the PyTorch and Flax converters share: reading foreign arrays, and the two biases.

PyTorch's `nn.RNN` has two biases per layer and direction (`bias_ih`, `bias_hh`), Flax's
`SimpleCell` one or two (its input and recurrent `Linear`s); jaxrnn has one, `ba`, their sum.
Reading adds them. Writing back cannot recover a split from the sum alone, so it takes the
split from the model being written over (`like`):

- the recurrent bias stays `like`'s, bit for bit;
- the input bias stays `like`'s wherever `like`'s two biases still add up to `ba` (a weight
  that came in through the reader and was not changed), so a round trip is bitwise identical;
- elsewhere (a trained `ba`) the input bias is `ba − recurrent bias`, whose sum with the
  recurrent bias is `ba` up to rounding (within 2 ulp of the larger of the two).

A model with a single bias takes `ba` as it is (exact); one without biases takes `ba = 0`
and refuses any other value.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _validate


def to_numpy(fn: str, name: str, value: Any) -> np.ndarray:
    """A floating numpy array from a torch tensor, a numpy or JAX array, or a nested list."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":  # numpy has no bfloat16: through float32, exactly
            return tensor.float().numpy().astype(jnp.bfloat16)
        value = tensor.numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{fn}: {name} must be an array of floats; received {type(value).__name__} ({err})") from None
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise TypeError(f"{fn}: {name}.dtype={array.dtype} is not a floating dtype; expected a floating weight")
    return array


def target_dtype(fn: str, arrays: dict[str, np.ndarray], dtype: Any) -> np.dtype:
    """The one dtype of the converted parameters: `dtype`, or the arrays' common dtype."""
    if dtype is None:
        dtypes = {np.dtype(a.dtype) for a in arrays.values()}
        if len(dtypes) > 1:
            found = ", ".join(f"{name}: {a.dtype}" for name, a in arrays.items())
            raise TypeError(f"{fn}: the weights have several dtypes ({found}); pass dtype= to convert them to one")
        (dtype,) = dtypes or {np.dtype(np.float32)}
    return _validate.floating_dtype(fn, dtype)


def check_shape(fn: str, name: str, array: Any, expected: tuple, meaning: str, hint: str = "") -> None:
    """`name`'s shape must be `expected`; `meaning` names the axes, e.g. `(hidden_size,)`."""
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{fn}: {name}.shape={tuple(array.shape)}; expected {meaning} = {tuple(expected)}{hint}")


def combine_biases(input_bias: np.ndarray | None, hidden_bias: np.ndarray | None, n_a: int, dtype) -> jax.Array:
    """`ba (n_a, 1)` = the sum of whichever biases the model has (zeros when it has none)."""
    ba = np.zeros(n_a, dtype)
    if input_bias is not None and hidden_bias is not None:
        ba = np.add(input_bias.astype(dtype), hidden_bias.astype(dtype))  # rounded once, in `dtype`
    elif input_bias is not None or hidden_bias is not None:
        ba = (input_bias if input_bias is not None else hidden_bias).astype(dtype)
    return jnp.asarray(ba[:, None])


def split_bias(fn: str, name: str, ba: Any, like_input: Any, like_hidden: Any, target: str):
    """`(input_bias, hidden_bias)`, each `(n_a,)` or None where the model written over has none.

    `like_input`, `like_hidden`: that model's biases (None when absent); `name` names `ba` and
    `target` the model, for the error a non-zero `ba` raises where there is no bias to hold it.
    """
    ba = np.asarray(ba)[:, 0]
    if like_input is None and like_hidden is None:
        if np.any(ba != 0):
            raise ValueError(
                f"{fn}: {name} is non-zero, but {target} has no bias to hold it; "
                f"write into a model with biases, or keep ba at zero"
            )
        return None, None
    if like_input is None or like_hidden is None:
        return (ba, None) if like_input is not None else (None, ba)
    hidden = np.asarray(like_hidden).astype(ba.dtype)
    kept = np.asarray(like_input).astype(ba.dtype)
    unchanged = np.add(kept, hidden) == ba
    return np.where(unchanged, kept, np.subtract(ba, hidden)), hidden
