"""The forward pass against the numpy port of the seed, and its edge cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seed_numpy
from helpers import random_problem, seed

import jaxrnn


def classic_cell_case():
    """The seed course's `rnn_cell_forward` example."""
    np.random.seed(1)
    xt, a_prev = np.random.randn(3, 10), np.random.randn(5, 10)
    params = seed_numpy.classic_parameters(3, 5, 2, ("Waa", "Wax", "Wya", "ba", "by"))
    return xt, a_prev, params


def classic_sequence_case():
    """The seed course's `rnn_forward` example."""
    np.random.seed(1)
    x, a0 = np.random.randn(3, 10, 4), np.random.randn(5, 10)
    params = seed_numpy.classic_parameters(3, 5, 2, ("Waa", "Wax", "Wya", "ba", "by"))
    return x, a0, params


def test_cell_forward_equals_seed(x64):
    xt, a_prev, params = classic_cell_case()
    a_next, yt_pred, cache = jaxrnn.rnn_cell_forward(xt, a_prev, params)
    want_a, want_y, _ = seed_numpy.rnn_cell_forward(xt, a_prev, params)
    assert a_next.dtype == yt_pred.dtype == jnp.float64
    np.testing.assert_allclose(a_next, want_a, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(yt_pred, want_y, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(cache[0], a_next)
    np.testing.assert_array_equal(cache[1], a_prev)
    np.testing.assert_array_equal(cache[2], xt)
    assert sorted(cache[3]) == sorted(params)


def test_sequence_forward_equals_seed(x64):
    x, a0, params = classic_sequence_case()
    a, y_pred, caches = jaxrnn.rnn_forward(x, a0, params)
    want_a, want_y, _ = seed_numpy.rnn_forward(x, a0, params)
    assert a.shape == (5, 10, 4) and y_pred.shape == (2, 10, 4)
    np.testing.assert_allclose(a, want_a, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y_pred, want_y, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(caches.hidden_states, np.transpose(np.asarray(a), (2, 1, 0)))


@pytest.mark.parametrize("sizes", [(3, 5, 2, 4, 6), (1, 1, 1, 1, 1), (4, 7, 3, 1, 5), (2, 1, 3, 3, 4), (3, 4, 1, 2, 3)])
def test_random_sizes_equal_seed(x64, sizes):
    x, a0, params = random_problem(jax.random.PRNGKey(sum(sizes)), *sizes, dtype=jnp.float64)
    numpy_params = {k: np.asarray(v) for k, v in params.items()}
    want_a, want_y, _ = seed_numpy.rnn_forward(np.asarray(x), np.asarray(a0), numpy_params)
    for forward in (seed.rnn, seed.rnn_autodiff, lambda *a, layout: jaxrnn.rnn_forward(*a)[:2]):
        a, y = forward(x, a0, params, layout="seed")
        np.testing.assert_allclose(a, want_a, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(y, want_y, rtol=1e-12, atol=1e-14)


def test_outputs_are_consistent(device):
    x, a0, params = random_problem(jax.random.PRNGKey(3))
    a, y = jax.jit(seed.rnn)(x, a0, params)
    np.testing.assert_allclose(jnp.sum(y, axis=0), 1.0, rtol=1e-6)
    assert bool(jnp.all(jnp.abs(a) <= 1))
    # The last step of the sequence equals one cell step from the one before it.
    a_last, y_last, _ = jaxrnn.rnn_cell_forward(x[:, :, -1], a[:, :, -2], params)
    np.testing.assert_allclose(a_last, a[:, :, -1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y_last, y[:, :, -1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_forward_keeps_dtype(device, dtype):
    x, a0, params = random_problem(jax.random.PRNGKey(4), dtype=dtype)
    for forward in (seed.rnn, seed.rnn_autodiff):
        a, y = forward(x, a0, params, layout="seed")
        assert a.dtype == y.dtype == dtype
    a_next, yt, _ = jaxrnn.rnn_cell_forward(x[:, :, 0], a0, params)
    assert a_next.dtype == yt.dtype == dtype


def test_forward_runs_twice_bitwise_equal(cpu_device):
    x, a0, params = random_problem(jax.random.PRNGKey(5), 8, 32, 6, 16, 50)
    first = jax.jit(seed.rnn)(x, a0, params)
    second = jax.jit(seed.rnn)(x, a0, params)
    for u, v in zip(first, second):
        np.testing.assert_array_equal(u, v)
