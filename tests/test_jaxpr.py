"""`jaxrnn._jaxpr`: finds nested jaxprs wherever an equation keeps them, and refuses to guess a scan's direction."""

import re
import types

import jax
import jax.numpy as jnp
import pytest

from jaxrnn import _jaxpr


def program(c, xs):
    c, _ = jax.lax.scan(lambda c, x: (jax.lax.tanh(jax.lax.mul(c, x)), None), c, xs)
    c, _ = jax.lax.scan(lambda c, x: (jax.lax.sin(jax.lax.add(c, x)), None), c, xs, reverse=True)
    return jax.lax.cond(c[0] > 0, jax.lax.exp, jax.lax.log, c)  # two branches: a tuple of jaxprs


def primitives(eqns):
    return {eqn.primitive.name for eqn in eqns}


def test_all_equations_reaches_scan_bodies_and_the_branches_of_a_cond():
    jaxpr = jax.make_jaxpr(program)(jnp.ones(3), jnp.ones((5, 3)))
    found = primitives(_jaxpr.all_equations(jaxpr))
    assert {"scan", "cond", "mul", "tanh", "add", "sin", "exp", "log"} <= found
    assert {"mul", "tanh", "exp"}.isdisjoint(primitives(_jaxpr.equations_of(jaxpr)))  # nested only


def test_scan_bodies_by_direction():
    jaxpr = jax.make_jaxpr(program)(jnp.ones(3), jnp.ones((5, 3)))
    (forward,) = _jaxpr.scan_bodies(jaxpr, reverse=False)
    (backward,) = _jaxpr.scan_bodies(jaxpr, reverse=True)
    assert primitives(_jaxpr.equations_of(forward)) == {"mul", "tanh"}
    assert primitives(_jaxpr.equations_of(backward)) == {"add", "sin"}


def test_a_scan_without_a_readable_direction_raises_naming_the_jax_version():
    scan = types.SimpleNamespace(primitive=types.SimpleNamespace(name="scan"), params={"length": 5})
    assert _jaxpr.is_scan(scan)
    with pytest.raises(RuntimeError, match=rf"scan in jax {jax.__version__}: .* no boolean 'reverse' parameter"):
        _jaxpr.scan_is_reverse(scan)


def test_describe_shows_operand_types():
    jaxpr = jax.make_jaxpr(jax.lax.tanh)(jnp.ones((2, 3), jnp.float32))
    (eqn,) = _jaxpr.equations_of(jaxpr)
    assert re.fullmatch(r"\S*\[2,3\]\S* = tanh \S*\[2,3\]\S*", _jaxpr.describe(eqn))  # f32[2,3] = tanh f32[2,3]
