"""`jaxrnn compare`: the hand-derived backward (`rnn`) next to `jax.grad` (`rnn_autodiff`).

Both variants take the same gradient step: `jax.value_and_grad` of the loss
`L = Σ ca ⊙ a + Σ cy ⊙ y` with respect to `(x, a0, parameters)`, jitted, on the current
default device. Each step is measured four ways:

- **jaxpr equations** (`jax.make_jaxpr` of the step): every equation once, where it is
  written, sub-jaxprs included (an equation in a scan body counts once, not once per step);
  and, by the innermost scan holding them, the equations of forward scan bodies
  (`reverse=False`), of backward scan bodies (`reverse=True`: the hand-written reverse scan,
  or the scan `jax.grad` transposes out of the forward one) and the matrix products
  (`dot_general`) among the latter.
- **saved residuals**: what the forward pass keeps for the backward pass: the distinct
  arrays the function returned by `jax.vjp(loss, x, a0, parameters)` closes over (its
  pytree leaves), traced with `jax.eval_shape`, so nothing is computed. This is the list
  `jax.ad_checkpoint.print_saved_residuals` prints. It is split into inputs kept by
  reference (`x`, `a0`, the parameters and the loss weights: no new memory) and arrays the
  forward pass computes (hidden states, predictions, intermediates: new memory).
- **compiled temp memory**: XLA's `temp_size_in_bytes` for the jitted step, after XLA's
  own optimisations (scratch buffers and residuals alive between forward and backward).
- **median step time**: the variants timed interleaved (A B A B ...), after warm-up.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _jaxpr, rnn, rnn_autodiff
from jaxrnn._measure import Timing, compiled_memory, interleaved_timings

HAND = "rnn (hand VJP)"
AUTODIFF = "rnn_autodiff (jax.grad)"
DTYPES = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16}


class EquationCounts(NamedTuple):
    """Equations of a jaxpr, each counted once where it is written.

    Attributes:
      total: all equations, those of nested jaxprs (scan bodies, jit calls) included.
      forward_scan: equations whose innermost enclosing scan runs forward (`reverse=False`).
      backward_scan: equations whose innermost enclosing scan runs backward (`reverse=True`).
      backward_scan_products: the `dot_general` equations among `backward_scan`.
    """

    total: int
    forward_scan: int
    backward_scan: int
    backward_scan_products: int


class SavedResiduals(NamedTuple):
    """The distinct arrays a VJP keeps from the forward pass for the backward pass.

    Attributes:
      arrays: how many.
      input_bytes: bytes of those that are inputs of the step, kept by reference.
      computed_bytes: bytes of those the forward pass computes: memory held until the backward pass.
    """

    arrays: int
    input_bytes: int
    computed_bytes: int


class Measurement(NamedTuple):
    """One variant's gradient step: its jaxpr, its residuals, XLA's temp bytes, and its interleaved timing."""

    equations: EquationCounts
    residuals: SavedResiduals
    temp_bytes: int
    step_time: Timing


def weighted_loss(forward: Callable) -> Callable:
    """`L(x, a0, parameters, ca, cy) = Σ ca ⊙ a + Σ cy ⊙ y` for `(a, y) = forward(x, a0, parameters)`."""

    def loss(x, a0, params, ca, cy):
        a, y = forward(x, a0, params, layout="seed")
        return jnp.sum(ca * a) + jnp.sum(cy * y)

    return loss


def gradient_step(forward: Callable) -> Callable:
    """`(x, a0, parameters, ca, cy) -> (L, (dx, da0, dparameters))`, not jitted."""
    return jax.value_and_grad(weighted_loss(forward), argnums=(0, 1, 2))


def count_equations(jaxpr) -> EquationCounts:
    """Counts the equations of a (closed) jaxpr and of every jaxpr nested in it.

    Raises:
      RuntimeError: this JAX release's scan equations do not say their direction (see `jaxrnn._jaxpr`).
    """
    counts = {"total": 0, "forward": 0, "backward": 0, "products": 0}

    def walk(eqns, innermost_scan):
        for eqn in eqns:
            counts["total"] += 1
            if innermost_scan is not None:
                counts[innermost_scan] += 1
                counts["products"] += innermost_scan == "backward" and eqn.primitive.name == "dot_general"
            inner = innermost_scan
            if _jaxpr.is_scan(eqn):
                inner = "backward" if _jaxpr.scan_is_reverse(eqn) else "forward"
            for sub in _jaxpr.sub_jaxprs(eqn):
                walk(_jaxpr.equations_of(sub), inner)

    walk(_jaxpr.equations_of(jaxpr), None)
    return EquationCounts(counts["total"], counts["forward"], counts["backward"], counts["products"])


def saved_residuals(forward: Callable, x, a0, params, ca, cy) -> SavedResiduals:
    """What `jax.vjp` of the weighted loss through `forward` keeps, by shape only (nothing runs)."""

    def residuals(x, a0, params, ca, cy):
        _, vjp_fn = jax.vjp(lambda x, a0, params: weighted_loss(forward)(x, a0, params, ca, cy), x, a0, params)
        inputs = {id(v) for v in jax.tree_util.tree_leaves((x, a0, params, ca, cy))}
        distinct = {id(v): v for v in jax.tree_util.tree_leaves(vjp_fn) if isinstance(v, jax.Array)}
        kept = [v for key, v in distinct.items() if key in inputs]
        computed = [v for key, v in distinct.items() if key not in inputs]
        return kept, computed

    kept, computed = jax.eval_shape(residuals, x, a0, params, ca, cy)
    size = lambda arrays: sum(int(np.prod(v.shape)) * jnp.dtype(v.dtype).itemsize for v in arrays)
    return SavedResiduals(len(kept) + len(computed), size(kept), size(computed))


def random_inputs(seed: int, sizes: tuple[int, int, int, int, int], dtype):
    """Random `(x, a0, parameters, ca, cy)` for `sizes = (n_x, n_a, n_y, m, T_x)`, on the default device.

    Drawn with numpy (the values do not matter here, only their sizes), so nothing is compiled.
    """
    n_x, n_a, n_y, m, T_x = sizes
    rng = np.random.default_rng(seed)
    draw = lambda shape, scale: jnp.asarray(scale * rng.standard_normal(shape, np.float32), dtype)
    params = {
        "Wax": draw((n_a, n_x), n_x**-0.5),
        "Waa": draw((n_a, n_a), n_a**-0.5),
        "Wya": draw((n_y, n_a), n_a**-0.5),
        "ba": draw((n_a, 1), 0.1),
        "by": draw((n_y, 1), 0.1),
    }
    x, a0 = draw((n_x, m, T_x), 1.0), draw((n_a, m), 0.5)
    return x, a0, params, draw((n_a, m, T_x), 1.0), draw((n_y, m, T_x), 1.0)


def variants(checkpoint_every: int | None = None) -> dict[str, Callable]:
    """The forwards compared: `rnn`, `rnn_autodiff`, and `rnn` with checkpointing when asked."""
    forwards = {HAND: rnn, AUTODIFF: rnn_autodiff}
    if checkpoint_every is not None:
        name = f"rnn, checkpoint_every={checkpoint_every}"
        forwards[name] = functools.partial(rnn, checkpoint_every=checkpoint_every)
    return forwards


def compare(sizes, dtype=jnp.float32, repeats=20, seed=0, checkpoint_every=None) -> dict[str, Measurement]:
    """Measures each variant's gradient step on the current default device.

    Args:
      sizes: `(n_x, n_a, n_y, m, T_x)`.
      dtype: float32, bfloat16, or float64 (inside `jax.enable_x64(True)`).
      repeats: timed rounds (interleaved).
      seed: for the random inputs.
      checkpoint_every: also measure `rnn(..., checkpoint_every=k)` when an int.

    Returns:
      `{variant name: Measurement}`, `rnn` first.

    Raises:
      RuntimeError: no forward or no backward scan found in a step's jaxpr (a JAX release that
        `jaxrnn._jaxpr` does not read yet), rather than counts of zero.
    """
    if jax.dtypes.canonicalize_dtype(dtype) != jnp.dtype(dtype):  # float64 while 64-bit mode is off
        raise ValueError("compare: dtype=float64 needs 64-bit JAX; call it inside `with jax.enable_x64(True):`")
    inputs = random_inputs(seed, tuple(sizes), dtype)
    forwards = variants(checkpoint_every)
    steps = {name: gradient_step(forward) for name, forward in forwards.items()}
    equations = {name: count_equations(jax.make_jaxpr(step)(*inputs)) for name, step in steps.items()}
    for name, counts in equations.items():
        if not (counts.forward_scan and counts.backward_scan):  # every gradient step has both
            raise RuntimeError(
                f"compare: found no forward or no backward scan in the jaxpr of {name}'s gradient step under "
                f"jax {jax.__version__} ({counts}); jaxrnn/_jaxpr.py needs updating for this JAX release"
            )
    jitted = {name: jax.jit(step) for name, step in steps.items()}
    timings = interleaved_timings({name: functools.partial(step, *inputs) for name, step in jitted.items()}, repeats)
    return {
        name: Measurement(
            equations[name],
            saved_residuals(forward, *inputs),
            compiled_memory(steps[name], *inputs).temp,
            timings[name],
        )
        for name, forward in forwards.items()
    }


def _bytes(n: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _seconds(s: float) -> str:
    return f"{s * 1e3:.3f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} µs"


ROWS = (
    ("jaxpr equations, all", lambda r: r.equations.total, str),
    ("  in forward scan bodies", lambda r: r.equations.forward_scan, str),
    ("  in backward scan bodies", lambda r: r.equations.backward_scan, str),
    ("  matrix products in backward scan bodies", lambda r: r.equations.backward_scan_products, str),
    ("saved residuals, arrays", lambda r: r.residuals.arrays, str),
    ("saved residuals computed by the forward", lambda r: r.residuals.computed_bytes, _bytes),
    ("saved residuals that are inputs", lambda r: r.residuals.input_bytes, _bytes),
    ("compiled temp memory", lambda r: r.temp_bytes, _bytes),
    ("median step time", lambda r: r.step_time.median, _seconds),
)


def format_table(results: dict[str, Measurement]) -> str:
    """A Markdown table: one row per measure, one column per variant, and autodiff ÷ hand."""
    header = ("measure", *results, "autodiff ÷ hand")
    rows = []
    for label, value, fmt in ROWS:
        hand, auto = value(results[HAND]), value(results[AUTODIFF])
        ratio = f"{auto / hand:.2f}" if hand else "-"
        rows.append((label, *(fmt(value(r)) for r in results.values()), ratio))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-x", type=int, default=27, help="input size (default 27)")
    parser.add_argument("--n-a", type=int, default=64, help="hidden size (default 64)")
    parser.add_argument("--n-y", type=int, default=27, help="output size (default 27)")
    parser.add_argument("--batch", "-m", type=int, default=16, help="batch size m (default 16)")
    parser.add_argument("--steps", "-T", type=int, default=50, help="sequence length T_x (default 50)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="default float32")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds, interleaved (default 20)")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="also measure rnn with checkpointing")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def main(args: argparse.Namespace) -> int:
    sizes = (args.n_x, args.n_a, args.n_y, args.batch, args.steps)
    names = ("--n-x", "--n-a", "--n-y", "--batch", "--steps", "--repeats", "--checkpoint-every")
    for name, value in zip(names, (*sizes, args.repeats, args.checkpoint_every)):
        if value is not None and value < 1:
            raise SystemExit(f"jaxrnn compare: {name}={value} must be a positive int")
    (device,) = jnp.zeros(()).devices()  # where new arrays go: the current default device
    kind = f" ({device.device_kind})" if device.device_kind != device.platform else ""
    print(
        f"jaxrnn compare: n_x={sizes[0]} n_a={sizes[1]} n_y={sizes[2]} m={sizes[3]} T_x={sizes[4]} "
        f"{args.dtype} on {device.platform}{kind}, {args.repeats} interleaved repeats"
    )
    with jax.enable_x64(args.dtype == "float64"):
        results = compare(sizes, DTYPES[args.dtype], args.repeats, args.seed, args.checkpoint_every)
    print(format_table(results))
    return 0
