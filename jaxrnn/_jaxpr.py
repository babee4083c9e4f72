"""Reading jaxprs, for the study tools (`jaxrnn compare`, notebook 2): the one place that looks inside them.

An equation keeps the programs it runs (a scan's body, a `jit`'s callee, a `cond`'s branches) among its
parameters, under names and in types that change between JAX releases: a scan's body is a `ClosedJaxpr`
in jax 0.10 and an open `Jaxpr` in jax 0.12. So sub-programs are found without naming them: every value
of `eqn.params` that is a `Jaxpr` or a `ClosedJaxpr`, also inside tuples and lists. The one parameter read
by name is a scan's direction, `reverse`; where a JAX release does not have it, `scan_is_reverse` raises
a `RuntimeError` that names the release, so that no count silently drops to zero.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
from jax.extend.core import ClosedJaxpr, Jaxpr


def _open(value) -> Jaxpr | None:
    """The open jaxpr held by `value` (a `Jaxpr`, or a `ClosedJaxpr`'s `.jaxpr`), or None."""
    if isinstance(value, ClosedJaxpr):
        return value.jaxpr
    if isinstance(value, Jaxpr):
        return value
    return None


def sub_jaxprs(eqn) -> list[Jaxpr]:
    """The jaxprs among `eqn`'s parameters (also inside tuples and lists), opened, in parameter order."""
    found = []
    pending = list(eqn.params.values())
    while pending:
        value = pending.pop(0)
        if isinstance(value, tuple | list):
            pending[:0] = value
        elif (jaxpr := _open(value)) is not None:
            found.append(jaxpr)
    return found


def equations_of(jaxpr) -> list:
    """The equations written at the top level of a (closed) jaxpr, without those nested in them."""
    opened = _open(jaxpr)
    if opened is None:
        raise TypeError(f"expected a Jaxpr or a ClosedJaxpr, got {type(jaxpr).__name__}")
    return list(opened.eqns)


def all_equations(jaxpr) -> Iterator:
    """Every equation of a (closed) jaxpr and of the jaxprs nested in it, each once, where it is written."""
    for eqn in equations_of(jaxpr):
        yield eqn
        for sub in sub_jaxprs(eqn):
            yield from all_equations(sub)


def is_scan(eqn) -> bool:
    return eqn.primitive.name == "scan"


def scan_is_reverse(eqn) -> bool:
    """Whether a scan equation runs backward in time (`jax.lax.scan(..., reverse=True)`).

    Raises:
      RuntimeError: the equation has no boolean `reverse` parameter in this JAX release.
    """
    reverse = eqn.params.get("reverse")
    if not isinstance(reverse, bool):
        raise RuntimeError(
            f"jaxrnn: cannot read the direction of a scan in jax {jax.__version__}: the scan equation has no "
            f"boolean 'reverse' parameter (its parameters: {sorted(eqn.params)}); jaxrnn/_jaxpr.py needs "
            "updating for this JAX release"
        )
    return reverse


def scan_bodies(jaxpr, reverse: bool) -> list[Jaxpr]:
    """The bodies of the scans, at any depth, that run backward (`reverse=True`) or forward (`reverse=False`)."""
    return [
        body
        for eqn in all_equations(jaxpr)
        if is_scan(eqn) and scan_is_reverse(eqn) == reverse
        for body in sub_jaxprs(eqn)
    ]


def describe(eqn) -> str:
    """`f32[16,64] = tanh f32[16,64]`: an equation with its operand types, in one line."""

    def show(var):
        aval = getattr(var, "aval", None)
        if aval is None:
            return str(var)
        return aval.str_short(short_dtypes=True) if hasattr(aval, "str_short") else str(aval)

    return f"{', '.join(map(show, eqn.outvars))} = {eqn.primitive.name} {' '.join(map(show, eqn.invars))}"
