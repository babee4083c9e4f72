"""The hand-derived backward against the seed's numpy backward, jax.grad and finite differences."""

import functools
import re
import zlib

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
import seed_numpy
from helpers import FLOOR, TOLERANCE, assert_trees_close, each_value_once, random_problem, relative_error, seed

import jaxrnn


def loss_fn(forward, x, a0, params, ca, cy, outputs="both"):
    """A random linear functional of the chosen outputs, so both cotangents are generic."""
    a, y = forward(x, a0, params, layout="seed")
    terms = {"a": jnp.sum(ca * a), "y": jnp.sum(cy * y)}
    return terms["a"] + terms["y"] if outputs == "both" else terms[outputs]


def weights(key, x, a0, params):
    k_a, k_y = jax.random.split(key)
    T_x = x.shape[-1]
    ca = jax.random.normal(k_a, (*a0.shape, T_x), x.dtype)
    cy = jax.random.normal(k_y, (params["by"].shape[0], a0.shape[1], T_x), x.dtype)
    return ca, cy


def gradients(forward, x, a0, params, ca, cy, outputs="both"):
    loss = functools.partial(loss_fn, forward, ca=ca, cy=cy, outputs=outputs)
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, a0, params)


def test_cell_backward_equals_seed(x64):
    np.random.seed(1)
    xt, a_prev = np.random.randn(3, 10), np.random.randn(5, 10)
    params = seed_numpy.classic_parameters(3, 5, 2, ("Wax", "Waa", "Wya", "ba", "by"))
    _, _, cache = jaxrnn.rnn_cell_forward(xt, a_prev, params)
    _, _, seed_cache = seed_numpy.rnn_cell_forward(xt, a_prev, params)
    da_next = np.random.randn(5, 10)
    got = jaxrnn.rnn_cell_backward(da_next, cache)
    want = seed_numpy.rnn_cell_backward(da_next, seed_cache)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == jnp.float64
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("case", ["classic", "random"])
def test_sequence_backward_equals_seed(x64, case):
    if case == "classic":
        np.random.seed(1)
        x, a0 = np.random.randn(3, 10, 4), np.random.randn(5, 10)
        params = seed_numpy.classic_parameters(3, 5, 2, ("Wax", "Waa", "Wya", "ba", "by"))
    else:
        x, a0, params = (
            jax.tree_util.tree_map(np.asarray, v)
            for v in random_problem(jax.random.PRNGKey(2), 4, 6, 3, 3, 9, jnp.float64)
        )
    _, _, caches = jaxrnn.rnn_forward(x, a0, params)
    _, _, seed_caches = seed_numpy.rnn_forward(x, a0, params)
    da = np.random.RandomState(7).randn(*a0.shape, x.shape[-1])
    got = jax.jit(jaxrnn.rnn_backward)(da, caches)
    want = seed_numpy.rnn_backward(da, seed_caches)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-13, err_msg=name)


@pytest.mark.parametrize(
    *each_value_once(dtype=[jnp.float32, jnp.float64], outputs=["both", "a", "y"], checkpoint_every=[None, 1, 3, 7])
)
def test_custom_vjp_equals_autodiff(device, dtype, outputs, checkpoint_every):
    context = jax.enable_x64(True) if dtype == jnp.float64 else jax.enable_x64(False)
    if dtype == jnp.float64 and device.platform == "tpu":
        pytest.skip("no float64 on TPU")
    with context, jax.default_matmul_precision("float32"):
        key = jax.random.PRNGKey(zlib.crc32(repr((outputs, checkpoint_every)).encode()))
        x, a0, params = random_problem(key, 4, 8, 3, 5, 10, dtype)
        ca, cy = weights(jax.random.fold_in(key, 1), x, a0, params)
        hand = gradients(
            functools.partial(seed.rnn, checkpoint_every=checkpoint_every, layout="seed"),
            x,
            a0,
            params,
            ca,
            cy,
            outputs,
        )
        auto = gradients(seed.rnn_autodiff, x, a0, params, ca, cy, outputs)
    assert_trees_close(hand, auto, TOLERANCE[dtype])
    for g, primal in zip(jax.tree_util.tree_leaves(hand), jax.tree_util.tree_leaves((x, a0, params))):
        assert g.dtype == primal.dtype


def test_check_grads_second_order(x64):
    x, a0, params = random_problem(jax.random.PRNGKey(8), 2, 3, 2, 2, 4, jnp.float64)
    ca, cy = weights(jax.random.PRNGKey(9), x, a0, params)
    for every in (None, 2):
        loss = functools.partial(
            loss_fn, functools.partial(seed.rnn, checkpoint_every=every, layout="seed"), ca=ca, cy=cy
        )
        jax.test_util.check_grads(loss, (x, a0, params), order=2, modes=["rev"])


def test_hessian_and_grad_of_grad_match_autodiff(x64):
    x, a0, params = random_problem(jax.random.PRNGKey(10), 2, 3, 2, 2, 4, jnp.float64)
    ca, cy = weights(jax.random.PRNGKey(11), x, a0, params)

    def loss_of_waa(forward):
        return lambda Waa: loss_fn(forward, x, a0, dict(params, Waa=Waa), ca, cy)

    hessian_hand = jax.hessian(loss_of_waa(seed.rnn))(params["Waa"])
    hessian_auto = jax.hessian(loss_of_waa(seed.rnn_autodiff))(params["Waa"])
    assert relative_error(hessian_hand, hessian_auto) <= 1e-12
    # Reverse-over-reverse: the gradient of a scalar function of the gradient.
    grad_norm = lambda forward: jax.grad(lambda W: jnp.sum(jax.grad(loss_of_waa(forward))(W) ** 2))
    assert relative_error(grad_norm(seed.rnn)(params["Waa"]), grad_norm(seed.rnn_autodiff)(params["Waa"])) <= 1e-12


def test_forward_mode_raises_on_rnn_and_works_on_autodiff(x64):
    x, a0, params = random_problem(jax.random.PRNGKey(12), dtype=jnp.float64)
    tangents = jax.tree_util.tree_map(jnp.ones_like, (x, a0, params))
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jvp(seed.rnn, (x, a0, params), tangents)
    # jvp of rnn_autodiff agrees with the hand-derived vjp: <c, J v> = <J^T c, v>.
    _, (ta, ty) = jax.jvp(seed.rnn_autodiff, (x, a0, params), tangents)
    ca, cy = weights(jax.random.PRNGKey(13), x, a0, params)
    _, vjp = jax.vjp(seed.rnn, x, a0, params)
    cotangent_dot_tangent = sum(
        jnp.vdot(g, t) for g, t in zip(jax.tree_util.tree_leaves(vjp((ca, cy))), jax.tree_util.tree_leaves(tangents))
    )
    np.testing.assert_allclose(jnp.vdot(ca, ta) + jnp.vdot(cy, ty), cotangent_dot_tangent, rtol=1e-12)


@pytest.mark.parametrize(
    "sizes",
    [
        (3, 4, 2, 3, 1),
        *(pytest.param(s, marks=pytest.mark.slow) for s in [(3, 4, 2, 1, 5), (3, 1, 2, 3, 5), (3, 4, 1, 3, 5)]),
        (1, 1, 1, 1, 1),
    ],
)
def test_edge_shapes(x64, sizes):
    x, a0, params = random_problem(jax.random.PRNGKey(14), *sizes, jnp.float64)
    ca, cy = weights(jax.random.PRNGKey(15), x, a0, params)
    for every in (None, 2):
        hand = gradients(functools.partial(seed.rnn, checkpoint_every=every, layout="seed"), x, a0, params, ca, cy)
        assert_trees_close(hand, gradients(seed.rnn_autodiff, x, a0, params, ca, cy), 1e-12)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_long_sequence(device, dtype):
    if dtype == jnp.float64 and device.platform == "tpu":
        pytest.skip("no float64 on TPU")
    with jax.enable_x64(dtype == jnp.float64), jax.default_matmul_precision("float32"):
        x, a0, params = random_problem(jax.random.PRNGKey(16), 3, 8, 3, 2, 2000, dtype)
        ca, cy = weights(jax.random.PRNGKey(17), x, a0, params)
        hand = gradients(seed.rnn, x, a0, params, ca, cy)
        segmented = gradients(functools.partial(seed.rnn, checkpoint_every=64, layout="seed"), x, a0, params, ca, cy)
        auto = gradients(seed.rnn_autodiff, x, a0, params, ca, cy)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(hand))
    # float32 sums over 2000 steps have rounding errors at the scale of their largest entry.
    floor = 1.0 if dtype == jnp.float32 else FLOOR
    assert_trees_close(hand, auto, TOLERANCE[dtype], floor)
    assert_trees_close(segmented, auto, TOLERANCE[dtype], floor)


def test_saturated_tanh(x64):
    x, a0, params = random_problem(jax.random.PRNGKey(18), 3, 6, 3, 4, 12, jnp.float64)
    params = dict(params, Waa=30 * params["Waa"], Wax=30 * params["Wax"])
    ca, cy = weights(jax.random.PRNGKey(19), x, a0, params)
    a, _ = seed.rnn(x, a0, params, layout="seed")
    assert float(jnp.mean(jnp.abs(a) > 0.999)) > 0.5  # really saturated
    hand = gradients(seed.rnn, x, a0, params, ca, cy)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(hand))
    assert_trees_close(hand, gradients(seed.rnn_autodiff, x, a0, params, ca, cy), 1e-12)


def test_nan_in_one_input_entry_matches_autodiff(x64):
    x, a0, params = random_problem(jax.random.PRNGKey(20), 3, 5, 2, 4, 6, jnp.float64)
    x = x.at[1, 2, 3].set(jnp.nan)
    ca, cy = weights(jax.random.PRNGKey(21), x, a0, params)
    hand = gradients(seed.rnn, x, a0, params, ca, cy)
    auto = gradients(seed.rnn_autodiff, x, a0, params, ca, cy)
    a, _ = seed.rnn(x, a0, params, layout="seed")
    assert bool(jnp.isnan(a[:, 2, 3:]).all()) and not bool(jnp.isnan(a[:, :2]).any())
    for got, want in zip(jax.tree_util.tree_leaves(hand), jax.tree_util.tree_leaves(auto)):
        np.testing.assert_array_equal(jnp.isnan(got), jnp.isnan(want))
        finite = ~jnp.isnan(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-10, atol=1e-12)
    assert bool(jnp.isnan(hand[0]).any()) and not bool(jnp.isnan(hand[0]).all())


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_gradients_keep_dtype(device, dtype):
    x, a0, params = random_problem(jax.random.PRNGKey(22), dtype=dtype)
    ca, cy = weights(jax.random.PRNGKey(23), x, a0, params)
    for every in (None, 4):
        grads = gradients(functools.partial(seed.rnn, checkpoint_every=every, layout="seed"), x, a0, params, ca, cy)
        for g, primal in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves((x, a0, params))):
            assert g.dtype == primal.dtype


def test_float64_gradients_keep_dtype(x64):
    x, a0, params = random_problem(jax.random.PRNGKey(22), dtype=jnp.float64)
    ca, cy = weights(jax.random.PRNGKey(23), x, a0, params)
    grads = gradients(seed.rnn, x, a0, params, ca, cy)
    assert all(g.dtype == jnp.float64 for g in jax.tree_util.tree_leaves(grads))


# bfloat16 keeps 8 bits of mantissa: one rounding is a relative error of up to 2^-9 ≈ 2e-3.
# Against float32 run on the same (bfloat16-rounded) inputs, the stored hidden states and the
# gradients' final rounding give a largest relative error of 4.2e-3 here (CPU, 16 steps).
BFLOAT16_TOLERANCE = 1e-2


def test_bfloat16_close_to_float32(device):
    x, a0, params = random_problem(jax.random.PRNGKey(24), 8, 32, 6, 8, 16, jnp.float32)
    ca, cy = weights(jax.random.PRNGKey(25), x, a0, params)
    low = jax.tree_util.tree_map(lambda v: v.astype(jnp.bfloat16), (x, a0, params, ca, cy))
    same_inputs = jax.tree_util.tree_map(lambda v: v.astype(jnp.float32), low)
    with jax.default_matmul_precision("float32"):
        reference = gradients(seed.rnn, *same_inputs)
        low_gradients = gradients(seed.rnn, *low)
        outputs_ref = seed.rnn(*same_inputs[:3], layout="seed")
        outputs_low = seed.rnn(*low[:3], layout="seed")
    assert all(bool(jnp.all(jnp.isfinite(g.astype(jnp.float32)))) for g in jax.tree_util.tree_leaves(low_gradients))
    assert_trees_close(outputs_low, outputs_ref, BFLOAT16_TOLERANCE, floor=1.0)
    assert_trees_close(low_gradients, reference, BFLOAT16_TOLERANCE, floor=1.0)


# Measured (jax 0.10.2, CPU, T = 512, k = 8): largest relative gradient error 4.5e-3 with or without
# checkpointing; summing the segments' gradients in bfloat16 instead of float32 gives 1.8e-2.
BFLOAT16_CHECKPOINT_TOLERANCE = 1e-2


def test_bfloat16_checkpoint_segments_sum_in_float32(device):
    """With `checkpoint_every`, each segment's weight gradients are added across segments in the
    accumulation dtype: a long bfloat16 sequence stays as close to float32 as without segments."""
    x, a0, params = random_problem(jax.random.PRNGKey(30), 8, 32, 6, 8, 512, jnp.float32)
    ca, cy = weights(jax.random.PRNGKey(31), x, a0, params)
    low = jax.tree_util.tree_map(lambda v: v.astype(jnp.bfloat16), (x, a0, params, ca, cy))
    same_inputs = jax.tree_util.tree_map(lambda v: v.astype(jnp.float32), low)
    with jax.default_matmul_precision("float32"):
        reference = gradients(seed.rnn_autodiff, *same_inputs)
        segmented = gradients(functools.partial(seed.rnn, checkpoint_every=8, layout="seed"), *low)
    assert_trees_close(segmented, reference, BFLOAT16_CHECKPOINT_TOLERANCE, floor=1.0)


def test_gradients_bitwise_reproducible_across_compilations(cpu_device):
    """The same gradient step compiled twice (caches cleared between) gives bitwise the same
    gradients: no order-dependent sums or thread races in the compiled step on CPU."""
    x, a0, params = random_problem(jax.random.PRNGKey(26), 8, 32, 6, 16, 40)
    ca, cy = weights(jax.random.PRNGKey(27), x, a0, params)
    first = gradients(seed.rnn, x, a0, params, ca, cy)
    jax.clear_caches()
    second = gradients(seed.rnn, x, a0, params, ca, cy)
    for u, v in zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(second)):
        np.testing.assert_array_equal(u, v)


def dot_result_types(lowered_text):
    """The result element type of every `stablehlo.dot_general` in a lowered module's text."""
    types = re.findall(r"stablehlo\.dot_general .*-> tensor<[0-9x]*([a-z0-9]+)>", lowered_text)
    assert types, "no dot_general found in the lowered module"
    return types


@pytest.mark.parametrize("checkpoint_every", [None, 3])
@pytest.mark.parametrize("head", ["softmax", "cross_entropy"])
def test_bfloat16_matrix_products_accumulate_in_float32(checkpoint_every, head):
    """The claim behind bfloat16 support: every matrix product of a gradient step, forward and
    backward, returns float32 (read from the lowered StableHLO, a public and versioned format;
    on CPU a bfloat16 result would round the same float32 sum, so the values cannot show it)."""
    x, a0, params = random_problem(jax.random.PRNGKey(28), dtype=jnp.bfloat16)
    ca, cy = weights(jax.random.PRNGKey(29), x, a0, params)
    labels = jnp.zeros((a0.shape[1], x.shape[-1]), jnp.int32)
    lengths = jnp.array([6, 2, 0, 5])

    def loss(x, a0, params):
        options = {"checkpoint_every": checkpoint_every, "seq_lengths": lengths, "reverse": True}
        if head == "softmax":
            return loss_fn(functools.partial(seed.rnn, **options), x, a0, params, ca, cy)
        losses, a = seed.rnn_cross_entropy(x, a0, params, labels, **options)
        return jnp.sum(losses.astype(jnp.float32)) + jnp.sum((ca * a).astype(jnp.float32))

    text = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(x, a0, params).as_text()
    assert set(dot_result_types(text)) == {"f32"}


def test_checkpoint_segments_are_balanced(x64):
    """checkpoint_every=1000 on T=5 runs one 5-step segment (no 1000-step padding); k=4 on
    T=10 runs three segments of 4 steps (2 padded), not ten of 1."""
    x, a0, params = random_problem(jax.random.PRNGKey(30), 3, 4, 2, 2, 5, jnp.float64)
    ca, cy = weights(jax.random.PRNGKey(31), x, a0, params)
    forward = functools.partial(seed.rnn, checkpoint_every=1000, layout="seed")
    jaxpr = jax.make_jaxpr(jax.grad(functools.partial(loss_fn, forward, ca=ca, cy=cy)))(x, a0, params)
    assert "1000" not in str(jaxpr)
    hand = gradients(forward, x, a0, params, ca, cy)
    assert_trees_close(hand, gradients(seed.rnn_autodiff, x, a0, params, ca, cy), 1e-12)
