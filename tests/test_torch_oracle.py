"""PyTorch's `nn.RNN` as an independent oracle for stacks, directions, ReLU, layouts and packed
sequences: outputs, `h_n` and the gradients of every weight, the input and `h_0`, in float64.

PyTorch has two biases per layer and direction; `bias_ih + bias_hh` is our `ba`, and the
gradient of each of them is our `dba`. (The converters `jaxrnn.from_torch`/`to_torch` are
tested elsewhere; this file maps the weights by hand so that it checks the layer alone.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

torch = pytest.importorskip("torch")

N_X, N_A, B, T = 3, 4, 3, 6
LENGTHS = [6, 2, 1]  # packed sequences need lengths >= 1


def torch_run(module, x, h0, lengths, batch_first, weights):
    """Output (padded with zeros past each length), h_n and every gradient of a weighted loss."""
    x = torch.tensor(np.asarray(x), requires_grad=True)
    h0 = torch.tensor(np.asarray(h0), requires_grad=True)
    inputs = x
    if lengths is not None:
        inputs = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first, enforce_sorted=False)
    output, h_n = module(inputs, h0)
    if lengths is not None:
        output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first, total_length=T)
    loss = (torch.tensor(weights["output"]) * output).sum() + (torch.tensor(weights["h_n"]) * h_n).sum()
    module.zero_grad()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    return output.detach().numpy(), h_n.detach().numpy(), x.grad.numpy(), h0.grad.numpy(), grads


def jaxrnn_layers(module, num_layers, directions):
    """The module's weights as `rnn_stack` layers (dicts; pairs for bidirectional layers)."""
    weights = {name: jnp.asarray(p.detach().numpy()) for name, p in module.named_parameters()}
    layers = []
    for l in range(num_layers):
        pair = []
        for suffix in ["", "_reverse"][:directions]:
            key = f"l{l}{suffix}"
            bias = weights[f"bias_ih_{key}"] + weights[f"bias_hh_{key}"]
            pair.append({"Wax": weights[f"weight_ih_{key}"], "Waa": weights[f"weight_hh_{key}"], "ba": bias[:, None]})
        layers.append(tuple(pair) if directions == 2 else pair[0])
    return layers


CASES = [
    # (num_layers, bidirectional, nonlinearity, batch_first, packed)
    (1, False, "tanh", False, False),
    (1, True, "relu", True, True),
    (2, False, "relu", False, True),
    (2, True, "tanh", True, False),
    (2, True, "tanh", False, True),
    (3, False, "tanh", True, True),
    (3, True, "relu", False, True),
]


@pytest.mark.parametrize(("num_layers", "bidirectional", "nonlinearity", "batch_first", "packed"), CASES)
def test_stack_equals_torch_rnn(x64, num_layers, bidirectional, nonlinearity, batch_first, packed):
    torch.manual_seed(num_layers * 10 + bidirectional)
    directions = 2 if bidirectional else 1
    module = torch.nn.RNN(
        N_X, N_A, num_layers, nonlinearity=nonlinearity, batch_first=batch_first, bidirectional=bidirectional
    ).double()
    rng = np.random.default_rng(num_layers)
    x = rng.standard_normal((B, T, N_X) if batch_first else (T, B, N_X))
    h0 = 0.5 * rng.standard_normal((num_layers * directions, B, N_A))
    weights = {
        "output": rng.standard_normal((B, T, directions * N_A) if batch_first else (T, B, directions * N_A)),
        "h_n": rng.standard_normal(h0.shape),
    }
    lengths = LENGTHS if packed else None
    output, h_n, dx, dh0, torch_grads = torch_run(module, x, h0, lengths, batch_first, weights)

    layers = jaxrnn_layers(module, num_layers, directions)
    a0 = [tuple(h0[l * directions + d] for d in range(directions)) for l in range(num_layers)]
    a0 = a0 if bidirectional else [pair[0] for pair in a0]
    options = {
        "seq_lengths": None if lengths is None else jnp.array(lengths),
        "nonlinearity": nonlinearity,
        "layout": "batch_major" if batch_first else "time_major",
        "return_final_state": True,
    }

    def loss(x, a0, layers):
        a, _, finals = jaxrnn.rnn_stack(x, a0, layers, **options)
        h_n = jnp.stack([h for final in finals for h in (final if bidirectional else (final,))])
        return jnp.sum(weights["output"] * a) + jnp.sum(weights["h_n"] * h_n), (a, h_n)

    (
        (
            _,
            (a, h),
        ),
        (grad_x, grad_a0, grad_layers),
    ) = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
        jnp.asarray(x), jax.tree_util.tree_map(jnp.asarray, a0), layers
    )
    close = lambda got, want, what: np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13, err_msg=what)
    close(a, output, "output")
    close(h, h_n, "h_n")
    close(grad_x, dx, "dx")
    grad_h0 = [g for pair in grad_a0 for g in (pair if bidirectional else (pair,))]
    close(jnp.stack(grad_h0), dh0, "dh0")
    for l in range(num_layers):
        for d, suffix in enumerate(["", "_reverse"][:directions]):
            got = grad_layers[l][d] if bidirectional else grad_layers[l]
            key = f"l{l}{suffix}"
            close(got["Wax"], torch_grads[f"weight_ih_{key}"], f"weight_ih_{key}")
            close(got["Waa"], torch_grads[f"weight_hh_{key}"], f"weight_hh_{key}")
            close(got["ba"][:, 0], torch_grads[f"bias_ih_{key}"], f"bias_ih_{key}")
            close(got["ba"][:, 0], torch_grads[f"bias_hh_{key}"], f"bias_hh_{key}")
