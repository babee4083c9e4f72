"""The layer's options — seq_lengths, reverse, nonlinearity, heads, checkpoint_every, the final
state and the three layouts — against autodiff of the same forward, against each sequence
run alone and unpadded, and by construction."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    TOLERANCE,
    assert_trees_close,
    covers_every_pair,
    each_value_once,
    pairwise_fast,
    random_problem,
    seed,
)

N_X, N_A, N_Y, M, T = 3, 5, 4, 4, 7
LENGTHS = (7, 0, 3, 5)  # full, empty, and two in between
IGNORED = 2  # a label value the cross-entropy cases ignore


def problem(dtype, head="softmax", key=0):
    """Random inputs, labels and dense cotangents for every output of the layer."""
    keys = jax.random.split(jax.random.PRNGKey(key), 5)
    x, a0, params = random_problem(keys[0], N_X, N_A, N_Y, M, T, dtype)
    if head is None:
        params = {k: params[k] for k in ("Wax", "Waa", "ba")}
    labels = jax.random.randint(keys[1], (M, T), 0, N_Y)
    weights = {
        "a": jax.random.normal(keys[2], (N_A, M, T), dtype),
        "head": jax.random.normal(keys[3], (N_Y, M, T) if head == "softmax" else (M, T), dtype),
        "final": jax.random.normal(keys[4], (N_A, M), dtype),
    }
    return x, a0, params, labels, weights


def loss(head, gradient, options, x, a0, params, labels, weights):
    """Σ w_a ⊙ a + Σ w_head ⊙ (y or losses) + Σ w_final ⊙ a_final: a generic cotangent for each output."""
    options = dict(options, gradient=gradient, return_final_state=True)
    if gradient == "autodiff":
        options.pop("checkpoint_every", None)
    if head == "cross_entropy":
        losses, a, final = seed.rnn_cross_entropy(x, a0, params, labels, ignore_index=IGNORED, **options)
        head_term = jnp.sum(weights["head"] * losses)
    else:
        a, y, final = seed.rnn(x, a0, params, **options)
        head_term = 0.0 if y is None else jnp.sum(weights["head"] * y)
    return jnp.sum(weights["a"] * a) + head_term + jnp.sum(weights["final"] * final)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def value_and_gradients(head, gradient, options, x, a0, params, labels, weights):
    options = dict(options)
    return jax.value_and_grad(loss, argnums=(3, 4, 5))(head, gradient, options, x, a0, params, labels, weights)


def frozen(options):
    """Options as a hashable tuple (a static argument), with the lengths as an array."""
    return tuple(sorted(options.items()))


CASES = list(
    itertools.product(
        [False, True],  # reverse
        ["tanh", "relu"],
        [None, LENGTHS],
        [None, 3],  # checkpoint_every (3 does not divide T = 7: padded, masked segments)
        ["softmax", None, "cross_entropy"],
    )
)


# Every pair of option values at least once: the default run; the whole grid runs with `-m ""`.
PAIRWISE = [
    (False, "tanh", None, None, "softmax"),
    (False, "relu", LENGTHS, 3, None),
    (True, "tanh", None, 3, "cross_entropy"),
    (True, "relu", LENGTHS, None, "softmax"),
    (False, "tanh", LENGTHS, None, "cross_entropy"),
    (True, "tanh", None, None, None),
    (False, "relu", None, None, "cross_entropy"),
    (False, "tanh", None, 3, "softmax"),
]


def test_the_fast_cases_cover_every_pair_of_options():
    assert covers_every_pair(PAIRWISE, CASES)


@pytest.mark.parametrize(
    ("reverse", "nonlinearity", "lengths", "checkpoint_every", "head"), pairwise_fast(CASES, PAIRWISE)
)
def test_every_option_equals_autodiff_float64(x64, reverse, nonlinearity, lengths, checkpoint_every, head):
    x, a0, params, labels, weights = problem(jnp.float64, head)
    options = {"reverse": reverse, "nonlinearity": nonlinearity, "checkpoint_every": checkpoint_every}
    lengths = None if lengths is None else jnp.array(lengths)
    run = lambda gradient: _with_lengths(head, gradient, options, lengths, x, a0, params, labels, weights)
    (value_hand, hand), (value_auto, auto) = run("hand"), run("autodiff")
    np.testing.assert_allclose(value_hand, value_auto, rtol=1e-13)
    assert_trees_close(hand, auto, TOLERANCE[jnp.float64])


def _with_lengths(head, gradient, options, lengths, *args):
    """`value_and_gradients` with `seq_lengths` passed as a traced argument (as under a user's jit)."""

    @functools.partial(jax.jit, static_argnums=(0, 1))
    def run(head, gradient, lengths, x, a0, params, labels, weights):
        loss_fn = lambda *a: loss(head, gradient, dict(options, seq_lengths=lengths), *a)
        return jax.value_and_grad(loss_fn, argnums=(0, 1, 2))(x, a0, params, labels, weights)

    return run(head, gradient, lengths, *args)


@pytest.mark.parametrize(*each_value_once(layout=["seed", "batch_major", "time_major"], reverse=[False, True]))
def test_layouts_equal_the_seed_layout_and_autodiff_float32(device, layout, reverse):
    """Every layout gives the seed layout's numbers, moved; float32 against autodiff."""
    x, a0, params, labels, weights = problem(jnp.float32, "softmax", key=1)
    lengths = jnp.array(LENGTHS)
    to_layout = {
        "seed": lambda v: v,
        "batch_major": lambda v: jnp.transpose(v, (1, 2, 0)),
        "time_major": lambda v: jnp.transpose(v, (2, 1, 0)),
    }[layout]
    state = (lambda v: v) if layout == "seed" else (lambda v: v.T)
    moved = (
        to_layout(x),
        state(a0),
        params,
        labels,
        {k: to_layout(v) if v.ndim == 3 else state(v) for k, v in weights.items()},
    )
    options = {"reverse": reverse, "seq_lengths": lengths, "checkpoint_every": 4}
    results = {}
    for gradient in ("hand", "autodiff"):
        fn = jax.jit(
            jax.value_and_grad(
                lambda *a, g=gradient: loss("softmax", g, dict(options, layout=layout), *a), argnums=(0, 1, 2)
            )
        )
        results[gradient] = fn(*moved)
    seed_fn = jax.jit(jax.value_and_grad(lambda *a: loss("softmax", "hand", options, *a), argnums=(0, 1, 2)))
    seed_value, (dx, da0, dparams) = seed_fn(x, a0, params, labels, weights)
    value, grads = results["hand"]
    np.testing.assert_allclose(value, seed_value, rtol=TOLERANCE[jnp.float32])  # a float32 sum over every output
    assert_trees_close(grads, (to_layout(dx), state(da0), dparams), TOLERANCE[jnp.float32])
    assert_trees_close(grads, results["autodiff"][1], TOLERANCE[jnp.float32])


def one_example(v, i, length):
    """Example i of a seed-layout sequence `(n, m, T)` cut to its length, or of a state `(n, m)`."""
    return v[:, i : i + 1, :length] if v.ndim == 3 else v[:, i : i + 1]


PADDED_CASES = list(itertools.product(["softmax", "cross_entropy"], [None, 3], [False, True]))  # head, every, reverse


@pytest.mark.parametrize(
    ("head", "checkpoint_every", "reverse"),
    pairwise_fast(PADDED_CASES, [("softmax", 3, True), ("cross_entropy", None, False)]),
)
def test_padded_batch_equals_each_sequence_alone(x64, reverse, checkpoint_every, head):
    """Outputs, final states and gradients of a padded batch equal those of every sequence
    run alone, unpadded; padding outputs are zero and padded inputs get exactly zero gradient."""
    x, a0, params, labels, weights = problem(jnp.float64, head, key=2)
    options = {"reverse": reverse, "checkpoint_every": checkpoint_every}
    lengths = jnp.array(LENGTHS)
    batch_value, (dx, da0, dparams) = _with_lengths(head, "hand", options, lengths, x, a0, params, labels, weights)
    alone_value, alone_dparams = 0.0, jax.tree_util.tree_map(jnp.zeros_like, params)
    for i, length in enumerate(LENGTHS):
        if length == 0:  # nothing runs: the loss sees a0 itself as the final state
            alone_value += jnp.sum(weights["final"][:, i] * a0[:, i])
            continue
        example = functools.partial(one_example, i=i, length=length)
        example_weights = {
            k: (v[i : i + 1, :length] if v.ndim == 2 and k == "head" else example(v)) for k, v in weights.items()
        }
        value, (dx_i, da0_i, dparams_i) = value_and_gradients(
            head, "hand", frozen(options), example(x), example(a0), params, labels[i : i + 1, :length], example_weights
        )
        alone_value += value
        alone_dparams = jax.tree_util.tree_map(jnp.add, alone_dparams, dparams_i)
        np.testing.assert_allclose(dx[:, i : i + 1, :length], dx_i, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(da0[:, i : i + 1], da0_i, rtol=1e-12, atol=1e-14)
    # An empty sequence: its final state is a0 itself, so its whole gradient is w_final.
    empty = LENGTHS.index(0)
    np.testing.assert_allclose(da0[:, empty], weights["final"][:, empty], rtol=1e-14)
    np.testing.assert_allclose(batch_value, alone_value, rtol=1e-12)
    assert_trees_close(dparams, alone_dparams, 1e-12)
    for i, length in enumerate(LENGTHS):
        assert bool(jnp.all(dx[:, i, length:] == 0)), f"padded inputs of example {i} got a gradient"


@pytest.mark.parametrize("reverse", [pytest.param(False, marks=pytest.mark.slow), True])
def test_carry_is_frozen_and_padding_outputs_zero(x64, reverse):
    """The final state is the state after each sequence's last valid step (a0 for length 0),
    whatever the padding holds; outputs at padded steps are exactly zero."""
    x, a0, params, _, _ = problem(jnp.float64, key=3)
    lengths = jnp.array(LENGTHS)
    garbage = x.at[:, :, 5:].set(1e3)  # padding that would move an unfrozen state
    a, y, final = seed.rnn(
        garbage, a0, params, seq_lengths=lengths, reverse=reverse, return_final_state=True, layout="seed"
    )
    for i, length in enumerate(LENGTHS):
        if length == 0:
            np.testing.assert_array_equal(final[:, i], a0[:, i])
            continue
        xi = x[:, i : i + 1, :length]
        ai, yi = seed.rnn(xi[:, :, ::-1] if reverse else xi, a0[:, i : i + 1], params, layout="seed")
        if reverse:
            ai, yi = ai[:, :, ::-1], yi[:, :, ::-1]
        if length <= 5:  # the garbage is all padding for this example
            np.testing.assert_allclose(a[:, i : i + 1, :length], ai, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(y[:, i : i + 1, :length], yi, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(final[:, i], ai[:, 0, 0 if reverse else -1], rtol=1e-13, atol=1e-15)
        assert bool(jnp.all(a[:, i, length:] == 0)) and bool(jnp.all(y[:, i, length:] == 0))


def test_reverse_without_lengths_is_the_flipped_sequence(x64):
    x, a0, params, _, _ = problem(jnp.float64, key=4)
    a, y, final = seed.rnn(x, a0, params, reverse=True, return_final_state=True, layout="seed")
    a_flipped, y_flipped = seed.rnn(x[:, :, ::-1], a0, params, layout="seed")
    np.testing.assert_allclose(a, a_flipped[:, :, ::-1], rtol=1e-13)
    np.testing.assert_allclose(y, y_flipped[:, :, ::-1], rtol=1e-13)
    np.testing.assert_allclose(final, a_flipped[:, :, -1], rtol=1e-13)


def test_relu_is_the_seed_with_relu(x64):
    """ReLU steps computed by hand on column vectors, step by step."""
    x, a0, params, _, _ = problem(jnp.float64, key=5)
    a, _ = seed.rnn(x, a0, params, nonlinearity="relu", layout="seed")
    a_prev = np.asarray(a0)
    for t in range(T):
        a_prev = np.maximum(0, params["Waa"] @ a_prev + params["Wax"] @ x[:, :, t] + params["ba"])
        np.testing.assert_allclose(a[:, :, t], a_prev, rtol=1e-13, atol=1e-15)
    assert 0.2 < float(jnp.mean(a == 0)) < 0.8  # both branches of relu' are exercised


def test_final_state_gradient_chains_two_calls(x64):
    """Truncated BPTT through the final state: two calls chained equal one call, gradients included."""
    x, a0, params, _, weights = problem(jnp.float64, key=6)

    def chained(x, a0, params):
        a1, y1, f1 = seed.rnn(x[:, :, :3], a0, params, return_final_state=True, layout="seed")
        a2, y2 = seed.rnn(x[:, :, 3:], f1, params, layout="seed")
        return jnp.concatenate([a1, a2], -1), jnp.concatenate([y1, y2], -1)

    def weighted(fn):
        return lambda *args: jnp.sum(weights["a"] * fn(*args)[0]) + jnp.sum(weights["head"] * fn(*args)[1])

    grad = lambda fn: jax.jit(jax.grad(weighted(fn), argnums=(0, 1, 2)))(x, a0, params)
    assert_trees_close(grad(chained), grad(seed.rnn_autodiff), 1e-12)


def test_out_of_range_lengths_raise_eagerly_and_poison_under_jit(x64):
    x, a0, params, _, weights = problem(jnp.float64, key=7)
    bad = jnp.array([7, 8, 3, -1])
    with pytest.raises(ValueError, match=r"rnn: seq_lengths\[1\]=8 is outside \[0, T_x=7\]"):
        seed.rnn(x, a0, params, seq_lengths=bad, layout="seed")

    @jax.jit
    def run(lengths):
        a, y, final = seed.rnn(x, a0, params, seq_lengths=lengths, return_final_state=True, layout="seed")
        grads = jax.grad(
            lambda p: jnp.sum(seed.rnn(x, a0, p, seq_lengths=lengths, layout="seed")[1] * weights["head"])
        )(params)
        return a, y, final, grads

    a, y, final, grads = run(bad)
    poisoned = np.array([False, True, False, True])
    np.testing.assert_array_equal(np.isnan(a).all(axis=(0, 2)), poisoned)
    np.testing.assert_array_equal(np.isnan(y).all(axis=(0, 2)), poisoned)
    np.testing.assert_array_equal(np.isnan(final).all(axis=0), poisoned)
    assert not np.isnan(a[:, ~poisoned]).any()
    assert all(bool(jnp.isnan(g).any()) for g in jax.tree_util.tree_leaves(grads))
    # The same call with valid lengths is finite, so the NaN comes from the lengths alone.
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree_util.tree_leaves(run(jnp.array(LENGTHS))[3]))


def test_layer_without_head_returns_none_for_y(x64):
    x, a0, params, _, _ = problem(jnp.float64, head=None, key=8)
    full = dict(params, Wya=jnp.ones((N_Y, N_A)), by=jnp.zeros((N_Y, 1)))
    a, y = seed.rnn(x, a0, params, layout="seed")
    assert y is None
    np.testing.assert_array_equal(a, seed.rnn(x, a0, full, layout="seed")[0])


def test_a0_none_means_zeros(device):
    x, a0, params, _, _ = problem(jnp.float32, key=9)
    for layout, move in (("seed", lambda v: v), ("time_major", lambda v: jnp.transpose(v, (2, 1, 0)))):
        got = seed.rnn(move(x), None, params, layout=layout)
        want = seed.rnn(move(x), jnp.zeros_like(a0 if layout == "seed" else a0.T), params, layout=layout)
        assert_trees_close(got, want, 0.0)


def test_checkpointing_with_lengths_keeps_fewer_residuals(x64):
    """checkpoint_every keeps one state per segment: less compiled temp memory than without,
    with masks and in reverse too (XLA's own memory analysis of the jitted gradient step)."""
    x, a0, params = random_problem(jax.random.PRNGKey(10), 4, 32, 4, 8, 256, jnp.float64)
    lengths = jnp.arange(8) * 32
    grad = lambda every: jax.jit(
        jax.grad(
            lambda x, p: jnp.sum(
                seed.rnn_cross_entropy(
                    x,
                    a0,
                    p,
                    jnp.zeros((8, 256), jnp.int32),
                    seq_lengths=lengths,
                    reverse=True,
                    checkpoint_every=every,
                    layout="seed",
                )[0]
            ),
            argnums=(0, 1),
        )
    )
    memory = {every: grad(every).lower(x, params).compile().memory_analysis() for every in (None, 16)}
    if any(m is None for m in memory.values()):
        pytest.skip("this backend reports no memory analysis")
    assert memory[16].temp_size_in_bytes < 0.5 * memory[None].temp_size_in_bytes
