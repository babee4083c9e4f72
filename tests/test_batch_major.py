"""The default, batch-major layout equals the seed-layout functions with the axes moved, values and
gradients; any number of leading batch dimensions, as Flax takes them."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOLERANCE, assert_trees_close

import jaxrnn

B, T, N_X, N_A, N_Y = 4, 6, 3, 5, 4


def batch_major_problem(seed):
    """Random batch-major `x (B, T, n_x)`, `a0 (B, n_a)`, seed-layout parameters, labels `(B, T)` and
    cotangents for `a (B, T, n_a)`, `y (B, T, n_y)` and the losses `(B, T)`."""
    rng = np.random.default_rng(seed)
    normal = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)
    shapes = {"Wax": (N_A, N_X), "Waa": (N_A, N_A), "Wya": (N_Y, N_A), "ba": (N_A, 1), "by": (N_Y, 1)}
    params = {k: 0.5 * normal(*shape) for k, shape in shapes.items()}
    labels = jnp.asarray(rng.integers(0, N_Y, (B, T)), jnp.int32)
    return normal(B, T, N_X), normal(B, N_A), params, labels, (normal(B, T, N_A), normal(B, T, N_Y), normal(B, T))


def seed_layout(x, a0):
    """Batch-major `x (B, T, n_x)`, `a0 (B, n_a)` -> the seed's `(n_x, m, T_x)`, `(n_a, m)`."""
    return jnp.transpose(x, (2, 0, 1)), a0.T


def batch_major(sequence):
    """Seed layout `(n, m, T_x)` -> `(B, T, n)`."""
    return jnp.transpose(sequence, (1, 2, 0))


def rnn_oracle(x, a0, params, checkpoint_every=None):
    """`rnn_autodiff` in the seed layout, with the axes moved by hand."""
    a, y = jaxrnn.rnn_autodiff(*seed_layout(x, a0), params, layout="seed")
    return batch_major(a), batch_major(y)


def cross_entropy_oracle(x, a0, params, labels):
    losses, a = jaxrnn.rnn_cross_entropy_autodiff(*seed_layout(x, a0), params, labels, layout="seed")
    return losses, batch_major(a)


@functools.partial(jax.jit, static_argnums=(0, 1))
def rnn_gradients(forward, checkpoint_every, x, a0, params, ca, cy):
    def loss(x, a0, params):
        a, y = forward(x, a0, params, checkpoint_every=checkpoint_every)
        return jnp.sum(ca * a) + jnp.sum(cy * y)

    return jax.grad(loss, argnums=(0, 1, 2))(x, a0, params)


@functools.partial(jax.jit, static_argnums=0)
def cross_entropy_gradients(head, x, a0, params, labels, ca, loss_weights):
    def loss(x, a0, params):
        losses, a = head(x, a0, params, labels)
        return jnp.sum(loss_weights * losses) + jnp.sum(ca * a)

    return jax.grad(loss, argnums=(0, 1, 2))(x, a0, params)


@pytest.mark.parametrize("checkpoint_every", [None, 4])
def test_rnn_default_layout_equals_seed_layout(device, checkpoint_every):
    x, a0, params, _, (ca, cy, _) = batch_major_problem(0)
    a, y = jax.jit(jaxrnn.rnn, static_argnames="checkpoint_every")(x, a0, params, checkpoint_every=checkpoint_every)
    assert a.shape == (B, T, N_A) and y.shape == (B, T, N_Y)
    assert_trees_close((a, y), jax.jit(rnn_oracle)(x, a0, params), 1e-6)
    with jax.default_matmul_precision("float32"):
        got = rnn_gradients(jaxrnn.rnn, checkpoint_every, x, a0, params, ca, cy)
        want = rnn_gradients(rnn_oracle, None, x, a0, params, ca, cy)
    assert_trees_close(got, want, TOLERANCE[jnp.float32])


def test_cross_entropy_default_layout_equals_seed_layout(device):
    x, a0, params, labels, (ca, _, loss_weights) = batch_major_problem(1)
    losses, a = jax.jit(jaxrnn.rnn_cross_entropy)(x, a0, params, labels)
    assert losses.shape == (B, T) and a.shape == (B, T, N_A)
    assert_trees_close((losses, a), jax.jit(cross_entropy_oracle)(x, a0, params, labels), 1e-6)
    with jax.default_matmul_precision("float32"):
        got = cross_entropy_gradients(jaxrnn.rnn_cross_entropy, x, a0, params, labels, ca, loss_weights)
        want = cross_entropy_gradients(cross_entropy_oracle, x, a0, params, labels, ca, loss_weights)
    assert_trees_close(got, want, TOLERANCE[jnp.float32])


def test_vmap_over_single_examples_equals_the_batch(device):
    """The Equinox habit: a function of one example `(1, T, n_x)`, vmapped over the batch."""
    x, a0, params, labels, (ca, _, loss_weights) = batch_major_problem(2)

    def one_example(x, a0, labels):
        losses, a = jaxrnn.rnn_cross_entropy(x[None], a0[None], params, labels[None])
        return losses[0], a[0]

    assert_trees_close(
        jax.jit(jax.vmap(one_example))(x, a0, labels),
        jax.jit(jaxrnn.rnn_cross_entropy)(x, a0, params, labels),
        1e-6,
    )

    def parameter_gradient(params, x, a0, labels, ca, loss_weights):
        return cross_entropy_gradients(
            jaxrnn.rnn_cross_entropy, x[None], a0[None], params, labels[None], ca[None], loss_weights[None]
        )[2]

    with jax.default_matmul_precision("float32"):
        per_example = jax.jit(jax.vmap(parameter_gradient, in_axes=(None, 0, 0, 0, 0, 0)))(
            params, x, a0, labels, ca, loss_weights
        )
        per_example = jax.tree_util.tree_map(lambda g: jnp.sum(g, axis=0), per_example)
        want = cross_entropy_gradients(cross_entropy_oracle, x, a0, params, labels, ca, loss_weights)[2]
    assert_trees_close(per_example, want, TOLERANCE[jnp.float32])


def valid_inputs():
    shapes = {"Wax": (N_A, N_X), "Waa": (N_A, N_A), "Wya": (N_Y, N_A), "ba": (N_A, 1), "by": (N_Y, 1)}
    params = {k: np.zeros(shape, np.float32) for k, shape in shapes.items()}
    return np.zeros((B, T, N_X), np.float32), np.zeros((B, N_A), np.float32), params, np.zeros((B, T), np.int32)


BAD_INPUTS = [
    (
        "x",
        np.zeros(N_X, np.float32),
        ValueError,
        r"x.shape=\(3,\) has rank 1; expected \(\*batch, T, n_x\), rank 2 or more",
    ),
    (
        "x",
        np.zeros((B, T, 7), np.float32),
        ValueError,
        r"parameters\['Wax'\].shape=\(5, 3\) does not fit x.shape=\(4, 6, 7\) \(B, T, n_x\)",
    ),
    ("x", np.zeros((B, 0, N_X), np.float32), ValueError, r"x.shape=\(4, 0, 3\) has T=0 time steps"),
    ("x", np.zeros((B, T, N_X), np.int32), TypeError, r"x.dtype=int32 is not a floating dtype"),
    (
        "a0",
        np.zeros((N_A, B), np.float32),
        ValueError,
        r"a0.shape=\(5, 4\) does not fit n_a=5 from parameters\[.Waa.\] and B=4 from x",
    ),
    ("a0", np.zeros(N_A, np.float32), ValueError, r"a0.shape=\(5,\) has rank 1; expected rank 2, \(B, n_a\)"),
    ("a0", np.zeros((B, N_A), np.float64), TypeError, r"a0.dtype=float64 differs from x.dtype=float32"),
]
LABEL_ERRORS = [
    (np.zeros((T, B), np.int32), ValueError, r"labels.shape=\(6, 4\) does not fit B=4 and T=6 from x; expected"),
    (np.zeros((B, T, 1), np.int32), ValueError, r"labels.shape=\(4, 6, 1\) has rank 3; expected rank 2, \(B, T\)"),
    (np.zeros((B, T), np.float32), TypeError, r"labels.dtype=float32 is not an integer dtype"),
]


@pytest.mark.parametrize(("name", "value", "error", "message"), BAD_INPUTS)
def test_bad_inputs_name_the_batch_major_function_and_layout(x64, name, value, error, message):
    x, a0, params, labels = valid_inputs()
    inputs = {"x": x, "a0": a0, name: value}
    with pytest.raises(error, match=rf"^rnn: {message}"):
        jaxrnn.rnn(inputs["x"], inputs["a0"], params)
    with pytest.raises(error, match=rf"^rnn_cross_entropy: {message}"):
        jaxrnn.rnn_cross_entropy(inputs["x"], inputs["a0"], params, labels)


@pytest.mark.parametrize(("labels", "error", "message"), LABEL_ERRORS)
def test_bad_labels_name_the_batch_major_layout(labels, error, message):
    x, a0, params, _ = valid_inputs()
    with pytest.raises(error, match=rf"^rnn_cross_entropy: {message}"):
        jax.jit(jaxrnn.rnn_cross_entropy)(x, a0, params, labels)


def test_bad_parameters_and_checkpoint_every_name_the_function():
    x, a0, params, _ = valid_inputs()
    with pytest.raises(ValueError, match=r"^rnn: checkpoint_every=0 must be None or a positive int"):
        jaxrnn.rnn(x, a0, params, checkpoint_every=0)
    with pytest.raises(ValueError, match=r"^rnn: parameters must have exactly the keys"):
        jaxrnn.rnn(x, a0, {k: v for k, v in params.items() if k != "by"})


def test_leading_batch_dimensions_equal_one_flat_batch(x64):
    """`(*batch, T, n)` (and `(T, *batch, n)` time-major) runs as one batch of prod(*batch) examples:
    states, lengths, labels and every result carry the same `*batch`, one sequence `(T, n)` included."""
    rng = np.random.default_rng(3)
    params = jaxrnn.init_parameters(jax.random.key(4), N_X, N_A, N_Y, jnp.float64, cell="lstm")
    x = jnp.asarray(rng.standard_normal((2, 3, T, N_X)))
    a0 = jaxrnn.LSTMState(*(jnp.asarray(rng.standard_normal((2, 3, N_A))) for _ in range(2)))
    lengths = jnp.asarray(rng.integers(0, T + 1, (2, 3)))
    labels = jnp.asarray(rng.integers(0, N_Y, (2, 3, T)))
    flat = lambda v: jnp.reshape(v, (6, *v.shape[2:]))
    options = {"cell": "lstm", "seq_lengths": lengths, "return_final_state": True}
    flat_options = dict(options, seq_lengths=flat(lengths))
    got = jaxrnn.rnn(x, a0, params, **options)
    want = jaxrnn.rnn(flat(x), jax.tree_util.tree_map(flat, a0), params, **flat_options)
    assert got[0].shape == (2, 3, T, N_A) and got[2].h.shape == (2, 3, N_A)
    assert_trees_close(jax.tree_util.tree_map(flat, got), want, 0.0)
    losses = jaxrnn.rnn_cross_entropy(x, a0, params, labels, **options)[0]
    flat_losses = jaxrnn.rnn_cross_entropy(
        flat(x), jax.tree_util.tree_map(flat, a0), params, flat(labels), **flat_options
    )
    assert_trees_close(flat(losses), flat_losses[0], 0.0)
    time_major = jaxrnn.rnn(jnp.moveaxis(x, 2, 0), a0, params, layout="time_major", **options)
    assert_trees_close(jnp.moveaxis(time_major[0], 0, 2), got[0], 0.0)
    one = jaxrnn.rnn(x[1, 2], jax.tree_util.tree_map(lambda v: v[1, 2], a0), params, cell="lstm")
    assert one[0].shape == (T, N_A)
    np.testing.assert_allclose(one[0], jaxrnn.rnn(x, a0, params, cell="lstm")[0][1, 2], rtol=1e-14)
    stack = jaxrnn.rnn_stack(x, None, [params], cell="lstm", return_final_state=True)
    assert stack[0].shape == (2, 3, T, N_A) and stack[2][0].c.shape == (2, 3, N_A)
    state, y_t = jaxrnn.rnn_step(x[:, :, 0], a0, params, cell="lstm")
    assert state.h.shape == (2, 3, N_A) and y_t.shape == (2, 3, N_Y)
    np.testing.assert_allclose(state.h, jaxrnn.rnn(x, a0, params, cell="lstm")[0][:, :, 0], rtol=1e-14)
    tangents = jax.tree_util.tree_map(jnp.ones_like, (x, a0, params))
    primals_out, tangents_out = jaxrnn.rnn_jvp((x, a0, params), tangents, **options)
    assert tangents_out[0].shape == (2, 3, T, N_A) and tangents_out[2].c.shape == (2, 3, N_A)


def test_batch_dimensions_that_do_not_match_say_so():
    x = np.zeros((2, 3, T, N_X), np.float32)
    params = jaxrnn.init_parameters(jax.random.key(0), N_X, N_A, N_Y)
    with pytest.raises(ValueError, match=r"rnn: a0.shape=\(3, 2, 5\) does not have x's batch dimensions \(2, 3\)"):
        jaxrnn.rnn(x, np.zeros((3, 2, N_A), np.float32), params)
    with pytest.raises(ValueError, match=r"rnn: seq_lengths.shape=\(6,\) does not have x's batch dimensions"):
        jaxrnn.rnn(x, None, params, seq_lengths=np.full(6, T))
    with pytest.raises(
        ValueError,
        match=r"labels.shape=\(6, 6\) does not have x's batch dimensions \(2, 3\); "
        r"expected \(2, 3, T\)",
    ):
        jaxrnn.rnn_cross_entropy(x, None, params, np.zeros((6, T), np.int32))
