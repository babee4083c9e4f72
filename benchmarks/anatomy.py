"""Where a gradient step's time goes: the hand-derived step of `jaxrnn.rnn`, taken apart.

Each part of the step is jitted on its own, with the shapes and values the whole step sees, and
timed interleaved with the whole step and a square GEMM (the machine's ceiling, measured in the
same rounds):

    project      x_t Wax^T for all steps: one (T·m, n_x) x (n_x, G·n_a) product
    forward      the forward scan: per step h_{t-1} Waa^T and the cell's elementwise work
    head         the softmax head: logits, softmax (forward) and its backward (dense workload)
    backward     the reverse scan: per step the cell's backward step and d_hidden Waa
    weights      the weight gradients after the scan: dWaa, dWax (long-K products), dba, and dx
    layout       the transposes in and out of the internal (T, m, n) layout (seed layout only)

The sum of the parts is printed beside the whole (XLA fuses across the parts, so they need not
add up exactly). Shapes R1 (n_x 64, n_a 256, n_y 64, m 64, T 200) and R2 (128, 512, 128, 128,
100), float32, the dense workload of `jaxrnn bench`.

    python benchmarks/anatomy.py --configs R1,R2 --cells vanilla,gru,lstm --layout seed --repeats 9
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import jaxrnn
from jaxrnn import _cells, _layout
from jaxrnn._backward import previous_states, recurrent_backward, softmax_backward, weight_gradients
from jaxrnn._forward import hidden_states, project_inputs
from jaxrnn._heads import predictions
from jaxrnn._measure import interleaved_timings
from jaxrnn.bench.options import _configs
from jaxrnn.bench.problem import make_problem, state_in, to_layout
from jaxrnn.bench.run import cpu_model


def parts(cell_name: str, sizes, layout: str) -> dict:
    """Zero-argument callables for the whole step and each part (all jitted, inputs bound)."""
    problem = make_problem(sizes, 0, cell_name)
    cell = _cells.get(cell_name)
    f32 = lambda v: jnp.asarray(v, jnp.float32)
    params = {k: f32(v) for k, v in problem.params.items()}
    x = f32(to_layout(problem.x, layout))
    a0 = jax.tree_util.tree_map(f32, state_in(problem.a0, layout))
    g_a = f32(to_layout(problem.g_a, layout))
    g_y = f32(to_layout(problem.g_y, layout))

    def loss(x, a0, params):
        a, y = jaxrnn.rnn(x, a0, params, layout=layout, cell=cell_name)
        return jnp.sum(a * g_a) + jnp.sum(y * g_y)

    whole = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    # The internal, time-major pieces, on the numbers the whole step sees.
    xt = _layout.to_time_major(x, layout)
    carry0 = tuple(f32(v).T for v in (problem.a0 if cell_name == "lstm" else (problem.a0,)))  # rows (m, n_a)
    carries, residuals, _ = jax.jit(lambda xt, c: hidden_states(cell, xt, c, params, None, reverse=False))(xt, carry0)
    states = carries[0]
    y = jax.jit(lambda s: predictions(s, params, None))(states)
    g_a_t = _layout.to_time_major(g_a, layout)
    g_y_t = _layout.to_time_major(g_y, layout)
    _, da_head = jax.jit(lambda g, y, s: softmax_backward(g, y, s, params))(g_y_t, y, states)
    da = g_a_t + da_head
    d_final = tuple(jnp.zeros_like(c) for c in carry0)
    previous = tuple(previous_states(p, s, None, reverse=False) for p, s in zip(carries, carry0))
    d_input, d_hidden, _ = jax.jit(
        lambda da, c, r, p: recurrent_backward(cell, da, d_final, c, r, p, params["Waa"], None, reverse=False)
    )(da, carries, residuals, previous)
    steps = {
        "whole step": lambda: whole(x, a0, params),
        "project": jax.jit(lambda xt: project_inputs(xt, params["Wax"])).__call__,
        "forward": jax.jit(lambda xt, c: hidden_states(cell, xt, c, params, None, reverse=False)).__call__,
        "head": jax.jit(lambda s: softmax_backward(g_y_t, predictions(s, params, None), s, params)).__call__,
        "backward": jax.jit(
            lambda da, c, r, p: recurrent_backward(cell, da, d_final, c, r, p, params["Waa"], None, reverse=False)
        ).__call__,
        "weights": jax.jit(lambda di, dh, p, xt: weight_gradients(cell, di, dh, p, xt, params["Wax"])).__call__,
    }
    bound = {
        "whole step": steps["whole step"],
        "project": lambda: steps["project"](xt),
        "forward": lambda: steps["forward"](xt, carry0),
        "head": lambda: steps["head"](states),
        "backward": lambda: steps["backward"](da, carries, residuals, previous),
        "weights": lambda: steps["weights"](d_input, d_hidden, previous[0], xt),
    }
    if layout != "time_major":
        inward = jax.jit(lambda *sequences: [_layout.to_time_major(v, layout) for v in sequences])
        outward = jax.jit(lambda *sequences: [_layout.from_time_major(v, layout) for v in sequences])
        dx = weight_gradients(cell, d_input, d_hidden, previous[0], xt, params["Wax"])[1]
        bound["layout"] = lambda: (inward(x, g_a, g_y), outward(states, y, dx))
    n = 1024
    a, b = jax.random.normal(jax.random.key(0), (2, n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    bound["GEMM 1024²"] = lambda: matmul(a, b)
    return bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="R1,R2")
    parser.add_argument("--cells", default="vanilla,gru,lstm")
    parser.add_argument("--layout", default="seed", choices=["seed", "batch_major", "time_major"])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    print(f"{cpu_model()}, {jax.devices()[0].device_kind}; jax {jax.__version__}; layout {args.layout}; float32")
    for config, sizes in _configs("--configs", args.configs).items():
        for cell in args.cells.split(","):
            timings = interleaved_timings(parts(cell, sizes, args.layout), args.repeats)
            flops = sizes.model_flops(cell)
            whole = timings["whole step"].median
            gemm_rate = 2 * 1024**3 / min(timings["GEMM 1024²"].samples)
            print(
                f"\n{config} {cell}: {flops / 1e9:.2f} GFLOP, floor at the GEMM rate "
                f"{flops / gemm_rate * 1e3:.1f} ms ({gemm_rate / 1e9:.0f} GFLOP/s)"
            )
            print("| part | median ms | share of the whole step |\n|---|---:|---:|")
            total = 0.0
            for name, timing in timings.items():
                if name == "GEMM 1024²":
                    continue
                if name != "whole step":
                    total += timing.median
                print(f"| {name} | {timing.median * 1e3:.1f} | {timing.median / whole:.0%} |")
            print(f"| sum of the parts | {total * 1e3:.1f} | {total / whole:.0%} |")


if __name__ == "__main__":
    main()
