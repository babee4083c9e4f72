"""What the single-layer variants compute: the shared numbers, the two workloads, the oracle
and the checks that every timed variant computes the same thing.

Workloads (the loss of one `value_and_grad` step over all parameters, `x` and `a0`):

- `ce`: the mean cross-entropy of the softmax head, `L = −Σ_{t,i} log y_t[i, label_{t,i}] / (m·T)`;
  the hidden states `a` get no cotangent from the loss (for the hand VJP a symbolic zero);
- `dense`: `L = Σ a ⊙ g_a + Σ y ⊙ g_y` with fixed random cotangents `g_a`, `g_y`: both outputs
  get a dense gradient, as inside a larger model.

The oracle is `jax.grad` of `jaxrnn.rnn_autodiff` in float32 with full-precision products, on
the same numbers (rounded to the variants' dtype first). A variant agrees when

    |L − L_ref| ≤ LOSS_TOLERANCE · Σ|terms of L_ref|     (rounding is relative to the terms,
                                                           not to a sum that may cancel)
    max over every gradient g of max|g − g_ref| / max|g_ref| ≤ GRADIENT_TOLERANCE
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import rnn_autodiff
from jaxrnn._measure import compiled_memory

WORKLOADS = ("ce", "dense")
# Relative tolerances, by dtype; float32 on a GPU or TPU multiplies in TF32 or bfloat16 passes
# by default (the variants do; the oracle does not), hence its own row.
LOSS_TOLERANCE = {"float32": 1e-4, "float32-accelerator": 1e-3, "bfloat16": 5e-2}
GRADIENT_TOLERANCE = {"float32": 1e-4, "float32-accelerator": 2e-2, "bfloat16": 1.5e-1}


def tolerance_key(dtype, platform: str) -> str:
    name = jnp.dtype(dtype).name
    return f"{name}-accelerator" if name == "float32" and platform != "cpu" else name


GATES = {"vanilla": 1, "gru": 3, "lstm": 4}


class Sizes(NamedTuple):
    n_x: int
    n_a: int
    n_y: int
    m: int
    T: int

    def model_flops(self, cell: str = "vanilla") -> int:
        """Matrix-product FLOPs of one gradient step: forward + 2× for the backward; a cell with
        `G` gates does `G` times the recurrent and input products."""
        G = GATES[cell]
        return 3 * 2 * self.T * self.m * (G * self.n_a**2 + G * self.n_a * self.n_x + self.n_y * self.n_a)


class Variant(NamedTuple):
    name: str
    step: Callable[[], object]  # one gradient step; returns what to block on
    loss: float  # the loss value of the first step
    temp_bytes: int | None  # XLA's compiled temp memory (None for non-XLA variants)
    gradients: object  # the first step's gradients as numpy float32, in the oracle's structure


class Reference(NamedTuple):
    """The oracle's loss, the sum of the absolute values of its terms, and its gradients."""

    loss: float
    loss_scale: float
    gradients: object


class Problem(NamedTuple):
    """The shared numbers, as numpy arrays in the seed layout."""

    params: dict[str, np.ndarray]
    x: np.ndarray  # (n_x, m, T)
    a0: np.ndarray | tuple  # (n_a, m); for the LSTM a pair (h0, c0) of them
    labels: np.ndarray  # (m, T) int
    g_a: np.ndarray  # (n_a, m, T), the dense workload's cotangent of a
    g_y: np.ndarray  # (n_y, m, T), and of y
    cell: str = "vanilla"


def make_problem(sizes: Sizes, seed: int = 0, cell: str = "vanilla") -> Problem:
    """Random numbers for `cell`: orthogonal recurrent blocks, inputs scaled by 1/√fan-in, non-zero
    biases. The vanilla cell's are drawn as they always were (the same numbers for a seed)."""
    rng = np.random.default_rng(seed)
    n_x, n_a, n_y, m, T = sizes
    G = GATES[cell]
    scale = lambda fan_in: 1 / np.sqrt(fan_in)
    params = {
        "Wax": rng.standard_normal((G * n_a, n_x)) * scale(n_x),
        "Waa": np.concatenate([np.linalg.qr(rng.standard_normal((n_a, n_a)))[0] for _ in range(G)]),
        "Wya": rng.standard_normal((n_y, n_a)) * scale(n_a),
        "ba": 0.1 * rng.standard_normal((G * n_a, 1)),
        "by": 0.1 * rng.standard_normal((n_y, 1)),
    }
    x = rng.standard_normal((n_x, m, T))
    a0 = 0.5 * rng.standard_normal((n_a, m))
    labels = rng.integers(0, n_y, (m, T))
    g_a, g_y = (rng.standard_normal((n, m, T)) / (m * T) for n in (n_a, n_y))
    if cell == "gru":
        params["bhn"] = 0.1 * rng.standard_normal((n_a, 1))
    if cell == "lstm":
        a0 = (a0, 0.5 * rng.standard_normal((n_a, m)))
    f32 = lambda v: np.asarray(v, np.float32)
    arrays = jax.tree_util.tree_map(f32, (params, x, a0, g_a, g_y))
    return Problem(arrays[0], arrays[1], arrays[2], labels, arrays[3], arrays[4], cell)


def state_in(a0, layout: str):
    """A seed-layout state `(n_a, m)` (or a pair of them) as `layout` takes it: `(m, n_a)` outside the seed layout."""
    return jax.tree_util.tree_map(lambda v: v if layout == "seed" else v.T, a0)


def rounded(problem: Problem, dtype) -> Problem:
    """The problem with `x`, `a0` and the parameters rounded to `dtype` (kept as float32)."""
    cast = lambda v: np.asarray(jnp.asarray(v, dtype).astype(jnp.float32))
    params = {k: cast(v) for k, v in problem.params.items()}
    return problem._replace(params=params, x=cast(problem.x), a0=jax.tree_util.tree_map(cast, problem.a0))


def to_layout(sequence: np.ndarray, layout: str) -> np.ndarray:
    """A seed-layout `(n, m, T)` array in `layout`; labels `(m, T)` likewise."""
    if layout == "seed":
        return sequence
    if sequence.ndim == 2:
        return sequence.T if layout == "time_major" else sequence
    return np.transpose(sequence, (2, 1, 0) if layout == "time_major" else (1, 2, 0))


def from_layout(sequence, layout: str) -> np.ndarray:
    """The inverse of `to_layout` for `(…, n)` sequences, as a float32 numpy array."""
    sequence = np.asarray(sequence, np.float32)
    if layout == "seed":
        return sequence
    return np.transpose(sequence, (2, 1, 0) if layout == "time_major" else (2, 0, 1))


class Targets(NamedTuple):
    """What the loss compares the outputs with, in one layout (float32, int labels)."""

    labels: jax.Array
    g_a: jax.Array
    g_y: jax.Array


def targets(problem: Problem, layout: str, device) -> Targets:
    put = lambda v: jax.device_put(jnp.asarray(v), device)
    return Targets(*(put(to_layout(v, layout)) for v in (problem.labels, problem.g_a, problem.g_y)))


def workload_loss(workload: str, a, y, goal: Targets, feature_axis: int):
    """The loss in float32 from `a` and `y` in a layout whose features sit on `feature_axis`."""
    y = y.astype(jnp.float32)
    if workload == "ce":
        picked = jnp.take_along_axis(y, jnp.expand_dims(goal.labels, feature_axis), axis=feature_axis)
        return -jnp.mean(jnp.log(picked))
    return jnp.sum(a.astype(jnp.float32) * goal.g_a) + jnp.sum(y * goal.g_y)


def _loss_terms(workload, a, y, goal: Targets):
    """The terms whose sum is the loss, in the seed layout (for Σ|terms|)."""
    if workload == "ce":
        return -jnp.log(jnp.take_along_axis(y, goal.labels[None], axis=0)) / goal.labels.size
    return jnp.concatenate([(a * goal.g_a).ravel(), (y * goal.g_y).ravel()])


def seed_gradients(dx, da0, dparams) -> tuple:
    """`(dx, da0, dparams)` in the seed layout as numpy float32: what every variant is checked on
    (`da0` a tuple `(dh0, dc0)` for the LSTM)."""
    as_numpy = lambda v: np.asarray(jnp.asarray(v).astype(jnp.float32))
    da0 = tuple(map(as_numpy, da0)) if isinstance(da0, tuple) else as_numpy(da0)
    return as_numpy(dx), da0, {k: as_numpy(v) for k, v in dparams.items()}


def reference(problem: Problem, workload: str, dtype) -> Reference:
    """The oracle: `jax.grad` of `rnn_autodiff` in float32 on the numbers rounded to `dtype`."""
    problem = rounded(problem, dtype)
    goal = targets(problem, "seed", jax.devices()[0])

    def loss(x, a0, params):
        a, y = rnn_autodiff(x, a0, params, layout="seed", cell=problem.cell)
        scale = jnp.sum(jnp.abs(_loss_terms(workload, a, y, goal)))
        return workload_loss(workload, a, y, goal, 0), scale

    with jax.default_matmul_precision("float32"):
        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))
        (value, scale), (dx, da0, dparams) = step(problem.x, problem.a0, problem.params)
    return Reference(
        float(value), float(scale), seed_gradients(dx, tuple(da0) if problem.cell == "lstm" else da0, dparams)
    )


def relative_error(actual, reference) -> float:
    """max over the leaves of max|actual − reference| / max|reference| (float64)."""
    errors = []
    for act, ref in zip(jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(reference), strict=True):
        act, ref = np.asarray(act, np.float64), np.asarray(ref, np.float64)
        if act.shape != ref.shape:
            return float("inf")
        scale = np.max(np.abs(ref), initial=0.0)
        errors.append(float(np.max(np.abs(act - ref), initial=0.0) / (scale if scale > 0 else 1.0)))
    return max(errors, default=0.0)


def agreement(variant: Variant, ref: Reference, key: str) -> dict:
    """How far `variant` is from the oracle, and whether within the tolerances for `key`."""
    same_structure = jax.tree_util.tree_structure(variant.gradients) == jax.tree_util.tree_structure(ref.gradients)
    loss_error = abs(variant.loss - ref.loss) / (ref.loss_scale if ref.loss_scale > 0 else 1.0)
    gradient_error = relative_error(variant.gradients, ref.gradients) if same_structure else float("inf")
    return {
        "loss": variant.loss,
        "loss_error": loss_error,
        "loss_matches": bool(loss_error <= LOSS_TOLERANCE[key]),
        "gradient_error": gradient_error,
        "gradient_matches": bool(gradient_error <= GRADIENT_TOLERANCE[key]),
    }


def compiled_step(loss: Callable, args: tuple, argnums=(0, 1, 2)) -> tuple[Callable, float, object, int]:
    """`jit(value_and_grad(loss))` run once on `args`: `(step, loss value, gradients, temp bytes)`."""
    value_and_grad = jax.value_and_grad(loss, argnums=argnums)
    step = jax.jit(value_and_grad)
    value, grads = step(*args)
    temp = compiled_memory(value_and_grad, *args).temp
    return (lambda: step(*args)), float(value), grads, temp
