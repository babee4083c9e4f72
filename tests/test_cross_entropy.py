"""The fused softmax–cross-entropy head against jax.grad, check_grads and a numpy oracle."""

import functools

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from helpers import TOLERANCE, assert_trees_close, random_problem, relative_error, seed_layout

import jaxrnn

# One size for every test here, so each jitted function compiles once per dtype.
N_X, N_A, N_Y, M, T_X = 3, 5, 4, 4, 6


def problem(key, dtype):
    """Random `(x, a0, parameters)`, labels `(m, T_x)`, per-token loss weights `(m, T_x)` and `ca (n_a, m, T_x)`."""
    k_problem, k_labels, k_weights, k_a = jax.random.split(key, 4)
    x, a0, params = random_problem(k_problem, N_X, N_A, N_Y, M, T_X, dtype)
    labels = jax.random.randint(k_labels, (M, T_X), 0, N_Y)
    loss_weights = jax.random.normal(k_weights, (M, T_X), dtype)
    ca = jax.random.normal(k_a, (N_A, M, T_X), dtype)
    return x, a0, params, labels, loss_weights, ca


def weighted_loss(head, x, a0, params, labels, loss_weights, ca):
    """`L = Σ w ⊙ losses + Σ ca ⊙ a`, so both cotangents of the head are generic."""
    losses, a = head(x, a0, params, labels)
    return jnp.sum(loss_weights * losses) + jnp.sum(ca * a)


@functools.partial(jax.jit, static_argnums=0)
def gradients(head, x, a0, params, labels, loss_weights, ca):
    """dL/d(x, a0, parameters) of `weighted_loss` through `head`."""
    return jax.grad(weighted_loss, argnums=(1, 2, 3))(head, x, a0, params, labels, loss_weights, ca)


def chained(x, a0, params, labels):
    """`rnn_cross_entropy` on two chunks of time, the second starting from the last state of the first."""
    losses_first, a_first = jaxrnn.rnn_cross_entropy(x[:, :, :2], a0, params, labels[:, :2], layout="seed")
    losses_second, a_second = jaxrnn.rnn_cross_entropy(
        x[:, :, 2:], a_first[:, :, -1], params, labels[:, 2:], layout="seed"
    )
    return jnp.concatenate([losses_first, losses_second], -1), jnp.concatenate([a_first, a_second], -1)


HAND, AUTO = seed_layout(jaxrnn.rnn_cross_entropy), seed_layout(jaxrnn.rnn_cross_entropy_autodiff)
JITTED = {HAND: jax.jit(HAND), AUTO: jax.jit(AUTO), chained: jax.jit(chained)}


def numpy_cross_entropy(x, a0, params, labels):
    """Float64 numpy oracle, step by step on column vectors: losses `(m, T_x)`, `a (n_a, m, T_x)`, logits."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x, a_prev, labels = np.asarray(x, np.float64), np.asarray(a0, np.float64), np.asarray(labels)
    losses, states = np.zeros(labels.shape), np.zeros((a_prev.shape[0], *labels.shape))
    all_logits = np.zeros((p["by"].shape[0], *labels.shape))
    for t in range(x.shape[-1]):
        a_prev = np.tanh(p["Waa"] @ a_prev + p["Wax"] @ x[:, :, t] + p["ba"])
        logits = p["Wya"] @ a_prev + p["by"]
        top = logits.max(axis=0)
        log_normaliser = top + np.log(np.exp(logits - top).sum(axis=0))  # logsumexp, stable
        losses[:, t] = log_normaliser - logits[labels[:, t], np.arange(labels.shape[0])]
        states[:, :, t], all_logits[:, :, t] = a_prev, logits
    return losses, states, all_logits


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_custom_vjp_equals_autodiff(device, dtype):
    if dtype == jnp.float64 and device.platform == "tpu":
        pytest.skip("no float64 on TPU")
    with jax.enable_x64(dtype == jnp.float64), jax.default_matmul_precision("float32"):
        inputs = problem(jax.random.PRNGKey(0), dtype)
        hand, auto = gradients(HAND, *inputs), gradients(AUTO, *inputs)
    assert_trees_close(hand, auto, TOLERANCE[dtype])
    for g, primal in zip(jax.tree_util.tree_leaves(hand), jax.tree_util.tree_leaves(inputs[:3])):
        assert g.dtype == primal.dtype


def test_check_grads_second_order(x64):
    x, a0, params, *rest = problem(jax.random.PRNGKey(1), jnp.float64)
    loss = jax.jit(lambda x, a0, params: weighted_loss(HAND, x, a0, params, *rest))
    jax.test_util.check_grads(loss, (x, a0, params), order=2, modes=["rev"])


def test_values_equal_numpy_oracle(x64):
    x, a0, params, labels, _, _ = problem(jax.random.PRNGKey(2), jnp.float64)
    want_losses, want_states, _ = numpy_cross_entropy(x, a0, params, labels)
    for head, labels_as in ((HAND, labels), (AUTO, labels), (HAND, labels.astype(jnp.uint8))):
        losses, a = JITTED[head](x, a0, params, labels_as)
        assert losses.dtype == a.dtype == jnp.float64
        np.testing.assert_allclose(losses, want_losses, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(a, want_states, rtol=1e-12, atol=1e-13)


def test_huge_logits_do_not_underflow(device):
    """With logits ~1e3 apart, softmax underflows to 0 and log(softmax) is inf; log-softmax stays exact."""
    x, a0, params, labels, loss_weights, ca = problem(jax.random.PRNGKey(3), jnp.float32)
    params = dict(params, Wya=1e3 * params["Wya"])
    want_losses, _, logits = numpy_cross_entropy(x, a0, params, labels)
    shifted = np.exp(logits - logits.max(axis=0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        naive = -np.log(np.take_along_axis(shifted / shifted.sum(axis=0), np.asarray(labels)[None], axis=0))
    assert np.isinf(naive).any() and want_losses.max() > 100  # log(softmax) fails here
    losses, _ = JITTED[HAND](x, a0, params, labels)
    assert bool(jnp.all(jnp.isfinite(losses)))
    assert relative_error(losses, want_losses) <= 1e-5
    with jax.default_matmul_precision("float32"):
        hand = gradients(HAND, x, a0, params, labels, loss_weights, ca)
        auto = gradients(AUTO, x, a0, params, labels, loss_weights, ca)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(hand))
    assert_trees_close(hand, auto, TOLERANCE[jnp.float32])


# bfloat16 against float32 on the same (bfloat16-rounded) inputs, measured (jax 0.10.2, CPU): gradients
# 5.9e-3 (jax.grad of the autodiff twin in bfloat16: 5.5e-3), losses 2.7e-3 against the numpy oracle;
# bfloat16's machine epsilon is 2^-8 = 3.9e-3.
BFLOAT16_GRADIENT_TOLERANCE = 1.5e-2
BFLOAT16_LOSS_TOLERANCE = 8e-3


def test_bfloat16_keeps_dtype_and_is_close_to_float32(device):
    x, a0, params, labels, loss_weights, ca = problem(jax.random.PRNGKey(4), jnp.float32)
    low = jax.tree_util.tree_map(lambda v: v.astype(jnp.bfloat16), (x, a0, params, loss_weights, ca))
    same_inputs = jax.tree_util.tree_map(lambda v: v.astype(jnp.float32), low)
    losses, a = JITTED[HAND](*low[:3], labels)
    assert losses.dtype == a.dtype == jnp.bfloat16
    grads = gradients(HAND, *low[:3], labels, *low[3:])
    for g, primal in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(low[:3])):
        assert g.dtype == jnp.bfloat16 == primal.dtype
    with jax.default_matmul_precision("float32"):
        reference = gradients(AUTO, *same_inputs[:3], labels, *same_inputs[3:])
    assert_trees_close(grads, reference, BFLOAT16_GRADIENT_TOLERANCE, floor=1.0)
    assert relative_error(losses, numpy_cross_entropy(*same_inputs[:3], labels)[0]) <= BFLOAT16_LOSS_TOLERANCE


def test_chunks_carried_through_the_final_state_equal_one_call(device):
    """Truncated-BPTT style: two chunks chained through `a[:, :, -1]` equal one call, values and gradients."""
    inputs = problem(jax.random.PRNGKey(5), jnp.float32)
    with jax.default_matmul_precision("float32"):
        assert_trees_close(gradients(chained, *inputs), gradients(AUTO, *inputs), TOLERANCE[jnp.float32])
    assert_trees_close(JITTED[chained](*inputs[:4]), JITTED[HAND](*inputs[:4]), 1e-6)


def test_vmap_over_sequences_and_labels_cotangent(device):
    x, a0, params, labels, loss_weights, ca = problem(jax.random.PRNGKey(6), jnp.float32)
    stack = lambda v: jnp.stack([v, -v])
    xs, a0s, weights_s, ca_s, labels_s = stack(x), stack(a0), stack(loss_weights), stack(ca), labels[None, ::-1]
    labels_s = jnp.concatenate([labels[None], labels_s])
    batched = jax.vmap(functools.partial(gradients, HAND), in_axes=(0, 0, None, 0, 0, 0))(
        xs, a0s, params, labels_s, weights_s, ca_s
    )
    looped = [gradients(HAND, xs[i], a0s[i], params, labels_s[i], weights_s[i], ca_s[i]) for i in range(2)]
    assert_trees_close(batched, jax.tree_util.tree_map(lambda *g: jnp.stack(g), *looped), TOLERANCE[jnp.float32])
    outputs, vjp = jax.vjp(JITTED[HAND], x, a0, params, labels)
    labels_cotangent = vjp(outputs)[3]
    assert labels_cotangent.dtype == jax.dtypes.float0 and labels_cotangent.shape == labels.shape


def test_concrete_out_of_range_labels_raise_naming_the_position():
    """Concrete labels are checked like concrete lengths: a counted token's label outside
    [0, n_y) raises; the same value where the token does not count (padding, ignore_index) does not."""
    x, a0, params, labels, _, _ = problem(jax.random.PRNGKey(9), jnp.float32)
    bad = labels.at[1, 2].set(N_Y).at[3, 0].set(-7)
    for head in (HAND, AUTO):
        name = head.__name__
        with pytest.raises(ValueError, match=rf"{name}: labels\[1, 2\]={N_Y} is outside \[0, n_y={N_Y}\) .* 2 such"):
            head(x, a0, params, bad)
    time_major = jnp.transpose(x, (2, 1, 0)), a0.T, params, bad.T
    with pytest.raises(ValueError, match=r"labels\[2, 1\]=4 is outside"):  # (T, B): time first
        HAND(*time_major, layout="time_major")
    lengths = jnp.array([6, 2, 3, 5])  # example 1 ends before step 2
    losses, _ = HAND(x, a0, params, bad.at[3, 0].set(0), seq_lengths=lengths)
    assert bool(jnp.all(jnp.isfinite(losses)))
    losses, _ = HAND(x, a0, params, bad.at[1, 2].set(-7), ignore_index=-7)
    assert bool(jnp.all(jnp.isfinite(losses)))


def test_out_of_range_labels_give_nan_loudly(x64):
    x, a0, params, labels, loss_weights, ca = problem(jax.random.PRNGKey(7), jnp.float64)
    labels = labels.at[1, 2].set(N_Y).at[2, 4].set(-1)
    for head in (HAND, AUTO):
        losses, _ = JITTED[head](x, a0, params, labels)
        np.testing.assert_array_equal(jnp.isnan(losses), (labels < 0) | (labels >= N_Y))
        dx, _, dparams = gradients(head, x, a0, params, labels, loss_weights, ca)
        assert all(bool(jnp.all(jnp.isnan(g))) for g in jax.tree_util.tree_leaves(dparams))
        assert bool(jnp.all(jnp.isnan(dx[:, 1, :3]))) and bool(jnp.all(jnp.isfinite(dx[:, 0])))  # sequence 0 is clean


@pytest.mark.parametrize("checkpoint_every", [pytest.param(None, marks=pytest.mark.slow), 4])
def test_padding_and_ignored_labels_contribute_nothing(x64, checkpoint_every):
    """Labels PyTorch-style padded with -100 past each length, and some counted tokens marked
    -100 too: those tokens have loss 0 and no gradient, exactly as if their loss weight were 0
    with a valid label; an invalid label on a counted token still gives NaN, loudly."""
    x, a0, params, labels, loss_weights, ca = problem(jax.random.PRNGKey(8), jnp.float64)
    lengths = jnp.array([6, 0, 3, 5])
    padded = jnp.arange(T_X)[None, :] >= lengths[:, None]
    ignored = jnp.zeros((M, T_X), bool).at[0, 1].set(True).at[3, 4].set(True)
    pytorch_labels = jnp.where(padded | ignored, -100, labels)
    options = {"seq_lengths": lengths, "ignore_index": -100, "checkpoint_every": checkpoint_every}

    def loss(head, weights, labels, **options):
        def of(x, a0, params):
            losses, a = head(x, a0, params, labels, **options)
            return jnp.sum(weights * losses) + jnp.sum(ca * a), losses

        return jax.jit(jax.value_and_grad(of, argnums=(0, 1, 2), has_aux=True))(x, a0, params)

    (value, losses), grads = loss(HAND, loss_weights, pytorch_labels, **options)
    assert bool(jnp.all(losses[padded | ignored] == 0)) and bool(jnp.all(losses[~(padded | ignored)] > 0))
    # The same tokens dropped by zero loss weights, on valid labels: the same value and gradients.
    dropped = jnp.where(padded | ignored, 0.0, loss_weights)
    no_ignore = dict(options, ignore_index=None)
    (value_dropped, _), grads_dropped = loss(HAND, dropped, labels, **no_ignore)
    np.testing.assert_allclose(value, value_dropped, rtol=1e-13)
    assert_trees_close(grads, grads_dropped, 1e-12)
    auto_options = {k: v for k, v in options.items() if k != "checkpoint_every"}
    assert_trees_close(grads, loss(AUTO, loss_weights, pytorch_labels, **auto_options)[1], 1e-12)
    # A genuinely invalid label on a counted token is still loud: an error when concrete, NaN when traced.
    bad_labels = pytorch_labels.at[2, 1].set(N_Y)
    with pytest.raises(ValueError, match=rf"labels\[2, 1\]={N_Y} is outside"):
        loss(HAND, loss_weights, bad_labels, **options)
    (_, losses), grads = jax.jit(lambda labels: loss(HAND, loss_weights, labels, **options))(bad_labels)
    assert bool(jnp.isnan(losses[2, 1])) and int(jnp.isnan(losses).sum()) == 1
    assert all(bool(jnp.isnan(g).any()) for g in jax.tree_util.tree_leaves(grads[2]))


def zeros_problem():
    """Valid inputs of the shared sizes, as numpy arrays (checks fire before any computation)."""
    shapes = {"Wax": (N_A, N_X), "Waa": (N_A, N_A), "Wya": (N_Y, N_A), "ba": (N_A, 1), "by": (N_Y, 1)}
    params = {k: np.zeros(shape, np.float32) for k, shape in shapes.items()}
    return np.zeros((N_X, M, T_X), np.float32), np.zeros((N_A, M), np.float32), params


@pytest.mark.parametrize(
    ("labels", "error", "message"),
    [
        (np.zeros((M, T_X), np.float32), TypeError, r"labels.dtype=float32 is not an integer dtype; expected integer"),
        (np.zeros((M, T_X), bool), TypeError, r"labels.dtype=bool is not an integer dtype"),
        (np.zeros((M, 5), np.int32), ValueError, r"labels.shape=\(4, 5\) does not fit m=4 and T_x=6 from x"),
        (np.zeros(T_X, np.int32), ValueError, r"labels.shape=\(6,\) has rank 1; expected rank 2, \(m, T_x\)"),
        ("abc", TypeError, r"labels must be integer class indices in \[0, n_y\), shape \(m, T_x\); received str"),
    ],
)
def test_bad_labels_give_clear_errors(labels, error, message):
    x, a0, params = zeros_problem()
    for head in (HAND, AUTO):
        with pytest.raises(error, match=rf"^{head.__name__}: {message}"):
            head(x, a0, params, labels)
        with pytest.raises(error, match=message):
            jax.jit(functools.partial(head, labels=labels))(x, a0, params)


def test_bad_sequence_inputs_name_the_head():
    x, a0, params = zeros_problem()
    with pytest.raises(ValueError, match=r"^rnn_cross_entropy: a0.shape=\(5, 3\) does not fit"):
        HAND(x, a0[:, :3], params, np.zeros((M, T_X), np.int32))
