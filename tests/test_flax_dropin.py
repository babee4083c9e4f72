"""`jaxrnn.nnx.RNN(flax_cell)` and `jaxrnn.nnx.Bidirectional` as drop-ins for `nnx.RNN` and
`nnx.Bidirectional`, against Flax itself on the same cells.

- The same call gives Flax's outputs at valid steps, its carries and the gradients of every
  parameter of the cell, the input and the initial carry (float64, 1e-12 relative), for the
  four cells, forward, `reverse` with and without `keep_order`, time-major, `seq_lengths`; the
  gradient runs the hand-derived backward.
- The module's state is `nnx.RNN`'s (same paths and variables), so Flax's state loads into it;
  without `initial_carry` the cell's own `initialize_carry` (and `carry_init`) starts it.
- Inputs with several batch dimensions, or one sequence; `jaxrnn.nnx.RNN` inside
  `nnx.Bidirectional`, and Flax's `nnx.RNN` inside `jaxrnn.nnx.Bidirectional`.
- `from_flax` reads traced weights (`nnx.jit`, `jax.jit` on Linen variables) bit for bit as
  concrete ones.
- What a Flax user may pass that jaxrnn cannot honour is refused, naming the argument.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOLERANCE, assert_trees_close, fast_and_slow

import jaxrnn

nnx = pytest.importorskip("flax.nnx")
linen = pytest.importorskip("flax.linen")

from jaxrnn.nnx import RNN, Bidirectional  # noqa: E402

N_X, N_A, B, T = 3, 4, 3, 5
CELLS = {"simple": nnx.SimpleCell, "gru": nnx.GRUCell, "lstm": nnx.LSTMCell, "optimized": nnx.OptimizedLSTMCell}
LENGTHS = (5, 3, 1)


def flax_cell(kind, seed=0, dtype=jnp.float64, n_in=N_X, **options):
    """A cell with non-zero biases, computing in `dtype`."""
    init = nnx.initializers.normal(0.5)
    return CELLS[kind](n_in, N_A, bias_init=init, dtype=dtype, param_dtype=dtype, rngs=nnx.Rngs(seed), **options)


def draw(shape, seed=1, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def initial_carry(kind, batch=(B,), seed=2):
    state = lambda s: 0.5 * draw((*batch, N_A), seed + s)
    return (state(0), state(1)) if kind in ("lstm", "optimized") else state(0)


def valid_steps(lengths, time_major, dtype=jnp.float64):
    if lengths is None:
        return jnp.ones((T, B, 1) if time_major else (B, T, 1), dtype)
    valid = (jnp.arange(T)[None] < jnp.asarray(lengths)[:, None]).astype(dtype)
    return (valid.T if time_major else valid)[..., None]


def gradients(model, x, carry, lengths, valid):
    """Outputs at valid steps, the carry, and the gradients of a loss of both with respect to the
    module's parameters, the input and the initial carry."""

    def loss(model, x, carry):
        final, outputs = model(x, initial_carry=carry, seq_lengths=lengths, return_carry=True)
        terms = [jnp.sum(jnp.cos(outputs) * valid)] + [jnp.sum(jnp.sin(f)) for f in jax.tree.leaves(final)]
        return sum(terms), (outputs * valid, final)

    (_, aux), grads = nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(model, x, carry)
    return aux, (nnx.to_pure_dict(nnx.state(grads[0], nnx.Param)), *grads[1:])


CASES = [
    # (cell, options, seq_lengths)
    ("simple", {}, LENGTHS),
    ("simple", {"reverse": True}, None),
    ("gru", {"reverse": True, "keep_order": True}, LENGTHS),
    ("gru", {"time_major": True}, LENGTHS),
    ("lstm", {"reverse": True}, LENGTHS),
    ("lstm", {}, None),
    ("optimized", {"time_major": True, "reverse": True, "keep_order": True}, LENGTHS),
    ("optimized", {"reverse": True}, LENGTHS),
]


# The default run: each cell once, with reverse, keep_order, time_major and masks among them.
@pytest.mark.parametrize(("kind", "options", "lengths"), fast_and_slow(CASES, {0, 2, 4, 6}))
def test_same_call_same_numbers_and_gradients(x64, kind, options, lengths):
    cell = flax_cell(kind, seed=0)
    ours, theirs = RNN(cell, **options), nnx.RNN(nnx.clone(cell), **options)
    time_major = options.get("time_major", False)
    x = draw((T, B, N_X) if time_major else (B, T, N_X))
    lengths = None if lengths is None else jnp.array(lengths)
    valid = valid_steps(lengths, time_major)  # also in keep_order=False's order: valid steps first
    carry = initial_carry(kind)
    got, want = gradients(ours, x, carry, lengths, valid), gradients(theirs, x, carry, lengths, valid)
    assert_trees_close(got, want, TOLERANCE[jnp.float64])
    assert "custom_vjp_call" in str(jax.make_jaxpr(lambda x: ours(x, initial_carry=carry, seq_lengths=lengths))(x))


def test_the_state_is_flax_state(x64):
    """Same paths and variables as `nnx.RNN`: Flax's state (a checkpoint) loads into the module,
    and the same seed gives the same numbers."""
    ours, theirs = RNN(flax_cell("gru", seed=3)), nnx.RNN(flax_cell("gru", seed=3))
    assert jax.tree.structure(nnx.state(ours)) == jax.tree.structure(nnx.state(theirs))
    other = nnx.RNN(flax_cell("gru", seed=4))
    nnx.update(ours, nnx.state(other))
    x = draw((B, T, N_X))
    assert_trees_close(ours(x), other(x), TOLERANCE[jnp.float64])
    assert_trees_close(RNN(flax_cell("gru", seed=3))(x), theirs(x), TOLERANCE[jnp.float64])


@pytest.mark.filterwarnings("ignore:carry_init is provided in __init__")
def test_without_initial_carry_the_cell_initializes_it(x64):
    """The cell's `initialize_carry` with its `carry_init`, drawn from the module's stream as Flax draws it."""
    kind_options = {"carry_init": nnx.initializers.normal(1.0)}
    ours = RNN(flax_cell("lstm", seed=5, **kind_options), rngs=nnx.Rngs(carry=7))
    theirs = nnx.RNN(flax_cell("lstm", seed=5, **kind_options), rngs=nnx.Rngs(carry=7))
    x = draw((B, T, N_X))
    for _ in range(2):  # the second call draws the next keys, in both
        got, want = ours(x, return_carry=True), theirs(x, return_carry=True)
        assert_trees_close(got, want, TOLERANCE[jnp.float64])
    assert_trees_close(
        ours.initialize_carry((B, N_X), nnx.Rngs(carry=1)), theirs.cell.initialize_carry((B, N_X), nnx.Rngs(carry=1)), 0
    )


def test_batch_dimensions_and_one_sequence(x64):
    cell = flax_cell("optimized")
    ours, theirs = RNN(cell, return_carry=True), nnx.RNN(cell, return_carry=True)
    x, carry = draw((2, B, T, N_X)), initial_carry("lstm", batch=(2, B))
    assert_trees_close(ours(x, initial_carry=carry), theirs(x, initial_carry=carry), TOLERANCE[jnp.float64])
    lengths = jnp.array([[5, 2, 0], [1, 4, 3]])
    got_carry, got = ours(x, initial_carry=carry, seq_lengths=lengths)
    flat_carry, flat = ours(
        x.reshape(6, T, N_X),
        initial_carry=jax.tree.map(lambda c: c.reshape(6, N_A), carry),
        seq_lengths=lengths.ravel(),
    )
    assert_trees_close((got_carry, got), jax.tree.map(lambda a: a.reshape(2, B, *a.shape[1:]), (flat_carry, flat)), 0)
    one = ours(x[1, 0], initial_carry=jax.tree.map(lambda c: c[1, 0], carry), seq_lengths=lengths[1, 0])
    assert_trees_close(one, jax.tree.map(lambda a: a[1, 0], (got_carry, got)), TOLERANCE[jnp.float64])


@pytest.mark.parametrize("time_major", [pytest.param(False, marks=pytest.mark.slow), True])
def test_bidirectional_is_nnx_bidirectional(x64, time_major):
    cells = [flax_cell("lstm", seed=s) for s in (0, 1)]
    merge = lambda a, b: a * b  # a merge_fn other than the default
    ours = Bidirectional(RNN(cells[0]), RNN(cells[1]), merge_fn=merge, time_major=time_major, return_carry=True)
    theirs = nnx.Bidirectional(
        nnx.RNN(cells[0]), nnx.RNN(cells[1]), merge_fn=merge, time_major=time_major, return_carry=True
    )
    assert jax.tree.structure(nnx.state(ours)) == jax.tree.structure(nnx.state(theirs))
    x = draw((T, B, N_X) if time_major else (B, T, N_X))
    lengths = jnp.array(LENGTHS)
    valid = valid_steps(lengths, time_major)
    carry = (initial_carry("lstm", seed=2), initial_carry("lstm", seed=4))
    got, want = gradients(ours, x, carry, lengths, valid), gradients(theirs, x, carry, lengths, valid)
    assert_trees_close(got, want, TOLERANCE[jnp.float64])
    batch_major = x.swapaxes(0, 1) if time_major else x
    mixed = nnx.Bidirectional(RNN(cells[0]), nnx.RNN(cells[1]), return_carry=True)  # ours inside Flax's ...
    default = Bidirectional(nnx.RNN(cells[0]), RNN(cells[1]), return_carry=True)  # ... and Flax's inside ours
    assert_trees_close(mixed(batch_major), default(batch_major), TOLERANCE[jnp.float64])


def test_from_flax_reads_traced_weights_bit_for_bit():
    model = nnx.Sequential(
        nnx.Bidirectional(nnx.RNN(flax_cell("lstm", 0, jnp.float32)), nnx.RNN(flax_cell("lstm", 1, jnp.float32))),
        nnx.RNN(flax_cell("lstm", 2, jnp.float32, n_in=2 * N_A)),
    )
    eager = jaxrnn.from_flax(model)[0]
    traced = nnx.jit(lambda m: jaxrnn.from_flax(m)[0])(model)
    for got, want in zip(jax.tree.leaves(traced), jax.tree.leaves(eager), strict=True):
        np.testing.assert_array_equal(got, want)
    variables = linen.RNN(linen.SimpleCell(N_A)).init(jax.random.key(0), jnp.ones((B, T, N_X)))
    variables = jax.tree.map(lambda p: p + 1, variables)  # both SimpleCell biases non-zero: ba is their sum
    eager = jaxrnn.from_flax(variables)[0]
    traced = jax.jit(lambda v: jaxrnn.from_flax(v)[0])(variables)
    for got, want in zip(jax.tree.leaves(traced), jax.tree.leaves(eager), strict=True):
        np.testing.assert_array_equal(got, want)


def test_what_cannot_be_honoured_is_refused():
    cell = flax_cell("gru", dtype=jnp.float32)
    with pytest.raises(TypeError, match=r"jaxrnn.nnx.RNN: hidden_features=8, num_layers=2 given with a Flax cell"):
        RNN(cell, 8, num_layers=2)
    with pytest.raises(TypeError, match=r"cell='gru' given with a Flax cell"):
        RNN(cell, cell="gru")
    with pytest.raises(ValueError, match=r"jaxrnn.nnx.RNN: cell.gate_fn is hard_sigmoid; jaxrnn's gru cell"):
        RNN(nnx.GRUCell(N_X, N_A, gate_fn=nnx.hard_sigmoid, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"state_axes and broadcast_rngs route a custom cell's state"):
        RNN(cell, state_axes={})
    with pytest.raises(TypeError, match=r"expected a Flax cell .* or the sizes RNN\(in_features, hidden_features"):
        RNN(N_X)
    stack = RNN(N_X, N_A, num_layers=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"jaxrnn.nnx.RNN: reverse=True runs one unidirectional layer backwards; "):
        stack(jnp.ones((B, T, N_X)), reverse=True)
    lstm = RNN(flax_cell("lstm", dtype=jnp.float32))
    with pytest.raises(TypeError, match=r"jaxrnn.nnx.RNN: initial_carry must be an LSTM carry: a pair \(c, h\)"):
        lstm(jnp.ones((B, T, N_X)), initial_carry=jnp.zeros((B, N_A)))
