"""The jaxrnn layer inside a Flax NNX module, trained with optax (Adam) on a counting task.

The module holds the five seed-layout parameters as `nnx.Param`s and calls the batch-major
cross-entropy head, so `nnx.grad` runs the hand-derived backward. Run:

    python examples/flax_nnx_model.py
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import jaxrnn

PARAMETER_NAMES = ("Wax", "Waa", "Wya", "ba", "by")


class RNNLanguageModel(nnx.Module):
    """Next-token model: inputs `(B, T, n_x)` and labels `(B, T)` -> per-token losses `(B, T)`."""

    def __init__(self, n_x: int, n_a: int, n_y: int, *, rngs: nnx.Rngs):
        for name, value in jaxrnn.init_parameters(rngs.params(), n_x, n_a, n_y).items():
            setattr(self, name, nnx.Param(value))

    def parameters(self) -> dict:
        """The seed-layout parameter dict the layer takes."""
        return {name: getattr(self, name)[...] for name in PARAMETER_NAMES}

    def __call__(self, x, labels, a0=None):
        """`x (B, T, n_x)`, `labels (B, T)`, `a0 (B, n_a)` (zeros if None) -> `(losses (B, T), a (B, T, n_a))`."""
        return jaxrnn.rnn_cross_entropy(x, a0, self.parameters(), labels, layout="batch_major")


def counting_batch(key, batch=8, steps=12, vocab=5):
    """Sequences counting modulo `vocab` from random starts: one-hot inputs, the next token as label."""
    tokens = (jax.random.randint(key, (batch, 1), 0, vocab) + jnp.arange(steps)[None]) % vocab
    return jax.nn.one_hot(tokens, vocab), (tokens + 1) % vocab


def mean_loss(model, x, labels):
    return jnp.mean(model(x, labels)[0])


@nnx.jit
def train_step(model, optimizer, x, labels):
    loss, grads = nnx.value_and_grad(mean_loss)(model, x, labels)
    optimizer.update(model, grads)
    return loss


def train(steps=30, seed=0, vocab=5, n_a=16):
    """Trains a fresh model for `steps` Adam steps; returns `(model, losses)`."""
    model = RNNLanguageModel(vocab, n_a, vocab, rngs=nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    keys = jax.random.split(jax.random.PRNGKey(seed), steps)
    losses = [float(train_step(model, optimizer, *counting_batch(key, vocab=vocab))) for key in keys]
    return model, losses


if __name__ == "__main__":
    _, losses = train()
    print(f"mean cross-entropy: {losses[0]:.3f} at the first step -> {losses[-1]:.3f} after {len(losses)} steps")
