"""Training: the loss (padding, carried state), the optimiser, reproducibility, resume and Ctrl-C.

optax's Adam mixes Python floats with int32 counts; the train step allows that promotion
around the optax update only, so these tests keep the suite's strict promotion everywhere else.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _charlm_helpers import STREAM_TEXT, run, tiny_config
from helpers import TOLERANCE, assert_trees_close

import jaxrnn
from jaxrnn.charlm import parallel
from jaxrnn.charlm.checkpoint import CHECKPOINT_NAME, load_checkpoint
from jaxrnn.charlm.config import TrainConfig
from jaxrnn.charlm.corpus import START
from jaxrnn.charlm.data import corpus_vocabulary, make_dataset
from jaxrnn.charlm.train import chunk_loss, initial_state, make_optimizer, make_train_step, training_throughput


def _problem(T, m=2, V=5, n_a=4, seed=0):
    """Random float64 parameters (non-zero biases), `a0 (n_a, m)` and next-character ids `(m, T)`."""
    rng = np.random.default_rng(seed)
    shapes = {"Wax": (n_a, V), "Waa": (n_a, n_a), "Wya": (V, n_a), "ba": (n_a, 1), "by": (V, 1)}
    params = {name: jnp.asarray(0.5 * rng.standard_normal(shape)) for name, shape in shapes.items()}
    ids = jnp.asarray(rng.integers(0, V, (m, T + 1)), jnp.int32)
    return params, jnp.asarray(0.5 * rng.standard_normal((n_a, m))), ids[:, :-1], ids[:, 1:]


def _reference_token_losses(params, a0, inputs, targets):
    """-log y_t[target] from the plain forward `rnn_autodiff` (softmax probabilities), `(m, T)`."""
    x = jax.nn.one_hot(inputs, params["Wax"].shape[1], axis=0, dtype=params["Wax"].dtype)
    _, y = jaxrnn.rnn_autodiff(x, a0, params)  # (V, m, T)
    return -jnp.log(jnp.take_along_axis(y, targets[None], axis=0)[0])


def test_padding_adds_nothing_to_the_loss_or_its_gradient(x64):
    params, a0, inputs, targets = _problem(T=6)
    weights = jnp.asarray([[1.0] * 6, [1.0] * 3 + [0.0] * 3])  # row 1: a 3-character example, then padding

    def reference(params):
        full = jnp.sum(_reference_token_losses(params, a0[:, :1], inputs[:1], targets[:1]))
        short = jnp.sum(_reference_token_losses(params, a0[:, 1:], inputs[1:, :3], targets[1:, :3]))
        return (full + short) / 9.0  # only the real characters exist for the oracle

    value_and_grad = jax.jit(jax.value_and_grad(lambda p, i, t: chunk_loss(p, a0, i, t, weights)[0]))
    expected_loss, expected_grads = jax.jit(jax.value_and_grad(reference))(params)
    loss, grads = value_and_grad(params, inputs, targets)
    np.testing.assert_allclose(loss, expected_loss, rtol=TOLERANCE[jnp.float64])
    assert_trees_close(grads, expected_grads, TOLERANCE[jnp.float64])

    # Other characters under the padding change nothing.
    loss, grads = value_and_grad(params, inputs.at[1, 3:].set(START), targets.at[1, 3:].set(0))
    np.testing.assert_allclose(loss, expected_loss, rtol=TOLERANCE[jnp.float64])
    assert_trees_close(grads, expected_grads, TOLERANCE[jnp.float64])


def test_the_carried_state_continues_the_sequence_and_stops_the_gradient(x64):
    params, a0, inputs, targets = _problem(T=8)
    ones = jnp.ones((2, 4), jnp.float64)
    _, carried = jax.jit(chunk_loss)(params, a0, inputs[:, :4], targets[:, :4], ones)
    second = jax.jit(jax.value_and_grad(lambda p: chunk_loss(p, carried, inputs[:, 4:], targets[:, 4:], ones)[0]))

    # The value: chunk 2 from the carried state is the second half of one 8-step forward pass.
    whole = jax.jit(jax.value_and_grad(lambda p: jnp.mean(_reference_token_losses(p, a0, inputs, targets)[:, 4:])))
    (loss, grads), (whole_loss, full_bptt_grads) = second(params), whole(params)
    np.testing.assert_allclose(loss, whole_loss, rtol=TOLERANCE[jnp.float64])

    # The gradient: the carried state is a constant (truncated BPTT), not the full one.
    def truncated(p):
        a4 = jax.lax.stop_gradient(jaxrnn.rnn_autodiff(jax.nn.one_hot(inputs[:, :4], 5, axis=0), a0, p)[0][:, :, -1])
        return jnp.mean(_reference_token_losses(p, a4, inputs[:, 4:], targets[:, 4:]))

    assert_trees_close(grads, jax.jit(jax.grad(truncated))(params), TOLERANCE[jnp.float64])
    assert np.max(np.abs(grads["Waa"] - full_bptt_grads["Waa"])) > 1e-3


def test_the_train_step_carries_the_hidden_state_unless_reset():
    config = tiny_config(steps=2, lines=False, optimizer="sgd")
    vocabulary = corpus_vocabulary(STREAM_TEXT, lines=False)
    stream = make_dataset(STREAM_TEXT, vocabulary, False, config.batch_size, config.chunk_length, config.seed)
    mesh = parallel.batch_mesh()
    state = initial_state(config, len(vocabulary), mesh)
    train_step = make_train_step(config, mesh)
    params, opt_state, hidden, _ = train_step(state.params, state.opt_state, state.hidden, stream.chunk(0))
    loss_and_hidden = jax.jit(chunk_loss)
    _, expected_hidden = loss_and_hidden(state.params, state.hidden, *stream.chunk(0)[:3])
    np.testing.assert_array_equal(np.asarray(hidden), np.asarray(expected_hidden))

    second = stream.chunk(1)
    assert not second.reset
    _, _, _, carried_loss = train_step(params, opt_state, hidden, second)
    _, _, _, reset_loss = train_step(params, opt_state, hidden, second._replace(reset=np.asarray(True)))
    np.testing.assert_allclose(carried_loss, loss_and_hidden(params, hidden, *second[:3])[0], rtol=1e-6)
    np.testing.assert_allclose(reset_loss, loss_and_hidden(params, 0 * hidden, *second[:3])[0], rtol=1e-6)
    assert abs(float(carried_loss) - float(reset_loss)) > 1e-4


@pytest.mark.parametrize(
    ("clip", "expected_update"),
    [
        ("value", [-1.0, 0.5, -1.0, 0.0]),  # -lr · clip(g, -1, 1), element by element
        ("global-norm", np.asarray([-3.0, 0.5, -4.0, 0.0]) / np.sqrt(25.25)),  # g / ‖g‖₂, ‖g‖₂ = √25.25 > 1
        ("none", [-3.0, 0.5, -4.0, 0.0]),
    ],
)
def test_gradient_clipping(clip, expected_update):
    optimizer = make_optimizer(TrainConfig(optimizer="sgd", learning_rate=1.0, clip=clip, clip_value=1.0))
    grads = {"w": jnp.asarray([3.0, -0.5, 4.0, 0.0])}
    with jax.numpy_dtype_promotion("standard"):  # optax's own arithmetic
        updates, _ = optimizer.update(grads, optimizer.init(grads))
    np.testing.assert_allclose(updates["w"], expected_update, rtol=1e-6)


def test_adam_is_the_default_optimiser():
    optimizer = make_optimizer(TrainConfig(learning_rate=0.1, clip="none"))
    grads = {"w": jnp.asarray([3.0, -0.001])}
    with jax.numpy_dtype_promotion("standard"):
        updates, _ = optimizer.update(grads, optimizer.init(grads))
    np.testing.assert_allclose(updates["w"], [-0.1, 0.1], rtol=1e-4)  # Adam's first step: -lr · sign(g)


def _assert_states_equal(a, b):
    """Bitwise: parameters, optimiser state, carried hidden state, key and step."""
    for x, y in zip(jax.tree_util.tree_leaves(a[:4]), jax.tree_util.tree_leaves(b[:4])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), strict=True)
    assert a.step == b.step


def test_a_fixed_seed_gives_the_same_run_and_the_loss_falls(tmp_path):
    config = tiny_config(steps=60)
    first, second = run(config, tmp_path / "a"), run(config, tmp_path / "b")
    _assert_states_equal(first.state, second.state)
    np.testing.assert_array_equal(first.losses, second.losses)
    other = run(tiny_config(steps=60, seed=1), tmp_path / "c")
    assert not np.array_equal(other.losses, first.losses)
    assert np.nanmean(first.losses[-10:]) < np.nanmean(first.losses[:10]) - 0.5
    assert os.path.exists(tmp_path / "a" / "loss.png")


@pytest.mark.parametrize("lines", [True, False], ids=["lines", "stream"])
def test_resume_after_ctrl_c_ends_bitwise_equal_to_an_uninterrupted_run(tmp_path, lines):
    config = tiny_config(steps=14, lines=lines, checkpoint_every=4, sample_every=5)
    uninterrupted = run(config, tmp_path / "whole")

    def ctrl_c_at_step_7(step):
        if step == 7:  # mid-line in --lines mode: a non-zero hidden state is carried into step 8
            raise KeyboardInterrupt

    stopped = run(config, tmp_path / "parts", on_step=ctrl_c_at_step_7)
    assert stopped.interrupted and stopped.state.step == 7
    saved = load_checkpoint(str(tmp_path / "parts" / CHECKPOINT_NAME))
    assert saved.step == 7 and len(saved.losses) == 7
    assert np.any(saved.hidden != 0) or not lines

    resumed = run(config, tmp_path / "parts", resume=True)
    assert not resumed.interrupted
    _assert_states_equal(resumed.state, uninterrupted.state)
    np.testing.assert_array_equal(resumed.losses, uninterrupted.losses)
    whole, parts = (load_checkpoint(str(tmp_path / d / CHECKPOINT_NAME)) for d in ("whole", "parts"))
    for a, b in zip(jax.tree_util.tree_leaves(whole[3:]), jax.tree_util.tree_leaves(parts[3:])):
        np.testing.assert_array_equal(a, b, strict=True)


def test_a_chunk_of_padding_only_changes_nothing(tmp_path):
    # Chunks of 4 over lines of up to 8 + 1 characters: 3 per batch, and a batch of short lines has an
    # all-padding third chunk. Its step must leave parameters and optimiser state (Adam's count) alone.
    config = tiny_config(steps=60)
    result = run(config, tmp_path)
    empty = np.isnan(result.losses)
    assert empty.any() and not empty.all()
    saved = load_checkpoint(str(tmp_path / CHECKPOINT_NAME))
    assert int(saved.opt_state[0]) == int((~empty).sum())  # Adam counts only the steps that updated


def test_training_throughput_times_both_gradients():
    rates = training_throughput(repeats=2, vocabulary_size=7, hidden_size=8, batch_size=2, chunk_length=4)
    assert set(rates) == {"hand", "autodiff"}
    assert all(np.isfinite(rate) and rate > 0 for rate in rates.values())


def test_gradient_choice_gives_the_same_training(tmp_path):
    hand = run(tiny_config(steps=5, optimizer="sgd", gradient="hand"), tmp_path / "hand")
    autodiff = run(tiny_config(steps=5, optimizer="sgd", gradient="autodiff"), tmp_path / "autodiff")
    assert_trees_close(hand.state.params, autodiff.state.params, TOLERANCE[jnp.float32])
