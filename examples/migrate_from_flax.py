"""From Flax's `GRUCell` and `LSTMCell` RNNs to jaxrnn and back, with the same numbers.

For each cell, a two-layer Flax NNX stack (a bidirectional layer, then a unidirectional one)
moves into `jaxrnn.rnn_stack` — whose gradient is the hand-derived backward — trains a few Adam
steps with optax, and `jaxrnn.to_flax` writes the result back into a copy of the Flax model.
Two things differ from Flax's conventions: an LSTM's carry is `(c, h)` in Flax and
`LSTMState(h, c)` in jaxrnn, and `nnx.GRUCell` has no `b_hn`, so jaxrnn's `bhn` stays zero
while training (its gradient is masked) to go back.

Or keep the Flax model and swap its layers: `jaxrnn.nnx.RNN` and `jaxrnn.nnx.Bidirectional`
take the same cells, arguments and carries as `nnx.RNN` and `nnx.Bidirectional`, and
differentiate the cells' own parameters by hand (`drop_in`). Run:

    python examples/migrate_from_flax.py
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxrnn

B, T, N_X, N_A = 4, 10, 3, 8
CELLS = {"nnx.GRUCell": nnx.GRUCell, "nnx.OptimizedLSTMCell": nnx.OptimizedLSTMCell}


def flax_model(cell, seed):
    rnn = lambda n_in, k: nnx.RNN(cell(n_in, N_A, rngs=nnx.Rngs(seed + k)))
    return nnx.Sequential(nnx.Bidirectional(rnn(N_X, 0), rnn(N_X, 1)), rnn(2 * N_A, 2))


def flax_forward(model, x, carries):
    """Flax's stack, layer by layer, from the given carries."""
    for layer, carry in zip(model.layers, carries):
        x = layer(x, initial_carry=carry)
    return x


def to_jaxrnn_state(carry, lstm):
    """One layer's Flax carry as jaxrnn's state: an LSTM's `(c, h)` becomes `LSTMState(h, c)`,
    direction by direction in a bidirectional layer's pair."""
    if not lstm:
        return carry
    if isinstance(carry[0], tuple):
        return tuple(to_jaxrnn_state(direction, lstm) for direction in carry)
    c, h = carry
    return jaxrnn.LSTMState(h, c)


def without_bhn_gradient(grads):
    """nnx.GRUCell has no b_hn: keep jaxrnn's bhn at zero (Adam moves nothing a zero gradient reaches)."""
    zero = lambda params: params | {"bhn": jnp.zeros_like(params["bhn"])} if "bhn" in params else params
    return jax.tree.map(zero, grads, is_leaf=lambda value: isinstance(value, dict) and "Wax" in value)


def migrate(name):
    model = flax_model(CELLS[name], seed=0)
    x = jax.random.normal(jax.random.key(1), (B, T, N_X))
    state = lambda k: jax.random.normal(jax.random.key(k), (B, N_A))
    lstm = name == "nnx.OptimizedLSTMCell"
    carry = (lambda k: (state(k), state(k + 50))) if lstm else state  # an LSTM's: (c, h)
    carries = [(carry(2), carry(3)), carry(4)]  # a pair for the bidirectional layer
    flax_outputs = flax_forward(model, x, carries)

    # The migration: the weights, the initial states, the call.
    layers, options = jaxrnn.from_flax(model)  # options: cell="gru" | "lstm", layout="batch_major"
    a0 = [to_jaxrnn_state(c, lstm) for c in carries]
    outputs, _ = jaxrnn.rnn_stack(x, a0, layers, **options)
    errors = {f"{name} outputs": float(np.max(np.abs(outputs - flax_outputs)))}

    # Train with the hand-derived backward (a toy loss), then write the weights back into Flax.
    optimizer = optax.adam(1e-2)

    @jax.jit
    def step(layers, opt_state):
        loss = lambda layers: jnp.mean((jaxrnn.rnn_stack(x, a0, layers, **options)[0] - 0.5) ** 2)
        updates, opt_state = optimizer.update(without_bhn_gradient(jax.grad(loss)(layers)), opt_state)
        return optax.apply_updates(layers, updates), opt_state

    opt_state = optimizer.init(layers)
    for _ in range(5):
        layers, opt_state = step(layers, opt_state)
    trained = jaxrnn.to_flax(layers, like=model)  # a copy of the Flax model with the trained weights
    outputs, _ = jaxrnn.rnn_stack(x, a0, layers, **options)
    errors[f"{name} outputs after training"] = float(np.max(np.abs(outputs - flax_forward(trained, x, carries))))
    return errors


def drop_in(name):
    """The same stack with jaxrnn's layers on the same cells: outputs and the cells' gradients."""
    flax = flax_model(CELLS[name], seed=0)
    both, top = flax.layers
    ours = nnx.Sequential(  # nnx.RNN -> jaxrnn.nnx.RNN, nnx.Bidirectional -> jaxrnn.nnx.Bidirectional
        jaxrnn.nnx.Bidirectional(jaxrnn.nnx.RNN(both.forward_rnn.cell), jaxrnn.nnx.RNN(both.backward_rnn.cell)),
        jaxrnn.nnx.RNN(top.cell),
    )
    x = jax.random.normal(jax.random.key(1), (B, T, N_X))
    loss = lambda model: jnp.mean(model(x) ** 2)
    grads = [nnx.state(nnx.grad(loss)(model), nnx.Param) for model in (ours, flax)]
    return {
        f"{name} drop-in outputs": float(np.max(np.abs(ours(x) - flax(x)))),
        f"{name} drop-in gradients": max(float(np.max(np.abs(a - b))) for a, b in zip(*map(jax.tree.leaves, grads))),
    }


def main():
    return {key: error for name in CELLS for run in (migrate, drop_in) for key, error in run(name).items()}


if __name__ == "__main__":
    for name, error in main().items():
        print(f"max |jaxrnn − Flax|, {name}: {error:.1e}")
