"""jit, vmap and jax.checkpoint applied to the layer equal their plain equivalents."""

import functools

import jax
import jax.numpy as jnp
from helpers import TOLERANCE, assert_trees_close, random_problem, seed


def sequence_loss(forward, x, a0, params):
    a, y = forward(x, a0, params, layout="seed")
    return jnp.sum(a**2) + jnp.sum(jnp.log(y))


def test_jit_equals_eager(device):
    x, a0, params = random_problem(jax.random.PRNGKey(0))
    grad = jax.grad(functools.partial(sequence_loss, seed.rnn), argnums=(0, 1, 2))
    assert_trees_close(jax.jit(grad)(x, a0, params), grad(x, a0, params), TOLERANCE[jnp.float32])
    assert_trees_close(jax.jit(seed.rnn)(x, a0, params), seed.rnn(x, a0, params, layout="seed"), TOLERANCE[jnp.float32])


def test_vmap_over_a_batch_of_sequences(device):
    """vmap over a leading axis of (x, a0) with shared parameters equals a Python loop."""
    x, a0, params = random_problem(jax.random.PRNGKey(1), T_x=5)
    xs = jnp.stack([x, 2 * x, -x])
    a0s = jnp.stack([a0, -a0, a0 / 2])
    grad = jax.grad(functools.partial(sequence_loss, seed.rnn), argnums=(0, 1, 2))
    batched = jax.vmap(grad, in_axes=(0, 0, None))(xs, a0s, params)
    one_grad = jax.jit(grad)  # compiled once for the loop's three calls
    looped = [one_grad(xs[i], a0s[i], params) for i in range(3)]
    stacked = jax.tree_util.tree_map(lambda *g: jnp.stack(g), *looped)
    assert_trees_close(batched, stacked, TOLERANCE[jnp.float32])
    outputs = jax.vmap(seed.rnn, in_axes=(0, 0, None))(xs, a0s, params)
    assert_trees_close(
        outputs,
        jax.tree_util.tree_map(
            lambda *o: jnp.stack(o), *[seed.rnn(xs[i], a0s[i], params, layout="seed") for i in range(3)]
        ),
        TOLERANCE[jnp.float32],
    )


def test_vmap_over_stacked_parameters_gives_per_example_gradients(device):
    x, a0, _ = random_problem(jax.random.PRNGKey(2))
    models = [random_problem(key)[2] for key in jax.random.split(jax.random.PRNGKey(3), 4)]
    stacked = jax.tree_util.tree_map(lambda *p: jnp.stack(p), *models)
    grad_params = jax.grad(lambda p: sequence_loss(seed.rnn, x, a0, p))
    per_model = jax.jit(jax.vmap(grad_params))(stacked)
    reference = jax.jit(jax.grad(lambda p: sequence_loss(seed.rnn_autodiff, x, a0, p)))  # compiled once
    for i, one in enumerate(models):
        assert_trees_close(
            jax.tree_util.tree_map(lambda v, i=i: v[i], per_model), reference(one), TOLERANCE[jnp.float32]
        )


def test_checkpoint_around_the_loss(device):
    x, a0, params = random_problem(jax.random.PRNGKey(4))
    loss = functools.partial(sequence_loss, seed.rnn)
    for policy in (None, jax.checkpoint_policies.nothing_saveable):
        remat = jax.checkpoint(loss, policy=policy)
        got = jax.jit(jax.grad(remat, argnums=(0, 1, 2)))(x, a0, params)
        assert_trees_close(got, jax.grad(loss, argnums=(0, 1, 2))(x, a0, params), TOLERANCE[jnp.float32])


def test_layer_inside_scan_of_chunks_matches_one_call(device):
    """Truncated-BPTT style: `rnn` on 4 chunks inside `jax.lax.scan`, each chunk starting from the final state of
    the one before (its gradient flowing back through the carry), equals one call over the whole sequence: values,
    and gradients against `jax.grad` of `rnn_autodiff` over the whole sequence."""
    x, a0, params = random_problem(jax.random.PRNGKey(5), T_x=8)
    chunks = 4

    def chunked(x, a0, params, layout="seed"):
        n_x, m, T_x = x.shape
        xs = jnp.moveaxis(x.reshape(n_x, m, chunks, T_x // chunks), 2, 0)  # (chunks, n_x, m, T_x / chunks)

        def step(a_prev, x_chunk):
            a, y = seed.rnn(x_chunk, a_prev, params, layout="seed")
            return a[:, :, -1], (a, y)

        _, (a, y) = jax.lax.scan(step, a0, xs)
        joined = lambda v: jnp.moveaxis(v, 0, 2).reshape(v.shape[1], m, T_x)  # (chunks, n, m, k) -> (n, m, T_x)
        return joined(a), joined(y)

    assert_trees_close(jax.jit(chunked)(x, a0, params), jax.jit(seed.rnn)(x, a0, params), TOLERANCE[jnp.float32])
    grad = lambda f: jax.jit(jax.grad(functools.partial(sequence_loss, f), argnums=(0, 1, 2)))(x, a0, params)
    assert_trees_close(grad(chunked), grad(seed.rnn_autodiff), TOLERANCE[jnp.float32])
