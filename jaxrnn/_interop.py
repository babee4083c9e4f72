"""What the PyTorch, Flax and Equinox converters share: reading foreign arrays, which cell a
set of weights is, and the biases.

Every framework stacks a cell's `G` gates on the rows of its weights in PyTorch's order
(`G` = 1 vanilla, 3 GRU `r, z, n`, 4 LSTM `i, f, g, o`), or keeps one dense layer per gate, and
has up to two biases per gate: an input bias and a recurrent one. jaxrnn has one, `ba`, their
sum — except the GRU's new gate, whose recurrent bias sits inside `r ⊙ (W_hn h + b_hn)` and is
kept apart as `bhn`:

    ba[gate k] = input_k + hidden_k        every gate of every cell, but the GRU's n
    ba[n]      = input_n                   (the GRU)
    bhn        = hidden_n                  (the GRU)

Reading adds the biases a model has (a missing one counts as zero). Writing back cannot
recover a split from a sum alone, so it takes the split from the model written over (`like`),
gate by gate:

- the recurrent bias stays `like`'s, bit for bit;
- the input bias stays `like`'s wherever `like`'s two biases still add up to `ba` (a weight
  that came in through the reader and was not changed), so a round trip is bitwise identical;
- elsewhere (a trained `ba`) the input bias is `ba − recurrent bias`, whose sum with the
  recurrent bias is `ba` up to rounding (within 2 ulp of the larger of the two).

A gate with a single bias takes its `ba` block as it is (exact), as do the GRU's `b_in` and
`b_hn`; a gate without biases takes `0` and refuses any other value.

Reading sums in numpy when the weights are concrete, and in `jax.numpy` when they are traced
(under `jit` or `grad`, e.g. a Flax model read inside `nnx.jit`): the same one rounding either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _validate

GATES = {"vanilla": 1, "gru": 3, "lstm": 4}
CELL_OF_GATES = {gates: cell for cell, gates in GATES.items()}
GATE_NAMES = {"vanilla": ("a",), "gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}


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


def cell_option(fn: str, cell: str | None, found: str, source: str) -> str:
    """The cell the weights say (`found`, read from `source`), which a given `cell=` must match."""
    if cell is not None and _validate.cell_option(fn, cell) != found:
        raise ValueError(
            f"{fn}: cell={cell!r} contradicts {source}, which holds {found} weights; expected cell={found!r}"
        )
    return found


def cell_of_layers(fn: str, layers: Any, cell: str | None = None, name: str = "layers") -> str:
    """The cell of `rnn_stack` layers, read from the first parameter dict (`bhn`: a GRU; `Waa`
    with `4·n_a` rows: an LSTM; `n_a` rows: the vanilla cell); a given `cell` must agree."""
    first = layers
    while isinstance(first, (list, tuple)) and first:
        first = first[0]
    shape = np.shape(first["Waa"]) if isinstance(first, Mapping) and "Waa" in first else None
    gates = shape[0] // shape[1] if shape and len(shape) == 2 and shape[1] and shape[0] % shape[1] == 0 else None
    found = "gru" if isinstance(first, Mapping) and "bhn" in first else CELL_OF_GATES.get(gates)
    if found is None or (found == "gru") != (gates == 3):
        if cell is not None:  # the layers' own check names what does not fit
            return _validate.cell_option(fn, cell)
        received = f"Waa.shape={shape}" if shape else f"{type(first).__name__}"
        raise ValueError(
            f"{fn}: cannot tell the cell of {name} ({received}); expected a vanilla (Waa (n_a, n_a)), gru "
            f"(Waa (3·n_a, n_a) and bhn) or lstm (Waa (4·n_a, n_a)) layer, or pass cell="
        )
    return cell_option(fn, cell, found, f"{name} (Waa.shape={shape}{', bhn' if found == 'gru' else ''})")


def _is_traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def host_array(value: Any):
    """A concrete array as numpy (the readers' arithmetic), a traced one as it is."""
    return value if _is_traced(value) else np.asarray(value)


def _array_module(*arrays):
    """numpy for concrete arrays, `jax.numpy` where any is traced."""
    return jnp if any(_is_traced(a) for a in arrays) else np


def combine_biases(input_bias, hidden_bias, n_a: int, dtype):
    """One gate's `ba (n_a,)` = the sum of whichever biases it has (zeros when it has none);
    numpy or `jax.numpy` arrays (traced ones under `jit`)."""
    xp = _array_module(input_bias, hidden_bias)
    if input_bias is not None and hidden_bias is not None:
        return xp.add(input_bias.astype(dtype), hidden_bias.astype(dtype))  # rounded once, in `dtype`
    if input_bias is not None or hidden_bias is not None:
        return (input_bias if input_bias is not None else hidden_bias).astype(dtype)
    return np.zeros(n_a, dtype)


def gate_biases(cell: str, inputs: list, hiddens: list, n_a: int, dtype) -> dict[str, jax.Array]:
    """`{"ba": (G·n_a, 1)}` (and the GRU's `"bhn": (n_a, 1)`) from the input and recurrent bias
    of each gate, `(n_a,)` arrays (numpy, or traced) or None where the model has none."""
    gru = cell == "gru"  # the GRU's n gate: b_in alone in ba, b_hn is bhn
    blocks = [
        combine_biases(i, None if gru and k == 2 else h, n_a, dtype) for k, (i, h) in enumerate(zip(inputs, hiddens))
    ]
    biases = {"ba": jnp.asarray(_array_module(*blocks).concatenate(blocks)[:, None])}
    if gru:
        biases["bhn"] = jnp.asarray(combine_biases(None, hiddens[2], n_a, dtype)[:, None])
    return biases


def split_gate_biases(fn: str, where: str, params: dict, cell: str, inputs: list, hiddens: list, target: str):
    """`(inputs, hiddens)`: the biases to write, per gate `(n_a,)` or None where the model
    written over has none; `inputs`, `hiddens` are that model's (None where absent), `where`
    names the parameter dict and `target` the model, for the error a bias without a place raises."""
    G = GATES[cell]
    ba = np.asarray(params["ba"])[:, 0]
    n_a = ba.shape[0] // G
    blocks = [ba[k * n_a : (k + 1) * n_a] for k in range(G)]
    names = (
        [f"{where}['ba']"]
        if G == 1
        else [f"{where}['ba'][{k * n_a}:{(k + 1) * n_a}] (gate {gate})" for k, gate in enumerate(GATE_NAMES[cell])]
    )
    out = [split_bias(fn, names[k], blocks[k], inputs[k], hiddens[k], target) for k in range(G)]
    if cell == "gru":  # b_in = ba's n block and b_hn = bhn, exactly
        out[2] = (
            split_bias(fn, names[2], blocks[2], inputs[2], None, target)[0],
            split_bias(fn, f"{where}['bhn']", np.asarray(params["bhn"])[:, 0], None, hiddens[2], target)[1],
        )
    return [i for i, _ in out], [h for _, h in out]


def split_bias(fn: str, name: str, ba: Any, like_input: Any, like_hidden: Any, target: str):
    """`(input_bias, hidden_bias)` of one gate, each `(n_a,)` or None where the model written
    over has none. `ba (n_a,)`; `like_input`, `like_hidden`: that model's biases (None when
    absent); `name` names `ba` and `target` the model, for the error a non-zero `ba` raises where
    there is no bias to hold it."""
    ba = np.asarray(ba)
    if like_input is None and like_hidden is None:
        if np.any(ba != 0):
            raise ValueError(
                f"{fn}: {name} is non-zero, but {target} has no bias to hold it; "
                f"write into a model with biases, or keep it at zero"
            )
        return None, None
    if like_input is None or like_hidden is None:
        return (ba, None) if like_input is not None else (None, ba)
    hidden = np.asarray(like_hidden).astype(ba.dtype)
    kept = np.asarray(like_input).astype(ba.dtype)
    unchanged = np.add(kept, hidden) == ba
    return np.where(unchanged, kept, np.subtract(ba, hidden)), hidden
