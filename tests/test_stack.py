"""Stacked and bidirectional layers (`rnn_stack`), dropout between layers, and streaming (`rnn_step`)."""

import functools

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from helpers import TOLERANCE, assert_trees_close, fast_and_slow, seed

import jaxrnn

N_X, N_A, N_Y, M, T = 3, 4, 5, 3, 6
LENGTHS = jnp.array([6, 2, 0])


def stack_problem(num_layers, bidirectional, dtype=jnp.float64, head=False, key=0):
    keys = jax.random.split(jax.random.PRNGKey(key), 4)
    n_y = N_Y if head else None
    layers = jaxrnn.init_stack(
        keys[0], N_X, N_A, num_layers=num_layers, bidirectional=bidirectional, n_y=n_y, dtype=dtype
    )
    # Non-zero biases, so that their gradients are tested at a generic point.
    layers = jax.tree_util.tree_map(lambda p: p + 0.1 * jax.random.normal(keys[1], p.shape, dtype), layers)
    x = jax.random.normal(keys[2], (N_X, M, T), dtype)
    directions = 2 if bidirectional else 1
    a0 = [
        tuple(
            0.5 * jax.random.normal(jax.random.fold_in(keys[3], 2 * l + d), (N_A, M), dtype) for d in range(directions)
        )
        for l in range(num_layers)
    ]
    a0 = a0 if bidirectional else [pair[0] for pair in a0]
    return x, a0, layers


def weighted(outputs, key=99):
    """A random linear functional of every array in `outputs` (a generic cotangent for each)."""
    leaves = [v for v in jax.tree_util.tree_leaves(outputs)]
    keys = jax.random.split(jax.random.PRNGKey(key), len(leaves))
    return sum(jnp.sum(jax.random.normal(k, v.shape, v.dtype) * v) for k, v in zip(keys, leaves))


@functools.partial(jax.jit, static_argnames=("gradient", "checkpoint_every"))
def stack_gradients(x, a0, layers, lengths, gradient, checkpoint_every=None):
    def loss(x, a0, layers):
        options = {"seq_lengths": lengths, "gradient": gradient, "return_final_state": True}
        if gradient == "hand":
            options["checkpoint_every"] = checkpoint_every
        return weighted(seed.rnn_stack(x, a0, layers, **options))

    return jax.value_and_grad(loss, argnums=(0, 1, 2))(x, a0, layers)


@pytest.mark.parametrize(
    ("num_layers", "bidirectional", "head", "checkpoint_every", "masked"),
    fast_and_slow(  # the default run: a masked stack with a head (bidirectional stacks: test_cells, and -m "")
        [
            (1, True, False, None, True),
            (2, False, True, None, True),
            (2, True, False, 4, True),
            (3, True, False, None, True),
            (3, True, False, None, False),
            (3, False, False, 4, True),
        ],
        {1},
    ),
)
def test_stack_equals_autodiff_float64(x64, num_layers, bidirectional, head, checkpoint_every, masked):
    x, a0, layers = stack_problem(num_layers, bidirectional, head=head)
    lengths = LENGTHS if masked else None
    value_hand, hand = stack_gradients(x, a0, layers, lengths, "hand", checkpoint_every)
    value_auto, auto = stack_gradients(x, a0, layers, lengths, "autodiff")
    np.testing.assert_allclose(value_hand, value_auto, rtol=1e-13)
    assert_trees_close(hand, auto, TOLERANCE[jnp.float64])


@pytest.mark.slow  # float32 stacks: test_cells and test_modules by default
def test_stack_equals_autodiff_float32(device):
    x, a0, layers = stack_problem(2, True, jnp.float32, key=1)
    _, hand = stack_gradients(x, a0, layers, LENGTHS, "hand")
    _, auto = stack_gradients(x, a0, layers, LENGTHS, "autodiff")
    assert_trees_close(hand, auto, TOLERANCE[jnp.float32])


def test_bidirectional_layers_are_rnn_calls_composed(x64):
    """Layer by layer: forward and reverse `rnn` calls, concatenated on the features, chained."""
    x, a0, layers = stack_problem(2, True, key=2)
    a, y, finals = seed.rnn_stack(x, a0, layers, seq_lengths=LENGTHS, return_final_state=True, layout="seed")
    assert y is None
    inputs = x
    for (forward, backward), (a0_forward, a0_backward), final in zip(layers, a0, finals):
        options = {"seq_lengths": LENGTHS, "return_final_state": True}
        a_f, _, final_f = seed.rnn(inputs, a0_forward, forward, **options)
        a_r, _, final_r = seed.rnn(inputs, a0_backward, backward, reverse=True, **options)
        inputs = jnp.concatenate([a_f, a_r], axis=0)
        np.testing.assert_allclose(final[0], final_f, rtol=1e-14)
        np.testing.assert_allclose(final[1], final_r, rtol=1e-14)
    np.testing.assert_allclose(a, inputs, rtol=1e-14)
    assert a.shape == (2 * N_A, M, T)


def test_one_layer_stack_is_rnn(x64):
    x, a0, layers = stack_problem(1, False, head=True, key=3)
    for layout in ("seed", "time_major"):
        move = (lambda v: v) if layout == "seed" else (lambda v: jnp.transpose(v, (2, 1, 0)))
        state = (lambda v: v) if layout == "seed" else (lambda v: v.T)
        got = seed.rnn_stack(move(x), [state(a0[0])], layers, layout=layout, return_final_state=True)
        want = seed.rnn(move(x), state(a0[0]), layers[0], layout=layout, return_final_state=True)
        assert_trees_close((got[0], got[1], got[2][0]), want, 0.0)


def test_dropout_between_layers(x64):
    x, a0, layers = stack_problem(3, False, key=4)
    plain = seed.rnn_stack(x, a0, layers, layout="seed")[0]
    with pytest.raises(ValueError, match=r"rnn_stack: dropout=0.5 needs a PRNG key"):
        seed.rnn_stack(x, a0, layers, dropout=0.5, layout="seed")
    key = jax.random.PRNGKey(5)
    dropped = seed.rnn_stack(x, a0, layers, dropout=0.5, key=key, layout="seed")[0]
    again = seed.rnn_stack(x, a0, layers, dropout=0.5, key=key, layout="seed")[0]
    other = seed.rnn_stack(x, a0, layers, dropout=0.5, key=jax.random.PRNGKey(6), layout="seed")[0]
    np.testing.assert_array_equal(dropped, again)  # the key decides the masks
    assert not np.allclose(dropped, plain) and not np.allclose(dropped, other)
    # The bottom layer reads the input undropped: a one-layer stack ignores dropout.
    one = [layers[0]]
    np.testing.assert_array_equal(
        seed.rnn_stack(x, a0[:1], one, dropout=0.5, key=key, layout="seed")[0],
        seed.rnn_stack(x, a0[:1], one, layout="seed")[0],
    )

    def loss(layers, gradient):
        return weighted(seed.rnn_stack(x, a0, layers, dropout=0.5, key=key, gradient=gradient, layout="seed"))

    assert_trees_close(jax.grad(loss)(layers, "hand"), jax.grad(loss)(layers, "autodiff"), TOLERANCE[jnp.float64])
    # Both paths share the dropout code, so also an oracle that shares none: central differences
    # of the loss (the key fixed, so the masks are), along random directions.
    jax.test_util.check_grads(lambda layers: loss(layers, "hand"), (layers,), order=1, modes=("rev",), eps=1e-6)


def test_dropout_keeps_the_expected_fraction_and_scale():
    """Inverted dropout: each input of layers 1.. is kept with probability 1 − p and scaled by 1/(1 − p)."""
    layers = jaxrnn.init_stack(jax.random.PRNGKey(7), 2, 64, num_layers=2)
    x = jax.random.normal(jax.random.PRNGKey(8), (2, 256, 3))
    # The second layer shows its input: relu(I · dropout(h) + 0), with no recurrence.
    shown = dict(layers[1], Waa=jnp.zeros((64, 64)), Wax=jnp.eye(64), ba=jnp.zeros((64, 1)))
    run = lambda **options: seed.rnn_stack(x, None, [layers[0], shown], nonlinearity="relu", **options)[0]
    plain, dropped = run(), run(dropout=0.25, key=jax.random.PRNGKey(9))
    positive = plain > 1e-3
    kept = dropped[positive] != 0
    assert 0.72 < float(jnp.mean(kept)) < 0.78
    np.testing.assert_allclose(dropped[positive][kept], plain[positive][kept] / 0.75, rtol=1e-5)


@pytest.mark.parametrize("layout", ["seed", "batch_major"])
def test_step_by_step_equals_the_whole_sequence(x64, layout):
    """`rnn_step` inside a user's `lax.scan` gives the states and predictions of `rnn_stack`."""
    x, a0, layers = stack_problem(2, False, head=True, key=10)
    move = (lambda v: v) if layout == "seed" else (lambda v: jnp.transpose(v, (1, 2, 0)))
    state = (lambda v: v) if layout == "seed" else (lambda v: v.T)
    a, y, finals = seed.rnn_stack(move(x), [state(s) for s in a0], layers, layout=layout, return_final_state=True)

    def step(states, x_t):
        states, y_t = seed.rnn_step(x_t, states, layers, layout=layout)
        return states, y_t

    steps = jnp.moveaxis(x, 2, 0) if layout == "seed" else jnp.transpose(x, (2, 1, 0))
    last_states, ys = jax.lax.scan(step, [state(s) for s in a0], steps)
    ys = jnp.moveaxis(ys, 0, 2) if layout == "seed" else jnp.moveaxis(ys, 0, 1)
    np.testing.assert_allclose(ys, y, rtol=1e-13)
    for got, want in zip(last_states, finals):
        np.testing.assert_allclose(got, want, rtol=1e-13)


def test_step_of_one_layer_is_the_seed_cell(x64):
    x, a0, layers = stack_problem(1, False, head=True, key=11)
    a_next, y_t = seed.rnn_step(x[:, :, 0], a0[0], layers[0], nonlinearity="tanh", layout="seed")
    a_seed, y_seed, _ = jaxrnn.rnn_cell_forward(x[:, :, 0], a0[0], layers[0])
    np.testing.assert_allclose(a_next, a_seed, rtol=1e-14)
    np.testing.assert_allclose(y_t, y_seed, rtol=1e-14)


def test_init_stack_shapes():
    layers = jaxrnn.init_stack(jax.random.PRNGKey(0), 3, 4, num_layers=3, bidirectional=True)
    assert [len(layer) for layer in layers] == [2, 2, 2]
    assert [layer[0]["Wax"].shape for layer in layers] == [(4, 3), (4, 8), (4, 8)]
    assert all(sorted(p) == ["Waa", "Wax", "ba"] for layer in layers for p in layer)
    with_head = jaxrnn.init_stack(jax.random.PRNGKey(0), 3, 4, num_layers=2, n_y=7)
    assert with_head[1]["Wya"].shape == (7, 4) and "Wya" not in with_head[0]
    assert not np.allclose(layers[0][0]["Waa"], layers[0][1]["Waa"])  # directions drawn independently
