"""Gradient verification: the hand-derived backward against independent oracles.

On the first device of every local platform (CPU, and GPU/TPU when present), for each cell
(vanilla, GRU, LSTM) and each dtype, the gradients of a random loss over both outputs,
`L = Σ ca ⊙ a + Σ cy ⊙ y`, taken through `rnn` (hand-derived VJP) are compared with

- `jax.grad` of `rnn_autodiff` (float32, and float64 where the device has it), leaf by
  leaf: `max_abs = max|g − g_ref|`, `max_rel = max_abs / max|g_ref|`;
- central finite differences in float64 along a random unit direction v per leaf:
  `(L(θ + εv) − L(θ − εv)) / 2ε` against `⟨g, v⟩`, the difference relative to `‖g‖`.

Used by `jaxrnn verify`, the tests and the notebooks.
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import rnn, rnn_autodiff

# Relative tolerances against jax.grad, per dtype; and for finite differences (float64).
AUTODIFF_TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
FINITE_DIFFERENCE_TOLERANCE = 1e-6
FINITE_DIFFERENCE_STEP = 1e-5  # near the best step for central differences in float64


class Check(NamedTuple):
    device: str
    cell: str
    dtype: str
    oracle: str
    argument: str
    max_abs: float
    max_rel: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return bool(self.max_rel <= self.tolerance)  # False for NaN


GATES = {"vanilla": 1, "gru": 3, "lstm": 4}


def random_problem(key, n_x, n_a, n_y, m, T_x, dtype, cell="vanilla"):
    """Random `(x, a0, parameters)` and loss weights `(ca, cy)` of the given sizes, seed layout.

    Drawn with numpy from a generator seeded by the `jax.random` key: a new set of sizes
    compiles nothing (eager `jax.random` and the QR of an orthogonal draw would). `Waa` is
    orthogonal (gate by gate), `Wax` and `Wya` scaled by 1/sqrt(fan-in), and the biases
    non-zero, so that every gradient is tested at a generic point. An LSTM's `a0` is a pair
    `(h0, c0)`; the vanilla cell's numbers are drawn first, as they always were.
    """
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    normal = lambda *shape: rng.standard_normal(shape)
    G = GATES[cell]
    params = {
        "Wax": normal(G * n_a, n_x) / np.sqrt(n_x),
        "Waa": np.concatenate([np.linalg.qr(normal(n_a, n_a))[0] for _ in range(G)]),
        "Wya": normal(n_y, n_a) / np.sqrt(n_a),
        "ba": 0.1 * normal(G * n_a, 1),
        "by": 0.1 * normal(n_y, 1),
    }
    arrays = (normal(n_x, m, T_x), 0.5 * normal(n_a, m), params, normal(n_a, m, T_x), normal(n_y, m, T_x))
    x, a0, params, ca, cy = arrays
    if cell == "gru":
        params["bhn"] = 0.1 * normal(n_a, 1)
    if cell == "lstm":
        a0 = (a0, 0.5 * normal(n_a, m))
    x, a0, params, ca, cy = jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), (x, a0, params, ca, cy))
    return (x, a0, params), (ca, cy)


def weighted_sum_loss(forward, ca, cy, cell="vanilla"):
    """`L(x, a0, parameters) = Σ ca ⊙ a + Σ cy ⊙ y` for `forward` in {rnn, rnn_autodiff}, seed layout."""

    def loss(x, a0, params):
        a, y = forward(x, a0, params, layout="seed", cell=cell)
        return jnp.sum(ca * a) + jnp.sum(cy * y)

    return loss


def _named_leaves(grads):
    dx, da0, dparams = grads
    states = {"a0": da0} if not isinstance(da0, tuple) else {"h0": da0[0], "c0": da0[1]}
    return {"x": dx, **states, **{k: dparams[k] for k in sorted(dparams)}}


def compare_with_autodiff(device, dtype, sizes, key, cell="vanilla") -> list[Check]:
    with jax.default_device(device):
        inputs, (ca, cy) = random_problem(key, *sizes, dtype, cell)
        grad = lambda f: jax.jit(jax.grad(weighted_sum_loss(f, ca, cy, cell), argnums=(0, 1, 2)))
        with jax.default_matmul_precision("float32"):
            hand = _named_leaves(grad(rnn)(*inputs))
            auto = _named_leaves(grad(rnn_autodiff)(*inputs))
    checks = []
    for name, reference in auto.items():
        max_abs = float(jnp.max(jnp.abs(hand[name] - reference)))
        scale = float(jnp.max(jnp.abs(reference)))
        max_rel = max_abs / scale if scale > 0 else max_abs
        tolerance = AUTODIFF_TOLERANCE[jnp.dtype(dtype).name]
        dtype_name = jnp.dtype(dtype).name
        checks.append(Check(device.platform, cell, dtype_name, "jax.grad", name, max_abs, max_rel, tolerance))
    return checks


def compare_with_finite_differences(device, sizes, key, cell="vanilla") -> list[Check]:
    """Needs float64 (call inside `jax.enable_x64(True)`)."""
    with jax.default_device(device):
        inputs, (ca, cy) = random_problem(key, *sizes, jnp.float64, cell)
        loss = jax.jit(weighted_sum_loss(rnn, ca, cy, cell))
        grads = _named_leaves(jax.jit(jax.grad(weighted_sum_loss(rnn, ca, cy, cell), argnums=(0, 1, 2)))(*inputs))
        names = list(grads)
        flat_inputs = _named_leaves(inputs)
        checks = []
        for name, direction_key in zip(names, jax.random.split(key, len(names))):
            v = jax.random.normal(direction_key, flat_inputs[name].shape, jnp.float64)
            v = v / jnp.linalg.norm(v)
            step = FINITE_DIFFERENCE_STEP

            def shifted(sign, name=name, v=v, step=step):
                moved = dict(flat_inputs, **{name: flat_inputs[name] + sign * step * v})
                params = {k: moved[k] for k in inputs[2]}
                a0 = (moved["h0"], moved["c0"]) if cell == "lstm" else moved["a0"]
                return loss(moved["x"], a0, params)

            finite_difference = float((shifted(1.0) - shifted(-1.0)) / (2 * step))
            analytic = float(jnp.vdot(grads[name], v))
            max_abs = abs(finite_difference - analytic)
            # Relative to ‖g‖ = max over unit directions of |⟨g, v⟩|: a random v can make
            # ⟨g, v⟩ itself nearly zero, which would turn rounding error into a false alarm.
            max_rel = max_abs / max(float(jnp.linalg.norm(grads[name])), 1e-300)
            checks.append(
                Check(
                    device.platform, cell, "float64", "finite diff", name, max_abs, max_rel, FINITE_DIFFERENCE_TOLERANCE
                )
            )
    return checks


def supports_float64(device) -> bool:
    return device.platform != "tpu"


def verify_all_devices(sizes=(8, 16, 6, 4, 12), seed=0, devices=None, cells=tuple(GATES)) -> list[Check]:
    """Runs every check for every cell on every device (default: all local devices of every platform)."""
    devices = devices if devices is not None else local_devices()
    key = jax.random.PRNGKey(seed)
    checks = []
    for device in devices:
        for cell in cells:
            checks += compare_with_autodiff(device, jnp.float32, sizes, key, cell)
            if supports_float64(device):
                # float64 is switched on for this block only; global configuration is untouched.
                with jax.enable_x64(True):
                    checks += compare_with_autodiff(device, jnp.float64, sizes, key, cell)
                    checks += compare_with_finite_differences(device, sizes, key, cell)
    return checks


def local_devices():
    """The first local device of each available platform (CPU always; GPU/TPU when present)."""
    devices = {}
    for platform in ("cpu", "gpu", "tpu"):
        try:
            found = jax.devices(platform)
        except RuntimeError:
            continue
        if found:
            devices[platform] = found[0]
    return list(devices.values())


def format_table(checks: list[Check]) -> str:
    header = ("device", "cell", "dtype", "oracle", "argument", "max abs err", "max rel err", "tolerance", "result")
    rows = [
        (
            c.device,
            c.cell,
            c.dtype,
            c.oracle,
            c.argument,
            f"{c.max_abs:.2e}",
            f"{c.max_rel:.2e}",
            f"{c.tolerance:.0e}",
            "pass" if c.passed else "FAIL",
        )
        for c in checks
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-x", type=int, default=8, help="input size (default 8)")
    parser.add_argument("--n-a", type=int, default=16, help="hidden size (default 16)")
    parser.add_argument("--n-y", type=int, default=6, help="output size (default 6)")
    parser.add_argument("--batch", "-m", type=int, default=4, help="batch size m (default 4)")
    parser.add_argument("--steps", "-T", type=int, default=12, help="sequence length T_x (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--cells", default=",".join(GATES), help="comma-separated: vanilla, gru, lstm (default all three)"
    )


def main(args: argparse.Namespace) -> int:
    sizes = (args.n_x, args.n_a, args.n_y, args.batch, args.steps)
    for name, value in zip(("--n-x", "--n-a", "--n-y", "--batch", "--steps"), sizes):
        if value < 1:
            raise SystemExit(f"jaxrnn verify: {name}={value} must be a positive int")
    cells = [cell for cell in args.cells.split(",") if cell]
    unknown = sorted(set(cells) - set(GATES))
    if unknown or not cells:
        raise SystemExit(f"jaxrnn verify: --cells {args.cells!r}: choose from {list(GATES)}")
    print(f"jaxrnn verify: n_x={sizes[0]} n_a={sizes[1]} n_y={sizes[2]} m={sizes[3]} T_x={sizes[4]} seed={args.seed}")
    checks = verify_all_devices(sizes, args.seed, cells=cells)
    print(format_table(checks))
    failed = [c for c in checks if not c.passed]
    print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
