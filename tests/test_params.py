"""init_parameters: shapes, dtypes, the documented distributions, bad arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_shapes_dtypes_and_distributions(dtype):
    params = jaxrnn.init_parameters(jax.random.PRNGKey(0), 7, 64, 5, dtype)
    assert {k: v.shape for k, v in params.items()} == {
        "Wax": (64, 7),
        "Waa": (64, 64),
        "Wya": (5, 64),
        "ba": (64, 1),
        "by": (5, 1),
    }
    assert all(v.dtype == dtype for v in params.values())
    waa = np.asarray(params["Waa"], np.float64)
    np.testing.assert_allclose(waa @ waa.T, np.eye(64), atol=1e-5 if dtype == jnp.float32 else 3e-2)
    glorot_limit = np.sqrt(6 / (7 + 64))
    assert np.abs(np.asarray(params["Wax"], np.float64)).max() <= glorot_limit * 1.01
    assert not np.any(np.asarray(params["ba"], np.float64)) and not np.any(np.asarray(params["by"], np.float64))


def test_same_key_same_parameters_and_the_layer_accepts_them():
    first = jaxrnn.init_parameters(jax.random.PRNGKey(1), 3, 4, 2)
    second = jaxrnn.init_parameters(jax.random.PRNGKey(1), 3, 4, 2)
    for k in first:
        np.testing.assert_array_equal(first[k], second[k])
    a, y = jaxrnn.rnn(jnp.ones((3, 2, 5)), jnp.zeros((4, 2)), first, layout="seed")
    assert a.shape == (4, 2, 5) and y.shape == (2, 2, 5)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"init_parameters: n_a=0 must be a positive int"):
        jaxrnn.init_parameters(jax.random.PRNGKey(0), 3, 0, 2)
    with pytest.raises(TypeError, match=r"init_parameters: n_x=2.5 must be a positive int; received float"):
        jaxrnn.init_parameters(jax.random.PRNGKey(0), 2.5, 4, 2)
    with pytest.raises(TypeError, match=r"init_parameters: dtype=2.5 is not a dtype"):
        jaxrnn.init_parameters(jax.random.PRNGKey(0), 3, 4, 2, 2.5)
    with jax.enable_x64(False), pytest.raises(ValueError, match=r"init_parameters: dtype=float64 needs 64-bit mode"):
        jaxrnn.init_parameters(jax.random.PRNGKey(0), 3, 4, 2, jnp.float64)
    with pytest.raises(TypeError, match=r"init_parameters: dtype=int32 is not a floating dtype"):
        jaxrnn.init_parameters(jax.random.PRNGKey(0), 3, 4, 2, jnp.int32)
