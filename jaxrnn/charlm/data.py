"""Mini-batches for truncated backpropagation through time, each a pure function of the step number.

A training step sees one `Chunk`: `m` rows of `T` characters. Row `i` of chunk `c + 1`
continues row `i` of chunk `c`, so the hidden state is carried from one chunk to the next
(gradients are not: they stop at chunk boundaries); `reset` marks where a row starts afresh
and the carried state goes back to zero.

- `TextStream` (one running text): the text is cut into `m` equal streams, read `T`
  characters at a time; the epoch starts over when the streams are used up.
- `LineBatches` (`--lines`, one example per line, like names): each line is
  `START, c_1 … c_n` -> `c_1 … c_n, "\\n"`, padded to a multiple of `T` with weight 0; every
  epoch draws the lines in a fresh order (from the seed and the epoch number) in groups of
  `m`, the lines left over wait for the next epoch.

Because a chunk depends only on the step number (and the seed), a resumed run sees exactly
the chunks an uninterrupted one would.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxrnn.charlm.corpus import START, Vocabulary, text_lines
from jaxrnn.charlm.errors import CharLMError


class Chunk(NamedTuple):
    """One training step's batch.

    Attributes:
      inputs: `(m, T)` int32 character ids; `START` (-1) is the zero input at the start of a text.
      targets: `(m, T)` int32 ids of the next characters (a valid id also under padding).
      weights: `(m, T)` float32, 1 for a real target, 0 for padding.
      reset: bool scalar array: start every row from a zero hidden state.
    """

    inputs: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    reset: np.ndarray


class TextStream:
    """One running text, cut into `batch_size` streams read `chunk_length` characters at a time.

    Args:
      ids: `(N,)` character ids of the whole text.
      batch_size: `m`, the number of streams.
      chunk_length: `T`, characters per chunk.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, chunk_length: int):
        stream_length = len(ids) // batch_size
        self.steps_per_epoch = stream_length // chunk_length
        if self.steps_per_epoch < 1:
            raise CharLMError(
                f"the text has {len(ids)} characters, fewer than --batch-size × --chunk-length = "
                f"{batch_size * chunk_length}; use more text or lower --batch-size or --chunk-length"
            )
        self.chunk_length = chunk_length
        # Row i reads ids[i·L : (i+1)·L]; the input before its first character is START.
        streams = ids[: batch_size * stream_length].reshape(batch_size, stream_length)
        self._targets = streams
        self._inputs = np.concatenate([np.full((batch_size, 1), START, np.int32), streams[:, :-1]], axis=1)

    def chunk(self, step: int) -> Chunk:
        c = step % self.steps_per_epoch
        columns = slice(c * self.chunk_length, (c + 1) * self.chunk_length)
        targets = self._targets[:, columns]
        return Chunk(self._inputs[:, columns], targets, np.ones(targets.shape, np.float32), np.asarray(c == 0))


class LineBatches:
    """One example per line, `batch_size` lines per batch, padded and cut into chunks.

    Args:
      lines: each line's character ids (without the newline), at least `batch_size` lines.
      newline: the id of "\\n", the target after a line's last character.
      batch_size: `m`, lines per batch.
      chunk_length: `T`, characters per chunk.
      seed: the seed of the per-epoch order of the lines.
    """

    def __init__(self, lines: list[np.ndarray], newline: int, batch_size: int, chunk_length: int, seed: int):
        if len(lines) < batch_size:
            raise CharLMError(
                f"--lines: the data has {len(lines)} non-blank lines, fewer than --batch-size {batch_size}; "
                f"lower --batch-size or add lines"
            )
        longest = max(len(line) for line in lines) + 1  # + the newline target
        self.chunks_per_batch = -(-longest // chunk_length)  # ceil
        self.batches_per_epoch = len(lines) // batch_size
        self.steps_per_epoch = self.batches_per_epoch * self.chunks_per_batch
        self.batch_size, self.chunk_length, self.seed = batch_size, chunk_length, seed
        width = self.chunks_per_batch * chunk_length
        # Padding: input START, target 0 (a valid id), weight 0: it adds nothing to the loss.
        self._inputs = np.full((len(lines), width), START, np.int32)
        self._targets = np.zeros((len(lines), width), np.int32)
        self._weights = np.zeros((len(lines), width), np.float32)
        for row, line in enumerate(lines):
            n = len(line)
            self._inputs[row, 1 : n + 1] = line  # START, c_1 … c_n
            self._targets[row, : n + 1] = np.append(line, newline)  # c_1 … c_n, "\n"
            self._weights[row, : n + 1] = 1.0
        self._order_epoch, self._order = -1, np.arange(0)

    def order(self, epoch: int) -> np.ndarray:
        """The order of the lines in `epoch`: a permutation drawn from `(seed, epoch)`."""
        if epoch != self._order_epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self._inputs))
            self._order_epoch = epoch
        return self._order

    def chunk(self, step: int) -> Chunk:
        epoch, within = divmod(step, self.steps_per_epoch)
        batch, c = divmod(within, self.chunks_per_batch)
        rows = self.order(epoch)[batch * self.batch_size : (batch + 1) * self.batch_size]
        columns = slice(c * self.chunk_length, (c + 1) * self.chunk_length)
        return Chunk(
            self._inputs[rows, columns],
            self._targets[rows, columns],
            self._weights[rows, columns],
            np.asarray(c == 0),
        )


def make_dataset(
    text: str, vocabulary: Vocabulary, lines: bool, batch_size: int, chunk_length: int, seed: int
) -> TextStream | LineBatches:
    """The chunks of `text`: `LineBatches` when `lines`, else `TextStream`."""
    if not lines:
        return TextStream(vocabulary.encode(text, "the data"), batch_size, chunk_length)
    encoded = [vocabulary.encode(line, "the data") for line in text_lines(text)]
    return LineBatches(encoded, int(vocabulary.encode("\n")[0]), batch_size, chunk_length, seed)


def corpus_vocabulary(text: str, lines: bool) -> Vocabulary:
    """The characters of `text`; with `lines`, of its non-blank lines plus "\\n" (the end of a line)."""
    return Vocabulary.of("".join(text_lines(text)) + "\n" if lines else text)
