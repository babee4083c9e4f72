"""The gradient steps the benchmark compares, all computing the same function.

Every variant takes the same numbers (drawn once with numpy) and computes, for one
`value_and_grad` step over all parameters, `x` and `a0`:

    y = softmax(Wya tanh-RNN(x, a0) + by),     L = −Σ_{t,i} log y_t[i, label_{t,i}] / (m·T)

- `hand`: `jaxrnn.rnn` (the hand-derived custom VJP); `hand-ckpt`: the same with
  `checkpoint_every`;
- `autodiff`: `jax.grad` of `jaxrnn.rnn_autodiff` (the same forward, hoisted projections);
- `seed-scan`: `jax.grad` of a scan whose body does every op of the seed's Python loop;
- `flax`: `flax.linen.RNN(SimpleCell)` + `Dense` + softmax, when Flax is installed;
- `torch`: `torch.nn.RNN(tanh)` + `Linear` + softmax with autograd, when PyTorch is installed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import rnn, rnn_autodiff
from jaxrnn._measure import compiled_memory


class Sizes(NamedTuple):
    n_x: int
    n_a: int
    n_y: int
    m: int
    T: int

    def model_flops(self) -> int:
        """Matrix-product FLOPs of one gradient step: forward + 2× for the backward."""
        return 3 * 2 * self.T * self.m * (self.n_a**2 + self.n_a * self.n_x + self.n_y * self.n_a)


class Variant(NamedTuple):
    name: str
    step: Callable[[], object]  # one gradient step; returns what to block on
    loss: float  # the loss value, to check that every variant computes the same function
    temp_bytes: int | None  # XLA's compiled temp memory (None for non-XLA variants)


class Problem(NamedTuple):
    """The shared numbers, as numpy arrays in the seed layout."""

    params: dict[str, np.ndarray]
    x: np.ndarray  # (n_x, m, T)
    a0: np.ndarray  # (n_a, m)
    labels: np.ndarray  # (m, T) int


def make_problem(sizes: Sizes, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    n_x, n_a, n_y, m, T = sizes
    scale = lambda fan_in: 1 / np.sqrt(fan_in)
    params = {
        "Wax": rng.standard_normal((n_a, n_x)) * scale(n_x),
        "Waa": np.linalg.qr(rng.standard_normal((n_a, n_a)))[0],
        "Wya": rng.standard_normal((n_y, n_a)) * scale(n_a),
        "ba": 0.1 * rng.standard_normal((n_a, 1)),
        "by": 0.1 * rng.standard_normal((n_y, 1)),
    }
    return Problem(
        {k: v.astype(np.float32) for k, v in params.items()},
        rng.standard_normal((n_x, m, T)).astype(np.float32),
        (0.5 * rng.standard_normal((n_a, m))).astype(np.float32),
        rng.integers(0, n_y, (m, T)),
    )


def _mean_negative_log_likelihood(y, labels):
    """y `(n_y, m, T)` probabilities; labels `(m, T)`."""
    picked = jnp.take_along_axis(y, labels[None], axis=0)[0]
    return -jnp.mean(jnp.log(picked))


def seed_scan(x, a0, p):
    """The seed's loop as a scan: every op, projections and softmax included, inside the body."""

    def step(a_prev, xt):
        a_next = jnp.tanh(p["Waa"] @ a_prev + p["Wax"] @ xt + p["ba"])
        yt = jax.nn.softmax(p["Wya"] @ a_next + p["by"], axis=0)
        return a_next, (a_next, yt)

    _, (a, y) = jax.lax.scan(step, a0, jnp.moveaxis(x, -1, 0))
    return jnp.moveaxis(a, 0, -1), jnp.moveaxis(y, 0, -1)


def _jax_variant(name, forward, problem, dtype, device):
    cast = lambda v: jax.device_put(jnp.asarray(v, dtype), device)
    params = {k: cast(v) for k, v in problem.params.items()}
    x, a0 = cast(problem.x), cast(problem.a0)
    labels = jax.device_put(jnp.asarray(problem.labels), device)

    def loss(x, a0, params):
        _, y = forward(x, a0, params)
        return _mean_negative_log_likelihood(y.astype(jnp.float32), labels)

    value_and_grad = jax.value_and_grad(loss, argnums=(0, 1, 2))
    step = jax.jit(value_and_grad)
    value = float(step(x, a0, params)[0])
    temp = compiled_memory(value_and_grad, x, a0, params).temp
    return Variant(name, lambda: step(x, a0, params), value, temp)


def _flax_variant(problem, dtype, device):
    import flax.linen as nn

    n_a, n_y = problem.params["Waa"].shape[0], problem.params["Wya"].shape[0]

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x, h0):  # batch-major: x (m, T, n_x), h0 (m, n_a)
            hidden = nn.RNN(nn.SimpleCell(features=n_a, param_dtype=dtype, dtype=dtype))(x, initial_carry=h0)
            return jax.nn.softmax(nn.Dense(n_y, param_dtype=dtype, dtype=dtype)(hidden), axis=-1)

    model = Model()
    put = lambda v: jax.device_put(jnp.asarray(v, dtype), device)
    x, h0 = put(np.transpose(problem.x, (1, 2, 0))), put(problem.a0.T)
    labels = jax.device_put(jnp.asarray(problem.labels), device)
    w = problem.params  # the same weights as the other variants, in Flax's (in, out) kernels
    variables = {
        "params": {
            "SimpleCell_0": {
                "i": {"kernel": put(w["Wax"].T), "bias": put(w["ba"][:, 0])},
                "h": {"kernel": put(w["Waa"].T)},
            },
            "Dense_0": {"kernel": put(w["Wya"].T), "bias": put(w["by"][:, 0])},
        }
    }
    expected = jax.tree_util.tree_structure(jax.eval_shape(model.init, jax.random.PRNGKey(0), x, h0))
    assert jax.tree_util.tree_structure(variables) == expected, "Flax's parameter names changed"

    def loss(variables, x, h0):
        y = model.apply(variables, x, h0).astype(jnp.float32)  # (m, T, n_y)
        return -jnp.mean(jnp.log(jnp.take_along_axis(y, labels[:, :, None], axis=-1)))

    value_and_grad = jax.value_and_grad(loss, argnums=(0, 1, 2))
    step = jax.jit(value_and_grad)
    value = float(step(variables, x, h0)[0])
    temp = compiled_memory(value_and_grad, variables, x, h0).temp
    return Variant("flax", lambda: step(variables, x, h0), value, temp)


def _torch_variant(problem, dtype, torch_device):
    import torch

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}[
        jnp.dtype(dtype).name
    ]
    n_a, n_x = problem.params["Wax"].shape
    n_y = problem.params["Wya"].shape[0]
    rnn_module = torch.nn.RNN(n_x, n_a, nonlinearity="tanh").to(torch_device, torch_dtype)
    linear = torch.nn.Linear(n_a, n_y).to(torch_device, torch_dtype)
    tensor = lambda v: torch.tensor(np.ascontiguousarray(v), dtype=torch_dtype, device=torch_device)
    with torch.no_grad():  # the same weights as the JAX variants
        rnn_module.weight_ih_l0.copy_(tensor(problem.params["Wax"]))
        rnn_module.weight_hh_l0.copy_(tensor(problem.params["Waa"]))
        rnn_module.bias_ih_l0.copy_(tensor(problem.params["ba"][:, 0]))
        rnn_module.bias_hh_l0.zero_()
        linear.weight.copy_(tensor(problem.params["Wya"]))
        linear.bias.copy_(tensor(problem.params["by"][:, 0]))
    x = tensor(np.transpose(problem.x, (2, 1, 0))).requires_grad_()  # (T, m, n_x)
    h0 = tensor(problem.a0.T[None]).requires_grad_()  # (1, m, n_a)
    labels = torch.tensor(problem.labels.T[:, :, None], device=torch_device)  # (T, m, 1)
    leaves = [x, h0, *rnn_module.parameters(), *linear.parameters()]
    synchronize = torch.cuda.synchronize if str(torch_device).startswith("cuda") else (lambda: None)

    def step():
        for leaf in leaves:
            leaf.grad = None
        hidden, _ = rnn_module(x, h0)
        y = torch.softmax(linear(hidden).float(), dim=-1)
        loss = -torch.log(torch.gather(y, -1, labels)).mean()
        loss.backward()
        synchronize()
        return loss

    def timed_step():
        step()  # torch runs eagerly (and synchronizes on CUDA): nothing to block on

    value = float(step().detach().cpu())
    return Variant("torch", timed_step, value, None)


def build_variants(names, sizes: Sizes, dtype, device, checkpoint_every: int, torch_device: str, seed: int = 0):
    """The requested variants (skipping flax/torch when not installed), in `names` order."""
    problem = make_problem(sizes, seed)
    builders = {
        "hand": lambda: _jax_variant("hand", rnn, problem, dtype, device),
        "hand-ckpt": lambda: _jax_variant(
            "hand-ckpt", functools.partial(rnn, checkpoint_every=checkpoint_every), problem, dtype, device
        ),
        "autodiff": lambda: _jax_variant("autodiff", rnn_autodiff, problem, dtype, device),
        "seed-scan": lambda: _jax_variant("seed-scan", seed_scan, problem, dtype, device),
        "flax": lambda: _flax_variant(problem, dtype, device),
        "torch": lambda: _torch_variant(problem, dtype, torch_device),
    }
    variants, skipped = [], []
    for name in names:
        try:
            variants.append(builders[name]())
        except ImportError as err:
            skipped.append(f"{name} ({err.name} not installed)")
    return variants, skipped


def gemm_variant(device, n: int = 1024, dtype=jnp.float32) -> tuple[Callable[[], object], int]:
    """A square `n×n` matrix product: the machine's measured ceiling, timed in the same rounds."""
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.device_put(jax.random.normal(key_a, (n, n), dtype), device)
    b = jax.device_put(jax.random.normal(key_b, (n, n), dtype), device)
    matmul = jax.jit(jnp.matmul)
    return (lambda: matmul(a, b)), 2 * n**3
