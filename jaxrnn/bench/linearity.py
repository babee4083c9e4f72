"""`jaxrnn bench --linearity`: gradient steps whose time must stay linear in T.

Each function is timed at T and at 4T in the same interleaved rounds; linear work gives a ratio
near 4 (less where fixed costs weigh), a scan that carries a whole-sequence buffer (copied at
every step) gives ≫ 4. The functions, on the dense workload (both outputs get a cotangent):

- `jax.grad` of `rnn` (the hand-derived backward), for reference;
- `jax.grad` of `rnn_autodiff`: JAX differentiating the forward scan;
- grad-of-grad through `rnn`: the gradient of `½‖∇L‖²` (every gradient of the step), which
  differentiates the hand-derived backward itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn import rnn, rnn_autodiff
from jaxrnn.bench.problem import Sizes, make_problem, targets, workload_loss

FUNCTIONS = {
    "hand": "`jax.grad` of `rnn`",
    "autodiff": "`jax.grad` of `rnn_autodiff`",
    "grad-of-grad": "grad-of-grad through `rnn`",
}
FACTOR = 4  # the longer length is FACTOR · T
LINEAR_LIMIT = 8  # a ratio above this (twice linear) is flagged


def linearity_steps(sizes: Sizes, device, seed: int = 0) -> dict[tuple[str, int], object]:
    """Zero-argument gradient steps keyed by `(function, T)` for T and FACTOR · T, compiled."""
    steps = {}
    for T in (sizes.T, FACTOR * sizes.T):
        for name, step in _steps(sizes._replace(T=T), device, seed).items():
            steps[name, T] = step
    return steps


def _steps(sizes: Sizes, device, seed: int) -> dict[str, object]:
    problem = make_problem(sizes, seed)
    put = lambda v: jax.device_put(jnp.asarray(v), device)
    args = (put(problem.x), put(problem.a0), {k: put(v) for k, v in problem.params.items()})
    goal = targets(problem, "seed", device)

    def loss(forward, x, a0, params):
        a, y = forward(x, a0, params, layout="seed")
        return workload_loss("dense", a, y, goal, 0)

    def half_squared_gradient(x, a0, params):
        grads = jax.grad(lambda *args: loss(rnn, *args), argnums=(0, 1, 2))(x, a0, params)
        return 0.5 * sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grads))

    functions = {
        "hand": lambda *args: loss(rnn, *args),
        "autodiff": lambda *args: loss(rnn_autodiff, *args),
        "grad-of-grad": half_squared_gradient,
    }
    steps = {}
    for name, function in functions.items():
        step = jax.jit(jax.value_and_grad(function, argnums=(0, 1, 2)))
        jax.block_until_ready(step(*args))
        steps[name] = lambda step=step: step(*args)
    return steps


def linearity_rows(sizes: Sizes, timings: dict) -> list[dict]:
    """One row per function from the timings keyed like `linearity_steps`."""
    rows = []
    for name, description in FUNCTIONS.items():
        short, long = timings[name, sizes.T], timings[name, FACTOR * sizes.T]
        ratio = long.median / short.median
        rows.append(
            {
                "function": name,
                "description": description,
                "T": sizes.T,
                "long_T": FACTOR * sizes.T,
                "median_s": short.median,
                "long_median_s": long.median,
                "samples_s": list(short.samples),
                "long_samples_s": list(long.samples),
                "ratio": ratio,
                "linear": bool(ratio <= LINEAR_LIMIT),
            }
        )
    return rows
