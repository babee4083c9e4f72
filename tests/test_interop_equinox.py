"""Equinox interop: `from_equinox` / `to_equinox` for `eqx.nn.GRUCell` and `eqx.nn.LSTMCell`,
one cell, stacks, and bidirectional pairs.

- Numbers: cells imported with `from_equinox` give, through `rnn_stack`, what the cells give
  scanned over each sequence (its valid steps; the reverse cell over them in reverse, as a
  bidirectional layer reads them) and stacked by hand: outputs, final states and the gradients
  of every array of the cells, the input and the initial states (float64 1e-12, float32 1e-5
  relative), with and without biases and `seq_lengths`.
  The gradient also flows through `from_equinox` onto the cells themselves.
- Round trips: Equinox → jaxrnn → Equinox and jaxrnn → Equinox → jaxrnn are bitwise identical
  (every array maps as it is).
- What jaxrnn cannot compute is refused, naming the cell.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOLERANCE, each_value_once, fast_and_slow, relative_error

import jaxrnn

N_X, N_A, B, T = 3, 4, 3, 5
CELLS = {"gru": eqx.nn.GRUCell, "lstm": eqx.nn.LSTMCell}


def make_cells(cell, kinds, dtype, use_bias=True, seed=0):
    """A list of layers, bottom first: a cell ("uni") or a pair of cells ("bi")."""
    keys = iter(jax.random.split(jax.random.key(seed), 2 * len(kinds)))
    cells, width = [], N_X
    for kind in kinds:
        new = lambda width=width: CELLS[cell](width, N_A, use_bias=use_bias, dtype=dtype, key=next(keys))
        cells.append((new(), new()) if kind == "bi" else new())
        width = N_A * (2 if kind == "bi" else 1)
    return cells


def scan_cells(cells, x, a0, lstm):
    """The stack on one sequence's valid steps `x (L, n_x)`, as an Equinox user scans it:
    `(outputs (L, width), final states)`, states in jaxrnn's structure."""
    finals = []
    for layer, state0 in zip(cells, a0):
        bidirectional = isinstance(layer, tuple)
        outputs, states = [], []
        for d, (cell, state) in enumerate(
            zip(layer if bidirectional else (layer,), state0 if bidirectional else (state0,))
        ):

            def step(state, x_t, cell=cell):
                state = cell(x_t, state)
                return state, state[0] if lstm else state

            final, ys = jax.lax.scan(step, tuple(state) if lstm else state, x[::-1] if d else x)
            outputs.append(ys[::-1] if d else ys)
            states.append(jaxrnn.LSTMState(*final) if lstm else final)
        x = jnp.concatenate(outputs, axis=-1)
        finals.append(tuple(states) if bidirectional else states[0])
    return x, finals


def eqx_batch(cells, x, a0, lengths, lstm):
    """Each sequence of `x (B, T, n_x)` scanned over its `lengths[b]` steps; outputs zero-padded."""
    outputs, finals = [], []
    for b, length in enumerate(lengths):
        ys, states = scan_cells(cells, x[b, :length], jax.tree.map(lambda s, b=b: s[b], a0), lstm)
        outputs.append(jnp.pad(ys, ((0, T - length), (0, 0))))
        finals.append(states)
    return jnp.stack(outputs), jax.tree.map(lambda *s: jnp.stack(s), *finals)


def problem(kinds, dtype, lstm, seed=0):
    rng = np.random.default_rng(seed)
    draw = lambda *shape: jnp.asarray(rng.standard_normal(shape), dtype)
    state = lambda: jaxrnn.LSTMState(0.5 * draw(B, N_A), 0.5 * draw(B, N_A)) if lstm else 0.5 * draw(B, N_A)
    a0 = [(state(), state()) if kind == "bi" else state() for kind in kinds]
    width = N_A * (2 if kinds[-1] == "bi" else 1)
    return draw(B, T, N_X), a0, draw(B, T, width)


CASES = [
    # (cell, layers, use_bias, seq_lengths, dtype)
    ("gru", ("uni",), True, None, "float64"),
    ("gru", ("bi", "uni"), True, (5, 2, 1), "float64"),
    ("gru", ("uni", "uni"), False, (5, 3, 1), "float64"),
    ("gru", ("bi",), True, (5, 3, 2), "float32"),
    ("lstm", ("uni",), True, None, "float64"),
    ("lstm", ("uni", "uni", "bi"), True, (5, 2, 1), "float64"),
    ("lstm", ("bi", "uni"), False, None, "float64"),
    ("lstm", ("uni", "bi"), True, (5, 3, 2), "float32"),
]


# The default run: a bidirectional GRU stack with lengths (float64), an LSTM stack without biases (float64) and
# one with a bidirectional top in float32; the rest with `-m ""`.
@pytest.mark.parametrize(("cell", "kinds", "use_bias", "lengths", "dtype"), fast_and_slow(CASES, {1, 6}))
def test_imported_cells_compute_the_same_numbers(device, cell, kinds, use_bias, lengths, dtype):
    if dtype == "float64" and device.platform == "tpu":
        pytest.skip("no float64 on TPU")
    lstm = cell == "lstm"
    with jax.enable_x64(dtype == "float64"):
        dtype = jnp.dtype(dtype)
        cells = make_cells(cell, kinds, dtype, use_bias)
        x, a0, cotangent = problem(kinds, dtype, lstm)
        state_cotangent = jax.tree.map(jnp.cos, a0)
        loss = lambda outputs, finals: (
            jnp.sum(cotangent * outputs)
            + sum(jax.tree.leaves(jax.tree.map(lambda f, w: jnp.sum(f * w), finals, state_cotangent)))
        )

        def eqx_loss(cells, x, a0):
            outputs, finals = eqx_batch(cells, x, a0, lengths or (T,) * B, lstm)
            return loss(outputs, finals), (outputs, finals)

        (_, want), (cell_grads, *want_grads) = jax.jit(jax.value_and_grad(eqx_loss, argnums=(0, 1, 2), has_aux=True))(
            cells, x, a0
        )

        layers, options = jaxrnn.from_equinox(cells)
        assert options == {"cell": cell, "layout": "batch_major"}
        seq_lengths = None if lengths is None else jnp.array(lengths)

        def jaxrnn_loss(layers, x, a0):
            a, _, finals = jaxrnn.rnn_stack(x, a0, layers, seq_lengths=seq_lengths, return_final_state=True, **options)
            return loss(a, finals), (a, finals)

        (_, got), got_grads = jax.jit(jax.value_and_grad(jaxrnn_loss, argnums=(0, 1, 2), has_aux=True))(layers, x, a0)
        # Equinox's gradients in our layout: every array maps as it is (one bias per gate).
        want_params, _ = jaxrnn.from_equinox(cell_grads)
        got_params = got_grads[0]
        if not use_bias:  # the cells have no biases: our dba (and dbhn) have nothing to compare with
            keep = lambda tree: jax.tree.map(lambda p: {k: p[k] for k in ("Wax", "Waa")}, tree, is_leaf=is_dict)
            want_params, got_params = keep(want_params), keep(got_params)
        want_tree = (want, want_params, *want_grads)
        got_tree = (got, got_params, *got_grads[1:])
        # from_equinox is plain array operations: the gradient flows through it, onto the cells themselves.
        through = jax.jit(jax.grad(lambda cells: jaxrnn_loss(jaxrnn.from_equinox(cells)[0], x, a0)[0]))(cells)
        want_tree, got_tree = (*want_tree, cell_grads), (*got_tree, through)
        assert jax.tree.structure(got_tree) == jax.tree.structure(want_tree)
        for (path, w), g in zip(jax.tree_util.tree_flatten_with_path(want_tree)[0], jax.tree.leaves(got_tree)):
            assert g.dtype == dtype and g.shape == w.shape, jax.tree_util.keystr(path)
            assert relative_error(g, w) <= TOLERANCE[dtype.type], (jax.tree_util.keystr(path), relative_error(g, w))


def is_dict(value):
    return isinstance(value, dict)


def assert_same_cells(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize(*each_value_once(cell=["gru", "lstm"], dtype=["float32", "float64", "bfloat16"]))
def test_equinox_jaxrnn_equinox_is_bitwise_identical(cell, dtype):
    with jax.enable_x64(dtype == "float64"):
        cells = make_cells(cell, ("bi", "uni"), jnp.dtype(dtype))
        layers, _ = jaxrnn.from_equinox(cells)
        assert_same_cells(jaxrnn.to_equinox(layers, like=cells), cells)
        assert_same_cells(jaxrnn.to_equinox(layers), cells)  # new cells: the same arrays, and biases
        trained = jax.tree.map(lambda p: p + 1, layers)
        for written in (jaxrnn.to_equinox(trained, like=cells), jaxrnn.to_equinox(trained)):
            for got, want in zip(jax.tree.leaves(jaxrnn.from_equinox(written)[0]), jax.tree.leaves(trained)):
                np.testing.assert_array_equal(got, want)  # jaxrnn → Equinox → jaxrnn
        one = cells[1]
        (params,), _ = jaxrnn.from_equinox(one)
        assert type(jaxrnn.to_equinox(params)) is type(one)  # one dict: one cell
        assert_same_cells(jaxrnn.to_equinox(params, like=one), one)
        assert_same_cells(jaxrnn.to_equinox([params], like=one), one)  # like's structure


def test_arrays_map_as_they_are():
    gru = eqx.nn.GRUCell(N_X, N_A, key=jax.random.key(0))
    (params,), _ = jaxrnn.from_equinox(gru)
    np.testing.assert_array_equal(params["Wax"], gru.weight_ih)
    np.testing.assert_array_equal(params["ba"][:, 0], gru.bias)
    np.testing.assert_array_equal(params["bhn"][:, 0], gru.bias_n)
    lstm = eqx.nn.LSTMCell(N_X, N_A, use_bias=False, key=jax.random.key(0))
    (params,), _ = jaxrnn.from_equinox(lstm)
    assert not jnp.any(params["ba"]) and params["ba"].shape == (4 * N_A, 1)
    assert jaxrnn.to_equinox(params, like=lstm).bias is None
    with pytest.raises(
        ValueError,
        match=r"to_equinox: layers\[0\]\['ba'\]\[4:8\] \(gate f\) is non-zero, but like \(use_bias=False\) has no bias",
    ):
        jaxrnn.to_equinox(params | {"ba": params["ba"].at[5, 0].set(1.0)}, like=lstm)
    gru = eqx.nn.GRUCell(N_X, N_A, use_bias=False, key=jax.random.key(0))
    (params,), _ = jaxrnn.from_equinox(gru)
    with pytest.raises(ValueError, match=r"layers\[0\]\['bhn'\] is non-zero, but like \(use_bias=False\) has no bias"):
        jaxrnn.to_equinox(params | {"bhn": params["bhn"] + 1}, like=gru)


class OwnLSTM(eqx.nn.LSTMCell):
    def __call__(self, input, hidden, *, key=None):
        return super().__call__(2 * input, hidden)


def test_what_jaxrnn_cannot_compute_is_refused():
    gru = eqx.nn.GRUCell(N_X, N_A, key=jax.random.key(0))
    lstm = eqx.nn.LSTMCell(N_A, N_A, key=jax.random.key(1))
    for cells, error, message in [
        (eqx.nn.Linear(2, 2, key=jax.random.key(0)), TypeError, r"from_equinox: cells is Linear; expected an eqx.nn"),
        (
            [OwnLSTM(N_X, N_A, key=jax.random.key(0))],
            TypeError,
            r"cells\[0\] is a subclass of eqx.nn.LSTMCell with its own __call__",
        ),
        ([gru, lstm], ValueError, r"the cells are of different kinds \['gru', 'lstm'\]; rnn_stack runs one cell"),
        ([(gru, gru, gru)], ValueError, r"cells\[0\] must be a cell or a pair \(forward, reverse\) of cells"),
        ([gru, gru], ValueError, r"layers\[1\]\['Wax'\].shape=\(12, 3\) does not fit the output of layers\[0\]"),
        ([], ValueError, r"cells holds no cells"),
    ]:
        with pytest.raises(error, match=message):
            jaxrnn.from_equinox(cells)


def test_bad_targets_say_what_is_wrong():
    cells = make_cells("gru", ("bi", "uni"), jnp.float32)
    layers, _ = jaxrnn.from_equinox(cells)
    vanilla = jaxrnn.init_stack(jax.random.key(0), N_X, N_A)
    with pytest.raises(ValueError, match=r"to_equinox: layers are vanilla RNN layers; Equinox has no vanilla RNN cell"):
        jaxrnn.to_equinox(vanilla)
    with pytest.raises(ValueError, match=r"cell='lstm' contradicts layers \(Waa.shape=\(12, 4\), bhn\)"):
        jaxrnn.to_equinox(layers, cell="lstm")
    with pytest.raises(ValueError, match=r"to_equinox: layers are lstm layers; like holds \['gru'\] cells"):
        jaxrnn.to_equinox(jaxrnn.init_stack(jax.random.key(0), N_X, N_A, cell="lstm"), like=cells[1])
    with pytest.raises(ValueError, match=r"like has 2 layer\(s\) with directions \[2, 1\]; layers has 1"):
        jaxrnn.to_equinox(layers[:1], like=cells)
    wide = jaxrnn.init_stack(jax.random.key(0), N_X, N_A + 1, cell="gru")
    with pytest.raises(
        ValueError, match=r"layers\[0\]\['Wax'\].shape=\(15, 3\) does not fit like.weight_ih.shape=\(12, 3\)"
    ):
        jaxrnn.to_equinox(wide, like=make_cells("gru", ("uni",), jnp.float32)[0])
    headed = jaxrnn.init_stack(jax.random.key(0), N_X, N_A, n_y=2, cell="gru")
    with pytest.raises(ValueError, match=r"layers\[0\] has an output head \(Wya, by\)"):
        jaxrnn.to_equinox(headed)
