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


def test_weight_decay_mask_decays_the_matrices_only():
    """With `optax.adamw(mask=jaxrnn.weight_decay_mask)` and zero gradients, one step moves each matrix by
    −lr·wd·W and leaves every bias (and a learned initial state) exactly where it was."""
    import optax

    layers = jaxrnn.init_stack(
        jax.random.PRNGKey(2), 3, 4, num_layers=2, bidirectional=True, cell="gru", initialization="pytorch"
    )
    params = {"layers": layers, "a0": jnp.ones(4), "head": {"Wya": jnp.ones((2, 8)), "by": jnp.ones((2, 1))}}
    mask = jaxrnn.weight_decay_mask(params)
    flat = {jax.tree_util.keystr(path): decay for path, decay in jax.tree_util.tree_flatten_with_path(mask)[0]}
    assert {path.rsplit("['", 1)[-1][:-2] for path, decay in flat.items() if decay} == {"Wax", "Waa", "Wya"}
    assert not flat["['a0']"] and not flat["['head']['by']"]
    optimizer = optax.adamw(0.1, weight_decay=0.5, mask=jaxrnn.weight_decay_mask)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    with jax.numpy_dtype_promotion("standard"):  # optax's own arithmetic mixes Python floats and int32 counts
        updates, _ = optimizer.update(zeros, optimizer.init(params), params)
    for (path, update), decay, value in zip(
        jax.tree_util.tree_flatten_with_path(updates)[0],
        jax.tree_util.tree_leaves(mask),
        jax.tree_util.tree_leaves(params),
    ):
        expected = -0.1 * 0.5 * value if decay else jnp.zeros_like(value)
        np.testing.assert_allclose(update, expected, rtol=1e-6, err_msg=jax.tree_util.keystr(path))
