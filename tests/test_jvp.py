"""`rnn_jvp`, the hand-derived forward mode, against `jax.jvp` of `rnn_autodiff`, by construction
(padded steps), under `vmap` (Jacobians against `jax.jacfwd`) and `jit`, in every dtype, and
its errors for tangents that do not fit the primals."""

import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOLERANCE, assert_trees_close, random_problem, seed

N_X, N_A, N_Y, M, T = 3, 5, 4, 4, 7
LENGTHS = (7, 0, 3, 5)  # full, empty, and two in between
INPUTS = ("x", "a0", "Wax", "Waa", "ba", "Wya", "by")
# bfloat16 against float32 on the same (rounded) inputs, tanh: the largest relative error over every
# output and tangent measured 3.9e-3 on this test's problem and at most 8.9e-3 over 16 random
# problems (jax 0.10.2, CPU); bfloat16's machine epsilon is 2^-8 = 3.9e-3. relu is left out: a
# pre-activation near 0 that rounds to the other sign flips relu' and moves a tangent by O(1), for
# jax.jvp as much as here.
BFLOAT16_TOLERANCE = 1.2e-2


def problem(dtype, head=True, a0_is_none=False, key=0):
    """`(primals, tangents)`: random `(x, a0, parameters)` in the seed layout and a random tangent
    of each (non-zero biases and bias tangents)."""
    x, a0, params = random_problem(jax.random.PRNGKey(key), N_X, N_A, N_Y, M, T, dtype)
    if not head:
        params = {k: params[k] for k in ("Wax", "Waa", "ba")}
    primals = (x, None if a0_is_none else a0, params)
    leaves, treedef = jax.tree_util.tree_flatten(primals)
    keys = jax.random.split(jax.random.PRNGKey(key + 1000), len(leaves))
    tangents = [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
    return primals, jax.tree_util.tree_unflatten(treedef, tangents)


def to_layout(primals, tangents, layout):
    """Moves `x`, `a0` and their tangents from the seed layout to `layout`."""
    sequence = {"seed": (0, 1, 2), "batch_major": (1, 2, 0), "time_major": (2, 1, 0)}[layout]
    state = (lambda v: v) if layout == "seed" else (lambda v: v.T)
    move = lambda x, a0, params: (jnp.transpose(x, sequence), None if a0 is None else state(a0), params)
    return move(*primals), move(*tangents)


@functools.partial(jax.jit, static_argnames=("use_autodiff", "options"))
def jvp(primals, tangents, lengths, *, use_autodiff, options):
    """The hand JVP, or `jax.jvp` of `rnn_autodiff`, with traced `seq_lengths` (as under a user's jit)."""
    options = dict(options, seq_lengths=lengths)
    if use_autodiff:
        return jax.jvp(functools.partial(seed.rnn_autodiff, **options), primals, tangents)
    return seed.rnn_jvp(primals, tangents, **options)


def run(primals, tangents, lengths=None, *, use_autodiff=False, **options):
    lengths = None if lengths is None else jnp.array(lengths)
    return jvp(primals, tangents, lengths, use_autodiff=use_autodiff, options=tuple(sorted(options.items())))


def hand_and_autodiff(primals, tangents, lengths=None, **options):
    return tuple(run(primals, tangents, lengths, use_autodiff=u, **options) for u in (False, True))


# Pairwise over layout × reverse × nonlinearity × lengths × head × a0=None × return_final_state:
# every pair of values of any two options is in some case.
PAIRWISE = [
    ("seed", False, "relu", None, True, True, False),
    ("batch_major", False, "tanh", None, False, False, False),
    ("seed", True, "tanh", LENGTHS, False, False, True),
    ("batch_major", True, "relu", LENGTHS, True, True, True),
    ("time_major", False, "tanh", LENGTHS, True, False, False),
    ("time_major", True, "relu", None, False, False, False),
    ("time_major", False, "tanh", None, False, True, True),
]


@pytest.mark.parametrize(("layout", "reverse", "nonlinearity", "lengths", "head", "a0_is_none", "final"), PAIRWISE)
def test_options_equal_jax_jvp_float64(x64, layout, reverse, nonlinearity, lengths, head, a0_is_none, final):
    primals, tangents = to_layout(*problem(jnp.float64, head, a0_is_none), layout)
    options = {"layout": layout, "reverse": reverse, "nonlinearity": nonlinearity, "return_final_state": final}
    hand, autodiff = hand_and_autodiff(primals, tangents, lengths, **options)
    assert_trees_close(hand, autodiff, TOLERANCE[jnp.float64])  # primals and tangents, every output


@pytest.mark.parametrize("argument", [*INPUTS, "all"])
def test_tangent_of_each_input_alone_float64(x64, argument):
    """One input's tangent at a time (the others zero): each term of the JVP on its own, through
    masks and the final state; every output compared."""
    primals, tangents = problem(jnp.float64)
    x_dot, a0_dot, params_dot = tangents
    keep = lambda name, v: v if argument in (name, "all") else jnp.zeros_like(v)
    tangents = (keep("x", x_dot), keep("a0", a0_dot), {k: keep(k, v) for k, v in params_dot.items()})
    hand, autodiff = hand_and_autodiff(primals, tangents, LENGTHS, return_final_state=True)
    assert np.any(autodiff[1][1 if argument in ("Wya", "by") else 0])  # the tangent reaches y (head) or a
    assert_trees_close(hand, autodiff, TOLERANCE[jnp.float64])


@pytest.mark.parametrize("reverse", [False, True])
def test_padded_steps_freeze_the_tangent_and_output_zero(x64, reverse):
    """By construction: past each length the tangents of `a` and `y` are exactly 0, and the final
    state's tangent is the tangent after the last valid step (ȧ0 itself for length 0)."""
    primals, tangents = problem(jnp.float64)
    _, (a_dot, y_dot, final_dot) = run(primals, tangents, LENGTHS, reverse=reverse, return_final_state=True)
    for i, length in enumerate(LENGTHS):
        assert not np.any(a_dot[:, i, length:]) and not np.any(y_dot[:, i, length:])
        assert np.all(np.abs(a_dot[:, i, :length]) > 0)
        last = tangents[1][:, i] if length == 0 else a_dot[:, i, 0 if reverse else length - 1]
        np.testing.assert_array_equal(final_dot[:, i], last)


def test_traced_lengths_outside_the_sequence_make_that_example_nan():
    """As in `rnn`: a traced length outside [0, T] makes its example's outputs and tangents NaN
    and leaves the others alone."""
    primals, tangents = problem(jnp.float32)
    outputs = run(primals, tangents, (7, -1, 3, 8), return_final_state=True)
    for leaf in jax.tree_util.tree_leaves(outputs):
        examples = jnp.moveaxis(leaf, 1, 0)  # (n, m, T) and (n_a, m): the examples' axis first
        assert np.all(np.isnan(examples[1])) and np.all(np.isnan(examples[3]))
        assert np.all(np.isfinite(examples[0])) and np.all(np.isfinite(examples[2]))


def test_vmap_over_a_basis_is_jax_jacfwd_float64(x64):
    """`vmap` of the hand JVP over every basis direction of (x, a0, parameters) at once, under jit,
    is the full Jacobian of every output: `jax.jacfwd`'s."""
    primals, _ = problem(jnp.float64)
    flat, unravel = jax.flatten_util.ravel_pytree(primals)
    options = {"seq_lengths": jnp.array(LENGTHS), "reverse": True, "return_final_state": True}
    column = lambda direction: seed.rnn_jvp(primals, unravel(direction), **options)[1]
    hand = jax.jit(jax.vmap(column, out_axes=-1))(jnp.eye(flat.size))
    autodiff = jax.jit(jax.jacfwd(lambda v: seed.rnn_autodiff(*unravel(v), **options)))(flat)
    assert_trees_close(hand, autodiff, TOLERANCE[jnp.float64])


def test_vmap_over_a_batch_of_problems_float64(x64):
    """`vmap` over primals and tangents together (a batch of sequences, shared parameters)."""
    batch = [problem(jnp.float64, key=k) for k in range(3)]
    stack = lambda *v: jnp.stack(v)
    x, a0, x_dot, a0_dot = (stack(*(b[i][j] for b in batch)) for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
    (_, _, params), (_, _, params_dot) = batch[0]

    def per_problem(jvp_fn):
        return jax.jit(jax.vmap(lambda x, a0, xd, ad: jvp_fn((x, a0, params), (xd, ad, params_dot))))

    hand = per_problem(seed.rnn_jvp)(x, a0, x_dot, a0_dot)
    autodiff = per_problem(functools.partial(jax.jvp, seed.rnn_autodiff))(x, a0, x_dot, a0_dot)
    assert_trees_close(hand, autodiff, TOLERANCE[jnp.float64])


@pytest.mark.parametrize("dtype", [pytest.param(jnp.float32, marks=pytest.mark.slow), jnp.bfloat16])
def test_dtypes_are_kept(device, dtype):
    """float32 equals jax.jvp within 1e-5; bfloat16 is near float32 (see BFLOAT16_TOLERANCE)."""
    primals, tangents = jax.tree_util.tree_map(lambda v: v.astype(dtype), problem(jnp.float32, key=2))
    hand = run(primals, tangents, LENGTHS, return_final_state=True)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(hand)} == {jnp.dtype(dtype)}
    in_float32 = jax.tree_util.tree_map(lambda v: v.astype(jnp.float32), (primals, tangents))
    reference = run(*in_float32, LENGTHS, use_autodiff=True, return_final_state=True)
    if dtype == jnp.float32:
        assert_trees_close(hand, reference, TOLERANCE[jnp.float32])
    else:  # rounding errors of the size of each array's largest entry: the array-wide bound only
        assert_trees_close(hand, reference, BFLOAT16_TOLERANCE, floor=1.0)


def _replace(tangents, index, value):
    tangents = list(tangents)
    tangents[index] = value
    return tuple(tangents)


def _with_parameter(tangents, key, value):
    params = {k: v for k, v in tangents[2].items() if k != key}
    return _replace(tangents, 2, params if value is None else {**params, key: value})


def _case(name, change, error, message):
    return pytest.param(change, error, message, id=name)


BAD_TANGENTS = [
    _case("a dict", lambda t: dict(enumerate(t)), TypeError, r"tangents must be a tuple \(x_dot, .*received dict"),
    _case("two of three", lambda t: t[:2], TypeError, r"tangents must be a tuple .*received tuple of length 2"),
    _case("a0 without tangent", lambda t: _replace(t, 1, None), TypeError, r"tangents\[1\] .* must be an array"),
    _case(
        "x of another shape",
        lambda t: _replace(t, 0, t[0][:, :, :-1]),
        ValueError,
        r"tangents\[0\]\.shape=\(3, 4, 6\) differs from x\.shape=\(3, 4, 7\); expected \(3, 4, 7\)",
    ),
    _case(
        "a0 transposed",
        lambda t: _replace(t, 1, t[1].T),
        ValueError,
        r"tangents\[1\]\.shape=\(4, 5\) differs from a0\.shape=\(5, 4\)",
    ),
    _case(
        "x not an array",
        lambda t: _replace(t, 0, "zeros"),
        TypeError,
        r"tangents\[0\] \(the tangent of x\) must be an array",
    ),
    _case(
        "parameters a list",
        lambda t: _replace(t, 2, list(t[2].values())),
        TypeError,
        r"tangents\[2\] .* must be a dict with the keys \['Wax', 'Waa', 'ba', 'Wya', 'by'\]; received list",
    ),
    _case(
        "a key missing",
        lambda t: _with_parameter(t, "by", None),
        ValueError,
        r"tangents\[2\] .* the keys of parameters .*; missing \['by'\], unexpected \[\]",
    ),
    _case(
        "a key too many",
        lambda t: _with_parameter(t, "bz", t[2]["by"]),
        ValueError,
        r"tangents\[2\] .*; missing \[\], unexpected \['bz'\]",
    ),
    _case(
        "Waa in float16",
        lambda t: _with_parameter(t, "Waa", t[2]["Waa"].astype(jnp.float16)),
        TypeError,
        r"tangents\[2\]\['Waa'\]\.dtype=float16 differs from parameters\['Waa'\]\.dtype=float32; expected float32",
    ),
    _case(
        "ba as integers",
        lambda t: _with_parameter(t, "ba", jnp.zeros((N_A, 1), jnp.int32)),
        TypeError,
        r"tangents\[2\]\['ba'\]\.dtype=int32 differs",
    ),
    _case(
        "Wya of another shape",
        lambda t: _with_parameter(t, "Wya", t[2]["Wya"][:-1]),
        ValueError,
        r"tangents\[2\]\['Wya'\]\.shape=\(3, 5\) differs from parameters\['Wya'\]\.shape=\(4, 5\)",
    ),
]


@pytest.mark.parametrize(("change", "error", "message"), BAD_TANGENTS)
def test_bad_tangents_raise_a_clear_error(change, error, message):
    primals, tangents = problem(jnp.float32)
    with pytest.raises(error, match="^rnn_jvp: " + message):
        seed.rnn_jvp(primals, change(tangents), layout="seed")


def test_a_tangent_for_a0_none_and_bad_primals_raise():
    primals, tangents = problem(jnp.float32, a0_is_none=True)
    with pytest.raises(TypeError, match=r"tangents\[1\] \(the tangent of a0\) must be None, as a0 is None"):
        seed.rnn_jvp(primals, _replace(tangents, 1, jnp.zeros((N_A, M))), layout="seed")
    with pytest.raises(TypeError, match=r"^rnn_jvp: primals must be a tuple \(x, a0, parameters\); received dict"):
        seed.rnn_jvp(dict(enumerate(primals)), tangents, layout="seed")


def test_errors_fire_at_trace_time_under_jit():
    primals, tangents = problem(jnp.float32)
    bad = _with_parameter(tangents, "Waa", tangents[2]["Waa"][:, :-1])
    with pytest.raises(ValueError, match=r"tangents\[2\]\['Waa'\]\.shape=\(5, 4\) differs"):
        jax.jit(seed.rnn_jvp)(primals, bad)
