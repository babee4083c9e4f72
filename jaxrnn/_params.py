"""Parameter initialisation: one layer (`init_parameters`) and a stack (`init_stack`), for every cell."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _cells, _validate
from jaxrnn._forward import accumulation_dtype

INITIALIZATIONS = ("jaxrnn", "pytorch")


def init_parameters(
    key,
    n_x: int,
    n_a: int,
    n_y: int | None = None,
    dtype=jnp.float32,
    *,
    cell: str = "vanilla",
    initialization: str = "jaxrnn",
    identity_scale: float | None = None,
) -> dict[str, jax.Array]:
    """Initial parameters for one layer, in the seed's dict layout (gates stacked on the rows).

    `initialization="jaxrnn"` (the default):

    - `Wax (G·n_a, n_x)` and `Wya (n_y, n_a)`: Glorot (Xavier) uniform, gate by gate, which keeps
      the variance of activations and gradients roughly constant through a linear map.
    - `Waa (G·n_a, n_a)`: orthogonal, gate by gate, so the linearised recurrence neither shrinks
      nor amplifies the state at the start of training (all singular values are 1).
    - biases zeros, except the LSTM's forget gate: 1, so that the cell state is kept at the start
      of training (Jozefowicz et al. 2015; Keras's `unit_forget_bias`).

    `initialization="pytorch"`: PyTorch's `nn.RNN`/`nn.GRU`/`nn.LSTM` defaults, every weight and
    bias uniform in `[-1/√n_a, 1/√n_a]`; `ba` is then the sum of two such draws, as PyTorch's
    `b_ih + b_hh` (the GRU's new gate: `b_in` and `bhn = b_hn` apart). The head, which PyTorch's
    modules do not have, is drawn as `nn.Linear` draws it: uniform in `[-1/√n_a, 1/√n_a]`.

    Args:
      key: a `jax.random` key.
      n_x, n_a: input and hidden sizes (positive ints).
      n_y: output size of the softmax head, or None for a layer without a head.
      dtype: a floating dtype for every parameter.
      cell: `"vanilla"`, `"gru"` or `"lstm"` (`G` = 1, 3, 4; the GRU also gets `bhn (n_a, 1)`).
      initialization: `"jaxrnn"` or `"pytorch"`, as above.
      identity_scale: for the vanilla cell, `Waa = identity_scale · I` instead: Le, Jaitly and
        Hinton's IRNN (2015), with `nonlinearity="relu"`; None: the initialization's own `Waa`.

    Returns:
      dict with keys `Wax, Waa, ba` (the GRU's `bhn`) and, with a head, `Wya, by`.
    """
    fn = "init_parameters"
    sizes = {"n_x": n_x, "n_a": n_a} | ({} if n_y is None else {"n_y": n_y})
    for name, size in sizes.items():
        _positive_int(fn, name, size)
    dtype = _validate.floating_dtype(fn, dtype)
    cell = _cells.get(_validate.cell_option(fn, cell))
    _validate.choice(fn, "initialization", initialization, INITIALIZATIONS)
    if identity_scale is not None:
        if cell.name != "vanilla":
            raise ValueError(f"{fn}: identity_scale sets the vanilla cell's Waa (IRNN); cell={cell.name!r} has gates")
        if isinstance(identity_scale, bool) or not isinstance(identity_scale, (int, float)):
            raise TypeError(f"{fn}: identity_scale must be a float or None; received {type(identity_scale).__name__}")
    scale = None if identity_scale is None else float(identity_scale)
    drawn = _draw(key, cell.name, int(n_x), int(n_a), None if n_y is None else int(n_y), dtype, initialization, scale)
    order = ("Wax", "Waa", "ba", *cell.extra_biases, "Wya", "by")  # jit returns dicts sorted by key
    return {k: drawn[k] for k in order if k in drawn}


@functools.partial(jax.jit, static_argnums=range(1, 8))
def _draw(key, cell_name, n_x, n_a, n_y, dtype, initialization, identity_scale):
    """The draws, compiled once per set of sizes (op by op they take seconds for a first call)."""
    cell = _cells.get(cell_name)
    # Drawn in at least float32 (QR has no bfloat16 kernel), then cast.
    draw = accumulation_dtype(dtype)
    k_ax, k_aa, k_ya = jax.random.split(key, 3)
    if initialization == "pytorch":
        params = _pytorch(k_ax, k_aa, k_ya, cell, n_x, n_a, n_y, draw)
    else:
        params = _jaxrnn(k_ax, k_aa, k_ya, cell, n_x, n_a, n_y, draw)
    if identity_scale is not None:
        params["Waa"] = identity_scale * jnp.eye(n_a, dtype=draw)
    return {k: v.astype(dtype) for k, v in params.items()}


def _jaxrnn(k_ax, k_aa, k_ya, cell, n_x, n_a, n_y, dtype) -> dict:
    """Glorot `Wax` and `Wya`, orthogonal `Waa`, gate by gate; zero biases (LSTM forget gate 1)."""
    G = cell.gates
    glorot = jax.nn.initializers.glorot_uniform()
    orthogonal = jax.nn.initializers.orthogonal()
    per_gate = lambda init, k, shape: (
        init(k, shape, dtype) if G == 1 else jnp.concatenate([init(g, shape, dtype) for g in jax.random.split(k, G)])
    )
    params = {
        "Wax": per_gate(glorot, k_ax, (n_a, n_x)),
        "Waa": per_gate(orthogonal, k_aa, (n_a, n_a)),
        "ba": jnp.zeros((G * n_a, 1), dtype),
    }
    if cell.name == "lstm":
        params["ba"] = params["ba"].at[n_a : 2 * n_a].set(1)  # the forget gate's block
    params |= {k: jnp.zeros((n_a, 1), dtype) for k in cell.extra_biases}
    if n_y is not None:
        params |= {"Wya": glorot(k_ya, (n_y, n_a), dtype), "by": jnp.zeros((n_y, 1), dtype)}
    return params


def _pytorch(k_ax, k_aa, k_ya, cell, n_x, n_a, n_y, dtype) -> dict:
    """PyTorch's defaults: every weight and bias uniform in `[-1/√n_a, 1/√n_a]`."""
    G = cell.gates
    bound = 1 / np.sqrt(n_a)
    uniform = lambda k, shape: jax.random.uniform(k, shape, dtype, -bound, bound)
    k_aa, k_bih, k_bhh = jax.random.split(k_aa, 3)
    bias_ih, bias_hh = uniform(k_bih, (G * n_a, 1)), uniform(k_bhh, (G * n_a, 1))
    params = {"Wax": uniform(k_ax, (G * n_a, n_x)), "Waa": uniform(k_aa, (G * n_a, n_a))}
    if cell.name == "gru":  # b_hn stays apart: it sits inside the reset product
        rz = slice(0, 2 * n_a)
        params |= {"ba": bias_ih.at[rz].add(bias_hh[rz]), "bhn": bias_hh[2 * n_a :]}
    else:
        params |= {"ba": bias_ih + bias_hh}
    if n_y is not None:  # as nn.Linear(n_a, n_y) draws them
        k_wy, k_by = jax.random.split(k_ya)
        params |= {"Wya": uniform(k_wy, (n_y, n_a)), "by": uniform(k_by, (n_y, 1))}
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
    cell: str = "vanilla",
    initialization: str = "jaxrnn",
) -> list:
    """Initial parameters for `rnn_stack`: a list, bottom first, of dicts (pairs of dicts when
    `bidirectional`), each as `init_parameters` draws it for `cell` and `initialization`; layer
    l > 0 takes `n_a` (or `2·n_a`) inputs. With `n_y`, the top layer gets the softmax head
    (unidirectional stacks only)."""
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
        pair = tuple(
            init_parameters(keys[l * directions + d], width, n_a, head, dtype, cell=cell, initialization=initialization)
            for d in range(directions)
        )
        layers.append(pair if bidirectional else pair[0])
    return layers


def _positive_int(fn, name, size):
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"{fn}: {name}={size!r} must be a positive int; received {type(size).__name__}")
    if size < 1:
        raise ValueError(f"{fn}: {name}={size!r} must be a positive int")


MATRICES = ("Wax", "Waa", "Wya")


def weight_decay_mask(parameters):
    """Which parameters weight decay should touch: `True` for the weight matrices `Wax`, `Waa`,
    `Wya`, `False` for the biases (`ba`, the GRU's `bhn`, `by`) and anything else, in the same
    structure as `parameters` — a layer's dict, a stack's list (pairs for bidirectional layers),
    or any pytree holding such dicts, e.g. a model's parameters with a learned initial state.

    For `optax.adamw(learning_rate, weight_decay=..., mask=jaxrnn.weight_decay_mask)`: optax calls
    it with the parameters (decaying biases pulls them towards zero for no gain, which is why
    PyTorch users group them apart).
    """

    def is_matrix(path, _leaf):
        last = path[-1] if path else None
        return isinstance(last, jax.tree_util.DictKey) and last.key in MATRICES

    return jax.tree_util.tree_map_with_path(is_matrix, parameters)
