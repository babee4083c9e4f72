"""Flax interop: `from_flax` / `to_flax` for `nnx.RNN(nnx.SimpleCell)`, `nnx.Bidirectional`,
stacks, and Linen variables.

- Numbers: a Flax model imported with `from_flax` gives, through `rnn_stack`, Flax's outputs,
  final carries and the gradients of every parameter, the input and the initial carries
  (float64 1e-12, float32 1e-5 relative), for 1–3 layers, both directions, ReLU, time-major,
  and with `seq_lengths` where the two agree: outputs at valid steps, carries of sequences
  with length >= 1.
- Where they differ, pinned: with `seq_lengths` Flax runs its cell over the padding (non-zero
  outputs there) and gives a length-0 sequence the last step's carry; jaxrnn outputs zeros
  and keeps the initial carry.
- Round trips: Flax → jaxrnn → Flax and jaxrnn → Flax → jaxrnn are bitwise identical.
- What jaxrnn cannot compute is refused, naming the module and the setting.
"""

import runpy
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOLERANCE, relative_error

import jaxrnn

nnx = pytest.importorskip("flax.nnx")
linen = pytest.importorskip("flax.linen")

N_X, N_A, B, T = 3, 4, 3, 5
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "migrate_from_flax.py"
ACTIVATIONS = {"tanh": nnx.tanh, "relu": nnx.relu}


def cell(n_in, seed, dtype, nonlinearity="tanh", **options):
    return nnx.SimpleCell(
        n_in,
        N_A,
        activation_fn=ACTIVATIONS[nonlinearity],
        bias_init=nnx.initializers.normal(0.5),  # non-zero biases
        dtype=dtype,
        param_dtype=dtype,
        rngs=nnx.Rngs(seed),
        **options,
    )


def flax_stack(kinds, dtype=jnp.float32, nonlinearity="tanh", time_major=False):
    """An `nnx.Sequential` of `nnx.RNN` ("uni") and `nnx.Bidirectional` ("bi") layers."""
    layers, width = [], N_X
    for l, kind in enumerate(kinds):
        rnns = [nnx.RNN(cell(width, 2 * l + d, dtype, nonlinearity), time_major=time_major) for d in range(2)]
        if kind == "bi":
            layers.append(nnx.Bidirectional(*rnns, time_major=time_major))
        else:
            layers.append(rnns[0])
        width = N_A * (2 if kind == "bi" else 1)
    return nnx.Sequential(*layers)


def run_flax(model, x, carries, seq_lengths):
    """Flax's outputs and final carries, layer by layer (as a Flax user stacks them)."""
    finals = []
    for layer, carry in zip(model.layers, carries):
        carry, x = layer(x, initial_carry=carry, seq_lengths=seq_lengths, return_carry=True)
        finals.append(carry)
    return x, finals


def problem(kinds, dtype, time_major, seed=0):
    """Random `(x, carries, output cotangent)`; numpy draws them (no compile per shape)."""
    rng = np.random.default_rng(seed)
    draw = lambda *shape: jnp.asarray(rng.standard_normal(shape), dtype)
    x = draw(T, B, N_X) if time_major else draw(B, T, N_X)
    carries = [(0.5 * draw(B, N_A), 0.5 * draw(B, N_A)) if kind == "bi" else 0.5 * draw(B, N_A) for kind in kinds]
    width = N_A * (2 if kinds[-1] == "bi" else 1)
    output_cotangent = draw(T, B, width) if time_major else draw(B, T, width)
    return x, carries, output_cotangent


CASES = [
    # (layers, nonlinearity, time_major, seq_lengths, dtype)
    (("uni",), "tanh", False, None, "float64"),
    (("bi", "uni"), "relu", False, (5, 2, 1), "float64"),
    (("bi", "bi", "uni"), "tanh", True, (5, 2, 1), "float64"),
    (("bi", "uni"), "tanh", False, (5, 3, 1), "float32"),
]


@pytest.mark.parametrize(("kinds", "nonlinearity", "time_major", "lengths", "dtype"), CASES)
def test_imported_model_computes_the_same_numbers(device, kinds, nonlinearity, time_major, lengths, dtype):
    if dtype == "float64" and device.platform == "tpu":
        pytest.skip("no float64 on TPU")
    with jax.enable_x64(dtype == "float64"):
        dtype = jnp.dtype(dtype)
        model = flax_stack(kinds, dtype, nonlinearity, time_major)
        x, carries, cotangent = problem(kinds, dtype, time_major)
        seq_lengths = None if lengths is None else jnp.array(lengths)
        valid = (
            jnp.ones((B, T), dtype) if lengths is None else (jnp.arange(T)[None] < seq_lengths[:, None]).astype(dtype)
        )
        valid = (valid.T if time_major else valid)[..., None]  # only valid steps: where Flax and jaxrnn agree
        carry_cotangent = jax.tree.map(lambda c: jnp.cos(c), carries)

        def loss(outputs, finals):
            carry_terms = jax.tree.map(lambda f, w: jnp.sum(f * w), finals, carry_cotangent)
            return jnp.sum(cotangent * valid * outputs) + sum(jax.tree.leaves(carry_terms))

        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def flax_loss(params, x, carries):
            outputs, finals = run_flax(nnx.merge(graphdef, params, rest), x, carries, seq_lengths)
            return loss(outputs, finals), (outputs * valid, finals)

        flax_gradient = jax.jit(jax.value_and_grad(flax_loss, argnums=(0, 1, 2), has_aux=True))
        (_, flax_out), flax_grads = flax_gradient(params, x, carries)

        layers, options = jaxrnn.from_flax(model)
        assert options == {"nonlinearity": nonlinearity, "layout": "time_major" if time_major else "batch_major"}

        def jaxrnn_loss(layers, x, carries):
            a, _, finals = jaxrnn.rnn_stack(
                x, carries, layers, seq_lengths=seq_lengths, return_final_state=True, **options
            )
            return loss(a, finals), (a, finals)

        ours_gradient = jax.jit(jax.value_and_grad(jaxrnn_loss, argnums=(0, 1, 2), has_aux=True))
        (_, ours_out), ours_grads = ours_gradient(layers, x, carries)

        flax_param_grads, _ = jaxrnn.from_flax(nnx.merge(graphdef, flax_grads[0], rest))  # Flax's gradients, our layout
        want = {"outputs": flax_out[0], "carries": flax_out[1], "parameters": flax_param_grads}
        want |= {"dx": flax_grads[1], "dcarries": flax_grads[2]}
        got = {"outputs": ours_out[0], "carries": ours_out[1], "parameters": ours_grads[0]}
        got |= {"dx": ours_grads[1], "dcarries": ours_grads[2]}
        assert jax.tree.structure(got) == jax.tree.structure(want)
        for (path, w), g in zip(jax.tree_util.tree_flatten_with_path(want)[0], jax.tree.leaves(got)):
            assert g.dtype == dtype and g.shape == w.shape, jax.tree_util.keystr(path)
            error = relative_error(g, w)
            assert error <= TOLERANCE[dtype.type], (jax.tree_util.keystr(path), error)


def test_linen_variables_compute_the_same_numbers(x64):
    module = linen.RNN(
        linen.SimpleCell(N_A, bias_init=linen.initializers.normal(0.5), param_dtype=jnp.float64), return_carry=True
    )
    x, (carry,), cotangent = problem(("uni",), jnp.float64, time_major=False)
    variables = module.init(jax.random.PRNGKey(3), x)

    def flax_loss(variables, x, carry):
        final, outputs = module.apply(variables, x, initial_carry=carry)
        return jnp.sum(cotangent * outputs) + jnp.sum(jnp.sin(final)), (outputs, final)

    def jaxrnn_loss(layers, x, carry):
        a, _, (final,) = jaxrnn.rnn_stack(x, [carry], layers, return_final_state=True, **options)
        return jnp.sum(cotangent * a) + jnp.sum(jnp.sin(final)), (a, final)

    layers, options = jaxrnn.from_flax(variables)
    (_, want), want_grads = jax.value_and_grad(flax_loss, argnums=(0, 1, 2), has_aux=True)(variables, x, carry)
    (_, got), got_grads = jax.value_and_grad(jaxrnn_loss, argnums=(0, 1, 2), has_aux=True)(layers, x, carry)
    want_grads = (jaxrnn.from_flax(want_grads[0])[0], *want_grads[1:])
    for g, w in zip(jax.tree.leaves((got, got_grads)), jax.tree.leaves((want, want_grads))):
        assert relative_error(g, w) <= TOLERANCE[jnp.float64]


def test_where_flax_and_jaxrnn_differ_with_seq_lengths(x64):
    """Flax keeps running the cell over padding and gives a length-0 sequence the last step's
    carry; jaxrnn freezes the state (zeros out) and keeps the initial carry. Valid steps agree."""
    model = nnx.RNN(cell(N_X, 0, jnp.float64), return_carry=True)
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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_flax_jaxrnn_flax_is_bitwise_identical(dtype):
    with jax.enable_x64(dtype == "float64"):
        model = flax_stack(("bi", "uni"), jnp.dtype(dtype))
        snapshot = nnx.clone(model)
        back = jaxrnn.to_flax(jaxrnn.from_flax(model)[0], like=model)
        assert type(back) is nnx.Sequential and back is not model
        assert_same_params(back, snapshot)
        trained = jax.tree.map(lambda p: p + 1, jaxrnn.from_flax(model)[0])
        written = jaxrnn.to_flax(trained, like=model)
        assert_same_params(model, snapshot)  # `like` is not changed
        for got, want in zip(jax.tree.leaves(jaxrnn.from_flax(written)[0]), jax.tree.leaves(trained)):
            np.testing.assert_array_equal(got, want)  # jaxrnn → Flax → jaxrnn


def test_linen_round_trip_is_bitwise_identical():
    model = linen.Sequential([linen.Bidirectional(linen.RNN(linen.SimpleCell(N_A)), linen.RNN(linen.SimpleCell(N_A)))])
    variables = model.init(jax.random.PRNGKey(0), jnp.ones((B, T, N_X)))
    variables = jax.tree.map(lambda p: p + jax.random.normal(jax.random.PRNGKey(1), p.shape), variables)
    layers, _ = jaxrnn.from_flax(variables)
    back = jaxrnn.to_flax(layers, like=variables)
    assert jax.tree.structure(back) == jax.tree.structure(variables)
    for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(got, want)


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


def refusals():
    rnn = nnx.RNN(cell(N_X, 0, jnp.float32))
    return [
        (nnx.RNN(nnx.GRUCell(N_X, N_A, rngs=nnx.Rngs(0))), TypeError, r"module.cell is an nnx.GRUCell; .*SimpleCell"),
        (nnx.RNN(cell(N_X, 0, jnp.float32, residual=True)), ValueError, r"module.cell has residual=True"),
        (
            nnx.RNN(nnx.SimpleCell(N_X, N_A, activation_fn=nnx.sigmoid, rngs=nnx.Rngs(0))),
            ValueError,
            r"module.cell.activation_fn is sigmoid; jaxrnn computes jax.numpy.tanh and jax.nn.relu",
        ),
        (
            nnx.RNN(cell(N_X, 0, jnp.float32), reverse=True),
            ValueError,
            r"module is a reverse RNN outside nnx.Bidirectional; .*jaxrnn.rnn\(..., reverse=True\)",
        ),
        (
            nnx.Bidirectional(rnn, nnx.RNN(cell(N_X, 1, jnp.float32)), merge_fn=lambda a, b: a + b),
            ValueError,
            r"module.merge_fn is <lambda>; rnn_stack concatenates the two directions",
        ),
        (
            [nnx.RNN(cell(N_X, 0, jnp.float32)), nnx.RNN(cell(N_A, 1, jnp.float32, "relu"))],
            ValueError,
            r"the layers have different nonlinearity settings \['relu', 'tanh'\]",
        ),
        (
            linen.RNN(linen.LSTMCell(N_A)).init(jax.random.PRNGKey(0), jnp.ones((B, T, N_X))),
            ValueError,
            r"module\['params'\]\['cell'\] has the keys \['hf', .*; expected a SimpleCell's 'i' and 'h'",
        ),
        (nnx.Linear(2, 2, rngs=nnx.Rngs(0)), TypeError, r"module is a Linear; expected an nnx.RNN\(nnx.SimpleCell\)"),
    ]


def test_what_jaxrnn_cannot_compute_is_refused():
    for source, error, message in refusals():
        with pytest.raises(error, match=message):
            jaxrnn.from_flax(source)
    with pytest.raises(ValueError, match=r"time_major=True contradicts the model's time_major=False"):
        jaxrnn.from_flax(nnx.RNN(cell(N_X, 0, jnp.float32)), time_major=True)


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
    headed = jaxrnn.init_stack(jax.random.PRNGKey(0), N_X, N_A, n_y=2)
    with pytest.raises(ValueError, match=r"layers\[0\] has an output head \(Wya, by\)"):
        jaxrnn.to_flax(headed, like=nnx.RNN(cell(N_X, 0, jnp.float32)))


def test_migration_example_runs():
    # optax's Adam raises its int32 step count to a float power, which strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        errors = runpy.run_path(str(EXAMPLE))["main"]()
    assert max(errors.values()) <= 1e-5, errors
