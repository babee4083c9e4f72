"""GRU and LSTM on the engine: every option against autodiff of the same forward (float64 and
float32), finite differences (float64), each sequence run alone, the JVP, dtypes, streaming."""

import functools
import itertools
import re

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from helpers import TOLERANCE, assert_trees_close, covers_every_pair, each_value_once, pairwise_fast

import jaxrnn

N_X, N_A, N_Y, M, T = 3, 4, 5, 4, 7
LENGTHS = (7, 0, 3, 5)  # full, empty, and two in between
IGNORED = 2  # a label value the cross-entropy cases ignore
GATED = ("gru", "lstm")


def cell_problem(cell, dtype, head="softmax", key=0):
    """Batch-major inputs `(M, T, N_X)`, a state (`LSTMState` for the LSTM), parameters with
    non-zero biases, labels and dense cotangents for every output, drawn with numpy."""
    rng = np.random.default_rng(key)
    gates = {"vanilla": 1, "gru": 3, "lstm": 4}[cell]
    normal = lambda *shape: rng.standard_normal(shape)
    params = {
        "Wax": normal(gates * N_A, N_X) / np.sqrt(N_X),
        "Waa": normal(gates * N_A, N_A) / np.sqrt(N_A),
        "ba": 0.3 * normal(gates * N_A, 1),
    }
    if cell == "gru":
        params["bhn"] = 0.3 * normal(N_A, 1)
    if head is not None:
        params |= {"Wya": normal(N_Y, N_A) / np.sqrt(N_A), "by": 0.3 * normal(N_Y, 1)}
    states = [0.5 * normal(M, N_A) for _ in range(2 if cell == "lstm" else 1)]
    arrays = {
        "x": normal(M, T, N_X),
        "params": params,
        "w_a": normal(M, T, N_A),
        "w_head": normal(M, T, N_Y) if head == "softmax" else normal(M, T),
        "w_final": [normal(M, N_A) for _ in states],
        "states": states,
    }
    arrays = jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), arrays)
    state = jaxrnn.LSTMState(*arrays["states"]) if cell == "lstm" else arrays["states"][0]
    weights = {"a": arrays["w_a"], "head": arrays["w_head"], "final": arrays["w_final"]}
    labels = jnp.asarray(rng.integers(0, N_Y, (M, T)))
    return arrays["x"], state, arrays["params"], labels, weights


def loss(cell, head, gradient, options, x, a0, params, labels, weights):
    """Σ w_a ⊙ a + Σ w_head ⊙ (y or losses) + Σ w_final ⊙ final: a generic cotangent for each output."""
    options = dict(options, cell=cell, gradient=gradient, layout="batch_major", return_final_state=True)
    if gradient == "autodiff":
        options.pop("checkpoint_every", None)
    if head == "cross_entropy":
        losses, a, final = jaxrnn.rnn_cross_entropy(x, a0, params, labels, ignore_index=IGNORED, **options)
        head_term = jnp.sum(weights["head"] * losses)
    else:
        a, y, final = jaxrnn.rnn(x, a0, params, **options)
        head_term = 0.0 if y is None else jnp.sum(weights["head"] * y)
    final_term = sum(jnp.sum(w * f) for w, f in zip(weights["final"], jax.tree_util.tree_leaves(final)))
    return jnp.sum(weights["a"] * a) + head_term + final_term


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def value_and_gradients(cell, head, gradient, options, lengths, x, a0, params, labels, weights):
    """Value and gradients with respect to `(x, a0, params)`; `options` a sorted tuple, lengths traced."""
    options = dict(options, seq_lengths=lengths)
    fn = lambda x, a0, params: loss(cell, head, gradient, options, x, a0, params, labels, weights)
    return jax.value_and_grad(fn, argnums=(0, 1, 2))(x, a0, params)


def run(cell, head, gradient, options, lengths, *args):
    lengths = None if lengths is None else jnp.asarray(lengths)
    return value_and_gradients(cell, head, gradient, tuple(sorted(options.items())), lengths, *args)


OPTION_GRID = list(
    itertools.product(
        GATED,
        [False, True],  # reverse
        [None, LENGTHS],
        [None, 3],  # checkpoint_every (3 does not divide T = 7: padded, masked segments)
        ["softmax", None, "cross_entropy"],
    )
)
# Every value of every option with every other at least once (pairwise), per cell: the fast set.
PAIRWISE = [
    (False, None, None, "softmax"),
    (True, LENGTHS, 3, "softmax"),
    (False, LENGTHS, 3, None),
    (True, None, None, None),
    (True, LENGTHS, None, "cross_entropy"),
    (False, None, 3, "cross_entropy"),
    (False, LENGTHS, None, "softmax"),
]
FAST = [(GATED[i % 2], *case) for i, case in enumerate(PAIRWISE)]  # every pair once, the cells taking turns


def _every_option(cell, reverse, lengths, checkpoint_every, head, dtype):
    args = cell_problem(cell, dtype, head, key=11)
    options = {"reverse": reverse, "checkpoint_every": checkpoint_every}
    (value_hand, hand), (value_auto, auto) = (
        run(cell, head, gradient, options, lengths, *args) for gradient in ("hand", "autodiff")
    )
    np.testing.assert_allclose(value_hand, value_auto, rtol=TOLERANCE[dtype])
    assert_trees_close(hand, auto, TOLERANCE[dtype])


def test_the_fast_cases_cover_every_pair_of_options():
    assert covers_every_pair([case[1:] for case in FAST], [case[1:] for case in OPTION_GRID])


@pytest.mark.parametrize(("cell", "reverse", "lengths", "checkpoint_every", "head"), pairwise_fast(OPTION_GRID, FAST))
def test_every_option_equals_autodiff_float64(x64, cell, reverse, lengths, checkpoint_every, head):
    _every_option(cell, reverse, lengths, checkpoint_every, head, jnp.float64)


@pytest.mark.parametrize(*each_value_once(cell=GATED, reverse=[False, True]))
def test_float32_equals_autodiff(device, cell, reverse):
    _every_option(cell, reverse, LENGTHS, 3, "softmax", jnp.float32)


@pytest.mark.parametrize(*each_value_once(cell=GATED, reverse=[False, True]))
def test_gradients_equal_finite_differences(x64, cell, reverse):
    """An oracle that shares no code with the layer: central differences along random
    directions (`jax.test_util.check_grads`), float64, through masks and checkpoint segments."""
    x, a0, params, labels, weights = cell_problem(cell, jnp.float64, key=12)
    options = {"reverse": reverse, "seq_lengths": jnp.array(LENGTHS), "checkpoint_every": 3}
    fn = lambda x, a0, params: loss(cell, "softmax", "hand", options, x, a0, params, labels, weights)
    jax.test_util.check_grads(fn, (x, a0, params), order=1, modes=("rev",), eps=1e-6, atol=1e-7, rtol=1e-7)


def _one_example(v, i, length):
    """Example i of a batch-major sequence `(M, T, n)` cut to its length, or of a state `(M, n)`."""
    return v[i : i + 1, :length] if v.ndim == 3 else v[i : i + 1]


@pytest.mark.parametrize(*each_value_once(cell=GATED, reverse=[False, True]))
def test_padded_batch_equals_each_sequence_alone(x64, cell, reverse):
    """Outputs, final states and gradients of a padded batch equal those of every sequence run
    alone, unpadded; padded inputs get exactly zero gradient."""
    x, a0, params, labels, weights = cell_problem(cell, jnp.float64, key=13)
    options = {"reverse": reverse}
    value, (dx, da0, dparams) = run(cell, "softmax", "hand", options, LENGTHS, x, a0, params, labels, weights)
    alone_value, alone_dparams = 0.0, jax.tree_util.tree_map(jnp.zeros_like, params)
    for i, length in enumerate(LENGTHS):
        if length == 0:  # nothing runs: the loss sees a0 itself as the final state
            alone_value += sum(jnp.sum(w[i] * s[i]) for w, s in zip(weights["final"], jax.tree_util.tree_leaves(a0)))
            for w, d in zip(weights["final"], jax.tree_util.tree_leaves(da0)):
                np.testing.assert_allclose(d[i], w[i], rtol=1e-14)
            continue
        example = functools.partial(_one_example, i=i, length=length)
        example_weights = jax.tree_util.tree_map(example, weights)
        value_i, (dx_i, da0_i, dparams_i) = run(
            cell, "softmax", "hand", options, None, example(x), jax.tree_util.tree_map(example, a0), params, None,
            example_weights,
        )  # fmt: skip
        alone_value += value_i
        alone_dparams = jax.tree_util.tree_map(jnp.add, alone_dparams, dparams_i)
        np.testing.assert_allclose(dx[i : i + 1, :length], dx_i, rtol=1e-12, atol=1e-14)
        for d, d_i in zip(jax.tree_util.tree_leaves(da0), jax.tree_util.tree_leaves(da0_i)):
            np.testing.assert_allclose(d[i : i + 1], d_i, rtol=1e-12, atol=1e-14)
        assert bool(jnp.all(dx[i, length:] == 0)), f"padded inputs of example {i} got a gradient"
    np.testing.assert_allclose(value, alone_value, rtol=1e-12)
    assert_trees_close(dparams, alone_dparams, 1e-12)


@pytest.mark.parametrize(*each_value_once(cell=GATED, reverse=[False, True]))
def test_jvp_equals_autodiff_and_finite_differences(x64, cell, reverse):
    """`rnn_jvp` (tangents by hand) against `jax.jvp` of the autodiff twin, and that against
    central differences of the forward pass."""
    x, a0, params, _, _ = cell_problem(cell, jnp.float64, key=14)
    rng = np.random.default_rng(15)
    tangents = jax.tree_util.tree_map(lambda v: jnp.asarray(rng.standard_normal(v.shape)), (x, a0, params))
    options = {"cell": cell, "reverse": reverse, "layout": "batch_major", "return_final_state": True}
    options["seq_lengths"] = jnp.array(LENGTHS)
    primals_out, tangents_out = jaxrnn.rnn_jvp((x, a0, params), tangents, **options)
    forward = functools.partial(jaxrnn.rnn_autodiff, **options)
    want_primals, want_tangents = jax.jvp(forward, (x, a0, params), tangents)
    assert_trees_close(primals_out, want_primals, 1e-13)
    assert_trees_close(tangents_out, want_tangents, 1e-12)
    assert isinstance(primals_out[2], jaxrnn.LSTMState) == (cell == "lstm")
    eps = 1e-6
    shifted = lambda sign: forward(*jax.tree_util.tree_map(lambda p, t: p + sign * eps * t, (x, a0, params), tangents))
    differences = jax.tree_util.tree_map(lambda u, v: (u - v) / (2 * eps), shifted(1), shifted(-1))
    assert_trees_close(tangents_out, differences, 1e-7)


@pytest.mark.parametrize("cell", [pytest.param("gru", marks=pytest.mark.slow), "lstm"])
def test_step_by_step_equals_the_sequence(x64, cell):
    """`rnn_step` in a Python loop gives `rnn`'s states, head and final state, two layers stacked."""
    layers = jaxrnn.init_stack(jax.random.key(3), N_X, N_A, num_layers=2, n_y=N_Y, dtype=jnp.float64, cell=cell)
    x, _, _, _, _ = cell_problem(cell, jnp.float64, key=16)
    a, y, finals = jaxrnn.rnn_stack(x, None, layers, layout="batch_major", cell=cell, return_final_state=True)
    states = None
    for t in range(T):
        states, y_t = jaxrnn.rnn_step(x[:, t], states, layers, layout="batch_major", cell=cell)
        np.testing.assert_allclose(states[-1][0] if cell == "lstm" else states[-1], a[:, t], rtol=1e-13)
        np.testing.assert_allclose(y_t, y[:, t], rtol=1e-13)
    assert_trees_close(states, finals, 1e-13)


@pytest.mark.parametrize("cell", GATED)
def test_truncated_backprop_through_the_final_state(x64, cell):
    """Two calls chained through the final state (an `LSTMState` for the LSTM) equal one call,
    gradients included."""
    x, a0, params, labels, weights = cell_problem(cell, jnp.float64, key=17)
    options = {"cell": cell, "layout": "batch_major"}

    def chained(x, a0, params):
        a1, y1, final = jaxrnn.rnn(x[:, :3], a0, params, return_final_state=True, **options)
        a2, y2 = jaxrnn.rnn(x[:, 3:], final, params, **options)
        return jnp.concatenate([a1, a2], 1), jnp.concatenate([y1, y2], 1)

    def weighted(fn):
        return lambda *args: jnp.sum(weights["a"] * fn(*args)[0]) + jnp.sum(weights["head"] * fn(*args)[1])

    one = functools.partial(jaxrnn.rnn_autodiff, **options)
    grad = lambda fn: jax.jit(jax.grad(weighted(fn), argnums=(0, 1, 2)))(x, a0, params)
    assert_trees_close(grad(chained), grad(one), 1e-12)


@pytest.mark.parametrize(*each_value_once(cell=GATED, dtype=[jnp.bfloat16, jnp.float16]))
def test_half_precision_accumulates_in_float32(cpu_device, cell, dtype):
    """bfloat16/float16 inputs: outputs and gradients keep the dtype and stay close to float32
    autodiff on the same (rounded) inputs."""
    x, a0, params, labels, weights = cell_problem(cell, dtype, key=18)
    options = {"checkpoint_every": 3}
    _, hand = run(cell, "softmax", "hand", options, LENGTHS, x, a0, params, labels, weights)
    up = lambda tree: jax.tree_util.tree_map(lambda v: v.astype(jnp.float32), tree)
    _, reference = run(cell, "softmax", "autodiff", {}, LENGTHS, *up((x, a0, params)), labels, up(weights))
    assert all(g.dtype == dtype for g in jax.tree_util.tree_leaves(hand))
    # Measured (jax 0.10.2, CPU), largest relative error over all gradients: bfloat16 5.9e-3 (GRU),
    # 4.8e-3 (LSTM), against 3.5e-3 for jax.grad of the forward in bfloat16; float16 3.9e-4, 3.8e-4.
    tolerance = {jnp.bfloat16: 1.5e-2, jnp.float16: 1.2e-3}[dtype]
    assert_trees_close(up(hand), reference, tolerance, floor=1)


@pytest.mark.parametrize(
    ("cell", "dtype", "reverse"),
    [
        ("gru", jnp.bfloat16, False),
        ("lstm", jnp.float16, True),
        pytest.param("lstm", jnp.bfloat16, True, marks=pytest.mark.slow),
        pytest.param("gru", jnp.float16, False, marks=pytest.mark.slow),
    ],
)
def test_half_precision_jvp_keeps_the_dtype_and_stays_near_float32(cpu_device, cell, dtype, reverse):
    """`rnn_jvp` in bfloat16/float16, masks on: outputs and tangents keep the dtype and stay near
    `jax.jvp` of the autodiff twin in float32 on the same rounded inputs. The gated tangent steps
    read the previous carry (the GRU's `h − n`, the LSTM's `ḟ ⊙ c`), which must arrive in the
    accumulation dtype: under the suite's strict dtype promotion a half-precision carry raises."""
    x, a0, params, _, _ = cell_problem(cell, dtype, head=None, key=31)
    rng = np.random.default_rng(32)
    tangents = jax.tree_util.tree_map(lambda v: jnp.asarray(rng.standard_normal(v.shape), dtype), (x, a0, params))
    options = {"cell": cell, "reverse": reverse, "layout": "batch_major", "return_final_state": True}
    options["seq_lengths"] = jnp.array(LENGTHS)
    hand = jaxrnn.rnn_jvp((x, a0, params), tangents, **options)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(hand)} == {jnp.dtype(dtype)}
    up = lambda tree: jax.tree_util.tree_map(lambda v: v.astype(jnp.float32), tree)
    reference = jax.jvp(functools.partial(jaxrnn.rnn_autodiff, **options), up((x, a0, params)), up(tangents))
    # Measured (jax 0.10.2, CPU), largest relative error over 8 random problems, both directions:
    # bfloat16 4.1e-3 (GRU), 4.6e-3 (LSTM); float16 5.1e-4, 5.8e-4; jax.jvp in the half dtype alike.
    tolerance = {jnp.bfloat16: 1.2e-2, jnp.float16: 1.5e-3}[dtype]
    assert_trees_close(up(hand), reference, tolerance, floor=1)


def test_lstm_state_is_returned_and_accepted_as_a_pair(x64):
    x, a0, params, _, _ = cell_problem("lstm", jnp.float64, key=19)
    a, y, final = jaxrnn.rnn(x, tuple(a0), params, cell="lstm", layout="batch_major", return_final_state=True)
    assert isinstance(final, jaxrnn.LSTMState) and final.h.shape == final.c.shape == (M, N_A)
    np.testing.assert_array_equal(final.h, a[:, -1])
    again = jaxrnn.rnn(x, a0, params, cell="lstm", layout="batch_major", return_final_state=True)
    assert_trees_close(again, (a, y, final), 0.0)


@pytest.mark.parametrize(
    ("cell", "options", "message"),
    [
        ("gru", {"nonlinearity": "relu"}, "nonlinearity='relu' applies to the vanilla cell"),
        ("vanilla", {}, "these look like a gru layer's parameters: pass cell='gru'"),
        ("lstm", {}, "unexpected ['bhn']; these look like a gru layer's parameters: pass cell='gru'"),
        ("rnn", {}, "cell='rnn' is not one of ['vanilla', 'gru', 'lstm']"),
    ],
)
def test_cell_mistakes_say_what_to_pass(cell, options, message):
    x, a0, params, _, _ = cell_problem("gru", jnp.float32, key=20)
    with pytest.raises(ValueError) as error:
        jaxrnn.rnn(x, a0, params, cell=cell, layout="batch_major", **options)
    assert message in str(error.value)


def test_lstm_needs_a_pair_and_vanilla_refuses_one():
    x, a0, params, _, _ = cell_problem("lstm", jnp.float32, key=21)
    with pytest.raises(TypeError, match=r"rnn: a0 must be an LSTM state: a pair \(h, c\)"):
        jaxrnn.rnn(x, a0.h, params, cell="lstm", layout="batch_major")
    x, _, params, _, _ = cell_problem("vanilla", jnp.float32, key=21)
    with pytest.raises(TypeError, match=r"a pair \(h, c\) is an LSTM's state: pass cell='lstm'"):
        jaxrnn.rnn(x, a0, params, layout="batch_major")


@pytest.mark.parametrize(*each_value_once(cell=GATED, layout=["time_major", "seed"]))
def test_layouts_move_the_axes_only(device, cell, layout):
    """The same numbers in every layout: outputs, final state and gradients of the batch-major
    call with the axes moved (float32, masks and checkpoint segments on)."""
    x, a0, params, labels, weights = cell_problem(cell, jnp.float32, key=22)
    move = {"time_major": lambda v: jnp.swapaxes(v, 0, 1), "seed": lambda v: jnp.transpose(v, (2, 0, 1))}[layout]
    state = (lambda v: v) if layout == "time_major" else (lambda v: v.T)
    options = {"cell": cell, "seq_lengths": jnp.array(LENGTHS), "checkpoint_every": 3, "return_final_state": True}

    def run(layout, x, a0, params):
        a, y, final = jaxrnn.rnn(x, a0, params, layout=layout, **options)
        return a, y, final

    def loss(layout, moved, moved_state, x, a0, params):
        a, y, final = run(layout, x, a0, params)
        finals = jax.tree_util.tree_leaves(final)
        return (
            jnp.sum(moved(weights["a"]) * a)
            + jnp.sum(moved(weights["head"]) * y)
            + sum(jnp.sum(moved_state(w) * f) for w, f in zip(weights["final"], finals))
        )

    same = lambda v: v
    batch = jax.jit(jax.value_and_grad(functools.partial(loss, "batch_major", same, same), argnums=(0, 1, 2)))
    other = jax.jit(jax.value_and_grad(functools.partial(loss, layout, move, state), argnums=(0, 1, 2)))
    moved_a0 = jax.tree_util.tree_map(state, a0)
    value, (dx, da0, dparams) = batch(x, a0, params)
    value_other, (dx_other, da0_other, dparams_other) = other(move(x), moved_a0, params)
    np.testing.assert_allclose(value_other, value, rtol=TOLERANCE[jnp.float32])
    assert_trees_close((dx_other, da0_other, dparams_other), (move(dx), jax.tree_util.tree_map(state, da0), dparams),
                       TOLERANCE[jnp.float32])  # fmt: skip


@pytest.mark.parametrize("cell", ["gru", pytest.param("lstm", marks=pytest.mark.slow)])
def test_bidirectional_stack_with_dropout_equals_autodiff(x64, cell):
    """Two bidirectional layers with dropout between them, masks and final states: every
    recurrence on the hand-derived backward against `gradient="autodiff"`, and against central
    differences (the dropout key fixed), float64."""
    layers = jaxrnn.init_stack(jax.random.key(4), N_X, N_A, num_layers=2, bidirectional=True, cell=cell,
                               dtype=jnp.float64, initialization="pytorch")  # fmt: skip
    x, _, _, _, weights = cell_problem(cell, jnp.float64, key=23)
    options = {"cell": cell, "seq_lengths": jnp.array(LENGTHS), "dropout": 0.3, "key": jax.random.key(5)}

    def loss(layers, gradient):
        a, _, finals = jaxrnn.rnn_stack(x, None, layers, gradient=gradient, return_final_state=True, **options)
        w = jnp.concatenate([weights["a"], weights["a"][..., ::-1]], axis=-1)
        return jnp.sum(w * a) + sum(jnp.sum(jnp.cos(f)) for f in jax.tree_util.tree_leaves(finals))

    hand = jax.jit(jax.grad(functools.partial(loss, gradient="hand")))(layers)
    auto = jax.jit(jax.grad(functools.partial(loss, gradient="autodiff")))(layers)
    assert_trees_close(hand, auto, TOLERANCE[jnp.float64])
    jax.test_util.check_grads(lambda layers: loss(layers, "hand"), (layers,), order=1, modes=("rev",), eps=1e-6)


@pytest.mark.parametrize("cell", GATED)
@pytest.mark.parametrize("checkpoint_every", [None, 3])
def test_bfloat16_matrix_products_accumulate_in_float32(cell, checkpoint_every):
    """Every matrix product of a GRU/LSTM gradient step, forward and backward, returns float32 (read from
    the lowered StableHLO: on CPU a bfloat16 result would round the same float32 sum, so values cannot show it)."""
    x, a0, params, labels, weights = cell_problem(cell, jnp.bfloat16, key=24)
    options = {"checkpoint_every": checkpoint_every, "reverse": True}
    fn = lambda x, a0, params: loss(cell, "cross_entropy", "hand", options, x, a0, params, labels, weights)
    weights["head"] = weights["head"][..., 0]  # the cross-entropy head's per-token weights (B, T)
    text = jax.jit(jax.grad(fn, argnums=(0, 1, 2))).lower(x, a0, params).as_text()
    types = re.findall(r"stablehlo\.dot_general .*-> tensor<[0-9x]*([a-z0-9]+)>", text)
    assert types and set(types) == {"f32"}, types
