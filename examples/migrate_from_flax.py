"""From Flax's `nnx.RNN(nnx.SimpleCell)` to jaxrnn and back, with the same numbers.

A trained Flax model's weights move into `jaxrnn.nnx.RNN` — the same call, whose gradient is
the hand-derived backward — which trains a few Adam steps with optax; `jaxrnn.to_flax`
writes the result back into the Flax model. Run:

    python examples/migrate_from_flax.py
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxrnn
import jaxrnn.nnx

B, T, N_X, N_A = 4, 10, 3, 8


def main():
    flax_rnn = nnx.RNN(nnx.SimpleCell(N_X, N_A, rngs=nnx.Rngs(0)), return_carry=True)
    x = jax.random.normal(jax.random.key(1), (B, T, N_X))
    carry = jax.random.normal(jax.random.key(2), (B, N_A))
    flax_carry, flax_outputs = flax_rnn(x, initial_carry=carry)

    # The migration: the weights into the module, then the same call.
    layers, options = jaxrnn.from_flax(flax_rnn)  # options: nonlinearity="tanh", layout="batch_major"
    rnn = jaxrnn.nnx.RNN.from_parameters(layers, **options, return_carry=True)
    new_carry, outputs = rnn(x, initial_carry=carry)
    errors = {
        "outputs": float(np.max(np.abs(outputs - flax_outputs))),
        "carry": float(np.max(np.abs(new_carry - flax_carry))),
    }

    # Train with the hand-derived backward (a toy loss), then write the weights back into Flax.
    optimizer = nnx.Optimizer(rnn, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(rnn, optimizer):
        loss, grads = nnx.value_and_grad(lambda rnn: jnp.mean((rnn(x, initial_carry=carry)[1] - 0.5) ** 2))(rnn)
        optimizer.update(rnn, grads)
        return loss

    for _ in range(5):
        step(rnn, optimizer)
    flax_rnn = jaxrnn.to_flax(rnn.parameters(), like=flax_rnn)  # a copy of flax_rnn with the trained weights
    trained = rnn(x, initial_carry=carry)[1] - flax_rnn(x, initial_carry=carry)[1]
    errors["outputs after training"] = float(np.max(np.abs(trained)))
    return errors


if __name__ == "__main__":
    for name, error in main().items():
        print(f"max |jaxrnn − Flax|, {name}: {error:.1e}")
