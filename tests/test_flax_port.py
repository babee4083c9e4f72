"""Flax's own recurrent tests, ported to `jaxrnn.nnx.RNN` and `jaxrnn.nnx.Bidirectional`.

Each test cites the Flax 0.12.8 test it mirrors — `tests/nnx/nn/recurrent_test.py` (NNX) or
`tests/linen/linen_recurrent_test.py` (Linen) — and keeps its sizes and assertions, with the
module swapped for jaxrnn's (Linen's `nn.RNN(nn.LSTMCell(features))` becomes
`jaxrnn.nnx.RNN(nnx.LSTMCell(in_features, features, rngs=...))`: jaxrnn's modules are NNX).
Where Flax's test only checks shapes, the port also checks the numbers against `nnx.RNN` on
the same cell. The oracle of the Linen tests — the cell stepped by hand — is the same.

Not ported, with why (docs/migration.md lists them too):
- NNX `test_rnn_with_custom_cell`, `test_recurrent_dropout`, Linen
  `test_rnn_with_spatial_dimensions` (`ConvLSTMCell`): cells jaxrnn does not compute; the
  ports check that they are refused with a message naming the cell.
- Linen `test_numerical_equivalence_with_mask` compares outputs at padded steps, where jaxrnn
  outputs zeros (Flax runs the cell on over the padding): ported for the valid steps and the
  carry, with the padded steps pinned at zero.
- NNX `TestLSTMCell` (8 tests) and Linen `test_numerical_equivalence_single_batch_nn_scan`,
  `..._jax_scan` test Flax's cells and scans alone, not an RNN module.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import _modules

nnx = pytest.importorskip("flax.nnx")
linen = pytest.importorskip("flax.linen")
from flax.nnx.nn.recurrent import flip_sequences  # noqa: E402

import jaxrnn.nnx  # noqa: E402

RNN, Bidirectional = jaxrnn.nnx.RNN, jaxrnn.nnx.Bidirectional


def same_as_flax(cell, x, rtol=1e-5, **options):
    """jaxrnn's module and `nnx.RNN` on the same cell give the same outputs (and carries)."""
    options.setdefault("return_carry", True)
    got, want = RNN(cell, **options)(x), nnx.RNN(cell, **options)(x)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-6)
    return got


def step_by_hand(cell, carry, xs):
    """The cell stepped over `xs (B, T, n)`: `(final carry, outputs (B, T, hidden), carries per step)`."""
    outputs, carries = [], []
    for t in range(xs.shape[1]):
        carry, y = cell(carry, xs[:, t])
        outputs.append(y)
        carries.append(carry)
    return carry, jnp.stack(outputs, axis=1), carries


def row(carry, index):
    """Example `index` of a batched carry, keeping the batch axis."""
    return jax.tree.map(lambda c: c[index : index + 1], carry)


def assert_all_close(got, want, rtol):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-6)


# tests/nnx/nn/recurrent_test.py, TestRNN


def test_rnn_with_lstm_cell():
    """NNX TestRNN.test_rnn_with_lstm_cell."""
    cell = nnx.LSTMCell(in_features=3, hidden_features=4, rngs=nnx.Rngs(0))
    rnn = RNN(cell)
    x = jnp.ones((2, 5, 3))
    carry = cell.initialize_carry((2, 3), nnx.Rngs(0))
    outputs = rnn(x, initial_carry=carry)
    assert outputs.shape == (2, 5, 4)
    same_as_flax(cell, x)


def test_rnn_with_gru_cell():
    """NNX TestRNN.test_rnn_with_gru_cell."""
    cell = nnx.GRUCell(in_features=3, hidden_features=4, rngs=nnx.Rngs(1))
    rnn = RNN(cell)
    x = jnp.ones((2, 5, 3))
    carry = cell.initialize_carry((2, 3), nnx.Rngs(1))
    outputs = rnn(x, initial_carry=carry)
    assert outputs.shape == (2, 5, 4)
    same_as_flax(cell, x)


def test_rnn_time_major():
    """NNX TestRNN.test_rnn_time_major."""
    cell = nnx.LSTMCell(in_features=3, hidden_features=4, rngs=nnx.Rngs(2))
    rnn = RNN(cell, time_major=True)
    x = jnp.ones((5, 2, 3))
    carry = cell.initialize_carry(x.shape[1:2] + x.shape[2:], nnx.Rngs(2))
    outputs = rnn(x, initial_carry=carry)
    assert outputs.shape == (5, 2, 4)
    same_as_flax(cell, x, time_major=True)


def distinct_steps():
    """NNX's reverse tests' input: `(2, 5, 3)` with step t holding t."""
    x = jnp.tile(jnp.arange(5), (2, 1)).reshape(2, 5, 1)
    return jnp.concatenate([x, x, x], axis=-1).astype(jnp.float32)


def test_rnn_reverse():
    """NNX TestRNN.test_rnn_reverse."""
    cell = nnx.LSTMCell(in_features=3, hidden_features=4, rngs=nnx.Rngs(3))
    rnn = RNN(cell, reverse=True)
    outputs = rnn(distinct_steps())
    assert outputs.shape == (2, 5, 4)
    assert outputs[:, ::-1, :].shape == (2, 5, 4)
    same_as_flax(cell, distinct_steps(), reverse=True)


def test_rnn_with_seq_lengths():
    """NNX TestRNN.test_rnn_with_seq_lengths (integer inputs, as there)."""
    cell = nnx.LSTMCell(in_features=3, hidden_features=4, rngs=nnx.Rngs(4))
    rnn = RNN(cell, return_carry=True)
    steps = [[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]]
    x = jnp.array([[[v] * 3 for v in sequence] for sequence in steps])
    seq_lengths = jnp.array([3, 5])
    carry = cell.initialize_carry((2, 3), nnx.Rngs(4))
    final_carry, outputs = rnn(x, initial_carry=carry, seq_lengths=seq_lengths)
    assert outputs.shape == (2, 5, 4)
    assert final_carry[0].shape == (2, 4)  # c
    assert final_carry[1].shape == (2, 4)  # h
    # Flax's test leaves the numbers as a todo; the carry (each sequence's after its last valid step):
    want, _ = nnx.RNN(cell, return_carry=True)(x.astype(jnp.float32), initial_carry=carry, seq_lengths=seq_lengths)
    assert_all_close(final_carry, want, 1e-5)


def test_rnn_with_keep_order():
    """NNX TestRNN.test_rnn_with_keep_order."""
    cell = nnx.LSTMCell(in_features=3, hidden_features=4, rngs=nnx.Rngs(5))
    rnn = RNN(cell, reverse=True, keep_order=True)
    carry = cell.initialize_carry((2, 3), nnx.Rngs(5))
    outputs = rnn(distinct_steps(), initial_carry=carry)
    assert outputs.shape == (2, 5, 4)
    same_as_flax(cell, distinct_steps(), reverse=True, keep_order=True)


def copy_linen_lstm(params_linen, cell_nnx):
    """Flax's tests' own mapping of a Linen LSTMCell's parameters onto an NNX one."""
    for gate in ["i", "f", "g", "o"]:
        for prefix in ("i", "h"):
            layer = getattr(cell_nnx, "if_" if prefix + gate == "if" else prefix + gate)
            layer.kernel[...] = params_linen[prefix + gate]["kernel"]
            if layer.use_bias:
                layer.bias[...] = params_linen[prefix + gate]["bias"]


def test_rnn_equivalence_with_flax_linen():
    """NNX TestRNN.test_rnn_equivalence_with_flax_linen."""
    x = jax.random.normal(jax.random.PRNGKey(42), (2, 5, 3))
    rngs_nnx = nnx.Rngs(0)
    cell_nnx = nnx.LSTMCell(in_features=3, hidden_features=4, rngs=rngs_nnx)
    rnn_nnx = RNN(cell_nnx)
    cell_linen = linen.LSTMCell(features=4)
    rnn_linen = linen.RNN(cell_linen)
    carry_linen = cell_linen.initialize_carry(jax.random.PRNGKey(0), x[:, 0].shape)
    variables_linen = rnn_linen.init(jax.random.PRNGKey(1), x)
    copy_linen_lstm(variables_linen["params"]["cell"], cell_nnx)
    carry_nnx = cell_nnx.initialize_carry((2, 3), rngs_nnx)
    outputs_nnx = rnn_nnx(x, initial_carry=carry_nnx)
    outputs_linen = rnn_linen.apply(variables_linen, x, initial_carry=carry_linen)
    np.testing.assert_allclose(outputs_nnx, outputs_linen, atol=1e-5)


def test_rnn_with_unroll():
    """NNX TestRNN.test_rnn_with_unroll (`unroll` is accepted; it changes no number)."""
    cell = nnx.LSTMCell(in_features=3, hidden_features=4, rngs=nnx.Rngs(6))
    rnn = RNN(cell, unroll=2)
    x = jnp.ones((2, 6, 3))
    outputs = rnn(x, initial_carry=cell.initialize_carry((2, 3), nnx.Rngs(6)))
    assert outputs.shape == (2, 6, 4)
    same_as_flax(cell, x, unroll=2)


class CustomRNNCell(nnx.Module):
    """NNX TestRNN.test_rnn_with_custom_cell's cell."""

    def __init__(self, in_features, hidden_features, rngs):
        self.in_features, self.hidden_features = in_features, hidden_features
        self.dense = nnx.Linear(in_features + hidden_features, hidden_features, rngs=rngs)

    def __call__(self, carry, inputs):
        new_h = jax.nn.tanh(self.dense(jnp.concatenate([inputs, carry], axis=-1)))
        return new_h, new_h

    def initialize_carry(self, input_shape, rngs):
        return jnp.zeros((input_shape[0], self.hidden_features))

    @property
    def num_feature_axes(self) -> int:
        return 1


class LSTMWithRecurrentDropout(nnx.OptimizedLSTMCell):
    """NNX TestRNN.test_recurrent_dropout's cell: its own `__call__`."""

    def __init__(self, *, rngs, in_features, hidden_features, dropout_rate):
        super().__init__(in_features=in_features, hidden_features=hidden_features, rngs=rngs)
        self.recurrent_dropout = nnx.Dropout(
            rate=dropout_rate, deterministic=False, rng_collection="recurrent_dropout", rngs=rngs
        )

    def __call__(self, carry, x):
        new_h, new_c = super().__call__(carry, x)
        return jax.tree.map(self.recurrent_dropout, new_h), new_c


def test_rnn_with_custom_cell_is_refused():
    """NNX TestRNN.test_rnn_with_custom_cell: a cell jaxrnn does not compute, refused by name."""
    cell = CustomRNNCell(in_features=3, hidden_features=4, rngs=nnx.Rngs(7))
    with pytest.raises(
        TypeError, match=r"jaxrnn.nnx.RNN: cell is a CustomRNNCell; jaxrnn computes Flax.s nnx.SimpleCell, GRUCell"
    ):
        RNN(cell)


def test_recurrent_dropout_is_refused():
    """NNX TestRNN.test_recurrent_dropout: a subclass with its own `__call__` (and broadcast_rngs)."""
    cell = LSTMWithRecurrentDropout(
        in_features=32, hidden_features=64, dropout_rate=0.1, rngs=nnx.Rngs(0, recurrent_dropout=1)
    )
    with pytest.raises(
        TypeError, match=r"jaxrnn.nnx.RNN: cell is a subclass of nnx.OptimizedLSTMCell with its own __call__"
    ):
        RNN(cell, broadcast_rngs="recurrent_dropout")
    with pytest.raises(ValueError, match=r"state_axes and broadcast_rngs route a custom cell's state"):
        RNN(nnx.OptimizedLSTMCell(32, 64, rngs=nnx.Rngs(0)), broadcast_rngs="recurrent_dropout")


def test_rnn_with_different_dtypes():
    """NNX TestRNN.test_rnn_with_different_dtypes (float16)."""
    options = {"dtype": jnp.float16, "param_dtype": jnp.float16}
    cell = nnx.LSTMCell(in_features=3, hidden_features=4, rngs=nnx.Rngs(8), **options)
    x = jnp.ones((2, 5, 3), dtype=jnp.float16)
    outputs = RNN(cell)(x, initial_carry=cell.initialize_carry((2, 3), nnx.Rngs(8)))
    assert outputs.dtype == jnp.float16
    assert outputs.shape == (2, 5, 4)
    same_as_flax(cell, x, rtol=1e-2)


def test_rnn_with_variable_batch_size():
    """NNX TestRNN.test_rnn_with_variable_batch_size."""
    cell = nnx.LSTMCell(in_features=3, hidden_features=4, rngs=nnx.Rngs(9))
    rnn = RNN(cell)
    for batch_size in [1, 2, 5]:
        x = jnp.ones((batch_size, 5, 3))
        outputs = rnn(x, initial_carry=cell.initialize_carry((batch_size, 3), nnx.Rngs(9)))
        assert outputs.shape == (batch_size, 5, 4)


# tests/linen/linen_recurrent_test.py, RNNTest


def assert_lstm_parameter_shapes(cell, channels_in, channels_out):
    """Linen's check of the cell's parameters, on the NNX cell's per-gate `Linear`s."""
    for name in ("ii", "if_", "ig", "io", "hi", "hf", "hg", "ho"):
        layer = getattr(cell, name)
        if layer.bias is not None:
            assert layer.bias.shape == (channels_out,)
        assert layer.kernel.shape[0] in [channels_in, channels_out]
        assert layer.kernel.shape[1] == channels_out


@pytest.mark.parametrize(
    ("batch_dims", "unroll"),
    [((10,), 1), ((10, 11), 1), ((10,), 10)],
    ids=["test_rnn_basic_forward", "test_rnn_multiple_batch_dims", "test_rnn_unroll"],
)
def test_rnn_basic_forward(batch_dims, unroll):
    """Linen RNNTest.test_rnn_basic_forward, .test_rnn_multiple_batch_dims, .test_rnn_unroll."""
    cell = nnx.LSTMCell(5, 15, rngs=nnx.Rngs(0))
    rnn = RNN(cell, unroll=unroll, return_carry=True)
    xs = jnp.ones((*batch_dims, 40, 5))
    carry, ys = rnn(xs)
    assert ys.shape == (*batch_dims, 40, 15)
    assert_lstm_parameter_shapes(cell, 5, 15)
    assert all(leaf.shape == (*batch_dims, 15) for leaf in jax.tree.leaves(carry))


def test_linen_rnn_time_major():
    """Linen RNNTest.test_rnn_time_major."""
    cell = nnx.LSTMCell(5, 15, rngs=nnx.Rngs(0))
    carry, ys = RNN(cell, time_major=True, return_carry=True)(jnp.ones((40, 10, 5)))
    for leaf in jax.tree.leaves(carry):  # the carry is not zeros after the call
        assert not np.allclose(leaf, jnp.zeros_like(leaf))
        assert leaf.shape == (10, 15)
    assert ys.shape == (40, 10, 15)
    assert_lstm_parameter_shapes(cell, 5, 15)


def test_rnn_with_spatial_dimensions_is_refused():
    """Linen RNNTest.test_rnn_with_spatial_dimensions: `ConvLSTMCell` (Linen only), which jaxrnn
    does not compute; a Linen cell is refused with the way to an NNX one."""
    with pytest.raises(TypeError, match=r"a Linen cell: build its NNX counterpart"):
        RNN(linen.ConvLSTMCell(15, (3, 3)))


def test_numerical_equivalence():
    """Linen RNNTest.test_numerical_equivalence."""
    cell = nnx.LSTMCell(5, 6, rngs=nnx.Rngs(0))
    xs = jnp.ones((3, 4, 5))
    carry, ys = RNN(cell, return_carry=True)(xs)
    cell_carry, want, _ = step_by_hand(cell, cell.initialize_carry(xs[:, 0].shape, nnx.Rngs(0)), xs)
    np.testing.assert_allclose(ys, want, rtol=1e-5)
    assert_all_close(carry, cell_carry, 1e-5)


def test_numerical_equivalence_with_mask():
    """Linen RNNTest.test_numerical_equivalence_with_mask, at the valid steps: past each length
    jaxrnn outputs zeros where Flax's test expects the cell run on over the padding."""
    seq_lengths = jax.random.randint(jax.random.key(0), (3,), minval=1, maxval=5)
    cell = nnx.LSTMCell(5, 6, rngs=nnx.Rngs(0))
    xs = jnp.ones((3, 4, 5))
    carry, ys = RNN(cell, return_carry=True)(xs, seq_lengths=seq_lengths)
    _, want, carries = step_by_hand(cell, cell.initialize_carry(xs[:, 0].shape, nnx.Rngs(0)), xs)
    valid = (jnp.arange(4)[None] < seq_lengths[:, None])[..., None]
    assert not jnp.all(valid)  # the draw has padding, so the difference is exercised
    np.testing.assert_allclose(jnp.where(valid, want, 0), ys, rtol=1e-5)  # zeros at padded steps
    for batch_idx, length in enumerate(seq_lengths):
        for carries_t, carry_ in zip(carries[int(length) - 1], carry):
            np.testing.assert_allclose(carries_t[batch_idx], carry_[batch_idx], rtol=1e-5)


def test_numerical_equivalence_single_batch():
    """Linen RNNTest.test_numerical_equivalence_single_batch."""
    cell = nnx.LSTMCell(5, 6, rngs=nnx.Rngs(0))
    xs = jnp.ones((3, 4, 5))
    carry, ys = RNN(cell, return_carry=True)(xs)
    for batch_idx in range(3):
        cell_carry, want, _ = step_by_hand(
            cell, cell.initialize_carry(xs[:1, 0].shape, nnx.Rngs(0)), xs[batch_idx : batch_idx + 1]
        )
        np.testing.assert_allclose(want[0], ys[batch_idx], rtol=1e-6)
        assert_all_close(cell_carry, row(carry, batch_idx), 1e-6)


@pytest.mark.parametrize("keep_order", [False, True], ids=["test_reverse", "test_reverse_but_keep_order"])
def test_reverse(keep_order):
    """Linen RNNTest.test_reverse and .test_reverse_but_keep_order."""
    cell = nnx.LSTMCell(5, 6, rngs=nnx.Rngs(0))
    xs = jax.random.normal(jax.random.key(1), (3, 4, 5))  # Flax's ones would not show the order
    carry, ys = RNN(cell, return_carry=True, reverse=True, keep_order=keep_order)(xs)
    for batch_idx in range(3):
        cell_carry = cell.initialize_carry(xs[:1, 0].shape, nnx.Rngs(0))
        for i in range(4):
            cell_carry, y = cell(cell_carry, xs[batch_idx, 4 - i - 1][None])
            np.testing.assert_allclose(y[0], ys[batch_idx, 4 - i - 1 if keep_order else i], rtol=1e-5, atol=1e-7)
        assert_all_close(cell_carry, row(carry, batch_idx), 1e-5)


@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("features", [(), (3,)])
def test_flip_sequence(time_major, features):
    """Linen RNNTest.test_flip_sequence, ..._more_feature_dims, ..._time_major,
    ..._time_major_more_feature_dims: jaxrnn's flip (the order of `keep_order=False`) against
    Flax's `flip_sequences`, on the same arrays."""
    x = jnp.arange(2 * 5 * int(np.prod(features))).reshape(((5, 2) if time_major else (2, 5)) + features)
    seq_lengths = jnp.array([4, 2])
    layout = "time_major" if time_major else "batch_major"
    padded = x if features else x[..., None]  # jaxrnn's outputs always have a feature axis
    flipped = _modules.flip_sequences(padded, seq_lengths, layout)
    flipped = flipped if features else flipped[..., 0]
    assert flipped.shape == x.shape
    sequences = (lambda a: jnp.swapaxes(a, 0, 1)) if time_major else (lambda a: a)
    np.testing.assert_array_equal(sequences(flipped)[0, :4], sequences(x)[0, :4][::-1])
    np.testing.assert_array_equal(sequences(flipped)[1, :2], sequences(x)[1, :2][::-1])
    np.testing.assert_array_equal(flipped, flip_sequences(x, seq_lengths, num_batch_dims=1, time_major=time_major))


def test_basic_seq_lengths():
    """Linen RNNTest.test_basic_seq_lengths."""
    rnn = RNN(nnx.LSTMCell(6, 265, rngs=nnx.Rngs(0)))
    assert rnn(jnp.ones((2, 10, 6)), seq_lengths=jnp.array([5, 5])).shape == (2, 10, 265)


# tests/linen/linen_recurrent_test.py, BidirectionalTest


def lstm_rnn(seed, cell=None):
    return RNN(cell or nnx.LSTMCell(5, 6, rngs=nnx.Rngs(seed)))


def test_bidirectional():
    """Linen BidirectionalTest.test_bidirectional."""
    ys = Bidirectional(lstm_rnn(0), lstm_rnn(1))(jnp.ones((3, 4, 5)))
    assert ys.shape == (3, 4, 12)


def test_shared_cell():
    """Linen BidirectionalTest.test_shared_cell: both directions on one cell (one set of weights)."""
    cell = nnx.LSTMCell(5, 6, rngs=nnx.Rngs(0))
    model = Bidirectional(lstm_rnn(0, cell), lstm_rnn(0, cell))
    xs = jax.random.normal(jax.random.key(1), (3, 4, 5))
    ys = model(xs)
    assert ys.shape == (3, 4, 12)
    np.testing.assert_allclose(ys, nnx.Bidirectional(nnx.RNN(cell), nnx.RNN(cell))(xs), rtol=1e-5, atol=1e-6)
    assert len(jax.tree.leaves(nnx.state(model, nnx.Param))) == 12  # the cell's 8 kernels and 4 biases, once


def test_custom_merge_fn():
    """Linen BidirectionalTest.test_custom_merge_fn."""
    ys = Bidirectional(lstm_rnn(0), lstm_rnn(1), merge_fn=lambda x, y: x + y)(jnp.ones((3, 4, 5)))
    assert ys.shape == (3, 4, 6)


def test_return_carry():
    """Linen BidirectionalTest.test_return_carry."""
    carry, ys = Bidirectional(lstm_rnn(0), lstm_rnn(1), return_carry=True)(jnp.ones((3, 4, 5)))
    carry_forward, carry_backward = carry
    assert ys.shape == (3, 4, 12)
    assert jax.tree.map(jnp.shape, carry_forward) == ((3, 6), (3, 6))
    assert jax.tree.map(jnp.shape, carry_backward) == ((3, 6), (3, 6))
