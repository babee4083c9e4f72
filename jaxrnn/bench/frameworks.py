"""The single-layer variants of other frameworks, with the weights, head and loss of the others.

- `flax`: `flax.linen.RNN(SimpleCell)` + `Dense` + softmax, batch-major (Flax's default), and
  `jax.grad`; `flax-masked` passes `seq_lengths` (every length T: the same numbers);
- `torch`: `torch.nn.RNN(tanh)` + `Linear` + softmax with autograd, time-major (PyTorch's default),
  on `--torch-device` (cuDNN on a GPU). It computes `dx` and `dh_0` too, as the JAX variants do.

flax and torch are imported inside the builders (an ImportError skips the variant).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.bench.problem import (
    Problem,
    Variant,
    compiled_step,
    from_layout,
    seed_gradients,
    targets,
    to_layout,
    workload_loss,
)


def flax_variant(problem: Problem, workload: str, dtype, device, *, masked: bool = False) -> Variant:
    import flax.linen as nn

    n_a, n_y = problem.params["Waa"].shape[0], problem.params["Wya"].shape[0]

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x, h0, seq_lengths):  # batch-major: x (m, T, n_x), h0 (m, n_a)
            cell = nn.SimpleCell(features=n_a, param_dtype=dtype, dtype=dtype)
            hidden = nn.RNN(cell)(x, initial_carry=h0, seq_lengths=seq_lengths)
            return hidden, jax.nn.softmax(nn.Dense(n_y, param_dtype=dtype, dtype=dtype)(hidden), axis=-1)

    model = Model()
    put = lambda v: jax.device_put(jnp.asarray(v, dtype), device)
    x, h0 = put(to_layout(problem.x, "batch_major")), put(problem.a0.T)
    m, T = problem.labels.shape
    lengths = jax.device_put(jnp.full((m,), T, jnp.int32), device) if masked else None
    goal = targets(problem, "batch_major", device)
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
    expected = jax.eval_shape(model.init, jax.random.PRNGKey(0), x, h0, lengths)
    assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(expected), "Flax's names changed"

    def loss(variables, x, h0, lengths, goal):
        hidden, y = model.apply(variables, x, h0, lengths)
        return workload_loss(workload, hidden, y, goal, -1)

    step, value, (dvariables, dx, dh0), temp = compiled_step(loss, (variables, x, h0, lengths, goal))
    cell, dense = dvariables["params"]["SimpleCell_0"], dvariables["params"]["Dense_0"]
    dparams = {
        "Wax": cell["i"]["kernel"].T,
        "Waa": cell["h"]["kernel"].T,
        "ba": cell["i"]["bias"][:, None],
        "Wya": dense["kernel"].T,
        "by": dense["bias"][:, None],
    }
    gradients = seed_gradients(from_layout(dx, "batch_major"), dh0.T, dparams)
    return Variant("flax-masked" if masked else "flax", step, value, temp, gradients)


def torch_dtype(dtype):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}[jnp.dtype(dtype).name]


def torch_synchronizer(torch_device: str):
    """What makes a step's time the device's: `torch.cuda.synchronize` on CUDA, else nothing."""
    import torch

    return torch.cuda.synchronize if str(torch_device).startswith("cuda") else (lambda: None)


def torch_variant(problem: Problem, workload: str, dtype, torch_device: str) -> Variant:
    import torch

    dtype = torch_dtype(dtype)
    n_a, n_x = problem.params["Wax"].shape
    n_y = problem.params["Wya"].shape[0]
    rnn_module = torch.nn.RNN(n_x, n_a, nonlinearity="tanh").to(torch_device, dtype)
    linear = torch.nn.Linear(n_a, n_y).to(torch_device, dtype)
    tensor = lambda v, kind=dtype: torch.tensor(np.ascontiguousarray(v), dtype=kind, device=torch_device)
    w = problem.params
    with torch.no_grad():  # the same weights as the JAX variants
        rnn_module.weight_ih_l0.copy_(tensor(w["Wax"]))
        rnn_module.weight_hh_l0.copy_(tensor(w["Waa"]))
        rnn_module.bias_ih_l0.copy_(tensor(w["ba"][:, 0]))
        rnn_module.bias_hh_l0.zero_()
        linear.weight.copy_(tensor(w["Wya"]))
        linear.bias.copy_(tensor(w["by"][:, 0]))
    x = tensor(to_layout(problem.x, "time_major")).requires_grad_()  # (T, m, n_x)
    h0 = tensor(problem.a0.T[None]).requires_grad_()  # (1, m, n_a)
    labels = torch.tensor(to_layout(problem.labels, "time_major")[:, :, None], device=torch_device)  # (T, m, 1)
    g_a, g_y = (tensor(to_layout(g, "time_major"), torch.float32) for g in (problem.g_a, problem.g_y))
    leaves = [x, h0, *rnn_module.parameters(), *linear.parameters()]
    synchronize = torch_synchronizer(torch_device)

    def step():
        for leaf in leaves:
            leaf.grad = None
        hidden, _ = rnn_module(x, h0)
        y = torch.softmax(linear(hidden).float(), dim=-1)
        if workload == "ce":
            loss = -torch.log(torch.gather(y, -1, labels)).mean()
        else:
            loss = (hidden.float() * g_a).sum() + (y * g_y).sum()
        loss.backward()
        synchronize()
        return loss

    def timed_step():
        step()  # torch runs eagerly (and synchronizes on CUDA): nothing to block on

    value = float(step().detach().cpu())
    as_numpy = lambda t: t.detach().float().cpu().numpy()
    dparams = {
        "Wax": as_numpy(rnn_module.weight_ih_l0.grad),
        "Waa": as_numpy(rnn_module.weight_hh_l0.grad),
        "ba": as_numpy(rnn_module.bias_ih_l0.grad)[:, None],  # = bias_hh's: one bias here
        "Wya": as_numpy(linear.weight.grad),
        "by": as_numpy(linear.bias.grad)[:, None],
    }
    gradients = seed_gradients(from_layout(as_numpy(x.grad), "time_major"), as_numpy(h0.grad)[0].T, dparams)
    return Variant("torch", timed_step, value, None, gradients)
