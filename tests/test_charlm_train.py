"""Training: the loss (padding, bucketing, carried and learned states, every cell), the optimiser,
reproducibility, resume, Ctrl-C and divergence.

optax's Adam mixes Python floats with int32 counts; the train step allows that promotion
around the optax update only, so these tests keep the suite's strict promotion everywhere else.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _charlm_helpers import NAMES_TEXT, STREAM_TEXT, run, tiny_config
from helpers import TOLERANCE, assert_trees_close

import jaxrnn
from jaxrnn.charlm import parallel
from jaxrnn.charlm.checkpoint import BEST_NAME, CHECKPOINT_NAME, load_checkpoint
from jaxrnn.charlm.config import TrainConfig
from jaxrnn.charlm.corpus import START
from jaxrnn.charlm.data import Chunk, LineBatches
from jaxrnn.charlm.dataset import prepare
from jaxrnn.charlm.errors import CharLMError
from jaxrnn.charlm.model import initial_hidden, layer_parameters
from jaxrnn.charlm.optimizer import learning_rate_schedule, make_optimizer
from jaxrnn.charlm.train import chunk_loss, initial_parameters, initial_state, make_train_step, training_throughput

V, N_A = 5, 4


def _problem(T, m=2, seed=0, learned_a0=False):
    """Random float64 parameters (non-zero biases, and `a0` if asked), a hidden state `(m, n_a)` and ids `(m, T)`."""
    rng = np.random.default_rng(seed)
    shapes = {"Wax": (N_A, V), "Waa": (N_A, N_A), "Wya": (V, N_A), "ba": (N_A, 1), "by": (V, 1)}
    if learned_a0:
        shapes["a0"] = (N_A,)
    params = {name: jnp.asarray(0.5 * rng.standard_normal(shape)) for name, shape in shapes.items()}
    ids = jnp.asarray(rng.integers(0, V, (m, T + 1)), jnp.int32)
    return params, jnp.asarray(0.5 * rng.standard_normal((m, N_A))), ids[:, :-1], ids[:, 1:]


def _reference_losses(params, a0, inputs, targets):
    """-log y_t[target] from the plain forward `rnn_autodiff` (seed layout, softmax probabilities), `(m, T)`."""
    layer = {name: value for name, value in params.items() if name != "a0"}
    x = jax.nn.one_hot(inputs, V, axis=0, dtype=params["Wax"].dtype)
    _, y = jaxrnn.rnn_autodiff(x, a0.T, layer, layout="seed")  # (V, m, T)
    return -jnp.log(jnp.take_along_axis(y, targets[None], axis=0)[0])


def _loss(lengths, reset=False, scale=1.0):
    return lambda p, h, i, t: chunk_loss(p, h, i, t, lengths, jnp.asarray(reset), scale)[0]


def test_padding_adds_nothing_to_the_loss_or_its_gradient(x64):
    params, a0, inputs, targets = _problem(T=6)
    lengths = jnp.asarray([6, 3], jnp.int32)  # row 1: a 3-character example, then padding

    def reference(params):
        full = jnp.sum(_reference_losses(params, a0[:1], inputs[:1], targets[:1]))
        short = jnp.sum(_reference_losses(params, a0[1:], inputs[1:, :3], targets[1:, :3]))
        return (full + short) / 9.0  # only the real characters exist for the oracle

    value_and_grad = jax.jit(jax.value_and_grad(_loss(lengths, scale=9.0)))
    expected_loss, expected_grads = jax.jit(jax.value_and_grad(reference))(params)
    loss, grads = value_and_grad(params, a0, inputs, targets)
    np.testing.assert_allclose(loss, expected_loss, rtol=TOLERANCE[jnp.float64])
    assert_trees_close(grads, expected_grads, TOLERANCE[jnp.float64])

    # Other characters under the padding change nothing.
    loss, grads = value_and_grad(params, a0, inputs.at[1, 3:].set(START), targets.at[1, 3:].set(0))
    np.testing.assert_allclose(loss, expected_loss, rtol=TOLERANCE[jnp.float64])
    assert_trees_close(grads, expected_grads, TOLERANCE[jnp.float64])


def test_a_bucketed_batch_has_the_gradient_of_the_same_batch_padded(x64):
    lines = [np.asarray(ids, np.int32) for ids in ([1, 2, 3], [4, 1, 2, 2, 3, 1], [2], [3, 3, 4, 1, 2])]
    batches = LineBatches(lines, newline=0, batch_size=4, chunk_length=32, seed=0)
    rows = np.arange(4)
    bucketed, padded = batches._rows(rows, 0, 8, reset=True), batches._rows(rows, 0, 32, reset=True)
    assert bucketed.inputs.shape == (4, 8) and padded.inputs.shape == (4, 32)
    np.testing.assert_array_equal(bucketed.lengths, padded.lengths)
    params, hidden, _, _ = _problem(T=1, m=4, learned_a0=True)
    value_and_grad = jax.jit(jax.value_and_grad(lambda p, c: chunk_loss(p, hidden, *c[:3], c[3], 5.0), has_aux=True))
    (loss, (final, _)), grads = value_and_grad(params, bucketed)
    (padded_loss, (padded_final, _)), padded_grads = value_and_grad(params, padded)
    np.testing.assert_allclose(loss, padded_loss, rtol=TOLERANCE[jnp.float64])
    assert_trees_close(grads, padded_grads, TOLERANCE[jnp.float64])
    np.testing.assert_allclose(final, padded_final, rtol=TOLERANCE[jnp.float64])  # the state after each last step
    assert np.all(np.abs(grads["a0"]) > 0)  # the learned initial state is trained


def test_the_carried_state_continues_the_sequence_and_stops_the_gradient(x64):
    params, a0, inputs, targets = _problem(T=8)
    full = jnp.full(2, 4, jnp.int32)
    first = jax.jit(lambda p, h, i, t: chunk_loss(p, h, i, t, full, jnp.asarray(False), 8.0)[1][0])
    carried = first(params, a0, inputs[:, :4], targets[:, :4])
    second = jax.jit(jax.value_and_grad(lambda p: _loss(full, scale=8.0)(p, carried, inputs[:, 4:], targets[:, 4:])))

    # The value: chunk 2 from the carried state is the second half of one 8-step forward pass.
    whole = jax.jit(jax.value_and_grad(lambda p: jnp.mean(_reference_losses(p, a0, inputs, targets)[:, 4:])))
    (loss, grads), (whole_loss, full_bptt_grads) = second(params), whole(params)
    np.testing.assert_allclose(loss, whole_loss, rtol=TOLERANCE[jnp.float64])

    # The gradient: the carried state is a constant (truncated BPTT), not the full one.
    def truncated(p):
        x = jax.nn.one_hot(inputs[:, :4], V, axis=0)
        a4 = jax.lax.stop_gradient(jaxrnn.rnn_autodiff(x, a0.T, p, layout="seed")[0][:, :, -1])
        return jnp.mean(_reference_losses(p, a4.T, inputs[:, 4:], targets[:, 4:]))

    assert_trees_close(grads, jax.jit(jax.grad(truncated))(params), TOLERANCE[jnp.float64])
    assert np.max(np.abs(grads["Waa"] - full_bptt_grads["Waa"])) > 1e-3


@pytest.mark.parametrize("cell", ["gru", pytest.param("lstm", marks=pytest.mark.slow)])
def test_the_carried_state_of_every_cell_continues_the_sequence(x64, cell):
    """Two chunks with the state carried (an LSTM's pair (h, c)) are one forward pass over both."""
    config = TrainConfig(hidden_size=N_A, cell=cell, learn_initial_state=True)
    params = jax.tree_util.tree_map(jnp.float64, initial_parameters(config, V))
    params = {**params, **{name: jnp.full(N_A, 0.3) for name in ("a0", "c0") if name in params}}
    ids = jnp.asarray(np.random.default_rng(1).integers(0, V, (2, 9)), jnp.int32)
    inputs, targets, full = ids[:, :-1], ids[:, 1:], jnp.full(2, 4, jnp.int32)
    loss = jax.jit(lambda p, h, i, t, reset: chunk_loss(p, h, i, t, full, reset, 1.0, cell=cell))
    unused = jax.tree_util.tree_map(jnp.zeros_like, initial_hidden(params, 2, cell))  # replaced by the reset
    first, (carried, _) = loss(params, unused, inputs[:, :4], targets[:, :4], jnp.asarray(True))
    assert isinstance(carried, jaxrnn.LSTMState) == (cell == "lstm")
    second, _ = loss(params, carried, inputs[:, 4:], targets[:, 4:], jnp.asarray(False))

    x = jax.nn.one_hot(inputs.T, V, dtype=jnp.float64)
    start = initial_hidden(params, 2, cell)
    losses, _ = jaxrnn.rnn_cross_entropy(x, start, layer_parameters(params), targets.T, layout="time_major", cell=cell)
    np.testing.assert_allclose([first, second], [jnp.sum(losses[:4]), jnp.sum(losses[4:])], rtol=1e-12)
    if cell == "lstm":  # dropping the cell state c would change the second chunk
        h_only = jaxrnn.LSTMState(carried.h, jnp.zeros_like(carried.c))
        assert abs(loss(params, h_only, inputs[:, 4:], targets[:, 4:], jnp.asarray(False))[0] - second) > 1e-6


def test_a_reset_starts_from_the_learned_initial_state(x64):
    params, hidden, inputs, targets = _problem(T=3, learned_a0=True)
    full = jnp.full(2, 3, jnp.int32)
    loss_and_grad = jax.jit(jax.value_and_grad(_loss(full, reset=True)))
    loss, grads = loss_and_grad(params, hidden, inputs, targets)
    a0 = jnp.broadcast_to(params["a0"], (2, N_A))
    np.testing.assert_allclose(loss, jnp.sum(_reference_losses(params, a0, inputs, targets)), rtol=1e-12)
    assert np.all(np.abs(grads["a0"]) > 0)
    _, carried_grads = jax.jit(jax.value_and_grad(_loss(full)))(params, hidden, inputs, targets)
    np.testing.assert_array_equal(carried_grads["a0"], 0)  # no reset: a0 plays no part


def test_the_train_step_carries_the_hidden_state_unless_reset():
    config = tiny_config(steps=2, lines=False, optimizer="sgd")
    data = prepare(config, STREAM_TEXT)
    mesh = parallel.batch_mesh()
    state = initial_state(config, len(data.vocabulary), mesh)
    train_step = make_train_step(config, mesh, data.train.loss_scale)
    chunk = data.train.chunk(0)
    expected_hidden = jax.jit(chunk_loss)(state.params, state.hidden, *chunk, data.train.loss_scale)[1][0]
    params, opt_state, hidden, _ = train_step(state.params, state.opt_state, state.hidden, chunk)
    np.testing.assert_array_equal(np.asarray(hidden), np.asarray(expected_hidden))

    second = data.train.chunk(1)
    assert not second.reset
    copy = lambda tree: jax.tree_util.tree_map(jnp.copy, tree)  # the step takes (donates) its inputs
    carried = train_step(copy(params), copy(opt_state), hidden, second)[3]
    reset = train_step(copy(params), copy(opt_state), hidden, second._replace(reset=np.asarray(True)))[3]
    expected = lambda h, reset: jax.jit(chunk_loss)(params, h, *second[:3], reset, 1.0)[1][1]
    np.testing.assert_allclose(carried.loss_sum, expected(hidden, False), rtol=1e-6)
    np.testing.assert_allclose(reset.loss_sum, expected(hidden, True), rtol=1e-6)
    assert abs(carried.loss_sum - reset.loss_sum) > 1e-4


def test_the_train_step_updates_its_buffers_in_place():
    config = tiny_config(steps=1)
    mesh = parallel.batch_mesh()
    state = initial_state(config, V, mesh)
    chunk = Chunk(np.zeros((4, 4), np.int32), np.ones((4, 4), np.int32), np.full(4, 4, np.int32), np.asarray(True))
    make_train_step(config, mesh, 16.0)(state.params, state.opt_state, state.hidden, chunk)
    donated = jax.tree_util.tree_leaves((state.params, state.opt_state))
    assert all(leaf.is_deleted() for leaf in donated) and not state.hidden.is_deleted()


@pytest.mark.parametrize(
    ("clip", "expected_update"),
    [
        ("value", [-1.0, 0.5, -1.0, 0.0]),  # -lr · clip(g, -1, 1), element by element
        ("global-norm", np.asarray([-3.0, 0.5, -4.0, 0.0]) / np.sqrt(25.25)),  # g / ‖g‖₂, ‖g‖₂ = √25.25 > 1
        ("none", [-3.0, 0.5, -4.0, 0.0]),
    ],
)
def test_gradient_clipping(clip, expected_update):
    constant = dict(schedule="constant", warmup_steps=0)
    optimizer = make_optimizer(TrainConfig(optimizer="sgd", learning_rate=1.0, clip=clip, clip_value=1.0, **constant))
    grads = {"w": jnp.asarray([3.0, -0.5, 4.0, 0.0])}
    with jax.numpy_dtype_promotion("standard"):  # optax's own arithmetic
        updates, _ = optimizer.update(grads, optimizer.init(grads))
    np.testing.assert_allclose(updates["w"], expected_update, rtol=1e-6)


@pytest.mark.parametrize(
    "cell", [pytest.param("vanilla", marks=pytest.mark.slow), "gru", pytest.param("lstm", marks=pytest.mark.slow)]
)
def test_adamw_decays_the_matrices_only(cell):
    config = TrainConfig(learning_rate=0.1, weight_decay=0.5, clip="none", schedule="constant", warmup_steps=0)
    optimizer = make_optimizer(config)
    params = initial_parameters(TrainConfig(hidden_size=3, cell=cell, learn_initial_state=True), vocabulary_size=4)
    params = {name: jnp.full(value.shape, 2.0) for name, value in params.items()}
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    with jax.numpy_dtype_promotion("standard"):
        updates, _ = optimizer.update(zero, optimizer.init(params), params)
    for name in ("Wax", "Waa", "Wya"):
        np.testing.assert_allclose(updates[name], -0.1 * 0.5 * 2.0)  # −lr · λ · w
    unchanged = {"vanilla": {"ba", "by", "a0"}, "gru": {"ba", "bhn", "by", "a0"}, "lstm": {"ba", "by", "a0", "c0"}}
    assert set(params) - {"Wax", "Waa", "Wya"} == unchanged[cell]
    for name in unchanged[cell]:  # the biases (bhn included) and the initial state
        np.testing.assert_array_equal(updates[name], 0.0)


def test_the_learning_rate_warms_up_then_follows_a_cosine_to_a_tenth():
    schedule = learning_rate_schedule(TrainConfig(learning_rate=1.0, warmup_steps=10, steps=110))
    rates = np.asarray([schedule(step) for step in (0, 5, 10, 60, 110)])
    np.testing.assert_allclose(rates, [0.0, 0.5, 1.0, 0.55, 0.1], atol=1e-6)
    constant = learning_rate_schedule(TrainConfig(learning_rate=1.0, warmup_steps=0, schedule="constant"))
    assert float(constant(0)) == float(constant(5000)) == 1.0


def _assert_states_equal(a, b):
    """Bitwise: parameters, optimiser state, carried hidden state, key and step."""
    for x, y in zip(jax.tree_util.tree_leaves(a[:4]), jax.tree_util.tree_leaves(b[:4])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), strict=True)
    assert a.step == b.step


def test_a_fixed_seed_gives_the_same_run_and_the_loss_falls(tmp_path):
    config = tiny_config(steps=60, eval_every=20)
    first, second = run(config, tmp_path / "a"), run(config, tmp_path / "b")
    _assert_states_equal(first.state, second.state)
    np.testing.assert_array_equal(first.losses, second.losses)
    np.testing.assert_array_equal(first.validation, second.validation)
    other = run(tiny_config(steps=60, seed=1, eval_every=20), tmp_path / "c")
    assert not np.array_equal(other.losses, first.losses)
    assert np.mean(first.losses[-10:]) < np.mean(first.losses[:10]) - 0.5
    assert first.validation[:, 0].tolist() == [20, 40, 60]
    assert sorted(os.listdir(tmp_path / "a")) == [BEST_NAME, CHECKPOINT_NAME, "loss.png"]


@pytest.mark.parametrize("lines", [True, False], ids=["lines", "stream"])
def test_resume_after_ctrl_c_ends_bitwise_equal_to_an_uninterrupted_run(tmp_path, lines):
    config = tiny_config(steps=14, lines=lines, checkpoint_every=4, sample_every=5, eval_every=3)
    uninterrupted = run(config, tmp_path / "whole")

    def ctrl_c_at_step_7(step):
        if step == 7:  # mid-line in --lines mode: a non-zero hidden state is carried into step 8
            raise KeyboardInterrupt

    stopped = run(config, tmp_path / "parts", on_step=ctrl_c_at_step_7)
    assert stopped.interrupted and stopped.state.step == 7
    saved = load_checkpoint(str(tmp_path / "parts" / CHECKPOINT_NAME))
    assert saved.step == 7 and len(saved.losses) == 7 and saved.validation[:, 0].tolist() == [3, 6]
    assert np.any(saved.hidden != 0) or not lines

    resumed = run(config, tmp_path / "parts", resume=True)
    assert not resumed.interrupted
    _assert_states_equal(resumed.state, uninterrupted.state)
    np.testing.assert_array_equal(resumed.losses, uninterrupted.losses)
    np.testing.assert_array_equal(resumed.validation, uninterrupted.validation)
    assert resumed.validation[:, 0].tolist() == [3, 6, 9, 12, 14]
    for name in (CHECKPOINT_NAME, BEST_NAME):
        whole, parts = (load_checkpoint(str(tmp_path / d / name)) for d in ("whole", "parts"))
        assert whole.step == parts.step
        for a, b in zip(jax.tree_util.tree_leaves(whole[3:8]), jax.tree_util.tree_leaves(parts[3:8])):
            np.testing.assert_array_equal(a, b, strict=True)
        np.testing.assert_array_equal(whole.validation, parts.validation, strict=True)


@pytest.mark.parametrize("cell", [pytest.param("gru", marks=pytest.mark.slow), "lstm"])
def test_every_cell_resumes_bitwise_equal_to_an_uninterrupted_run(tmp_path, cell):
    config = tiny_config(steps=9, cell=cell, learn_initial_state=True, checkpoint_every=100, eval_every=3)
    uninterrupted = run(config, tmp_path / "whole")

    def ctrl_c_at_step_5(step):
        if step == 5:
            raise KeyboardInterrupt

    stopped = run(config, tmp_path / "parts", on_step=ctrl_c_at_step_5)
    assert stopped.interrupted and stopped.saved and stopped.state.step == 5
    saved = load_checkpoint(str(tmp_path / "parts" / CHECKPOINT_NAME))
    assert saved.config["cell"] == cell and isinstance(saved.hidden, jaxrnn.LSTMState) == (cell == "lstm")
    assert any(np.any(part != 0) for part in jax.tree_util.tree_leaves(saved.hidden))  # mid-line: a state is carried
    resumed = run(config, tmp_path / "parts", resume=True)
    _assert_states_equal(resumed.state, uninterrupted.state)
    np.testing.assert_array_equal(resumed.losses, uninterrupted.losses)
    np.testing.assert_array_equal(resumed.validation, uninterrupted.validation)
    assert np.mean(uninterrupted.losses[-3:]) < np.mean(uninterrupted.losses[:3])


def test_every_step_trains(tmp_path):
    # Lines of up to 8 + 1 characters in chunks of 4: batches of 1 to 3 chunks, none of padding only,
    # so the optimiser's step count (AdamW's and the schedule's) is the step number.
    config = tiny_config(steps=30)
    result = run(config, tmp_path)
    assert np.all(np.isfinite(result.losses))
    saved = load_checkpoint(str(tmp_path / CHECKPOINT_NAME))
    counts = [int(leaf) for leaf in saved.opt_state if leaf.dtype == np.int32]
    assert counts and all(count == 30 for count in counts)


class _PoisonedAt:
    """Training batches with a target outside the vocabulary at one step: its loss is NaN."""

    def __init__(self, train, step):
        self.train, self.step, self.loss_scale = train, step, train.loss_scale

    def chunk(self, step):
        chunk = self.train.chunk(step)
        if step + 1 == self.step:
            chunk = chunk._replace(targets=np.full_like(chunk.targets, 999))
        return chunk


def test_a_non_finite_loss_stops_the_run_at_its_step_and_keeps_the_last_checkpoint(tmp_path):
    config = tiny_config(steps=20, checkpoint_every=5)
    data = prepare(config, NAMES_TEXT)
    poisoned = data._replace(train=_PoisonedAt(data.train, step=8))
    with pytest.raises(CharLMError, match=r"training diverged: the loss is nan at step 8; .* keeps step 5"):
        run(config, tmp_path, data=poisoned)
    assert load_checkpoint(str(tmp_path / CHECKPOINT_NAME)).step == 5


def test_training_throughput_times_both_gradients():
    rates = training_throughput(repeats=2, vocabulary_size=7, hidden_size=8, batch_size=2, chunk_length=4)
    assert set(rates) == {"hand", "autodiff"}
    assert all(np.isfinite(rate) and rate > 0 for rate in rates.values())


def test_gradient_choice_gives_the_same_training(tmp_path):
    hand = run(tiny_config(steps=5, optimizer="sgd", gradient="hand"), tmp_path / "hand")
    autodiff = run(tiny_config(steps=5, optimizer="sgd", gradient="autodiff"), tmp_path / "autodiff")
    assert_trees_close(hand.state.params, autodiff.state.params, TOLERANCE[jnp.float32])
