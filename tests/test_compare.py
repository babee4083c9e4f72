"""`jaxrnn compare`: its counters against known jaxprs and JAX's own residual listing; its numbers' consistency."""

import contextlib
import io
import re

import jax
import jax.ad_checkpoint
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn._jaxpr
from jaxrnn import cli
from jaxrnn.compare import (
    AUTODIFF,
    HAND,
    compare,
    count_equations,
    random_inputs,
    saved_residuals,
    variants,
    weighted_loss,
)

SIZES = (3, 6, 2, 4, 12)  # n_x, n_a, n_y, m, T_x
CHECKPOINT_EVERY = 4


def test_count_equations_on_a_known_jaxpr():
    def f(c, xs, ms):
        c, _ = jax.lax.scan(lambda c, x: (jax.lax.tanh(jax.lax.mul(c, x)), None), c, xs)  # body: mul, tanh
        inner = jax.jit(lambda m, c: jax.lax.dot(m, c))  # a nested jit: its dot_general is in the reverse scan's body

        def back(c, m):
            d, _ = jax.lax.scan(lambda d, x: (jax.lax.add(d, x), None), c, xs)  # nested forward scan: add
            return inner(m, d), None

        c, _ = jax.lax.scan(back, c, ms, reverse=True)  # body: scan, jit
        return jnp.sum(c)  # reduce_sum

    jaxpr = jax.make_jaxpr(f)(jnp.ones(3), jnp.ones((5, 3)), jnp.ones((5, 3, 3)))
    counts = count_equations(jaxpr)
    assert counts.forward_scan == 2 + 1  # mul, tanh; add (innermost scan of the nested one)
    assert counts.backward_scan == 2 + 1  # scan, jit; dot_general inside the jit
    assert counts.backward_scan_products == 1
    assert counts.total == 3 + 2 + 2 + 1 + 1  # top level (scan, scan, reduce_sum) + bodies


def test_compare_refuses_a_jaxpr_in_which_it_finds_no_scans(monkeypatch):
    """A JAX release that renamed the scan primitive must not produce a table of zeros."""
    monkeypatch.setattr(jaxrnn._jaxpr, "is_scan", lambda eqn: False)
    with pytest.raises(RuntimeError, match=rf"no forward or no backward scan .* under jax {jax.__version__}"):
        compare(SIZES, jnp.float32, repeats=1)


def _jax_listing(forward, x, a0, params, ca, cy):
    """Parses `jax.ad_checkpoint.print_saved_residuals` into (bytes of inputs, bytes computed, lines)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        jax.ad_checkpoint.print_saved_residuals(
            lambda x, a0, p: weighted_loss(forward)(x, a0, p, ca, cy), x, a0, params
        )
    itemsize = {"f32": 4, "f64": 8, "bf16": 2, "f16": 2}
    inputs = computed = 0
    lines = out.getvalue().strip().splitlines()
    for line in lines:
        dtype, shape = re.match(r"(\w+)\[([\d,]*)\]", line).groups()
        size = int(np.prod([int(d) for d in shape.split(",") if d])) * itemsize[dtype]
        if "from the argument" in line or "from a constant" in line:
            inputs += size
        else:
            computed += size
    return inputs, computed, len(lines)


@pytest.mark.parametrize("name", [HAND, AUTODIFF, f"rnn, checkpoint_every={CHECKPOINT_EVERY}"])
def test_saved_residuals_agree_with_print_saved_residuals(name):
    inputs = random_inputs(0, SIZES, jnp.float32)
    forward = variants(CHECKPOINT_EVERY)[name]
    residuals = saved_residuals(forward, *inputs)
    input_bytes, computed_bytes, lines = _jax_listing(forward, *inputs)
    assert residuals == (lines, input_bytes, computed_bytes)


def test_numbers_are_consistent(device):
    """Only what holds whatever XLA does and however the backward is tuned.

    - Every step has a forward and a backward scan, so every count is positive.
    - The hand-written reverse scan holds only what depends on the previous step: the tanh
      derivative and one product `Waa^T dz`. The scan `jax.grad` transposes out of the forward
      scan also accumulates `dWaa` inside the loop (a second matrix product per step) and
      its cotangent bookkeeping. So its body has more equations and more products.
    - Without recomputation, reverse mode must keep all T hidden states (n_a·m each); the
      hand rule keeps those plus what its derivation names, no more than jax.grad keeps.
    - With checkpointing, only one state per segment is kept: fewer bytes than without, and
      less compiled temp memory; the hand rule's temp memory is below autodiff's (the claim of
      the README; at these sizes the margins are 20% and more).
    """
    n_x, n_a, n_y, m, T_x = SIZES
    results = compare(SIZES, jnp.float32, repeats=2, checkpoint_every=CHECKPOINT_EVERY)
    hand, auto = results[HAND], results[AUTODIFF]
    checkpointed = results[f"rnn, checkpoint_every={CHECKPOINT_EVERY}"]
    assert list(results) == [HAND, AUTODIFF, f"rnn, checkpoint_every={CHECKPOINT_EVERY}"]
    for result in results.values():
        assert min(result.equations) > 0
        assert len(result.step_time.samples) == 2 and result.step_time.median > 0
    assert hand.equations.backward_scan < auto.equations.backward_scan
    assert hand.equations.backward_scan_products < auto.equations.backward_scan_products
    states_bytes = T_x * n_a * m * 4
    assert auto.residuals.computed_bytes >= states_bytes
    assert states_bytes <= hand.residuals.computed_bytes <= auto.residuals.computed_bytes
    assert checkpointed.residuals.computed_bytes < hand.residuals.computed_bytes
    assert 0 < checkpointed.temp_bytes < hand.temp_bytes < auto.temp_bytes


def test_float64_needs_x64():
    with pytest.raises(ValueError, match=r"compare: dtype=float64 needs 64-bit JAX"):
        compare(SIZES, jnp.float64, repeats=1)


def test_command_prints_the_table(capsys):
    argv = ["compare", "--n-x", "3", "--n-a", "6", "--n-y", "2", "--batch", "4", "--steps", "5", "--repeats", "2"]
    assert cli.main([*argv, "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    assert "jaxrnn compare: n_x=3 n_a=6 n_y=2 m=4 T_x=5 float64 on " in out
    header = next(line for line in out.splitlines() if line.startswith("| measure"))
    assert HAND in header and AUTODIFF in header and "autodiff ÷ hand" in header
    for label in ("jaxpr equations, all", "saved residuals computed by the forward", "compiled temp memory"):
        row = next(line for line in out.splitlines() if label in line)
        assert len(row.split("|")) == len(header.split("|"))
    assert re.search(r"\| median step time +\| [\d.]+ (ms|µs) +\| [\d.]+ (ms|µs) +\| [\d.]+ +\|", out)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "0"], "jaxrnn compare: --steps=0 must be a positive int"),
        (["--repeats", "-1"], "jaxrnn compare: --repeats=-1 must be a positive int"),
        (["--checkpoint-every", "0"], "jaxrnn compare: --checkpoint-every=0 must be a positive int"),
    ],
)
def test_command_rejects_bad_sizes(argv, message):
    with pytest.raises(SystemExit, match=re.escape(message)):
        cli.main(["compare", *argv])
