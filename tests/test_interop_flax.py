"""Flax interop: `from_flax` / `to_flax` for `SimpleCell`, `GRUCell`, `LSTMCell` and
`OptimizedLSTMCell` in `nnx.RNN`, `nnx.Bidirectional`, stacks, and Linen variables.

- Numbers: a Flax model imported with `from_flax` gives, through `rnn_stack`, Flax's outputs,
  final carries and the gradients of every parameter, the input and the initial carries
  (float64 1e-12, float32 1e-5 relative), for the four cells, 1–3 layers, both directions,
  ReLU, time-major, and with `seq_lengths` where the two agree: outputs at valid steps,
  carries of sequences with length >= 1. An LSTM's Flax carry `(c, h)` is our `LSTMState(h, c)`.
- Where they differ, pinned: with `seq_lengths` Flax runs its cell over the padding (non-zero
  outputs there) and gives a length-0 sequence the last step's carry; jaxrnn outputs zeros
  and keeps the initial carry.
- Round trips: Flax → jaxrnn → Flax and jaxrnn → Flax → jaxrnn are bitwise identical.
- A Bidirectional whose directions share one cell reads as two equal directions (Linen records
  the cell once); Linen variables do not record `merge_fn`, so it must be stated.
- What jaxrnn cannot compute is refused, naming the module and the setting.
"""

import runpy
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOLERANCE, each_value_once, fast_and_slow, relative_error

import jaxrnn

nnx = pytest.importorskip("flax.nnx")
linen = pytest.importorskip("flax.linen")

N_X, N_A, B, T = 3, 4, 3, 5
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "migrate_from_flax.py"
ACTIVATIONS = {"tanh": nnx.tanh, "relu": nnx.relu}
NNX_CELLS = {"simple": nnx.SimpleCell, "gru": nnx.GRUCell, "lstm": nnx.LSTMCell, "optimized": nnx.OptimizedLSTMCell}
LINEN_CELLS = {
    "simple": linen.SimpleCell,
    "gru": linen.GRUCell,
    "lstm": linen.LSTMCell,
    "optimized": linen.OptimizedLSTMCell,
}
OURS = {"simple": "vanilla", "gru": "gru", "lstm": "lstm", "optimized": "lstm"}


def cell(kind, n_in, seed, dtype, nonlinearity="tanh", **options):
    if kind == "simple":
        options["activation_fn"] = ACTIVATIONS[nonlinearity]
    return NNX_CELLS[kind](
        n_in,
        N_A,
        bias_init=nnx.initializers.normal(0.5),  # non-zero biases
        dtype=dtype,
        param_dtype=dtype,
        rngs=nnx.Rngs(seed),
        **options,
    )


def flax_stack(kinds, dtype=jnp.float32, nonlinearity="tanh", time_major=False, cell_kind="simple"):
    """An `nnx.Sequential` of `nnx.RNN` ("uni") and `nnx.Bidirectional` ("bi") layers."""
    layers, width = [], N_X
    for l, kind in enumerate(kinds):
        rnns = [
            nnx.RNN(cell(cell_kind, width, 2 * l + d, dtype, nonlinearity), time_major=time_major) for d in range(2)
        ]
        layers.append(nnx.Bidirectional(*rnns, time_major=time_major) if kind == "bi" else rnns[0])
        width = N_A * (2 if kind == "bi" else 1)
    return nnx.Sequential(*layers)


def run_flax(model, x, carries, seq_lengths):
    """Flax's outputs and final carries, layer by layer (as a Flax user stacks them)."""
    finals = []
    for layer, carry in zip(model.layers, carries):
        carry, x = layer(x, initial_carry=carry, seq_lengths=seq_lengths, return_carry=True)
        finals.append(carry)
    return x, finals


def swap(carries, lstm):
    """Flax's LSTM carries `(c, h)` as our `LSTMState(h, c)` and back (per layer, a state or a
    pair of them); other carries as they are."""
    if not lstm:
        return carries
    one = lambda state: jaxrnn.LSTMState(state[1], state[0]) if isinstance(state[0], jax.Array) else None
    return [one(layer) or tuple(one(d) for d in layer) for layer in carries]


def to_flax_carries(carries, lstm):
    if not lstm:
        return carries
    one = lambda state: (state.c, state.h) if isinstance(state, jaxrnn.LSTMState) else None
    return [one(layer) or tuple(one(d) for d in layer) for layer in carries]


def problem(kinds, dtype, time_major, lstm=False, seed=0):
    """Random `(x, carries in our structure, output cotangent)`; numpy draws them."""
    rng = np.random.default_rng(seed)
    draw = lambda *shape: jnp.asarray(rng.standard_normal(shape), dtype)
    state = lambda: jaxrnn.LSTMState(0.5 * draw(B, N_A), 0.5 * draw(B, N_A)) if lstm else 0.5 * draw(B, N_A)
    x = draw(T, B, N_X) if time_major else draw(B, T, N_X)
    carries = [(state(), state()) if kind == "bi" else state() for kind in kinds]
    width = N_A * (2 if kinds[-1] == "bi" else 1)
    output_cotangent = draw(T, B, width) if time_major else draw(B, T, width)
    return x, carries, output_cotangent


def assert_trees_within(got, want, dtype):
    """Same structure, dtype and shapes, and every leaf within the dtype's tolerance."""
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for (path, w), g in zip(jax.tree_util.tree_flatten_with_path(want)[0], jax.tree.leaves(got)):
        assert g.dtype == dtype and g.shape == w.shape, jax.tree_util.keystr(path)
        error = relative_error(g, w)
        assert error <= TOLERANCE[dtype.type], (jax.tree_util.keystr(path), error)


CASES = [
    # (cell, layers, nonlinearity, time_major, seq_lengths, dtype)
    ("simple", ("uni",), "tanh", False, None, "float64"),
    ("simple", ("bi", "uni"), "relu", False, (5, 2, 1), "float64"),
    ("simple", ("bi", "bi", "uni"), "tanh", True, (5, 2, 1), "float64"),
    ("simple", ("bi", "uni"), "tanh", False, (5, 3, 1), "float32"),
    ("gru", ("uni",), "tanh", False, None, "float64"),
    ("gru", ("bi", "bi", "uni"), "tanh", True, (5, 2, 1), "float64"),
    ("gru", ("bi", "uni"), "tanh", False, (5, 3, 1), "float32"),
    ("lstm", ("bi", "uni"), "tanh", False, (5, 2, 1), "float64"),
    ("lstm", ("uni", "bi"), "tanh", True, None, "float32"),
    ("optimized", ("uni", "uni", "bi"), "tanh", False, (5, 2, 1), "float64"),
    ("optimized", ("bi", "uni"), "tanh", True, (5, 3, 1), "float32"),
]


# The default run: each cell once (stacked, bidirectional, masked, time-major, float32 and ReLU among them).
@pytest.mark.parametrize(
    ("cell_kind", "kinds", "nonlinearity", "time_major", "lengths", "dtype"), fast_and_slow(CASES, {1, 5, 8, 9})
)
def test_imported_model_computes_the_same_numbers(device, cell_kind, kinds, nonlinearity, time_major, lengths, dtype):
    if dtype == "float64" and device.platform == "tpu":
        pytest.skip("no float64 on TPU")
    lstm = OURS[cell_kind] == "lstm"
    with jax.enable_x64(dtype == "float64"):
        dtype = jnp.dtype(dtype)
        model = flax_stack(kinds, dtype, nonlinearity, time_major, cell_kind)
        x, carries, cotangent = problem(kinds, dtype, time_major, lstm)
        seq_lengths = None if lengths is None else jnp.array(lengths)
        valid = (
            jnp.ones((B, T), dtype) if lengths is None else (jnp.arange(T)[None] < seq_lengths[:, None]).astype(dtype)
        )
        valid = (valid.T if time_major else valid)[..., None]  # only valid steps: where Flax and jaxrnn agree
        carry_cotangent = jax.tree.map(lambda c: jnp.cos(c), carries)

        def loss(outputs, finals):  # finals in our structure
            carry_terms = jax.tree.map(lambda f, w: jnp.sum(f * w), finals, carry_cotangent)
            return jnp.sum(cotangent * valid * outputs) + sum(jax.tree.leaves(carry_terms))

        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def flax_loss(params, x, flax_carries):
            outputs, finals = run_flax(nnx.merge(graphdef, params, rest), x, flax_carries, seq_lengths)
            return loss(outputs, swap(finals, lstm)), (outputs * valid, swap(finals, lstm))

        flax_gradient = jax.jit(jax.value_and_grad(flax_loss, argnums=(0, 1, 2), has_aux=True))
        (_, flax_out), flax_grads = flax_gradient(params, x, to_flax_carries(carries, lstm))

        layers, options = jaxrnn.from_flax(model)
        expected = {"cell": OURS[cell_kind]} | ({"nonlinearity": nonlinearity} if cell_kind == "simple" else {})
        assert options == expected | {"layout": "time_major" if time_major else "batch_major"}

        def jaxrnn_loss(layers, x, carries):
            a, _, finals = jaxrnn.rnn_stack(
                x, carries, layers, seq_lengths=seq_lengths, return_final_state=True, **options
            )
            return loss(a, finals), (a * valid, finals)

        ours_gradient = jax.jit(jax.value_and_grad(jaxrnn_loss, argnums=(0, 1, 2), has_aux=True))
        (_, ours_out), ours_grads = ours_gradient(layers, x, carries)

        # Flax's gradients in our layout: each Flax gate has one bias, so from_flax maps them as it maps weights.
        flax_param_grads, _ = jaxrnn.from_flax(nnx.merge(graphdef, flax_grads[0], rest))
        ours_param_grads = ours_grads[0]
        if cell_kind == "gru":  # nnx.GRUCell has no b_hn: bhn reads as 0, and has no Flax gradient to compare
            assert not any(jnp.any(p["bhn"]) for p in jax.tree.leaves(flax_param_grads, is_leaf=is_dict))
            drop = lambda tree: jax.tree.map(
                lambda p: {k: v for k, v in p.items() if k != "bhn"}, tree, is_leaf=is_dict
            )
            flax_param_grads, ours_param_grads = drop(flax_param_grads), drop(ours_param_grads)
        want = {"outputs": flax_out[0], "carries": flax_out[1], "parameters": flax_param_grads}
        want |= {"dx": flax_grads[1], "dcarries": swap(flax_grads[2], lstm)}
        got = {"outputs": ours_out[0], "carries": ours_out[1], "parameters": ours_param_grads}
        got |= {"dx": ours_grads[1], "dcarries": ours_grads[2]}
        assert_trees_within(got, want, dtype)


def is_dict(value):
    return isinstance(value, dict)


@pytest.mark.parametrize(
    *each_value_once(cell_kind=["simple", "gru", "lstm", "optimized"], bidirectional=[False, True])
)
def test_linen_variables_compute_the_same_numbers(x64, cell_kind, bidirectional):
    lstm = OURS[cell_kind] == "lstm"
    make = lambda: linen.RNN(
        LINEN_CELLS[cell_kind](
            N_A, bias_init=linen.initializers.normal(0.5), param_dtype=jnp.float64, dtype=jnp.float64
        ),
        return_carry=True,
    )
    module = linen.Bidirectional(make(), make(), return_carry=True) if bidirectional else make()
    kinds = ("bi",) if bidirectional else ("uni",)
    x, (carry,), cotangent = problem(kinds, jnp.float64, time_major=False, lstm=lstm)
    variables = module.init(jax.random.PRNGKey(3), x)
    carry_cotangent = jax.tree.map(jnp.sin, carry)

    def flax_loss(variables, x, flax_carry):
        final, outputs = module.apply(variables, x, initial_carry=flax_carry)
        final = swap([final], lstm)[0]
        terms = jax.tree.map(lambda f, w: jnp.sum(f * w), final, carry_cotangent)
        return jnp.sum(cotangent * outputs) + sum(jax.tree.leaves(terms)), (outputs, final)

    def jaxrnn_loss(layers, x, carry):
        a, _, (final,) = jaxrnn.rnn_stack(x, [carry], layers, return_final_state=True, **options)
        terms = jax.tree.map(lambda f, w: jnp.sum(f * w), final, carry_cotangent)
        return jnp.sum(cotangent * a) + sum(jax.tree.leaves(terms)), (a, final)

    merge_fn = "concatenate" if bidirectional else None  # Linen variables do not record it
    layers, options = jaxrnn.from_flax(variables, merge_fn=merge_fn)
    assert options["cell"] == OURS[cell_kind]
    flax_carry = to_flax_carries([carry], lstm)[0]
    (_, want), want_grads = jax.value_and_grad(flax_loss, argnums=(0, 1, 2), has_aux=True)(variables, x, flax_carry)
    (_, got), got_grads = jax.value_and_grad(jaxrnn_loss, argnums=(0, 1, 2), has_aux=True)(layers, x, carry)
    want_grads = (jaxrnn.from_flax(want_grads[0], merge_fn=merge_fn)[0], want_grads[1], swap([want_grads[2]], lstm)[0])
    assert_trees_within((got, got_grads), (want, want_grads), jnp.dtype(jnp.float64))


def test_where_flax_and_jaxrnn_differ_with_seq_lengths(x64):
    """Flax keeps running the cell over padding and gives a length-0 sequence the last step's
    carry; jaxrnn freezes the state (zeros out) and keeps the initial carry. Valid steps agree."""
    model = nnx.RNN(cell("simple", N_X, 0, jnp.float64), return_carry=True)
    x, (carry,), _ = problem(("uni",), jnp.float64, time_major=False)
    lengths = jnp.array([5, 2, 0])
    flax_carry, flax_out = model(x, initial_carry=carry, seq_lengths=lengths)
    layers, options = jaxrnn.from_flax(model)
    a, _, (final,) = jaxrnn.rnn_stack(x, [carry], layers, seq_lengths=lengths, return_final_state=True, **options)
    np.testing.assert_allclose(a[0], flax_out[0], rtol=1e-12)
    np.testing.assert_allclose(a[1, :2], flax_out[1, :2], rtol=1e-12)
    np.testing.assert_allclose(final[:2], flax_carry[:2], rtol=1e-12)
    assert not jnp.any(a[1, 2:]) and jnp.all(flax_out[1, 2:] != 0)  # padding: zeros here, the cell run on in Flax
    np.testing.assert_array_equal(final[2], carry[2])  # length 0: the initial carry here ...
    np.testing.assert_array_equal(flax_carry[2], flax_out[2, -1])  # ... the last step's in Flax


def assert_same_params(got, want):
    got, want = nnx.state(got, nnx.Param), nnx.state(want, nnx.Param)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize(
    *each_value_once(cell_kind=["simple", "gru", "lstm", "optimized"], dtype=["float32", "float64"])
)
def test_flax_jaxrnn_flax_is_bitwise_identical(cell_kind, dtype):
    with jax.enable_x64(dtype == "float64"):
        model = flax_stack(("bi", "uni"), jnp.dtype(dtype), cell_kind=cell_kind)
        snapshot = nnx.clone(model)
        back = jaxrnn.to_flax(jaxrnn.from_flax(model)[0], like=model)
        assert type(back) is nnx.Sequential and back is not model
        assert_same_params(back, snapshot)
        trained = jax.tree.map(lambda p: p + 1, jaxrnn.from_flax(model)[0])
        if cell_kind == "gru":  # nnx.GRUCell has no b_hn to hold a trained bhn
            trained = jax.tree.map(lambda p: p | {"bhn": jnp.zeros_like(p["bhn"])}, trained, is_leaf=is_dict)
        written = jaxrnn.to_flax(trained, like=model)
        assert_same_params(model, snapshot)  # `like` is not changed
        for got, want in zip(jax.tree.leaves(jaxrnn.from_flax(written)[0]), jax.tree.leaves(trained)):
            np.testing.assert_array_equal(got, want)  # jaxrnn → Flax → jaxrnn


@pytest.mark.parametrize(
    "cell_kind",
    ["simple", pytest.param("gru", marks=pytest.mark.slow), pytest.param("lstm", marks=pytest.mark.slow), "optimized"],
)
def test_linen_round_trip_is_bitwise_identical(cell_kind):
    make = lambda: linen.RNN(LINEN_CELLS[cell_kind](N_A))
    model = linen.Sequential([linen.Bidirectional(make(), make()), make()])
    variables = model.init(jax.random.PRNGKey(0), jnp.ones((B, T, N_X)))
    variables = jax.tree.map(lambda p: p + jax.random.normal(jax.random.PRNGKey(1), p.shape), variables)
    layers, options = jaxrnn.from_flax(variables, merge_fn="concatenate")
    assert options["cell"] == OURS[cell_kind]
    back = jaxrnn.to_flax(layers, like=variables)
    assert jax.tree.structure(back) == jax.tree.structure(variables)
    for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(got, want)
    trained = jax.tree.map(lambda p: p * 1.5, layers)  # every bias moves, the GRU's bhn (Linen's hn.bias) too
    written = jaxrnn.to_flax(trained, like=variables)
    for got, want in zip(
        jax.tree.leaves(jaxrnn.from_flax(written, merge_fn="concatenate")[0]), jax.tree.leaves(trained)
    ):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("api", ["linen", pytest.param("nnx", marks=pytest.mark.slow)])
def test_a_bidirectional_layer_may_share_one_cell(x64, api):
    """Both directions run one cell: two equal directions here, whose gradients add up to the cell's."""
    x, ((carry, _),), _ = problem(("bi",), jnp.float64, time_major=False, lstm=True)
    flax_carry = to_flax_carries([(carry, carry)], True)[0]
    if api == "linen":
        shared = linen.LSTMCell(N_A, bias_init=linen.initializers.normal(0.5), param_dtype=jnp.float64)
        module = linen.Bidirectional(linen.RNN(shared), linen.RNN(shared))
        variables = module.init(jax.random.PRNGKey(0), x)
        assert set(variables["params"]) == {"forward_rnn"}  # Linen records the shared cell once
        flax_run = lambda variables, x: module.apply(variables, x, initial_carry=flax_carry)
    else:
        module = nnx.Bidirectional(*[nnx.RNN(cell("lstm", N_X, 0, jnp.float64))] * 2)
        graphdef, variables, rest = nnx.split(module, nnx.Param, ...)
        flax_run = lambda variables, x: nnx.merge(graphdef, variables, rest)(x, initial_carry=flax_carry)
    layers, options = jaxrnn.from_flax(variables if api == "linen" else module, merge_fn="concatenate")
    for forward, backward in zip(jax.tree.leaves(layers[0][0]), jax.tree.leaves(layers[0][1])):
        np.testing.assert_array_equal(forward, backward)
    loss = lambda outputs: jnp.sum(jnp.cos(outputs))
    want, want_grads = jax.value_and_grad(lambda v, x: loss(flax_run(v, x)), argnums=(0, 1))(variables, x)
    ours = lambda layers, x: loss(jaxrnn.rnn_stack(x, [(carry, carry)], layers, **options)[0])
    got, got_grads = jax.value_and_grad(ours, argnums=(0, 1))(layers, x)
    flax_cell_grads = jaxrnn.from_flax(
        want_grads[0] if api == "linen" else nnx.merge(graphdef, want_grads[0], rest), merge_fn="concatenate"
    )[0][0][0]
    summed = jax.tree.map(jnp.add, *got_grads[0][0])  # one cell: its gradient is both directions'
    assert_trees_within((got, summed, got_grads[1]), (want, flax_cell_grads, want_grads[1]), jnp.dtype(jnp.float64))
    like = variables if api == "linen" else module
    with pytest.raises(
        ValueError, match=r"is one cell shared by both directions .* layers\[0\]\[0\] and layers\[0\]\[1\] differ"
    ):
        jaxrnn.to_flax([(layers[0][0], jax.tree.map(lambda p: p + 1, layers[0][1]))], like=like)


def test_linen_bidirectional_needs_merge_fn():
    variables = linen.Sequential(
        [
            linen.RNN(linen.GRUCell(N_A)),
            linen.Bidirectional(linen.RNN(linen.GRUCell(N_A)), linen.RNN(linen.GRUCell(N_A))),
        ]
    ).init(jax.random.PRNGKey(0), jnp.ones((B, T, N_X)))
    with pytest.raises(
        ValueError,
        match=r"from_flax: module\['params'\]\['layers_1'\] is a Linen nn.Bidirectional, whose merge_fn the "
        r"variables do not record; pass merge_fn=\"concatenate\"",
    ):
        jaxrnn.from_flax(variables)
    with pytest.raises(ValueError, match=r"from_flax: merge_fn=<lambda>; rnn_stack concatenates the two directions"):
        jaxrnn.from_flax(variables, merge_fn=lambda a, b: a + b)
    from flax.linen.recurrent import _concatenate  # Flax's default itself is understood

    by_name, by_function = (
        jaxrnn.from_flax(variables, merge_fn="concatenate"),
        jaxrnn.from_flax(variables, merge_fn=_concatenate),
    )
    for got, want in zip(jax.tree.leaves(by_function), jax.tree.leaves(by_name), strict=True):
        np.testing.assert_array_equal(got, want)


def test_gru_biases_map_gate_by_gate():
    """Linen's GRUCell: `ba = [b_ir; b_iz; b_in]`, `bhn = b_hn`; NNX's has no `b_hn`."""
    variables = linen.RNN(linen.GRUCell(N_A, bias_init=linen.initializers.normal(1.0))).init(
        jax.random.PRNGKey(0), jnp.ones((B, T, N_X))
    )
    params = variables["params"]["cell"]
    (layer,), _ = jaxrnn.from_flax(variables)
    want = jnp.concatenate([params[k]["bias"] for k in ("ir", "iz", "in")])
    np.testing.assert_array_equal(layer["ba"][:, 0], want)
    np.testing.assert_array_equal(layer["bhn"][:, 0], params["hn"]["bias"])
    np.testing.assert_array_equal(layer["Waa"][2 * N_A :], params["hn"]["kernel"].T)
    model = nnx.RNN(cell("gru", N_X, 0, jnp.float32))
    (layer,), _ = jaxrnn.from_flax(model)
    assert not jnp.any(layer["bhn"])
    np.testing.assert_array_equal(layer["ba"][:, 0], model.cell.dense_i.bias[...])
    layer["bhn"] = layer["bhn"].at[0, 0].set(1.0)
    with pytest.raises(
        ValueError,
        match=r"to_flax: layers\[0\]\['bhn'\] is non-zero, but like's like.cell \(nnx.GRUCell\) has no bias",
    ):
        jaxrnn.to_flax([layer], like=model)


def test_a_cell_with_two_biases_keeps_the_recurrent_one():
    rng = np.random.default_rng(0)
    params = {
        "i": {"kernel": rng.standard_normal((N_X, N_A)), "bias": rng.standard_normal(N_A)},
        "h": {"kernel": rng.standard_normal((N_A, N_A)), "bias": rng.standard_normal(N_A)},
    }
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
    layers, _ = jaxrnn.from_flax({"params": params})
    np.testing.assert_array_equal(layers[0]["ba"][:, 0], params["i"]["bias"] + params["h"]["bias"])
    back = jaxrnn.to_flax(layers, like={"params": params})["params"]
    for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        np.testing.assert_array_equal(got, want)


class OwnGRU(nnx.GRUCell):
    def __call__(self, carry, inputs):
        return super().__call__(carry, 2 * inputs)


def refusals():
    f32 = jnp.float32
    rnn = nnx.RNN(cell("simple", N_X, 0, f32))
    gru = lambda **options: nnx.RNN(nnx.GRUCell(N_X, N_A, rngs=nnx.Rngs(0), **options))
    linen_variables = lambda c: linen.RNN(c).init(jax.random.PRNGKey(0), jnp.ones((B, T, N_X)))
    return [
        (nnx.RNN(cell("simple", N_X, 0, f32, residual=True)), ValueError, r"module.cell has residual=True"),
        (
            nnx.RNN(nnx.SimpleCell(N_X, N_A, activation_fn=nnx.sigmoid, rngs=nnx.Rngs(0))),
            ValueError,
            r"module.cell.activation_fn is sigmoid; jaxrnn computes jax.numpy.tanh and jax.nn.relu",
        ),
        (
            gru(gate_fn=nnx.hard_sigmoid),
            ValueError,
            r"module.cell.gate_fn is hard_sigmoid; jaxrnn's gru cell computes Flax's default jax.nn.sigmoid",
        ),
        (
            nnx.RNN(nnx.LSTMCell(N_X, N_A, activation_fn=nnx.relu, rngs=nnx.Rngs(0))),
            ValueError,
            r"module.cell.activation_fn is relu; jaxrnn's lstm cell computes Flax's default jax.numpy.tanh",
        ),
        (
            nnx.RNN(OwnGRU(N_X, N_A, rngs=nnx.Rngs(0))),
            TypeError,
            r"module.cell is a subclass of nnx.GRUCell with its own __call__; jaxrnn computes Flax's",
        ),
        (
            nnx.RNN(cell("simple", N_X, 0, f32), reverse=True),
            ValueError,
            r"module is a reverse RNN outside nnx.Bidirectional; .*jaxrnn.rnn\(..., reverse=True\)",
        ),
        (
            nnx.Bidirectional(rnn, nnx.RNN(cell("simple", N_X, 1, f32)), merge_fn=lambda a, b: a + b),
            ValueError,
            r"module.merge_fn is <lambda>; rnn_stack concatenates the two directions",
        ),
        (
            [nnx.RNN(cell("simple", N_X, 0, f32)), nnx.RNN(cell("simple", N_A, 1, f32, "relu"))],
            ValueError,
            r"the layers have different nonlinearity settings \['relu', 'tanh'\]",
        ),
        (
            [nnx.RNN(cell("gru", N_X, 0, f32)), nnx.RNN(cell("lstm", N_A, 1, f32))],
            ValueError,
            r"the layers have different cell settings \['gru', 'lstm'\]; rnn_stack takes one",
        ),
        (
            linen_variables(linen.MGUCell(N_A)),
            ValueError,
            r"module\['params'\]\['cell'\] has the keys \['hf', 'hn', 'if', 'in'\]; expected the parameters of a "
            r"Flax cell jaxrnn computes \(SimpleCell: \['h', 'i'\]; GRUCell: ",
        ),
        (nnx.Linear(2, 2, rngs=nnx.Rngs(0)), TypeError, r"module is a Linear; expected an nnx.RNN of a SimpleCell"),
    ]


def test_what_jaxrnn_cannot_compute_is_refused():
    for source, error, message in refusals():
        with pytest.raises(error, match=message):
            jaxrnn.from_flax(source)
    with pytest.raises(ValueError, match=r"time_major=True contradicts the model's time_major=False"):
        jaxrnn.from_flax(nnx.RNN(cell("simple", N_X, 0, jnp.float32)), time_major=True)
    with pytest.raises(ValueError, match=r"from_flax: nonlinearity='relu' applies to the vanilla cell; a lstm cell"):
        jaxrnn.from_flax(nnx.RNN(cell("optimized", N_X, 0, jnp.float32)), nonlinearity="relu")


def test_bad_targets_say_what_is_wrong():
    model = flax_stack(("bi", "uni"))
    layers, _ = jaxrnn.from_flax(model)
    with pytest.raises(ValueError, match=r"to_flax: like has 2 layer\(s\) with directions \[2, 1\]; layers has 1"):
        jaxrnn.to_flax(layers[:1], like=model)
    wide = jaxrnn.init_stack(jax.random.PRNGKey(0), N_X, N_A + 1, num_layers=2, bidirectional=True)
    wide[1] = wide[1][0]
    with pytest.raises(
        ValueError,
        match=r"layers\[0\]\[0\]\['Wax'\].shape=\(5, 3\) does not fit like's "
        r"like.layers\[0\].forward_rnn.cell.dense_i.kernel.shape=\(3, 4\); expected \(4, 3\)",
    ):
        jaxrnn.to_flax(wide, like=model)
    lstm = nnx.RNN(cell("lstm", N_X, 0, jnp.float32))
    wide_lstm = jaxrnn.init_stack(jax.random.PRNGKey(0), N_X, N_A + 1, cell="lstm")
    with pytest.raises(
        ValueError,
        match=r"layers\[0\]\['Wax'\].shape=\(20, 3\) does not fit like's like.cell.ii.kernel.shape=\(3, 4\) "
        r"\(one of 4 per-gate kernels\); expected \(16, 3\)",
    ):
        jaxrnn.to_flax(wide_lstm, like=lstm)
    with pytest.raises(ValueError, match=r"to_flax: layers are vanilla layers; like holds nnx.LSTMCells"):
        jaxrnn.to_flax(layers[1:], like=lstm)
    headed = jaxrnn.init_stack(jax.random.PRNGKey(0), N_X, N_A, n_y=2)
    with pytest.raises(ValueError, match=r"layers\[0\] has an output head \(Wya, by\)"):
        jaxrnn.to_flax(headed, like=nnx.RNN(cell("simple", N_X, 0, jnp.float32)))


@pytest.mark.slow  # trains a model end to end
def test_migration_example_runs():
    # optax's Adam raises its int32 step count to a float power, which strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        errors = runpy.run_path(str(EXAMPLE))["main"]()
    assert max(errors.values()) <= 1e-5, errors
