"""gradients_through_time against jax.grad of plain forwards (float64) and its error messages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOLERANCE, relative_error, seed

import jaxrnn
from jaxrnn import gradients_through_time


def random_problem(seed, n_x, n_a, n_y, m, T_x, dtype):
    """Random `(x, a0, parameters)` and loss weights `(ca, cy)`: the loss is `Σ ca ⊙ a + Σ cy ⊙ y`.

    Drawn with numpy, so that no test pays for compiling JAX's random and QR kernels.
    """
    rng = np.random.default_rng(seed)
    draw = lambda scale, *shape: jnp.asarray(scale * rng.standard_normal(shape), dtype)
    params = {
        "Wax": draw(n_x**-0.5, n_a, n_x),
        "Waa": draw(n_a**-0.5, n_a, n_a),
        "Wya": draw(n_a**-0.5, n_y, n_a),
        "ba": draw(0.1, n_a, 1),
        "by": draw(0.1, n_y, 1),
    }
    x, a0 = draw(1.0, n_x, m, T_x), draw(0.5, n_a, m)
    return (x, a0, params), (draw(1.0, n_a, m, T_x), draw(1.0, n_y, m, T_x))


def offset_forward(x, a0, params, offsets):
    """The RNN written plainly, with `a_t = tanh(z_t) + offsets_t`; offsets `(T, n_a, m)`.

    At offsets = 0 it is the RNN; dL/d(offsets_t) there is the total dL/da_t, every path
    from a_t onwards included.
    """
    a_prev, states, outputs = a0, [], []
    for t in range(x.shape[-1]):
        a_prev = jnp.tanh(params["Waa"] @ a_prev + params["Wax"] @ x[:, :, t] + params["ba"]) + offsets[t]
        states.append(a_prev)
        outputs.append(jax.nn.softmax(params["Wya"] @ a_prev + params["by"], axis=0))
    return jnp.stack(states, axis=-1), jnp.stack(outputs, axis=-1)


@pytest.mark.parametrize(
    "sizes",
    [
        (3, 5, 2, 4, 6),
        pytest.param((4, 7, 3, 1, 1), marks=pytest.mark.slow),
        pytest.param((2, 6, 4, 3, 11), marks=pytest.mark.slow),
    ],
)
def test_equals_jax_grad_of_offsets(x64, sizes):
    n_x, n_a, n_y, m, T_x = sizes
    (x, a0, params), (ca, cy) = random_problem(0, n_x, n_a, n_y, m, T_x, jnp.float64)

    # The reference forward is the RNN: same outputs as rnn_autodiff.
    zero = jnp.zeros((T_x, n_a, m), jnp.float64)
    for got, want in zip(jax.jit(offset_forward)(x, a0, params, zero), jax.jit(seed.rnn_autodiff)(x, a0, params)):
        assert relative_error(got, want) <= TOLERANCE[jnp.float64]

    def loss(offsets):
        a, y = offset_forward(x, a0, params, offsets)
        return jnp.sum(ca * a) + jnp.sum(cy * y)

    reference = jnp.moveaxis(jax.jit(jax.grad(loss))(zero), 0, -1)  # (n_a, m, T_x)
    result = jax.jit(gradients_through_time)(x, a0, params, ca, cy)
    assert result.da.shape == (n_a, m, T_x) and result.da.dtype == jnp.float64
    assert relative_error(result.da, reference) <= TOLERANCE[jnp.float64]
    reference = np.asarray(reference)
    np.testing.assert_allclose(result.norms, np.linalg.norm(reference, axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(result.norms_per_example, np.linalg.norm(reference, axis=0), rtol=1e-12)


@pytest.mark.parametrize("t", [0, 3, 8])
def test_equals_jax_grad_of_rnn_autodiff_restarted_at_a_t(x64, t):
    """dL/da_t is the gradient with respect to the start state of the rest of the sequence."""
    (x, a0, params), (ca, cy) = random_problem(1, 3, 5, 2, 4, 9, jnp.float64)
    a, _ = jax.jit(seed.rnn_autodiff)(x, a0, params)

    def loss_from(a_t):
        # Steps t+1.. start from a_t; step t itself contributes ca_t·a_t + cy_t·softmax(Wya a_t + by).
        here = jnp.sum(ca[:, :, t] * a_t) + jnp.sum(
            cy[:, :, t] * jax.nn.softmax(params["Wya"] @ a_t + params["by"], axis=0)
        )
        if t + 1 == x.shape[-1]:
            return here
        a_rest, y_rest = seed.rnn_autodiff(x[:, :, t + 1 :], a_t, params, layout="seed")
        return here + jnp.sum(ca[:, :, t + 1 :] * a_rest) + jnp.sum(cy[:, :, t + 1 :] * y_rest)

    reference = jax.jit(jax.grad(loss_from))(a[:, :, t])
    result = jax.jit(gradients_through_time)(x, a0, params, ca, cy)
    assert relative_error(result.da[:, :, t], reference) <= TOLERANCE[jnp.float64]


def test_float32_close_to_float64(device):
    (x, a0, params), (ca, cy) = random_problem(2, 3, 5, 2, 4, 7, jnp.float32)
    with jax.default_matmul_precision("float32"):
        result = jax.jit(gradients_through_time)(x, a0, params, ca, cy)
    with jax.enable_x64(True):
        to64 = lambda tree: jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), tree)
        reference = jax.jit(gradients_through_time)(*to64((x, a0, params, ca, cy)))
    assert result.norms.dtype == jnp.float32
    for got, want in zip(result, reference):
        assert relative_error(got, want) <= TOLERANCE[jnp.float32]


def test_bfloat16_returns_float32():
    (x, a0, params), (ca, cy) = random_problem(3, 3, 5, 2, 4, 7, jnp.bfloat16)
    result = jax.jit(gradients_through_time)(x, a0, params, ca, cy)
    assert [v.dtype for v in result] == [jnp.float32] * 3
    assert bool(jnp.all(jnp.isfinite(result.da)))


def test_no_gradient_after_the_last_step_with_a_loss():
    """With a loss on steps 1..4 only, dL/da_t = 0 for t > 4; every earlier state moves it."""
    (x, a0, params), (_, cy) = random_problem(4, 3, 5, 2, 4, 7, jnp.float32)
    dy = cy.at[:, :, 4:].set(0.0)
    result = jax.jit(gradients_through_time)(x, a0, params, jnp.zeros((5, 4, 7)), dy)
    assert bool(jnp.all(result.norms[4:] == 0))
    assert bool(jnp.all(result.norms[:4] > 0))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda da, dy: (da[:, :, :-1], dy),
            r"gradients_through_time: da.shape=\(5, 4, 6\) .*expected \(5, 4, 7\)",
        ),
        (lambda da, dy: (da, dy[:1]), r"gradients_through_time: dy.shape=\(1, 4, 7\) .*expected \(2, 4, 7\)"),
        (lambda da, dy: (da, dy.astype(jnp.bfloat16)), r"gradients_through_time: dy.dtype=bfloat16 differs"),
    ],
)
def test_bad_cotangents_are_named(change, message):
    (x, a0, params), _ = random_problem(5, 3, 5, 2, 4, 7, jnp.float32)
    da, dy = change(jnp.zeros((5, 4, 7)), jnp.zeros((2, 4, 7)))
    with pytest.raises((ValueError, TypeError), match=message):
        gradients_through_time(x, a0, params, da, dy)


def test_bad_inputs_are_named():
    (x, a0, params), _ = random_problem(6, 3, 5, 2, 4, 7, jnp.float32)
    with pytest.raises(ValueError, match=r"gradients_through_time: a0.shape=\(5, 3\)"):
        gradients_through_time(x, a0[:, :3], params, jnp.zeros((5, 4, 7)), jnp.zeros((2, 4, 7)))


def test_exported():
    assert jaxrnn.gradients_through_time is gradients_through_time
    assert "gradients_through_time" in jaxrnn.__all__
