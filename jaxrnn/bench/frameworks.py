"""The single-layer variants of other frameworks, with the weights, head and loss of the others.

- `flax`: `flax.linen.RNN` of `SimpleCell`, `GRUCell` or `OptimizedLSTMCell` + `Dense` + softmax,
  batch-major (Flax's default), and `jax.grad`; `flax-masked` passes `seq_lengths` (every length T:
  the same numbers);
- `torch`: `torch.nn.RNN(tanh)`, `nn.GRU` or `nn.LSTM` + `Linear` + softmax with autograd,
  time-major (PyTorch's default), on `--torch-device` (cuDNN on a GPU). It computes `dx` and the
  initial state's gradient too, as the JAX variants do.

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

GATE_NAMES = {"gru": "rzn", "lstm": "ifgo"}


def _blocks(W, cell):
    """`(G·n_a, …)` stacked gate blocks -> `{gate: (n_a, …)}` in PyTorch's gate order."""
    return dict(zip(GATE_NAMES[cell], np.split(W, len(GATE_NAMES[cell]))))


def _flax_cell_params(w, cell, put):
    """jaxrnn's weights in the Linen cell's parameter names, kernels `(in, out)`."""
    if cell == "vanilla":
        return {"i": {"kernel": put(w["Wax"].T), "bias": put(w["ba"][:, 0])}, "h": {"kernel": put(w["Waa"].T)}}
    inputs, hidden, bias = _blocks(w["Wax"], cell), _blocks(w["Waa"], cell), _blocks(w["ba"][:, 0], cell)
    if cell == "gru":  # r, z, n: biases on the input denses and on hn (b_hn), none on hr, hz
        params = {f"i{g}": {"kernel": put(inputs[g].T), "bias": put(bias[g])} for g in "rzn"}
        params |= {f"h{g}": {"kernel": put(hidden[g].T)} for g in "rz"}
        return params | {"hn": {"kernel": put(hidden["n"].T), "bias": put(w["bhn"][:, 0])}}
    # OptimizedLSTMCell: biases on the hidden denses only
    params = {f"i{g}": {"kernel": put(inputs[g].T)} for g in "ifgo"}
    return params | {f"h{g}": {"kernel": put(hidden[g].T), "bias": put(bias[g])} for g in "ifgo"}


def _flax_cell_gradients(dcell, cell):
    """The Linen cell's gradients as jaxrnn's `Wax, Waa, ba` (and `bhn`)."""
    if cell == "vanilla":
        return {"Wax": dcell["i"]["kernel"].T, "Waa": dcell["h"]["kernel"].T, "ba": dcell["i"]["bias"][:, None]}
    gates = GATE_NAMES[cell]
    stack = lambda prefix, field: jnp.concatenate([dcell[f"{prefix}{g}"][field].T for g in gates])
    grads = {"Wax": stack("i", "kernel"), "Waa": stack("h", "kernel")}
    if cell == "gru":
        grads["ba"] = jnp.concatenate([dcell[f"i{g}"]["bias"] for g in gates])[:, None]
        grads["bhn"] = dcell["hn"]["bias"][:, None]
    else:
        grads["ba"] = jnp.concatenate([dcell[f"h{g}"]["bias"] for g in gates])[:, None]
    return grads


def flax_variant(problem: Problem, workload: str, dtype, device, *, masked: bool = False) -> Variant:
    import flax.linen as nn

    cell_name = problem.cell
    n_a, n_y = problem.params["Waa"].shape[1], problem.params["Wya"].shape[0]
    cell_class = {"vanilla": nn.SimpleCell, "gru": nn.GRUCell, "lstm": nn.OptimizedLSTMCell}[cell_name]

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x, h0, seq_lengths):  # batch-major: x (m, T, n_x), h0 (m, n_a); LSTM (c0, h0)
            cell = cell_class(features=n_a, param_dtype=dtype, dtype=dtype, name="cell")
            hidden = nn.RNN(cell)(x, initial_carry=h0, seq_lengths=seq_lengths)
            return hidden, jax.nn.softmax(nn.Dense(n_y, param_dtype=dtype, dtype=dtype)(hidden), axis=-1)

    model = Model()
    put = lambda v: jax.device_put(jnp.asarray(v, dtype), device)
    x = put(to_layout(problem.x, "batch_major"))
    h0 = (put(problem.a0[1].T), put(problem.a0[0].T)) if cell_name == "lstm" else put(problem.a0.T)  # Flax: (c, h)
    m, T = problem.labels.shape
    lengths = jax.device_put(jnp.full((m,), T, jnp.int32), device) if masked else None
    goal = targets(problem, "batch_major", device)
    w = problem.params  # the same weights as the other variants, in Flax's (in, out) kernels
    dense = {"kernel": put(w["Wya"].T), "bias": put(w["by"][:, 0])}
    variables = {"params": {"cell": _flax_cell_params(w, cell_name, put), "Dense_0": dense}}
    expected = jax.eval_shape(model.init, jax.random.PRNGKey(0), x, h0, lengths)
    assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(expected), "Flax's names changed"

    def loss(variables, x, h0, lengths, goal):
        hidden, y = model.apply(variables, x, h0, lengths)
        return workload_loss(workload, hidden, y, goal, -1)

    step, value, (dvariables, dx, dh0), temp = compiled_step(loss, (variables, x, h0, lengths, goal))
    dense = dvariables["params"]["Dense_0"]
    dparams = _flax_cell_gradients(dvariables["params"]["cell"], cell_name)
    dparams |= {"Wya": dense["kernel"].T, "by": dense["bias"][:, None]}
    da0 = (dh0[1].T, dh0[0].T) if cell_name == "lstm" else dh0.T
    gradients = seed_gradients(from_layout(dx, "batch_major"), da0, dparams)
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
    cell = problem.cell
    n_a, n_x = problem.params["Waa"].shape[1], problem.params["Wax"].shape[1]
    n_y = problem.params["Wya"].shape[0]
    if cell == "vanilla":
        rnn_module = torch.nn.RNN(n_x, n_a, nonlinearity="tanh")
    else:
        rnn_module = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](n_x, n_a)
    rnn_module = rnn_module.to(torch_device, dtype)
    linear = torch.nn.Linear(n_a, n_y).to(torch_device, dtype)
    tensor = lambda v, kind=dtype: torch.tensor(np.ascontiguousarray(v), dtype=kind, device=torch_device)
    w = problem.params
    with torch.no_grad():  # the same weights as the JAX variants: bias_ih = ba, bias_hh = 0 (GRU: b_hn = bhn)
        rnn_module.weight_ih_l0.copy_(tensor(w["Wax"]))
        rnn_module.weight_hh_l0.copy_(tensor(w["Waa"]))
        rnn_module.bias_ih_l0.copy_(tensor(w["ba"][:, 0]))
        rnn_module.bias_hh_l0.zero_()
        if cell == "gru":
            rnn_module.bias_hh_l0[2 * n_a :].copy_(tensor(w["bhn"][:, 0]))
        linear.weight.copy_(tensor(w["Wya"]))
        linear.bias.copy_(tensor(w["by"][:, 0]))
    x = tensor(to_layout(problem.x, "time_major")).requires_grad_()  # (T, m, n_x)
    states = problem.a0 if cell == "lstm" else (problem.a0,)
    h0 = tuple(tensor(s.T[None]).requires_grad_() for s in states)  # (1, m, n_a) each
    labels = torch.tensor(to_layout(problem.labels, "time_major")[:, :, None], device=torch_device)  # (T, m, 1)
    g_a, g_y = (tensor(to_layout(g, "time_major"), torch.float32) for g in (problem.g_a, problem.g_y))
    leaves = [x, *h0, *rnn_module.parameters(), *linear.parameters()]
    synchronize = torch_synchronizer(torch_device)

    def step():
        for leaf in leaves:
            leaf.grad = None
        hidden, _ = rnn_module(x, h0 if cell == "lstm" else h0[0])
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
        "ba": as_numpy(rnn_module.bias_ih_l0.grad)[:, None],  # the gradient of bias_ih is ba's
        "Wya": as_numpy(linear.weight.grad),
        "by": as_numpy(linear.bias.grad)[:, None],
    }
    if cell == "gru":
        dparams["bhn"] = as_numpy(rnn_module.bias_hh_l0.grad)[2 * n_a :, None]
    da0 = tuple(as_numpy(s.grad)[0].T for s in h0)
    gradients = seed_gradients(from_layout(as_numpy(x.grad), "time_major"), da0 if cell == "lstm" else da0[0], dparams)
    return Variant("torch", timed_step, value, None, gradients)
