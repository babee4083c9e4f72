"""The layer inside a Flax NNX module and an Equinox module (examples/), trained with optax.

The frameworks' gradients through the modules equal `jax.grad` of the autodiff forward for
the same parameters, and a few Adam steps on the examples' counting task lower the loss.
"""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOLERANCE, assert_trees_close

import jaxrnn

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def autodiff_loss(params, x, labels, a0):
    """The mean cross-entropy through `rnn_cross_entropy_autodiff`, batch-major arrays in."""
    losses, _ = jaxrnn.rnn_cross_entropy_autodiff(jnp.transpose(x, (2, 0, 1)), a0.T, params, labels, layout="seed")
    return jnp.mean(losses)


def autodiff_gradients(params, x, labels):
    a0 = jnp.zeros((x.shape[0], params["Waa"].shape[0]), x.dtype)
    return jax.jit(jax.grad(autodiff_loss))(params, x, labels, a0)


def assert_training_lowers_the_loss(losses):
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def test_flax_nnx_module(device):
    pytest.importorskip("flax.nnx")
    from flax import nnx

    example = load_example("flax_nnx_model")
    model = example.RNNLanguageModel(5, 8, 5, rngs=nnx.Rngs(1))
    x, labels = example.counting_batch(jax.random.PRNGKey(2))
    with jax.default_matmul_precision("float32"):
        grads = nnx.jit(nnx.grad(example.mean_loss))(model, x, labels)
        want = autodiff_gradients(model.parameters(), x, labels)
    assert_trees_close(nnx.to_pure_dict(grads), want, TOLERANCE[jnp.float32])
    # optax's Adam raises its int32 step count to a float power, which strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        _, losses = example.train()
    assert_training_lowers_the_loss(losses)


def predicted_log_likelihood(model, x, labels):
    """`Σ log y[label]` through the Equinox model's probabilities head (batch-major `rnn`)."""
    y = model.predict(x)
    return jnp.sum(jnp.log(y) * jax.nn.one_hot(labels, y.shape[-1], dtype=y.dtype))


def autodiff_log_likelihood(params, x, labels):
    """The same through `rnn_autodiff` in the seed layout."""
    a0 = jnp.zeros((params["Waa"].shape[0], x.shape[0]), x.dtype)
    _, y = jaxrnn.rnn_autodiff(jnp.transpose(x, (2, 0, 1)), a0, params, layout="seed")
    targets = jax.nn.one_hot(labels, y.shape[0], dtype=y.dtype)  # (B, T, n_y)
    return jnp.sum(jnp.log(y) * jnp.transpose(targets, (2, 0, 1)))


def test_equinox_module(device):
    eqx = pytest.importorskip("equinox")
    example = load_example("equinox_model")
    model = example.RNNLanguageModel(5, 8, 5, key=jax.random.PRNGKey(1))
    x, labels = example.counting_batch(jax.random.PRNGKey(2))
    with jax.default_matmul_precision("float32"):
        grads = eqx.filter_jit(eqx.filter_grad(example.mean_loss))(model, x, labels)
        want = autodiff_gradients(model.parameters, x, labels)
        predict_grads = eqx.filter_jit(eqx.filter_grad(predicted_log_likelihood))(model, x, labels)
        predict_want = jax.jit(jax.grad(autodiff_log_likelihood))(model.parameters, x, labels)
    assert_trees_close(grads.parameters, want, TOLERANCE[jnp.float32])
    assert_trees_close(predict_grads.parameters, predict_want, TOLERANCE[jnp.float32])
    # optax's Adam raises its int32 step count to a float power, which strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        _, losses = example.train()
    assert_training_lowers_the_loss(losses)
