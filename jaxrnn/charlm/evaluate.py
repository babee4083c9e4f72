"""The held-out measure: mean negative log-likelihood per character over a whole held-out set.

    NLL = −(1/N) Σ log p(c_t | c_<t)    over every target character, nats (÷ ln 2: bits)

- One example per line (`--lines`): every line is read from the initial state, `START, c_1 …
  c_n`, and predicts `c_1 … c_n, "\\n"`: the end of the line counts, as in the usual protocol
  on names. Lines are read `EVAL_ROWS` at a time in file order.
- Running text: the text is cut into `EVAL_STREAMS` contiguous parts, read side by side; each
  part starts from the initial state and carries its state to its end (nothing is truncated:
  no gradient is needed), so every character but the first of each part is predicted from
  everything before it in its part.

Both read their rows in chunks of at most `EVAL_CHUNK` steps of one width, so one set
compiles one function. `jaxrnn train` and `jaxrnn eval` call the same code on the same
chunks, so they report the same number.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import rnn_cross_entropy
from jaxrnn.charlm.corpus import START
from jaxrnn.charlm.data import Chunk, bucket_width
from jaxrnn.charlm.model import initial_hidden, layer_parameters

EVAL_ROWS = 256
EVAL_STREAMS = 32
EVAL_CHUNK = 256
MINIMUM_STREAM = 64  # shorter texts are read as fewer parts


class HeldOut(NamedTuple):
    """A held-out set laid out for evaluation.

    Attributes:
      batches: each a tuple of chunks read in order with the state carried; every batch starts
        from the initial state.
      characters: the number of target characters (the N of the mean).
      description: what the set is, for messages ("1,000 lines", "text read as 32 parts").
    """

    batches: tuple[tuple[Chunk, ...], ...]
    characters: int
    description: str


def heldout_lines(lines: list[np.ndarray], newline: int) -> HeldOut:
    """Every line `START, c_1 … c_n` -> `c_1 … c_n, "\\n"`, `EVAL_ROWS` lines per batch."""
    spans = [len(line) + 1 for line in lines]
    rows = [(np.append(np.int32(START), line), np.append(line, np.int32(newline))) for line in lines]
    batches = tuple(
        _batch(rows[i : i + EVAL_ROWS], min(EVAL_ROWS, len(rows)), max(spans)) for i in range(0, len(rows), EVAL_ROWS)
    )
    return HeldOut(batches, sum(spans), f"{len(lines):,} lines")


def heldout_text(ids: np.ndarray) -> HeldOut:
    """The text as `EVAL_STREAMS` contiguous parts (fewer for a short text), read side by side."""
    parts = max(1, min(EVAL_STREAMS, len(ids) // MINIMUM_STREAM))
    rows = []
    for part in np.array_split(ids, parts):
        rows.append((np.append(np.int32(START), part[:-1]), part))
    description = f"text read as {parts} part{'s' if parts > 1 else ''}"
    return HeldOut((_batch(rows, parts, max(len(p) for _, p in rows)),), len(ids), description)


def _batch(rows, row_count: int, longest: int) -> tuple[Chunk, ...]:
    """`rows` (inputs, targets) as chunks of one width, `row_count` rows (empty ones after them)."""
    width = bucket_width(min(longest, EVAL_CHUNK), EVAL_CHUNK)
    span = max(len(targets) for _, targets in rows)
    chunks = []
    for start in range(0, span, width):
        inputs = np.full((row_count, width), START, np.int32)
        targets = np.zeros((row_count, width), np.int32)
        lengths = np.zeros(row_count, np.int32)
        for i, (row_inputs, row_targets) in enumerate(rows):
            piece = slice(start, start + width)
            n = len(row_targets[piece])
            inputs[i, :n], targets[i, :n], lengths[i] = row_inputs[piece], row_targets[piece], n
        chunks.append(Chunk(inputs, targets, lengths, np.asarray(start == 0)))
    return tuple(chunks)


def heldout_nll(params: dict, heldout: HeldOut, cell: str = "vanilla") -> float:
    """The mean NLL per character, in nats, of the model `params` over the whole set.

    Args:
      params: the model's parameters as host or device arrays (see `jaxrnn.charlm.model`).
      heldout: from `heldout_lines` or `heldout_text`.
      cell: the model's cell, `"vanilla"`, `"gru"` or `"lstm"`.

    Runs on the first local device; per-chunk sums are added up in float64.
    """
    device = jax.local_devices()[0]
    params = jax.device_put(jax.tree_util.tree_map(np.asarray, params), device)
    total = 0.0
    for batch in heldout.batches:
        hidden = None
        for chunk in batch:
            if chunk.reset:
                hidden = initial_hidden(params, len(chunk.lengths), cell)
            loss_sum, hidden = _chunk_nll(params, hidden, chunk.inputs, chunk.targets, chunk.lengths, cell)
            total += float(loss_sum)
    return total / heldout.characters


def bits(nats: float) -> float:
    """Nats per character in bits per character."""
    return nats / math.log(2)


@functools.partial(jax.jit, static_argnames="cell")
def _chunk_nll(params, hidden, inputs, targets, lengths, cell):
    """The summed losses of one chunk (float32) and the state after each row's last real step."""
    x = jax.nn.one_hot(inputs.T, params["Wax"].shape[1], dtype=params["Wax"].dtype)  # (W, B, V); START -> 0
    losses, _, final = rnn_cross_entropy(
        x,
        hidden,
        layer_parameters(params),
        targets.T,
        seq_lengths=lengths,
        layout="time_major",
        return_final_state=True,
        cell=cell,
    )
    return jnp.sum(losses), final
