"""The single-layer gradient steps the benchmark compares, all computing the same function.

Every variant takes the same numbers (drawn once with numpy, `problem.py`) and computes one
`value_and_grad` step of the workload's loss over all parameters, `x` and `a0`:

- `hand`: `jaxrnn.rnn` (the hand-derived custom VJP), seed layout `(n, m, T)`;
- `hand-tm`: the same layer called with `layout="time_major"` on time-major arrays (its internal
  layout: no transposes; PyTorch's own layout);
- `hand-masked`: `hand` with `seq_lengths` given, every length T: the same work plus the masks;
- `hand-ce` (`ce` workload): the fused softmax–cross-entropy head, `jaxrnn.rnn_cross_entropy`;
- `hand-ckpt`: `hand` with `checkpoint_every`;
- `autodiff`: `jax.grad` of `jaxrnn.rnn_autodiff` (the same forward, hoisted projections);
- `seed-scan`: `jax.grad` of a scan whose body does every op of the seed's Python loop (vanilla cell);
- `flax`, `flax-masked`, `torch`: Flax `nn.RNN` of `SimpleCell`, `GRUCell` or `OptimizedLSTMCell`
  (with `seq_lengths`) and PyTorch `nn.RNN`, `nn.GRU` or `nn.LSTM` with the same head and loss
  (`frameworks.py`), when installed.

Every variant runs the problem's cell (`vanilla`, `gru` or `lstm`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxrnn import rnn, rnn_autodiff, rnn_cross_entropy
from jaxrnn.bench import frameworks
from jaxrnn.bench.problem import (
    Problem,
    Sizes,
    Variant,
    compiled_step,
    from_layout,
    make_problem,
    reference,
    seed_gradients,
    state_in,
    targets,
    to_layout,
    workload_loss,
)

ALL_VARIANTS = ("hand", "hand-tm", "hand-masked", "hand-ce", "autodiff", "seed-scan", "flax", "flax-masked", "torch")
OPTIONAL_VARIANTS = ("hand-ckpt",)
CE_ONLY = ("hand-ce",)
VANILLA_ONLY = ("seed-scan",)


def seed_scan(x, a0, p):
    """The seed's loop as a scan: every op, projections and softmax included, inside the body."""

    def step(a_prev, xt):
        a_next = jnp.tanh(p["Waa"] @ a_prev + p["Wax"] @ xt + p["ba"])
        yt = jax.nn.softmax(p["Wya"] @ a_next + p["by"], axis=0)
        return a_next, (a_next, yt)

    _, (a, y) = jax.lax.scan(step, a0, jnp.moveaxis(x, -1, 0))
    return jnp.moveaxis(a, 0, -1), jnp.moveaxis(y, 0, -1)


def layer_variant(name, problem: Problem, workload, dtype, device, *, layout="seed", call=rnn, masked=False):
    """A JAX variant that calls `call(x, a0, params, seq_lengths=, layout=, cell=)` → `(a, y)` in
    `layout` (`call=None`: the fused cross-entropy head)."""
    put = lambda v: jax.device_put(jnp.asarray(v, dtype), device)
    params = {k: put(v) for k, v in problem.params.items()}
    x, a0 = put(to_layout(problem.x, layout)), jax.tree_util.tree_map(put, state_in(problem.a0, layout))
    goal = targets(problem, layout, device)
    m, T = problem.labels.shape
    # A traced argument, as in training: the masks cannot be folded away at compile time.
    lengths = jax.device_put(jnp.full((m,), T, jnp.int32), device) if masked else None
    options = {"layout": layout, "cell": problem.cell}

    def loss(x, a0, params, lengths, goal):
        if call is None:
            losses, _ = rnn_cross_entropy(x, a0, params, goal.labels, seq_lengths=lengths, **options)
            return jnp.mean(losses.astype(jnp.float32))
        a, y = call(x, a0, params, seq_lengths=lengths, **options)
        return workload_loss(workload, a, y, goal, 0 if layout == "seed" else -1)

    step, value, (dx, da0, dparams), temp = compiled_step(loss, (x, a0, params, lengths, goal))
    da0 = state_in(tuple(da0) if problem.cell == "lstm" else da0, layout)  # back to the seed layout
    gradients = seed_gradients(from_layout(dx, layout), da0, dparams)
    return Variant(name, step, value, temp, gradients)


def _seed_scan_call(x, a0, params, *, seq_lengths, layout, cell):
    assert seq_lengths is None and layout == "seed" and cell == "vanilla"
    return seed_scan(x, a0, params)


def _builders(problem, workload, dtype, device, checkpoint_every, torch_device):
    layer = functools.partial(layer_variant, problem=problem, workload=workload, dtype=dtype, device=device)
    return {
        "hand": lambda: layer("hand"),
        "hand-tm": lambda: layer("hand-tm", layout="time_major"),
        "hand-masked": lambda: layer("hand-masked", masked=True),
        "hand-ce": lambda: layer("hand-ce", call=None),
        "hand-ckpt": lambda: layer("hand-ckpt", call=functools.partial(rnn, checkpoint_every=checkpoint_every)),
        "autodiff": lambda: layer("autodiff", call=rnn_autodiff),
        "seed-scan": lambda: layer("seed-scan", call=_seed_scan_call),
        "flax": lambda: frameworks.flax_variant(problem, workload, dtype, device),
        "flax-masked": lambda: frameworks.flax_variant(problem, workload, dtype, device, masked=True),
        "torch": lambda: frameworks.torch_variant(problem, workload, dtype, torch_device),
    }


def build_variants(
    names,
    sizes: Sizes,
    dtype,
    device,
    checkpoint_every: int,
    torch_device: str,
    seed: int = 0,
    workload: str = "ce",
    cell: str = "vanilla",
):
    """The requested variants of `cell` in `names` order, skipping those whose library is not
    installed, `hand-ce` outside the `ce` workload and `seed-scan` outside the vanilla cell, with
    the oracle: `(variants, skipped, reference)`."""
    problem = make_problem(sizes, seed, cell)
    builders = _builders(problem, workload, dtype, device, checkpoint_every, torch_device)
    variants, skipped = [], []
    for name in names:
        if name in CE_ONLY and workload != "ce":
            skipped.append(f"{name} (ce workload only)")
            continue
        if name in VANILLA_ONLY and cell != "vanilla":
            skipped.append(f"{name} (vanilla cell only)")
            continue
        try:
            variants.append(builders[name]())
        except ImportError as err:
            skipped.append(f"{name} ({err.name} not installed)")
    return variants, skipped, reference(problem, workload, dtype)


def gemm_variant(device, n: int = 1024, dtype=jnp.float32) -> tuple[Callable[[], object], int]:
    """A square `n×n` matrix product: the machine's measured ceiling, timed in the same rounds."""
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.device_put(jax.random.normal(key_a, (n, n), dtype), device)
    b = jax.device_put(jax.random.normal(key_b, (n, n), dtype), device)
    matmul = jax.jit(jnp.matmul)
    return (lambda: matmul(a, b)), 2 * n**3
