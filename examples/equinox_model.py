"""The jaxrnn layer inside an Equinox module, trained with optax (Adam) on a counting task.

The module's only field is the seed-layout parameter dict (a pytree), so
`eqx.filter_value_and_grad` and optax see it as it is. Run:

    python examples/equinox_model.py
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import jaxrnn

OPTIMIZER = optax.adam(1e-2)


class RNNLanguageModel(eqx.Module):
    """Next-token model on batch-major arrays `(B, T, features)`."""

    parameters: dict

    def __init__(self, n_x: int, n_a: int, n_y: int, *, key):
        self.parameters = jaxrnn.init_parameters(key, n_x, n_a, n_y)

    def __call__(self, x, labels):
        """`x (B, T, n_x)`, `labels (B, T)` -> `(losses (B, T), a (B, T, n_a))`, from a zero state."""
        return jaxrnn.rnn_cross_entropy(x, None, self.parameters, labels, layout="batch_major")

    def predict(self, x):
        """`x (B, T, n_x)` -> next-token probabilities `(B, T, n_y)`."""
        return jaxrnn.rnn(x, None, self.parameters, layout="batch_major")[1]


def counting_batch(key, batch=8, steps=12, vocab=5):
    """Sequences counting modulo `vocab` from random starts: one-hot inputs, the next token as label."""
    tokens = (jax.random.randint(key, (batch, 1), 0, vocab) + jnp.arange(steps)[None]) % vocab
    return jax.nn.one_hot(tokens, vocab), (tokens + 1) % vocab


def mean_loss(model, x, labels):
    return jnp.mean(model(x, labels)[0])


@eqx.filter_jit
def train_step(model, opt_state, x, labels):
    loss, grads = eqx.filter_value_and_grad(mean_loss)(model, x, labels)
    updates, opt_state = OPTIMIZER.update(grads, opt_state, model)
    return eqx.apply_updates(model, updates), opt_state, loss


def train(steps=30, seed=0, vocab=5, n_a=16):
    """Trains a fresh model for `steps` Adam steps; returns `(model, losses)`."""
    model = RNNLanguageModel(vocab, n_a, vocab, key=jax.random.PRNGKey(seed))
    opt_state = OPTIMIZER.init(eqx.filter(model, eqx.is_array))
    losses = []
    for key in jax.random.split(jax.random.PRNGKey(seed + 1), steps):
        model, opt_state, loss = train_step(model, opt_state, *counting_batch(key, vocab=vocab))
        losses.append(float(loss))
    return model, losses


if __name__ == "__main__":
    _, losses = train()
    print(f"mean cross-entropy: {losses[0]:.3f} at the first step -> {losses[-1]:.3f} after {len(losses)} steps")
