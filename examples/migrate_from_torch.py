"""From PyTorch's `nn.RNN` to jaxrnn and back, with the same numbers.

A two-layer bidirectional `nn.RNN` on a packed batch; the same weights through
`jaxrnn.rnn_stack` (whose gradient is the hand-derived backward); a few SGD steps in JAX; the
trained weights back into the PyTorch module. Run:

    python examples/migrate_from_torch.py
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jaxrnn

B, T, N_X, N_A = 4, 10, 3, 8


def torch_forward(model, x, h0, lengths):
    """The module on a packed batch; its output padded with zeros, as jaxrnn pads."""
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        output, h_n = model(packed, h0)
    output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=T)
    return output.numpy(), h_n.numpy()


def main():
    torch.manual_seed(0)
    model = torch.nn.RNN(N_X, N_A, num_layers=2, bidirectional=True, batch_first=True)
    x, h0 = torch.randn(B, T, N_X), torch.randn(4, B, N_A)  # h_0: (num_layers · directions, B, N_A)
    lengths = torch.tensor([10, 7, 3, 1])
    output, h_n = torch_forward(model, x, h0, lengths)

    # The migration: the weights, the initial state, the call.
    layers, options = jaxrnn.from_torch(model)  # options: nonlinearity="tanh", layout="batch_major"
    a0 = jaxrnn.from_torch_hidden(h0, layers)
    seq_lengths = jnp.asarray(lengths.numpy())
    a, _, finals = jaxrnn.rnn_stack(
        jnp.asarray(x.numpy()), a0, layers, seq_lengths=seq_lengths, return_final_state=True, **options
    )
    errors = {
        "output": float(np.max(np.abs(a - output))),
        "h_n": float(np.max(np.abs(jaxrnn.to_torch_hidden(finals) - h_n))),
    }

    # Train in JAX (a toy loss), then load the weights back into the PyTorch module.
    def loss(layers):
        a, _ = jaxrnn.rnn_stack(jnp.asarray(x.numpy()), a0, layers, seq_lengths=seq_lengths, **options)
        return jnp.mean((a - 0.5) ** 2)

    step = jax.jit(lambda layers: jax.tree.map(lambda p, g: p - 0.5 * g, layers, jax.grad(loss)(layers)))
    for _ in range(5):
        layers = step(layers)
    model.load_state_dict(jaxrnn.to_torch(layers, like=model))  # bias_hh kept, bias_ih = ba − bias_hh
    trained_output, _ = torch_forward(model, x, h0, lengths)
    a, _ = jaxrnn.rnn_stack(jnp.asarray(x.numpy()), a0, layers, seq_lengths=seq_lengths, **options)
    errors["output after training in JAX"] = float(np.max(np.abs(a - trained_output)))
    return errors


if __name__ == "__main__":
    for name, error in main().items():
        print(f"max |jaxrnn − PyTorch|, {name}: {error:.1e}")
