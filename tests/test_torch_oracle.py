"""PyTorch's `nn.RNN`, `nn.GRU` and `nn.LSTM` as independent oracles for the three cells, stacks,
directions, ReLU, layouts and packed sequences: outputs, `h_n` (and `c_n`) and the gradients of
every weight, bias, the input and `h_0` (and `c_0`), in float64.

The weights are mapped by hand here, so that this file checks the layer alone (the converters
`jaxrnn.from_torch`/`to_torch` are tested in `test_interop_torch.py`):

- PyTorch has two biases per gate; `bias_ih + bias_hh` is our `ba`, and the gradient of each of
  them is our `dba` — except the GRU's new gate, whose `b_in` is `ba`'s n rows and whose `b_hn`
  (inside `r ⊙ (W_hn h + b_hn)`) is our `bhn`.
- An LSTM's state is `(h, c)`: `a0` and the final states are `LSTMState`s.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fast_and_slow

import jaxrnn

torch = pytest.importorskip("torch")

N_X, N_A, B, T = 3, 4, 3, 6
LENGTHS = [6, 2, 1]  # packed sequences need lengths >= 1
MODULES = {"vanilla": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}


def torch_run(module, x, hidden, lengths, batch_first, weights):
    """Output (padded with zeros past each length), the final state(s) and every gradient of a
    weighted loss; `hidden` is `h_0`, or `(h_0, c_0)` for an LSTM."""
    x = torch.tensor(np.asarray(x), requires_grad=True)
    hidden = [torch.tensor(np.asarray(h), requires_grad=True) for h in hidden]
    inputs = x
    if lengths is not None:
        inputs = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first, enforce_sorted=False)
    output, final = module(inputs, tuple(hidden) if len(hidden) == 2 else hidden[0])
    if lengths is not None:
        output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first, total_length=T)
    final = final if isinstance(final, tuple) else (final,)
    loss = (torch.tensor(weights["output"]) * output).sum()
    loss = loss + sum((torch.tensor(w) * f).sum() for w, f in zip(weights["final"], final))
    module.zero_grad()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    finals = [f.detach().numpy() for f in final]
    return output.detach().numpy(), finals, x.grad.numpy(), [h.grad.numpy() for h in hidden], grads


def jaxrnn_layers(module, cell, num_layers, directions):
    """The module's weights as `rnn_stack` layers (dicts; pairs for bidirectional layers)."""
    weights = {name: jnp.asarray(p.detach().numpy()) for name, p in module.named_parameters()}
    layers = []
    for l in range(num_layers):
        pair = []
        for suffix in ["", "_reverse"][:directions]:
            key = f"l{l}{suffix}"
            bias_ih, bias_hh = weights[f"bias_ih_{key}"], weights[f"bias_hh_{key}"]
            params = {"Wax": weights[f"weight_ih_{key}"], "Waa": weights[f"weight_hh_{key}"]}
            if cell == "gru":  # r, z: the sums; n: b_in in ba, b_hn apart
                params["ba"] = jnp.concatenate([bias_ih[: 2 * N_A] + bias_hh[: 2 * N_A], bias_ih[2 * N_A :]])[:, None]
                params["bhn"] = bias_hh[2 * N_A :, None]
            else:
                params["ba"] = (bias_ih + bias_hh)[:, None]
            pair.append(params)
        layers.append(tuple(pair) if directions == 2 else pair[0])
    return layers


def torch_bias_gradients(cell, grads):
    """Our bias gradients as PyTorch's `(d bias_ih, d bias_hh)`."""
    dba = grads["ba"][:, 0]
    if cell == "gru":  # the n rows of bias_hh are b_hn
        return dba, jnp.concatenate([dba[: 2 * N_A], grads["bhn"][:, 0]])
    return dba, dba


CASES = [
    # (cell, num_layers, bidirectional, nonlinearity, batch_first, packed)
    ("vanilla", 1, False, "tanh", False, False),
    ("vanilla", 1, True, "relu", True, True),
    ("vanilla", 2, False, "relu", False, True),
    ("vanilla", 2, True, "tanh", True, False),
    ("vanilla", 2, True, "tanh", False, True),
    ("vanilla", 3, False, "tanh", True, True),
    ("vanilla", 3, True, "relu", False, True),
    ("gru", 1, False, "tanh", False, False),
    ("gru", 2, True, "tanh", True, True),
    ("gru", 3, False, "tanh", False, True),
    ("gru", 3, True, "tanh", True, False),
    ("lstm", 1, True, "tanh", False, True),
    ("lstm", 2, False, "tanh", True, False),
    ("lstm", 2, True, "tanh", False, False),
    ("lstm", 3, True, "tanh", True, True),
]


# The default run: packed bidirectional stacks of each cell (1, 2, 3 layers); the rest with `-m ""`.
@pytest.mark.parametrize(
    ("cell", "num_layers", "bidirectional", "nonlinearity", "batch_first", "packed"),
    fast_and_slow(CASES, {1, 8, 14}),
)
def test_stack_equals_torch(x64, cell, num_layers, bidirectional, nonlinearity, batch_first, packed):
    torch.manual_seed(num_layers * 10 + bidirectional)
    directions = 2 if bidirectional else 1
    options = {"nonlinearity": nonlinearity} if cell == "vanilla" else {}
    module = MODULES[cell](
        N_X, N_A, num_layers, batch_first=batch_first, bidirectional=bidirectional, **options
    ).double()
    rng = np.random.default_rng(num_layers)
    x = rng.standard_normal((B, T, N_X) if batch_first else (T, B, N_X))
    parts = 2 if cell == "lstm" else 1  # h, and an LSTM's c
    hidden = [0.5 * rng.standard_normal((num_layers * directions, B, N_A)) for _ in range(parts)]
    weights = {
        "output": rng.standard_normal((B, T, directions * N_A) if batch_first else (T, B, directions * N_A)),
        "final": [rng.standard_normal(hidden[0].shape) for _ in range(parts)],
    }
    lengths = LENGTHS if packed else None
    output, finals, dx, dhidden, torch_grads = torch_run(module, x, hidden, lengths, batch_first, weights)

    layers = jaxrnn_layers(module, cell, num_layers, directions)
    state = lambda row: jaxrnn.LSTMState(hidden[0][row], hidden[1][row]) if cell == "lstm" else hidden[0][row]
    a0 = [tuple(state(l * directions + d) for d in range(directions)) for l in range(num_layers)]
    a0 = a0 if bidirectional else [pair[0] for pair in a0]
    call = {
        "seq_lengths": None if lengths is None else jnp.array(lengths),
        "layout": "batch_major" if batch_first else "time_major",
        "return_final_state": True,
        "cell": cell,
        "nonlinearity": nonlinearity,
    }

    def stacked(states):
        """Per-layer states as PyTorch stacks them: `[h_n]`, or `[h_n, c_n]` for an LSTM."""
        flat = [s for layer in states for s in (layer if bidirectional else (layer,))]
        return [jnp.stack([s[i] if cell == "lstm" else s for s in flat]) for i in range(parts)]

    def loss(x, a0, layers):
        a, _, states = jaxrnn.rnn_stack(x, a0, layers, **call)
        final = stacked(states)
        return jnp.sum(weights["output"] * a) + sum(jnp.sum(w * f) for w, f in zip(weights["final"], final)), (a, final)

    (_, (a, final)), (grad_x, grad_a0, grad_layers) = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
        jnp.asarray(x), jax.tree_util.tree_map(jnp.asarray, a0), layers
    )
    close = lambda got, want, what: np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13, err_msg=what)
    close(a, output, "output")
    for got, want, what in zip(final, finals, ("h_n", "c_n")):
        close(got, want, what)
    close(grad_x, dx, "dx")
    for got, want, what in zip(stacked(grad_a0), dhidden, ("dh_0", "dc_0")):
        close(got, want, what)
    for l in range(num_layers):
        for d, suffix in enumerate(["", "_reverse"][:directions]):
            got = grad_layers[l][d] if bidirectional else grad_layers[l]
            key = f"l{l}{suffix}"
            close(got["Wax"], torch_grads[f"weight_ih_{key}"], f"weight_ih_{key}")
            close(got["Waa"], torch_grads[f"weight_hh_{key}"], f"weight_hh_{key}")
            bias_ih, bias_hh = torch_bias_gradients(cell, got)
            close(bias_ih, torch_grads[f"bias_ih_{key}"], f"bias_ih_{key}")
            close(bias_hh, torch_grads[f"bias_hh_{key}"], f"bias_hh_{key}")
