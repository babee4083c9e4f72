"""`jaxrnn bench --stack`: an L-layer bidirectional RNN without a head, time-major throughout.

The loss is dense on the top layer's outputs, `L = Σ a_top ⊙ g_a` (fixed random `g_a`), and one
`value_and_grad` step differentiates it with respect to `x`, every initial state and every weight:

- `hand`: `jaxrnn.rnn_stack` (every recurrence on the hand-derived backward);
- `hand-masked`: the same with `seq_lengths`, every length T;
- `autodiff`: `rnn_stack(..., gradient="autodiff")`;
- `flax`: `nn.Bidirectional(nn.RNN(SimpleCell), nn.RNN(SimpleCell))` stacked L times, `jax.grad`;
- `torch`: `torch.nn.RNN(num_layers=L, bidirectional=True)` with autograd (cuDNN on a GPU).

All from the same weights (`to_flax`, `to_torch`); the oracle is `jax.grad` through
`rnn_stack(..., gradient="autodiff")` with full-precision products.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import from_flax, from_torch, from_torch_hidden, rnn_stack, to_flax, to_torch
from jaxrnn.bench.frameworks import torch_dtype, torch_synchronizer
from jaxrnn.bench.problem import Reference, Variant, compiled_step

STACK_VARIANTS = ("hand", "hand-masked", "autodiff", "flax", "torch")


class StackSizes(NamedTuple):
    n_x: int
    n_a: int
    m: int
    T: int
    layers: int

    def model_flops(self) -> int:
        """Matrix-product FLOPs of one gradient step, both directions of every layer."""
        widths = [self.n_x] + [2 * self.n_a] * (self.layers - 1)
        return sum(2 * 3 * 2 * self.T * self.m * (self.n_a**2 + self.n_a * width) for width in widths)


class StackProblem(NamedTuple):
    """Numpy float32, time-major: `layers` as `rnn_stack` takes them (pairs of dicts)."""

    layers: list
    x: np.ndarray  # (T, m, n_x)
    a0: list  # per layer, (forward, reverse) states (m, n_a)
    g_a: np.ndarray  # (T, m, 2 n_a)


def make_stack_problem(sizes: StackSizes, seed: int = 0) -> StackProblem:
    rng = np.random.default_rng(seed)
    f32 = lambda v: np.asarray(v, np.float32)
    n_a = sizes.n_a
    layers = []
    for l in range(sizes.layers):
        width = sizes.n_x if l == 0 else 2 * n_a
        pair = tuple(
            {
                "Wax": f32(rng.standard_normal((n_a, width)) / np.sqrt(width)),
                "Waa": f32(np.linalg.qr(rng.standard_normal((n_a, n_a)))[0]),
                "ba": f32(0.1 * rng.standard_normal((n_a, 1))),
            }
            for _ in range(2)
        )
        layers.append(pair)
    x = f32(rng.standard_normal((sizes.T, sizes.m, sizes.n_x)))
    a0 = [tuple(f32(0.5 * rng.standard_normal((sizes.m, n_a))) for _ in range(2)) for _ in range(sizes.layers)]
    g_a = f32(rng.standard_normal((sizes.T, sizes.m, 2 * n_a)) / (sizes.m * sizes.T))
    return StackProblem(layers, x, a0, g_a)


def _as_numpy(tree):
    return jax.tree_util.tree_map(lambda v: np.asarray(jnp.asarray(v).astype(jnp.float32)), tree)


def _jax_variant(name, problem: StackProblem, dtype, device, *, gradient="hand", masked=False) -> Variant:
    put = lambda tree: jax.tree_util.tree_map(lambda v: jax.device_put(jnp.asarray(v, dtype), device), tree)
    layers, x, a0 = put(problem.layers), put(problem.x), put(problem.a0)
    g_a = jax.device_put(jnp.asarray(problem.g_a), device)
    T, m = problem.x.shape[:2]
    lengths = jax.device_put(jnp.full((m,), T, jnp.int32), device) if masked else None

    def loss(x, a0, layers, lengths, g_a):
        a, _ = rnn_stack(x, a0, layers, seq_lengths=lengths, layout="time_major", gradient=gradient)
        return jnp.sum(a.astype(jnp.float32) * g_a)

    step, value, (dx, da0, dlayers), temp = compiled_step(loss, (x, a0, layers, lengths, g_a))
    return Variant(name, step, value, temp, _as_numpy((dx, da0, dlayers)))


def flax_stack(n_a: int, num_layers: int, dtype, *, bidirectional: bool = True):
    """A Linen stack of `nn.RNN(SimpleCell)` layers (in `nn.Bidirectional` pairs), time-major,
    named `layers_0`, `layers_1`, … as `from_flax`/`to_flax` read Linen variables."""
    import flax.linen as nn

    def rnn(name=None):
        cell = nn.SimpleCell(features=n_a, param_dtype=dtype, dtype=dtype, parent=None)
        return nn.RNN(cell, time_major=True, parent=None) if name is None else nn.RNN(cell, time_major=True, name=name)

    class Stack(nn.Module):
        @nn.compact
        def __call__(self, x, carries):  # x (T, m, n_x); carries: per layer, a state or a pair
            for l in range(num_layers):
                if bidirectional:
                    x = nn.Bidirectional(rnn(), rnn(), time_major=True, name=f"layers_{l}")(x, initial_carry=carries[l])
                else:
                    x = rnn(f"layers_{l}")(x, initial_carry=carries[l])
            return x

    return Stack()


def _flax_variant(problem: StackProblem, dtype, device) -> Variant:
    model = flax_stack(problem.g_a.shape[-1] // 2, len(problem.layers), dtype)
    put = lambda tree: jax.tree_util.tree_map(lambda v: jax.device_put(jnp.asarray(v, dtype), device), tree)
    x, carries = put(problem.x), put(problem.a0)
    g_a = jax.device_put(jnp.asarray(problem.g_a), device)
    like = jax.eval_shape(model.init, jax.random.PRNGKey(0), x, carries)
    like = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), like)
    variables = put(to_flax(put(problem.layers), like=like))

    def loss(variables, x, carries, g_a):
        return jnp.sum(model.apply(variables, x, carries).astype(jnp.float32) * g_a)

    step, value, (dvariables, dx, dcarries), temp = compiled_step(loss, (variables, x, carries, g_a))
    dlayers, _ = from_flax(_as_numpy(dvariables), time_major=True, merge_fn="concatenate")
    return Variant("flax", step, value, temp, _as_numpy((dx, dcarries, dlayers)))


def _torch_variant(problem: StackProblem, dtype, torch_device: str) -> Variant:
    import torch

    kind = torch_dtype(dtype)
    n_x = problem.x.shape[-1]
    n_a, num_layers = problem.g_a.shape[-1] // 2, len(problem.layers)
    module = torch.nn.RNN(n_x, n_a, num_layers=num_layers, bidirectional=True).to(torch_device, kind)
    module.load_state_dict(to_torch(problem.layers))  # bias_ih = ba, bias_hh = 0
    tensor = lambda v, k=kind: torch.tensor(np.ascontiguousarray(v), dtype=k, device=torch_device)
    x = tensor(problem.x).requires_grad_()
    h0 = tensor(np.stack([s for pair in problem.a0 for s in pair])).requires_grad_()  # (2 L, m, n_a)
    g_a = tensor(problem.g_a, torch.float32)
    leaves = [x, h0, *module.parameters()]
    synchronize = torch_synchronizer(torch_device)

    def step():
        for leaf in leaves:
            leaf.grad = None
        hidden, _ = module(x, h0)
        loss = (hidden.float() * g_a).sum()
        loss.backward()
        synchronize()
        return loss

    def timed_step():
        step()  # eager (and synchronized on CUDA): nothing to block on

    value = float(step().detach().cpu())
    grads = {
        name: (torch.zeros_like(p) if name.startswith("bias_hh") else p.grad).detach().float().cpu()
        for name, p in module.named_parameters()
    }  # ba's gradient is bias_ih's (bias_hh gets the same)
    dlayers, _ = from_torch(grads)
    dh0 = from_torch_hidden(h0.grad.detach().float().cpu().numpy(), problem.layers)
    gradients = _as_numpy((x.grad.detach().float().cpu().numpy(), dh0, dlayers))
    return Variant("torch", timed_step, value, None, gradients)


def stack_reference(problem: StackProblem, dtype) -> Reference:
    """`jax.grad` through `rnn_stack(..., gradient="autodiff")` in float32, full-precision products,
    on the numbers rounded to `dtype`."""
    round_trip = lambda tree: jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype).astype(jnp.float32), tree)
    layers, x, a0 = round_trip(problem.layers), round_trip(problem.x), round_trip(problem.a0)

    def loss(x, a0, layers):
        a, _ = rnn_stack(x, a0, layers, layout="time_major", gradient="autodiff")
        return jnp.sum(a * problem.g_a), jnp.sum(jnp.abs(a * problem.g_a))

    with jax.default_matmul_precision("float32"):
        (value, scale), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(x, a0, layers)
    return Reference(float(value), float(scale), _as_numpy(grads))


def build_stack_variants(names, sizes: StackSizes, dtype, device, torch_device: str, seed: int = 0):
    """`(variants, skipped, reference)` for the stack configuration, in `names` order."""
    problem = make_stack_problem(sizes, seed)
    builders = {
        "hand": lambda: _jax_variant("hand", problem, dtype, device),
        "hand-masked": lambda: _jax_variant("hand-masked", problem, dtype, device, masked=True),
        "autodiff": lambda: _jax_variant("autodiff", problem, dtype, device, gradient="autodiff"),
        "flax": lambda: _flax_variant(problem, dtype, device),
        "torch": lambda: _torch_variant(problem, dtype, torch_device),
    }
    variants, skipped = [], []
    for name in names:
        try:
            variants.append(builders[name]())
        except ImportError as err:
            skipped.append(f"{name} ({err.name} not installed)")
    return variants, skipped, stack_reference(problem, dtype)
