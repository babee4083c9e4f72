"""Bad input raises at trace time (eagerly, under jit and under vmap) with a message that
names the function, the argument, what was expected and what was received."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_problem, seed

import jaxrnn

x, a0, params = random_problem(jax.random.PRNGKey(0), n_x=3, n_a=5, n_y=2, m=10, T_x=7)


def with_param(name, value):
    return dict(params, **{name: value})


SEQUENCE_CASES = [
    # (x, a0, parameters, error type, message pattern)
    (
        x,
        a0,
        with_param("Wax", jnp.zeros((5, 4))),
        ValueError,
        r"parameters['Wax'].shape=(5, 4) does not fit x.shape=(3, 10, 7); expected (n_a, n_x) = (5, 3)",
    ),
    (
        x,
        a0,
        with_param("Waa", jnp.zeros((5, 4))),
        ValueError,
        r"parameters['Waa'].shape=(5, 4) is not (n_a, n_a) for a vanilla layer: expected (4, 4)",
    ),
    (x, a0, with_param("Wya", jnp.zeros((2, 4))), ValueError, r"parameters['Wya'].shape=(2, 4) does not fit n_a=5"),
    (x, a0, with_param("ba", jnp.zeros((5,))), ValueError, r"parameters['ba'].shape=(5,) has rank 1; expected rank 2"),
    (x, a0, with_param("by", jnp.zeros((3, 1))), ValueError, r"parameters['by'].shape=(3, 1) does not fit n_y=2"),
    (x, jnp.zeros((5, 9)), params, ValueError, r"a0.shape=(5, 9) does not fit n_a=5 from parameters['Waa'] and m=10"),
    (x, jnp.zeros((4, 10)), params, ValueError, r"a0.shape=(4, 10) does not fit"),
    (
        x,
        jnp.zeros((5, 10, 1)),
        params,
        ValueError,
        r"a0.shape=(5, 10, 1) has rank 3, as PyTorch's stacked h_0 (num_layers · directions, B, hidden_size); "
        r"expected one layer's (n_a, m): convert PyTorch's with jaxrnn.from_torch_hidden",
    ),
    (x[:, :, 0], a0, params, ValueError, r"x.shape=(3, 10) has rank 2; expected rank 3, (n_x, m, T_x)"),
    (x[:, :, :0], a0, params, ValueError, r"x.shape=(3, 10, 0) has T_x=0 time steps; expected T_x >= 1"),
    (x.astype(jnp.int32), a0, params, TypeError, r"x.dtype=int32 is not a floating dtype"),
    (x, a0 > 0, params, TypeError, r"a0.dtype=bool is not a floating dtype"),
    (
        x,
        a0,
        with_param("Waa", jnp.ones((5, 5), jnp.int32)),
        TypeError,
        r"parameters['Waa'].dtype=int32 is not a floating",
    ),
    (x, a0, {k: v for k, v in params.items() if k != "by"}, ValueError, r"missing ['by'], unexpected []"),
    (x, a0, dict(params, Wx=params["Wax"]), ValueError, r"missing [], unexpected ['Wx']"),
    (x, a0, [params["Wax"]], TypeError, r"parameters must be a dict with keys"),
    (x.astype(jnp.bfloat16), a0, params, TypeError, r"a0.dtype=float32 differs from x.dtype=bfloat16"),
    ("abc", a0, params, TypeError, r"x must be an array of floats; received str"),
]


@pytest.mark.parametrize("fn_name", ["rnn", "rnn_autodiff", "rnn_forward"])
@pytest.mark.parametrize("case", range(len(SEQUENCE_CASES)))
def test_sequence_functions_reject_bad_input(fn_name, case):
    x_in, a0_in, params_in, error, message = SEQUENCE_CASES[case]
    fn = jaxrnn.rnn_forward if fn_name == "rnn_forward" else getattr(seed, fn_name)
    with pytest.raises(error, match="^" + re.escape(f"{fn_name}: ") + ".*" + re.escape(message)):
        fn(x_in, a0_in, params_in)


def test_an_input_in_another_layout_names_the_layout_that_fits():
    """A seed-layout `x (n_x, m, T)` passed to the default (batch-major) layout: the error says which
    layout the array would fit; a PyTorch-shaped stacked `h_0` points to `from_torch_hidden`."""
    with pytest.raises(ValueError, match=re.escape("x would fit layout='seed' (n_x, m, T_x)")):
        jaxrnn.rnn(x, None, params)
    scrambled = jnp.transpose(x, (2, 0, 1))  # (T, n_x, m): fits no layout, so no hint
    with pytest.raises(ValueError, match=r"expected \(n_a, n_x\) = \(5, 10\)$"):
        jaxrnn.rnn(scrambled, None, params)
    stack = jaxrnn.init_stack(jax.random.key(0), 3, 5, num_layers=2)
    with pytest.raises(TypeError, match=re.escape("converts with jaxrnn.from_torch_hidden")):
        jaxrnn.rnn_stack(jnp.transpose(x, (1, 2, 0)), jnp.zeros((2, 10, 5)), stack)


@pytest.mark.parametrize("case", [0, 5, 9, 10])
def test_errors_fire_under_jit_and_vmap(case):
    x_in, a0_in, params_in, error, message = SEQUENCE_CASES[case]
    with pytest.raises(error, match=re.escape(message)):
        jax.jit(seed.rnn)(x_in, a0_in, params_in)
    # Under vmap the check sees the per-example shapes.
    batch = lambda v: jnp.stack([v, v])
    with pytest.raises(error, match=re.escape(message)):
        jax.vmap(seed.rnn, in_axes=(0, 0, None))(batch(x_in), batch(a0_in), params_in)


def test_checkpoint_every_must_be_a_positive_int():
    for bad in (0, -3):
        with pytest.raises(
            ValueError, match=re.escape(f"rnn: checkpoint_every={bad!r} must be None or a positive int")
        ):
            seed.rnn(x, a0, params, checkpoint_every=bad, layout="seed")
    for bad, kind in ((2.5, "float"), (True, "bool"), ("4", "str")):
        message = f"rnn: checkpoint_every={bad!r} must be None or a positive int; received {kind}"
        with pytest.raises(TypeError, match=re.escape(message)):
            seed.rnn(x, a0, params, checkpoint_every=bad, layout="seed")


def test_cell_forward_rejects_bad_input():
    with pytest.raises(
        ValueError, match=re.escape("rnn_cell_forward: parameters['Wax'].shape=(5, 3) does not fit xt.shape=(4, 10)")
    ):
        jaxrnn.rnn_cell_forward(jnp.zeros((4, 10)), a0, params)
    with pytest.raises(ValueError, match=re.escape("rnn_cell_forward: a_prev.shape=(5, 3) does not fit")):
        jaxrnn.rnn_cell_forward(x[:, :, 0], jnp.zeros((5, 3)), params)
    with pytest.raises(ValueError, match=re.escape("rnn_cell_forward: xt.shape=(3, 10, 7) has rank 3")):
        jaxrnn.rnn_cell_forward(x, a0, params)


def test_backward_rejects_mismatched_gradients_and_caches():
    a, _, caches = jaxrnn.rnn_forward(x, a0, params)
    with pytest.raises(
        ValueError,
        match=re.escape("rnn_backward: da.shape=(5, 10, 6) does not fit caches (n_a, m, T_x); expected (5, 10, 7)"),
    ):
        jaxrnn.rnn_backward(a[:, :, :6], caches)
    with pytest.raises(
        TypeError, match=re.escape("rnn_backward: da.dtype=bfloat16 differs from the forward pass's dtype float32")
    ):
        jaxrnn.rnn_backward(a.astype(jnp.bfloat16), caches)
    with pytest.raises(
        TypeError,
        match=re.escape("rnn_backward: caches must be the 4-tuple returned by the forward pass; received dict"),
    ):
        jaxrnn.rnn_backward(a, {"a": a})
    with pytest.raises(ValueError, match=re.escape("rnn_backward: caches.hidden_states.shape=(6, 10, 5) does not fit")):
        jaxrnn.rnn_backward(a, caches._replace(hidden_states=caches.hidden_states[:6]))
    _, _, cache = jaxrnn.rnn_cell_forward(x[:, :, 0], a0, params)
    with pytest.raises(
        ValueError, match=re.escape("rnn_cell_backward: da_next.shape=(5, 9) does not fit a_next; expected (5, 10)")
    ):
        jaxrnn.rnn_cell_backward(jnp.zeros((5, 9)), cache)
    with pytest.raises(TypeError, match=re.escape("rnn_cell_backward: cache must be the 4-tuple")):
        jaxrnn.rnn_cell_backward(a0, cache[:3])


def test_good_input_in_other_containers_is_accepted():
    """numpy arrays and any Mapping work; the result equals the dict-of-jax-arrays call."""
    as_numpy = {k: np.asarray(v) for k, v in params.items()}
    expected = seed.rnn(x, a0, params, layout="seed")
    for got in (
        seed.rnn(np.asarray(x), np.asarray(a0), as_numpy, layout="seed"),
        seed.rnn(x, a0, dict(reversed(list(params.items()))), layout="seed"),
    ):
        for u, v in zip(got, expected):
            np.testing.assert_array_equal(u, v)


# The layer's options: static facts, checked at trace time with the function's name.

OPTION_ERRORS = [
    ({"layout": "nhwc"}, ValueError, "rnn: layout='nhwc' is not one of ['seed', 'batch_major', 'time_major']"),
    ({"nonlinearity": "gelu"}, ValueError, "rnn: nonlinearity='gelu' is not one of ['tanh', 'relu']"),
    ({"gradient": "numeric"}, ValueError, "rnn: gradient='numeric' is not one of ['hand', 'autodiff']"),
    ({"reverse": 1}, TypeError, "rnn: reverse must be a Python bool (a static option); received int"),
    ({"return_final_state": "yes"}, TypeError, "rnn: return_final_state must be a Python bool"),
    (
        {"gradient": "autodiff", "checkpoint_every": 4},
        ValueError,
        "rnn: checkpoint_every=4 applies to the hand-derived backward (gradient='hand')",
    ),
    (
        {"seq_lengths": jnp.full((10,), 3.0)},
        TypeError,
        "rnn: seq_lengths.dtype=float32 is not an integer dtype; expected integer lengths (m,) in [0, T_x]",
    ),
    ({"seq_lengths": jnp.full((9,), 3)}, ValueError, "rnn: seq_lengths.shape=(9,) does not fit m=10 from x"),
    ({"seq_lengths": jnp.full((10, 1), 3)}, ValueError, "rnn: seq_lengths.shape=(10, 1) has rank 2; expected rank 1"),
    ({"seq_lengths": jnp.arange(10) - 1}, ValueError, "rnn: seq_lengths[0]=-1 is outside [0, T_x=7]"),
]


@pytest.mark.parametrize("case", range(len(OPTION_ERRORS)))
def test_bad_options_name_the_option(case):
    options, error, message = OPTION_ERRORS[case]
    with pytest.raises(error, match="^" + re.escape(message)):
        seed.rnn(x, a0, params, **options)


def test_traced_static_options_say_how_to_pass_them():
    for name, value in (("checkpoint_every", 4), ("reverse", True)):
        with pytest.raises(TypeError, match=rf"rnn: {name} .*static_argnames=\('{name}',\)"):
            jax.jit(lambda v, name=name: seed.rnn(x, a0, params, **{name: v}))(value)
    # Passed statically, both work under jit.
    every = jax.jit(lambda x: seed.rnn(x, a0, params, checkpoint_every=4, layout="seed"))(x)
    np.testing.assert_allclose(every[0], seed.rnn(x, a0, params, layout="seed")[0], rtol=1e-6)


def test_labels_and_ignore_index_errors_name_the_head():
    labels = jnp.zeros((10, 7), jnp.int32)
    with pytest.raises(TypeError, match=r"^rnn_cross_entropy: ignore_index must be None or a static Python int"):
        seed.rnn_cross_entropy(x, a0, params, labels, ignore_index=jnp.int32(-100), layout="seed")
    with pytest.raises(ValueError, match=r"^rnn_cross_entropy: parameters must have exactly the keys"):
        seed.rnn_cross_entropy(x, a0, {k: params[k] for k in ("Wax", "Waa", "ba")}, labels, layout="seed")
    with pytest.raises(
        ValueError, match=re.escape("labels.shape=(10, 7) does not fit B=10 and T=7 from x; expected (7, 10)")
    ):
        seed.rnn_cross_entropy(jnp.transpose(x, (2, 1, 0)), a0.T, params, labels, layout="time_major")


def test_layouts_name_their_axes():
    time_major = jnp.transpose(x, (2, 1, 0))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "rnn: a0.shape=(5, 10) does not fit n_a=5 from parameters['Waa'] and B=10 from x; expected (10, 5)"
        ),
    ):
        seed.rnn(time_major, a0, params, layout="time_major")
    with pytest.raises(ValueError, match=re.escape("x.shape=(7, 10, 3) (T, B, n_x); expected (n_a, n_x) = (5, 3)")):
        seed.rnn(time_major, a0.T, dict(params, Wax=jnp.zeros((5, 4))), layout="time_major")


# Stacks: every layer and direction is named.

LAYERS = jaxrnn.init_stack(jax.random.PRNGKey(1), 3, 5, num_layers=2, bidirectional=True)


def with_layer(l, directions, **changes):
    layers = [tuple(dict(p) for p in layer) for layer in LAYERS]
    for d in directions:
        layers[l][d].update(changes)
    return layers


STACK_ERRORS = [
    (
        with_layer(1, (0, 1), Wax=jnp.zeros((5, 5))),
        None,
        ValueError,
        "rnn_stack: layers[1][0]['Wax'].shape=(5, 5) does not fit the output of layers[0] (2 × n_a = 10, "
        "bidirectional); expected (5, 10)",
    ),
    (
        with_layer(0, (1,), Wax=jnp.zeros((6, 3)), Waa=jnp.zeros((6, 6)), ba=jnp.zeros((6, 1))),
        None,
        ValueError,
        "rnn_stack: layers[0][1]['Wax'].shape=(6, 3) differs from layers[0][0]['Wax'].shape=(5, 3); both "
        "directions of a bidirectional layer must have the same sizes",
    ),
    (
        with_layer(0, (0,), Wya=jnp.zeros((2, 5)), by=jnp.zeros((2, 1))),
        None,
        ValueError,
        "rnn_stack: layers[0][0] must have exactly the keys ['Wax', 'Waa', 'ba'] of a vanilla layer; missing [], "
        "unexpected ['Wya', 'by'] "
        "(only a unidirectional top layer may carry an output head)",
    ),
    (
        with_layer(1, (1,), Waa=jnp.zeros((5, 4))),
        None,
        ValueError,
        "rnn_stack: layers[1][1]['Waa'].shape=(5, 4) is not (n_a, n_a) for a vanilla layer",
    ),
    (LAYERS, [jnp.zeros((5, 10))] * 2, TypeError, "rnn_stack: a0[0] must be a pair (forward, reverse) of states"),
    (LAYERS, [(jnp.zeros((5, 10)),) * 2], TypeError, "rnn_stack: a0 must be None or a list of 2 initial states"),
    (
        LAYERS,
        [(jnp.zeros((5, 10)),) * 2, (jnp.zeros((5, 10)), jnp.zeros((4, 10)))],
        ValueError,
        "rnn_stack: a0[1][1].shape=(4, 10) does not fit n_a=5 from layers[1] and m=10 from x; expected (5, 10)",
    ),
    ([], None, TypeError, "rnn_stack: layers must be a non-empty list of layers"),
    ([LAYERS[0], "layer"], None, TypeError, "rnn_stack: layers[1] must be a parameter dict, or a pair"),
]


@pytest.mark.parametrize("case", range(len(STACK_ERRORS)))
def test_stack_errors_name_the_layer_and_key(case):
    layers, initial, error, message = STACK_ERRORS[case]
    with pytest.raises(error, match="^" + re.escape(message)):
        jax.jit(lambda x, initial: seed.rnn_stack(x, initial, layers, layout="seed"))(x, initial)


def test_step_rejects_bidirectional_layers_and_bad_states():
    with pytest.raises(TypeError, match=r"^rnn_step: layers\[0\] is a pair of directions"):
        seed.rnn_step(x[:, :, 0], [a0], LAYERS[:1], layout="seed")
    one = {k: params[k] for k in ("Wax", "Waa", "ba")}
    with pytest.raises(ValueError, match=re.escape("rnn_step: a_prev[0].shape=(4, 10) does not fit n_a=5")):
        seed.rnn_step(x[:, :, 0], jnp.zeros((4, 10)), one, layout="seed")
