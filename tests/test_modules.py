"""The NNX and Equinox modules (`jaxrnn.nnx.RNN`, `jaxrnn.equinox.RNN`) built from sizes or
from converted parameters, for every cell (`tests/test_flax_dropin.py`: `jaxrnn.nnx.RNN` on a
Flax cell).

- Their gradients (parameters, inputs, initial carries; stacks, both directions, seq_lengths,
  with and without a head; vanilla, GRU, LSTM) equal those of the autodiff twin
  (`gradient="autodiff"`), which is `jax.grad` of the same forward.
- The NNX module holding `from_flax`'s parameters is a drop-in for `nnx.RNN` /
  `nnx.Bidirectional`: the same call gives the same outputs and carries (an LSTM's `(c, h)`).
  The Equinox module holding `from_equinox`'s gives what the Equinox cells give scanned by hand
  (an LSTM's state `(h, c)`), for one sequence (vmap it) or a batch.
- `import jaxrnn` imports neither Flax nor Equinox; `jaxrnn.nnx`, `jaxrnn.equinox` load on use.
- Both train with optax: a few Adam steps lower the loss.
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import TOLERANCE, assert_trees_close, relative_error

import jaxrnn

N_X, N_A, N_Y, B, T = 3, 4, 5, 3, 6
LENGTHS = jnp.array([6, 2, 0])

CONFIGS = [
    # (num_layers, bidirectional, head, seq_lengths, cell)
    (2, True, None, LENGTHS, "lstm"),
    (1, False, N_Y, LENGTHS, "vanilla"),
    pytest.param(2, False, None, None, "gru", marks=pytest.mark.slow),
]


def data(num_layers, bidirectional, dtype, seed=0, cell="vanilla"):
    """Batch-major inputs and an initial carry, structured as the modules take it (an LSTM's
    state a pair of arrays, in either framework's order)."""
    rng = np.random.default_rng(seed)
    draw = lambda *shape: jnp.asarray(rng.standard_normal(shape), dtype)
    state = (lambda: (draw(B, N_A), draw(B, N_A))) if cell == "lstm" else (lambda: draw(B, N_A))
    carry = [(state(), state()) if bidirectional else state() for _ in range(num_layers)]
    return draw(B, T, N_X), carry[0] if num_layers == 1 else carry


def weighted(tree):
    """A fixed generic linear functional of every array in `tree`."""
    return sum(
        jnp.sum(jnp.cos(jnp.arange(leaf.size, dtype=leaf.dtype)).reshape(leaf.shape) * leaf)
        for leaf in jax.tree.leaves(tree)
    )


def counting_batch(key, vocab=N_Y):
    """Sequences counting modulo `vocab` from random starts: one-hot tokens, the next token as label."""
    tokens = (jax.random.randint(key, (8, 1), 0, vocab) + jnp.arange(10)[None]) % vocab
    return jax.nn.one_hot(tokens, vocab), (tokens + 1) % vocab


def cross_entropy(probabilities, labels):
    return -jnp.mean(jnp.log(jnp.take_along_axis(probabilities, labels[..., None], axis=-1)))


def assert_training_lowers_the_loss(losses):
    assert all(np.isfinite(losses)) and np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


@pytest.mark.parametrize(("num_layers", "bidirectional", "head", "lengths", "cell"), CONFIGS)
def test_nnx_gradients_equal_the_autodiff_twin(x64, num_layers, bidirectional, head, lengths, cell):
    nnx = pytest.importorskip("flax.nnx")
    from jaxrnn.nnx import RNN

    model = RNN(
        N_X,
        N_A,
        cell=cell,
        num_layers=num_layers,
        bidirectional=bidirectional,
        out_features=head,
        param_dtype=jnp.float64,
        rngs=nnx.Rngs(0),
    )
    twin = RNN.from_parameters(model.parameters(), cell=cell, gradient="autodiff")
    x, carry = data(num_layers, bidirectional, jnp.float64, cell=cell)
    assert jax.tree.structure(model.initialize_carry((B, N_X))) == jax.tree.structure(carry)

    def loss(model, x, carry):
        carry, outputs = model(x, initial_carry=carry, seq_lengths=lengths, return_carry=True)
        return weighted((outputs, carry))

    grad = nnx.jit(nnx.grad(loss, argnums=(0, 1, 2)))
    hand, autodiff = grad(model, x, carry), grad(twin, x, carry)
    assert_trees_close(nnx.to_pure_dict(hand[0]), nnx.to_pure_dict(autodiff[0]), TOLERANCE[jnp.float64])
    assert_trees_close(hand[1:], autodiff[1:], TOLERANCE[jnp.float64])
    assert_runs_its_own_backward(lambda x: model(x, seq_lengths=lengths), lambda x: twin(x, seq_lengths=lengths), x)


def assert_runs_its_own_backward(hand, autodiff, x):
    """`gradient="hand"` calls the custom VJP; the twin is the plain forward, left to `jax.grad`."""
    assert "custom_vjp_call" in str(jax.make_jaxpr(hand)(x))
    assert "custom_vjp_call" not in str(jax.make_jaxpr(autodiff)(x))


@pytest.mark.parametrize(("bidirectional", "flax_cell"), [(False, "SimpleCell"), (True, "OptimizedLSTMCell")])
def test_nnx_module_is_a_drop_in_for_flax(x64, bidirectional, flax_cell):
    nnx = pytest.importorskip("flax.nnx")
    from jaxrnn.nnx import RNN

    def flax_rnn(seed):
        normal = nnx.initializers.normal(0.5)
        options = {"bias_init": normal, "param_dtype": jnp.float64, "dtype": jnp.float64}
        return nnx.RNN(getattr(nnx, flax_cell)(N_X, N_A, **options, rngs=nnx.Rngs(seed)))

    flax_model = nnx.Bidirectional(flax_rnn(0), flax_rnn(1)) if bidirectional else flax_rnn(0)
    layers, options = jaxrnn.from_flax(flax_model)
    model = RNN.from_parameters(layers, **options)
    x, carry = data(1, bidirectional, jnp.float64, cell=options["cell"])
    lengths = jnp.array([T, T - 1, 2])
    want = flax_model(x, initial_carry=carry, seq_lengths=lengths, return_carry=True)
    got = model(x, initial_carry=carry, seq_lengths=lengths, return_carry=True)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    valid = (jnp.arange(T)[None] < lengths[:, None])[..., None].astype(jnp.float64)
    assert_trees_close((got[0], got[1] * valid), (want[0], want[1] * valid), TOLERANCE[jnp.float64])
    one = model(x[1], initial_carry=jax.tree.map(lambda c: c[1], carry), seq_lengths=lengths[1], return_carry=True)
    assert_trees_close(one, jax.tree.map(lambda g: g[1], got), TOLERANCE[jnp.float64])  # one sequence, unbatched
    assert model(x).shape == want[1].shape  # return_carry defaults to the module's False, as Flax's


def test_nnx_module_trains_with_optax():
    nnx = pytest.importorskip("flax.nnx")
    from jaxrnn.nnx import RNN

    model = RNN(N_Y, 16, out_features=N_Y, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(3e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, labels):
        loss, grads = nnx.value_and_grad(lambda model: cross_entropy(model(x), labels))(model)
        optimizer.update(model, grads)
        return loss

    # optax's Adam raises its int32 step count to a float power, which strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        losses = [
            float(step(model, optimizer, *counting_batch(key))) for key in jax.random.split(jax.random.key(1), 15)
        ]
    assert_training_lowers_the_loss(losses)


@pytest.mark.parametrize(("num_layers", "bidirectional", "head", "lengths", "cell"), CONFIGS)
def test_equinox_gradients_equal_the_autodiff_twin(x64, num_layers, bidirectional, head, lengths, cell):
    eqx = pytest.importorskip("equinox")
    from jaxrnn.equinox import RNN

    model = RNN(
        N_X,
        N_A,
        num_layers=num_layers,
        bidirectional=bidirectional,
        output_size=head,
        cell=cell,
        dtype=jnp.float64,
        key=jax.random.key(0),
    )
    twin = RNN.from_parameters(model.layers, cell=cell, gradient="autodiff")
    x, carry = data(num_layers, bidirectional, jnp.float64, cell=cell)
    grad = eqx.filter_jit(jax.grad(lambda m, x, c: weighted(m(x, c, seq_lengths=lengths)), argnums=(0, 1, 2)))
    hand, autodiff = grad(model, x, carry), grad(twin, x, carry)
    assert_trees_close((hand[0].layers, *hand[1:]), (autodiff[0].layers, *autodiff[1:]), TOLERANCE[jnp.float64])
    assert_runs_its_own_backward(lambda x: model(x, seq_lengths=lengths), lambda x: twin(x, seq_lengths=lengths), x)


def test_equinox_module_takes_one_sequence_or_a_batch(x64):
    pytest.importorskip("equinox")
    from jaxrnn.equinox import RNN

    model = RNN(N_X, N_A, num_layers=2, bidirectional=True, dtype=jnp.float64, key=jax.random.key(0))
    x, carry = data(2, True, jnp.float64)
    batch = model(x, carry, seq_lengths=LENGTHS)
    mapped = jax.vmap(lambda x, c, n: model(x, c, seq_lengths=n))(x, carry, LENGTHS)
    assert_trees_close(mapped, batch, TOLERANCE[jnp.float64])
    time_major = RNN.from_parameters(model.layers, layout="time_major")
    outputs, finals = time_major(jnp.swapaxes(x, 0, 1), carry, seq_lengths=LENGTHS)
    assert relative_error(jnp.swapaxes(outputs, 0, 1), batch[0]) <= TOLERANCE[jnp.float64]
    assert_trees_close(finals, batch[1], TOLERANCE[jnp.float64])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_equinox_module_runs_equinox_cells(x64, cell):
    """`from_equinox`'s cells in the module give what the cells give scanned over each sequence's
    valid steps; an LSTM's state is Equinox's `(h, c)`."""
    eqx = pytest.importorskip("equinox")
    from jaxrnn.equinox import RNN

    make = {"gru": eqx.nn.GRUCell, "lstm": eqx.nn.LSTMCell}[cell]
    cells = [make(N_X, N_A, dtype=jnp.float64, key=jax.random.key(0))]
    layers, options = jaxrnn.from_equinox(cells)
    x, state = data(1, False, jnp.float64, cell=cell)
    outputs, final = RNN.from_parameters(layers, **options)(x, state, seq_lengths=LENGTHS)

    def scanned(x, state, length):
        def step(state, x_t):
            new = cells[0](x_t, state)
            return new, new[0] if cell == "lstm" else new

        final, ys = jax.lax.scan(step, state, x[:length])
        return ys, final

    for b, length in enumerate(LENGTHS.tolist()):
        ys, want = scanned(x[b], example(state, b), length)  # length 0: the initial state
        assert_trees_close(example(final, b), want, TOLERANCE[jnp.float64])
        if length:
            assert_trees_close(outputs[b, :length], ys, TOLERANCE[jnp.float64])
        assert not jnp.any(outputs[b, length:])
    assert type(final) is (tuple if cell == "lstm" else type(outputs))


def example(tree, b):
    return jax.tree.map(lambda state: state[b], tree)


def test_importing_jaxrnn_imports_neither_flax_nor_equinox():
    script = (
        "import sys, jaxrnn\n"
        "assert not {'flax', 'equinox'} & set(sys.modules), sorted(m for m in sys.modules if 'flax' in m)\n"
        "assert jaxrnn.nnx.RNN and 'flax' in sys.modules and 'equinox' not in sys.modules\n"
        "assert jaxrnn.equinox.RNN and 'equinox' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_equinox_module_trains_with_optax():
    eqx = pytest.importorskip("equinox")
    from jaxrnn.equinox import RNN

    model = RNN(N_Y, 16, output_size=N_Y, key=jax.random.key(0))
    optimizer = optax.adam(3e-2)
    state = optimizer.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def step(model, state, x, labels):
        loss, grads = eqx.filter_value_and_grad(lambda model: cross_entropy(model(x)[0], labels))(model)
        updates, state = optimizer.update(grads, state, model)
        return eqx.apply_updates(model, updates), state, loss

    losses = []
    with jax.numpy_dtype_promotion("standard"):
        for key in jax.random.split(jax.random.key(1), 15):
            model, state, loss = step(model, state, *counting_batch(key))
            losses.append(float(loss))
    assert_training_lowers_the_loss(losses)


def test_module_options_are_checked():
    nnx = pytest.importorskip("flax.nnx")
    from jaxrnn.nnx import RNN

    with pytest.raises(ValueError, match=r"jaxrnn.nnx.RNN: nonlinearity='gelu' is not one of \['tanh', 'relu'\]"):
        RNN(N_X, N_A, nonlinearity="gelu", rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match=r"from_parameters: layout='seed' is not one of \['batch_major', 'time_major'\]"
    ):
        RNN.from_parameters(jaxrnn.init_stack(jax.random.key(0), N_X, N_A), layout="seed")
    with pytest.raises(ValueError, match=r"n_y gives the top layer a softmax head, which a bidirectional layer"):
        RNN(N_X, N_A, bidirectional=True, out_features=2, rngs=nnx.Rngs(0))
