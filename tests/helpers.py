"""Oracles' tolerances and comparison helpers shared by the tests."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn.verify

# Relative tolerances (max|g − g_ref| / max|g_ref|), stated once for the whole suite.
TOLERANCE = {jnp.float64: 1e-12, jnp.float32: 1e-5}


def random_problem(key, n_x=3, n_a=5, n_y=2, m=4, T_x=6, dtype=jnp.float32):
    """Random `(x, a0, parameters)`, with non-zero biases."""
    (x, a0, params), _ = jaxrnn.verify.random_problem(key, n_x, n_a, n_y, m, T_x, dtype)
    return x, a0, params


def relative_error(actual, reference):
    """max|actual − reference| / max|reference|, in numpy float64 whatever JAX's x64 setting."""
    actual = np.asarray(actual, np.float64)
    reference = np.asarray(reference, np.float64)
    scale = np.max(np.abs(reference))
    return float(np.max(np.abs(actual - reference)) / (scale if scale > 0 else 1.0))


# Beside the error relative to each array's largest entry, every entry is checked on its own:
# |actual − reference| ≤ tolerance·|reference| + FLOOR·tolerance·max|reference|, so small
# entries are held to a tenth of the array-wide bound, not just to tolerance·max.
FLOOR = 0.1


def assert_trees_close(actual, reference, tolerance, floor=FLOOR):
    """Every leaf of `actual` within `tolerance` of `reference` (relative to the leaf's largest
    entry, and entry by entry as above, with `floor` in place of FLOOR), same structure.

    `floor=1` leaves only the array-wide bound, for results whose rounding error is of the
    size of their largest entry everywhere: bfloat16, and float32 sums over thousands of steps.
    """
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(reference)
    paths = jax.tree_util.tree_flatten_with_path(reference)[0]
    for (path, ref), act in zip(paths, jax.tree_util.tree_leaves(actual)):
        name = jax.tree_util.keystr(path)
        assert act.shape == ref.shape, (name, act.shape, ref.shape)
        err = relative_error(act, ref)
        assert err <= tolerance, f"{name}: relative error {err:.3e} > {tolerance:.0e}"
        ref64, act64 = np.asarray(ref, np.float64), np.asarray(act, np.float64)
        atol = floor * tolerance * float(np.max(np.abs(ref64), initial=0.0))
        np.testing.assert_allclose(act64, ref64, rtol=tolerance, atol=atol, err_msg=name)


def seed_layout(fn):
    """`fn` (a layer call) with the seed layout `(n, m, T)` as its default, as these tests' problems are."""

    @functools.wraps(fn)
    def in_seed_layout(*args, **kwargs):
        kwargs.setdefault("layout", "seed")
        return fn(*args, **kwargs)

    return in_seed_layout


class _SeedLayout:
    """The layer calls of `jaxrnn` with `layout="seed"` as their default: `seed.rnn(x, a0, params)`
    for the `(n, m, T)` problems of `random_problem`; an explicit `layout=` still wins."""

    def __getattr__(self, name):
        return seed_layout(getattr(jaxrnn, name))


seed = _SeedLayout()


def pairwise_fast(grid, fast):
    """`grid` (tuples of parameter values) as `pytest.param`s, those not in `fast` marked slow: the
    default run checks the `fast` cases (chosen so every pair of option values meets at least
    once), `pytest -m ""` (CI) the whole grid, with no case run twice."""
    import pytest

    fast = set(fast)
    missing = fast - set(grid)
    assert not missing, f"fast cases outside the grid: {sorted(missing, key=str)}"
    return [case if case in fast else pytest.param(*case, marks=pytest.mark.slow) for case in grid]


def covers_every_pair(cases, grid):
    """Whether `cases` contain every pair of values of any two options that occurs in `grid`."""
    pairs = lambda rows: {(i, a, j, b) for row in rows for i, a in enumerate(row) for j, b in enumerate(row) if i < j}
    return pairs(grid) <= pairs(cases)


def each_value_once(**axes):
    """`(names, cases)` for `pytest.mark.parametrize`: the product of `axes` (name: values), all but
    a diagonal walk marked slow. The default run takes the walk's `max(len(values))` cases, which
    give every value of every axis once; `-m ""` runs the whole product."""
    values = list(axes.values())
    walk = {tuple(v[i % len(v)] for v in values) for i in range(max(map(len, values)))}
    cases = itertools.product(*values)
    return tuple(axes), [case if case in walk else pytest.param(*case, marks=pytest.mark.slow) for case in cases]


def fast_and_slow(cases, fast_indices):
    """`cases` as `pytest.param`s, all but those at `fast_indices` marked slow."""
    import pytest

    return [case if i in fast_indices else pytest.param(*case, marks=pytest.mark.slow) for i, case in enumerate(cases)]
