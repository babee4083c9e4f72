"""Generating text from a trained model, one character at a time.

The model first reads `START` (the zero input) and the prime with the seed's
`rnn_cell_forward`; then each step draws the next character `c ~ softmax(o_t / temperature)`
(`o_t = Wya a_t + by`, so the weights are `y_t^(1/temperature)`) and feeds it back:
`a_{t+1} = tanh(Waa a_t + Wax onehot(c) + ba)`. Below temperature 1 the draw favours likely
characters, above 1 it flattens the distribution. With `lines` (a model of one example per
line), a drawn "\\n" ends the example: the state goes back to zero and the next example starts
from `START`, so the output is one example per line.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import rnn_cell_forward
from jaxrnn.charlm.corpus import START, Vocabulary
from jaxrnn.charlm.errors import CharLMError


def generate(
    params, vocabulary: Vocabulary, *, key, prime: str = "", temperature: float = 1.0, length: int = 200, lines=False
) -> str:
    """`prime` followed by `length` drawn characters.

    Args:
      params: the parameter dict of a model over `vocabulary` (`Wax (n_a, V)`, …).
      vocabulary: the model's characters.
      key: a `jax.random` key.
      prime: text the model reads before drawing; every character must be in `vocabulary`.
      temperature: > 0; the logits are divided by it.
      length: characters to draw (≥ 0).
      lines: each "\\n" ends an example and restarts from `START`.

    Returns:
      `prime + drawn text`.
    """
    if not temperature > 0:
        raise CharLMError(f"--temperature {temperature}: expected a positive number")
    if length < 0:
        raise CharLMError(f"--length {length}: expected 0 or more")
    prime_ids = np.concatenate([[START], vocabulary.encode(prime, "--prime")]).astype(np.int32)
    newline = int(vocabulary.encode("\n")[0]) if lines and "\n" in vocabulary else -2  # -2: no id matches
    params = {name: jnp.asarray(value) for name, value in params.items()}
    drawn = _draw(params, jnp.asarray(prime_ids), key, jnp.float32(temperature), jnp.int32(newline), length)
    return prime + vocabulary.decode(np.asarray(drawn))


@functools.partial(jax.jit, static_argnames="length")
def _draw(params, prime_ids, key, temperature, newline, length):
    vocabulary_size = params["Wax"].shape[1]
    one_hot = lambda i: jax.nn.one_hot(i, vocabulary_size, dtype=params["Wax"].dtype)[:, None]  # (V, 1)

    def read(a_prev, character):
        a_next, _, _ = rnn_cell_forward(one_hot(character), a_prev, params)
        return a_next, None

    def step(carry, key):
        a_prev, character = carry
        a, _, _ = rnn_cell_forward(one_hot(character), a_prev, params)
        logits = params["Wya"] @ a[:, 0] + params["by"][:, 0]  # o_t = Wya a_t + by
        # Draw from softmax(o_t / temperature), from the logits: no log(softmax) underflow.
        drawn = jax.random.categorical(key, logits / temperature).astype(jnp.int32)
        ends_line = drawn == newline  # lines mode: a fresh example, START read from the zero state
        next_carry = (jnp.where(ends_line, jnp.zeros_like(a), a), jnp.where(ends_line, jnp.int32(START), drawn))
        return next_carry, drawn

    a0 = jnp.zeros((params["Waa"].shape[0], 1), params["Waa"].dtype)
    a_primed, _ = jax.lax.scan(read, a0, prime_ids[:-1])
    _, drawn = jax.lax.scan(step, (a_primed, prime_ids[-1]), jax.random.split(key, length))
    return drawn
