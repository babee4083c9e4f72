"""jit, vmap and jax.checkpoint applied to the layer equal their plain equivalents."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from helpers import TOLERANCE, assert_trees_close, random_problem

import jaxrnn


def sequence_loss(forward, x, a0, params):
    a, y = forward(x, a0, params)
    return jnp.sum(a**2) + jnp.sum(jnp.log(y))


def test_jit_equals_eager(device):
    x, a0, params = random_problem(jax.random.PRNGKey(0))
    grad = jax.grad(functools.partial(sequence_loss, jaxrnn.rnn), argnums=(0, 1, 2))
    assert_trees_close(jax.jit(grad)(x, a0, params), grad(x, a0, params), TOLERANCE[jnp.float32])
    assert_trees_close(jax.jit(jaxrnn.rnn)(x, a0, params), jaxrnn.rnn(x, a0, params), TOLERANCE[jnp.float32])


def test_vmap_over_a_batch_of_sequences(device):
    """vmap over a leading axis of (x, a0) with shared parameters equals a Python loop."""
    x, a0, params = random_problem(jax.random.PRNGKey(1), T_x=5)
    xs = jnp.stack([x, 2 * x, -x])
    a0s = jnp.stack([a0, -a0, a0 / 2])
    grad = jax.grad(functools.partial(sequence_loss, jaxrnn.rnn), argnums=(0, 1, 2))
    batched = jax.vmap(grad, in_axes=(0, 0, None))(xs, a0s, params)
    looped = [grad(xs[i], a0s[i], params) for i in range(3)]
    stacked = jax.tree_util.tree_map(lambda *g: jnp.stack(g), *looped)
    assert_trees_close(batched, stacked, TOLERANCE[jnp.float32])
    outputs = jax.vmap(jaxrnn.rnn, in_axes=(0, 0, None))(xs, a0s, params)
    assert_trees_close(
        outputs,
        jax.tree_util.tree_map(lambda *o: jnp.stack(o), *[jaxrnn.rnn(xs[i], a0s[i], params) for i in range(3)]),
        1e-6,
    )


def test_vmap_over_stacked_parameters_gives_per_example_gradients(device):
    x, a0, _ = random_problem(jax.random.PRNGKey(2))
    stacked = jax.vmap(lambda k: random_problem(k)[2])(jax.random.split(jax.random.PRNGKey(3), 4))
    grad_params = jax.grad(lambda p: sequence_loss(jaxrnn.rnn, x, a0, p))
    per_model = jax.jit(jax.vmap(grad_params))(stacked)
    for i in range(4):
        one = jax.tree_util.tree_map(lambda v, i=i: v[i], stacked)
        want = jax.grad(lambda p: sequence_loss(jaxrnn.rnn_autodiff, x, a0, p))(one)
        assert_trees_close(jax.tree_util.tree_map(lambda v, i=i: v[i], per_model), want, TOLERANCE[jnp.float32])


def test_checkpoint_around_the_loss(device):
    x, a0, params = random_problem(jax.random.PRNGKey(4))
    loss = functools.partial(sequence_loss, jaxrnn.rnn)
    for policy in (None, jax.checkpoint_policies.nothing_saveable):
        remat = jax.checkpoint(loss, policy=policy)
        got = jax.jit(jax.grad(remat, argnums=(0, 1, 2)))(x, a0, params)
        assert_trees_close(got, jax.grad(loss, argnums=(0, 1, 2))(x, a0, params), TOLERANCE[jnp.float32])


def test_layer_inside_scan_of_chunks_matches_one_call(device):
    """Truncated-BPTT style: chaining two calls through the final state equals one long call."""
    x, a0, params = random_problem(jax.random.PRNGKey(5), T_x=8)

    def chained(x, a0, params):
        a_first, y_first = jaxrnn.rnn(x[:, :, :4], a0, params)
        a_second, y_second = jaxrnn.rnn(x[:, :, 4:], a_first[:, :, -1], params)
        return jnp.concatenate([a_first, a_second], -1), jnp.concatenate([y_first, y_second], -1)

    grad = lambda f: jax.grad(functools.partial(sequence_loss, f), argnums=(0, 1, 2))(x, a0, params)
    assert_trees_close(grad(chained), grad(jaxrnn.rnn_autodiff), TOLERANCE[jnp.float32])
    np.testing.assert_allclose(chained(x, a0, params)[0], jaxrnn.rnn(x, a0, params)[0], rtol=1e-6, atol=1e-6)
