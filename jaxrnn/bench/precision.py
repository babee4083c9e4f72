"""`jaxrnn bench --bf16`: the gradient step in bfloat16, its time and its accuracy.

The inputs and weights are rounded to bfloat16 once; on those numbers the table times `hand`
and `autodiff` in bfloat16 next to `hand` in float32, and measures each one's gradients against
the float32 oracle (`jax.grad` of `rnn_autodiff`, full-precision products) on the same rounded
numbers: the error is what computing in bfloat16 costs, not the rounding of the inputs.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrnn import rnn_autodiff
from jaxrnn.bench.problem import Sizes, make_problem, reference, rounded
from jaxrnn.bench.variants import layer_variant

BASELINE = "hand float32"


def bf16_variants(sizes: Sizes, workload: str, device, seed: int = 0):
    """`(variants, reference, tolerance keys by variant)`, the float32 baseline last."""
    problem = rounded(make_problem(sizes, seed), jnp.bfloat16)
    variants = [
        layer_variant("hand bfloat16", problem, workload, jnp.bfloat16, device),
        layer_variant("autodiff bfloat16", problem, workload, jnp.bfloat16, device, call=rnn_autodiff),
        layer_variant(BASELINE, problem, workload, jnp.float32, device),
    ]
    keys = {"hand bfloat16": "bfloat16", "autodiff bfloat16": "bfloat16", BASELINE: "float32"}
    return variants, reference(problem, workload, jnp.float32), keys
