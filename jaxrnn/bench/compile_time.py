"""`jaxrnn bench --compile-time`: how long the first call of a jitted gradient step takes to build.

For unidirectional stacks of 1–3 layers without a head (a dense loss on the top outputs,
`value_and_grad` over `x`, the initial states and every weight), the time of
`jax.jit(f).lower(*args)` (tracing and lowering to StableHLO) and of `.compile()` (XLA),
with a fresh function each time and JAX's caches cleared before it, so nothing is reused:

- `hand`: `jaxrnn.rnn_stack`; `autodiff`: `rnn_stack(..., gradient="autodiff")`;
- `flax`: `nn.RNN(SimpleCell)` stacked (time-major) and `jax.grad`, when Flax is installed.

The arguments are shapes only (`jax.ShapeDtypeStruct`): nothing is allocated or run.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp

from jaxrnn import rnn_stack
from jaxrnn.bench.stacks import flax_stack

COMPILE_VARIANTS = ("hand", "autodiff", "flax")


def _gradient_step(name: str, n_x: int, n_a: int, m: int, T: int, num_layers: int, dtype):
    """A new `(value_and_grad function, shape arguments)`: new closures on every call."""
    shape = lambda *dims: jax.ShapeDtypeStruct(dims, dtype)
    x, g_a = shape(T, m, n_x), jax.ShapeDtypeStruct((T, m, n_a), jnp.float32)
    a0 = [shape(m, n_a) for _ in range(num_layers)]
    if name == "flax":
        model = flax_stack(n_a, num_layers, dtype, bidirectional=False)
        variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x, a0)

        def loss(variables, x, a0, g_a):
            return jnp.sum(model.apply(variables, x, a0).astype(jnp.float32) * g_a)

        return jax.value_and_grad(loss, argnums=(0, 1, 2)), (variables, x, a0, g_a)
    widths = [n_x] + [n_a] * (num_layers - 1)
    layers = [{"Wax": shape(n_a, w), "Waa": shape(n_a, n_a), "ba": shape(n_a, 1)} for w in widths]

    def loss(x, a0, layers, g_a):
        a, _ = rnn_stack(x, a0, layers, layout="time_major", gradient=name)
        return jnp.sum(a.astype(jnp.float32) * g_a)

    return jax.value_and_grad(loss, argnums=(0, 1, 2)), (x, a0, layers, g_a)


def compile_times(names, n_x, n_a, m, lengths, layer_counts, repeats, dtype=jnp.float32, on_sample=None):
    """Rows `{variant, layers, T, lower_s, compile_s, total_s (medians), samples}`, and the skipped
    variants. Clears JAX's caches: compiled functions built before must be rebuilt after."""
    skipped = []
    if "flax" in names:
        try:
            import flax.linen  # noqa: F401
        except ImportError as err:
            skipped.append(f"flax ({err.name} not installed)")
            names = [n for n in names if n != "flax"]
    for name in names:  # once, untimed: what the first build in a process sets up is not the step's
        function, args = _gradient_step(name, n_x, n_a, m, min(lengths), min(layer_counts), dtype)
        jax.jit(function).lower(*args).compile()
    rows = []
    for T in lengths:
        for num_layers in layer_counts:
            samples = {name: [] for name in names}
            for _ in range(repeats):  # interleaved, as the timed rounds
                for name in names:
                    jax.clear_caches()
                    function, args = _gradient_step(name, n_x, n_a, m, T, num_layers, dtype)
                    start = time.perf_counter()
                    lowered = jax.jit(function).lower(*args)
                    lowered_at = time.perf_counter()
                    lowered.compile()
                    samples[name].append((lowered_at - start, time.perf_counter() - lowered_at))
                    if on_sample is not None:
                        on_sample()
            hand = statistics.median(sum(s) for s in samples[names[0]]) if names else 1.0
            for name in names:
                total = statistics.median(sum(s) for s in samples[name])
                rows.append(
                    {
                        "variant": name,
                        "layers": num_layers,
                        "T": T,
                        "lower_s": statistics.median(s[0] for s in samples[name]),
                        "compile_s": statistics.median(s[1] for s in samples[name]),
                        "total_s": total,
                        "ratio_to_first": total / hand,
                        "samples_s": [list(s) for s in samples[name]],
                    }
                )
    return rows, skipped
