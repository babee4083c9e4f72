"""Generating text from a trained model, one character at a time, several samples side by side.

Each sample starts from the model's initial state (learned `a0` — an LSTM's `a0`, `c0` — or
zeros), reads `START` and the prime with `jaxrnn.rnn_step` of the model's cell, then draws the
next character `c ~ softmax(o_t / temperature)` (`o_t = Wya h_t + by`; with `top_k`, only the k
largest logits stay) and feeds it back. Below temperature 1 the draw favours likely
characters, above 1 it flattens the distribution.

With `lines` (a model of one example per line, like names) a sample is one example: it starts
with the prime and ends at its first "\\n" (or after `length` characters). Otherwise a sample is
the prime followed by `length` characters.

Sample `i` draws from `fold_in(key, i)` and its character `t` from `fold_in(fold_in(key, i), t)`:
the samples of one call are independent of each other, and the first `n` samples are the same
whatever `num ≥ n` is asked for.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import rnn_step
from jaxrnn.charlm.corpus import START, Vocabulary
from jaxrnn.charlm.errors import CharLMError
from jaxrnn.charlm.model import hidden_part, initial_hidden, layer_parameters

NO_CHARACTER = -2  # matches no id: text mode has no end of example


def generate(
    params,
    vocabulary: Vocabulary,
    *,
    key,
    cell: str = "vanilla",
    prime: str = "",
    temperature: float = 1.0,
    top_k: int | None = None,
    length: int = 200,
    lines: bool = False,
    num: int = 1,
) -> list[str]:
    """`num` samples, each `prime` followed by what the model draws.

    Args:
      params: the parameters of a model over `vocabulary` (see `jaxrnn.charlm.model`).
      vocabulary: the model's characters.
      key: a `jax.random` key.
      cell: the model's cell, `"vanilla"`, `"gru"` or `"lstm"`.
      prime: text each sample starts with; every character must be in `vocabulary`.
      temperature: > 0; the logits are divided by it.
      top_k: draw only among the `top_k` most likely characters (None: among all).
      length: characters to draw per sample (≥ 0); with `lines`, the most per example.
      lines: a sample is one example, ending at its first "\\n" (not included).
      num: the number of samples (≥ 1).

    Returns:
      The samples, `prime + drawn text` each.
    """
    if not temperature > 0:
        raise CharLMError(f"--temperature {temperature}: expected a positive number")
    if length < 0:
        raise CharLMError(f"--length {length}: expected 0 or more")
    if num < 1:
        raise CharLMError(f"--num {num}: expected a positive integer")
    if top_k is not None and top_k < 1:
        raise CharLMError(f"--top-k {top_k}: expected a positive integer")
    prime_ids = np.concatenate([[START], vocabulary.encode(prime, "--prime")]).astype(np.int32)
    newline = int(vocabulary.encode("\n")[0]) if lines and "\n" in vocabulary else NO_CHARACTER
    k = len(vocabulary) if top_k is None else min(top_k, len(vocabulary))
    params = {name: jnp.asarray(value) for name, value in params.items()}
    drawn = _draw(params, jnp.asarray(prime_ids), key, jnp.float32(temperature), jnp.int32(k), length, num, cell)
    drawn = np.asarray(drawn)
    samples = []
    for row in drawn:
        if newline != NO_CHARACTER and newline in row:
            row = row[: list(row).index(newline)]
        samples.append(prime + vocabulary.decode(row))
    return samples


@functools.partial(jax.jit, static_argnames=("length", "num", "cell"))
def _draw(params, prime_ids, key, temperature, top_k, length, num, cell):
    """`(num, length)` drawn ids: row i from `fold_in(key, i)`, after reading `prime_ids`."""
    vocabulary_size = params["Wax"].shape[1]
    layer = {name: value for name, value in layer_parameters(params).items() if name not in ("Wya", "by")}
    one_hot = lambda ids: jax.nn.one_hot(ids, vocabulary_size, dtype=params["Wax"].dtype)  # (num, V); -1 -> 0

    def read(a, character):
        a_next, _ = rnn_step(one_hot(jnp.full(num, character)), a, layer, layout="time_major", cell=cell)
        return a_next, None

    row_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num))

    def step(carry, t):
        a, characters = carry
        a, _ = rnn_step(one_hot(characters), a, layer, layout="time_major", cell=cell)
        logits = (hidden_part(a) @ params["Wya"].T + params["by"].T) / temperature  # o_t / temperature, (num, V)
        kth_largest = jnp.sort(logits, axis=-1)[:, vocabulary_size - top_k][:, None]
        logits = jnp.where(logits >= kth_largest, logits, -jnp.inf)
        keys = jax.vmap(lambda row_key: jax.random.fold_in(row_key, t))(row_keys)
        # Draw from softmax(logits), from the logits themselves: no log(softmax) underflow.
        drawn = jax.vmap(jax.random.categorical)(keys, logits).astype(jnp.int32)
        return (a, drawn), drawn

    a, _ = jax.lax.scan(read, initial_hidden(params, num, cell), prime_ids[:-1])
    _, drawn = jax.lax.scan(step, (a, jnp.full(num, prime_ids[-1])), jnp.arange(length))
    return drawn.T
