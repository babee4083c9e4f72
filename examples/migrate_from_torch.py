"""From PyTorch's `nn.RNN`, `nn.GRU` and `nn.LSTM` to jaxrnn and back, with the same numbers.

For each: a two-layer bidirectional module on a packed batch, from an initial state (an LSTM's
`(h_0, c_0)`); the same weights through `jaxrnn.rnn_stack` (whose gradient is the hand-derived
backward); a few SGD steps in JAX; the trained weights back into the PyTorch module. Run:

    python examples/migrate_from_torch.py
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jaxrnn

B, T, N_X, N_A = 4, 10, 3, 8
MODULES = {"nn.RNN": torch.nn.RNN, "nn.GRU": torch.nn.GRU, "nn.LSTM": torch.nn.LSTM}


def torch_forward(model, x, hidden, lengths):
    """The module on a packed batch: its output padded with zeros, as jaxrnn pads, and its
    final state (`h_n`, or `(h_n, c_n)`)."""
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        output, final = model(packed, hidden)
    output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=T)
    return output.numpy(), final


def largest_difference(ours, theirs):
    differences = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b.numpy()))), ours, theirs)
    return max(jax.tree.leaves(differences))


def migrate(name):
    torch.manual_seed(0)
    model = MODULES[name](N_X, N_A, num_layers=2, bidirectional=True, batch_first=True)
    x, h0 = torch.randn(B, T, N_X), torch.randn(4, B, N_A)  # h_0: (num_layers · directions, B, N_A)
    hidden = (h0, torch.randn(4, B, N_A)) if name == "nn.LSTM" else h0  # an LSTM's is (h_0, c_0)
    lengths = torch.tensor([10, 7, 3, 1])
    output, final = torch_forward(model, x, hidden, lengths)

    # The migration: the weights, the initial state, the call.
    layers, options = jaxrnn.from_torch(model)  # options: cell="vanilla" | "gru" | "lstm", layout="batch_major", ...
    a0 = jaxrnn.from_torch_hidden(hidden, layers)  # per layer a (forward, reverse) pair; LSTMState(h, c) for an LSTM
    xs, seq_lengths = jnp.asarray(x.numpy()), jnp.asarray(lengths.numpy())
    a, _, finals = jaxrnn.rnn_stack(xs, a0, layers, seq_lengths=seq_lengths, return_final_state=True, **options)
    errors = {
        f"{name} output": float(np.max(np.abs(a - output))),
        f"{name} final state": largest_difference(jaxrnn.to_torch_hidden(finals), final),  # h_n, or (h_n, c_n)
    }

    # Train in JAX (a toy loss), then load the weights back into the PyTorch module.
    def loss(layers):
        a, _ = jaxrnn.rnn_stack(xs, a0, layers, seq_lengths=seq_lengths, **options)
        return jnp.mean((a - 0.5) ** 2)

    step = jax.jit(lambda layers: jax.tree.map(lambda p, g: p - 0.5 * g, layers, jax.grad(loss)(layers)))
    for _ in range(5):
        layers = step(layers)
    model.load_state_dict(jaxrnn.to_torch(layers, like=model))  # bias_hh kept, bias_ih = ba − bias_hh
    trained_output, _ = torch_forward(model, x, hidden, lengths)
    a, _ = jaxrnn.rnn_stack(xs, a0, layers, seq_lengths=seq_lengths, **options)
    errors[f"{name} output after training in JAX"] = float(np.max(np.abs(a - trained_output)))
    return errors


def main():
    return {key: error for name in MODULES for key, error in migrate(name).items()}


if __name__ == "__main__":
    for name, error in main().items():
        print(f"max |jaxrnn − PyTorch|, {name}: {error:.1e}")
