"""Training batches and the held-out split, each batch a pure function of the step number.

A training step sees one `Chunk`: `m` rows of at most `T` (`--chunk-length`) characters, each
row with its length; the steps after a row's length are padding, which the layer skips
(`seq_lengths`: frozen state, no loss, no gradient). Row `i` of chunk `c + 1` continues row
`i` of chunk `c`, so the hidden state is carried from one chunk to the next (gradients are
not: they stop at chunk boundaries); `reset` marks where the rows start afresh.

- `TextStream` (one running text): the text is cut into `m` equal streams, read `T`
  characters at a time; the epoch starts over when the streams are used up.
- `LineBatches` (`--lines`, one example per line, like names): each line is
  `START, c_1 … c_n` -> `c_1 … c_n, "\\n"`. Every epoch shuffles the lines (from the seed and
  the epoch number) and groups lines of similar length into batches of `m` (bucketing), so a
  batch is about as wide as its lines: a batch whose longest line has `L` targets is `L`
  rounded up to a bucket width (4, 6, 8, 12, 16, 24, …: at most a third of a row is padding),
  in chunks of `T` when `L > T`. Every chunk has real characters, so every step trains.

Held-out data (`split_lines`, `split_text`): with `--lines`, a random set of lines drawn from
the seed (by default min(1000, 10%) of them); in text mode, the tail of the text from a line
boundary (by default the last 10%, at most 100,000 characters), so the held-out text is one
contiguous piece the model reads with its state carried, as in training.

Because a chunk depends only on the step number (and the seed), a resumed run sees exactly
the chunks an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

from jaxrnn.charlm.corpus import START, Vocabulary, text_lines
from jaxrnn.charlm.errors import CharLMError

DEFAULT_HELDOUT_LINES = 1000
DEFAULT_HELDOUT_FRACTION = 0.1
DEFAULT_HELDOUT_CHARACTERS = 100_000
SMALLEST_BUCKET = 4

# Independent random streams of one seed (numpy `SeedSequence` spawn keys).
_SPLIT_STREAM, _ORDER_STREAM = 1, 2


class Chunk(NamedTuple):
    """One training step's batch.

    Attributes:
      inputs: `(m, W)` int32 character ids; `START` (-1) is the zero input at the start of a text.
      targets: `(m, W)` int32 ids of the next characters (0 under padding).
      lengths: `(m,)` int32, the real steps of each row, `0 … W`; the rest of the row is padding.
      reset: bool scalar array: start every row from the initial hidden state.
    """

    inputs: np.ndarray
    targets: np.ndarray
    lengths: np.ndarray
    reset: np.ndarray


def bucket_width(length: int, chunk_length: int) -> int:
    """The width of a chunk whose longest row has `length` steps: the smallest of 4, 6, 8, 12,
    16, 24, 32, 48, … (alternately 1.5 and 4/3 times the one before) that holds it, at most
    `chunk_length`."""
    width = SMALLEST_BUCKET
    while width < length:
        width += width // 2 if width & (width - 1) == 0 else width // 3
    return min(width, chunk_length)


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
                f"the training text has {len(ids)} characters, fewer than --batch-size × --chunk-length = "
                f"{batch_size * chunk_length}; use more text or lower --batch-size or --chunk-length"
            )
        self.chunk_length = chunk_length
        self.loss_scale = float(batch_size * chunk_length)  # every chunk is full
        # Row i reads ids[i·L : (i+1)·L]; the input before its first character is START.
        streams = ids[: batch_size * stream_length].reshape(batch_size, stream_length)
        self._targets = streams
        self._inputs = np.concatenate([np.full((batch_size, 1), START, np.int32), streams[:, :-1]], axis=1)
        self._lengths = np.full(batch_size, chunk_length, np.int32)

    def chunk(self, step: int) -> Chunk:
        c = step % self.steps_per_epoch
        columns = slice(c * self.chunk_length, (c + 1) * self.chunk_length)
        return Chunk(self._inputs[:, columns], self._targets[:, columns], self._lengths, np.asarray(c == 0))


class LineBatches:
    """One example per line: bucketed batches of `batch_size` lines, cut into chunks of at most `T`.

    Args:
      lines: each line's character ids (without the newline), at least `batch_size` lines.
      newline: the id of "\\n", the target after a line's last character.
      batch_size: `m`, lines per batch.
      chunk_length: `T`, the most characters per chunk.
      seed: the seed of the per-epoch order of the lines.

    Attributes:
      loss_scale: `m` times the mean number of targets per line. A step's loss is the sum of
        its per-character losses divided by it, so that, over an epoch, every character of the
        data weighs the same whatever the length of its batch's lines.
      steps_per_epoch: the same every epoch (it depends only on the lines' lengths).
    """

    def __init__(self, lines: list[np.ndarray], newline: int, batch_size: int, chunk_length: int, seed: int):
        if len(lines) < batch_size:
            raise CharLMError(
                f"--lines: the training data has {len(lines)} non-blank lines, fewer than --batch-size "
                f"{batch_size}; lower --batch-size or add lines"
            )
        self.batch_size, self.chunk_length, self.seed = batch_size, chunk_length, seed
        self._spans = np.asarray([len(line) + 1 for line in lines], np.int64)  # targets: c_1 … c_n, "\n"
        self._offsets = np.concatenate([[0], np.cumsum(self._spans)[:-1]])
        self._inputs = np.concatenate([np.append(np.int32(START), line) for line in lines]).astype(np.int32)
        self._targets = np.concatenate([np.append(line, np.int32(newline)) for line in lines]).astype(np.int32)
        self._keys = np.asarray([self._padded(span) for span in self._spans])
        self.loss_scale = float(batch_size * self._spans.mean())
        self._plan_epoch, self._plan = -1, None
        self.steps_per_epoch = int(self._epoch_plan(0)[1][-1])

    def _padded(self, span: int) -> int:
        """The padded length of a row of `span` targets: whole chunks, then one bucket width."""
        whole = (span - 1) // self.chunk_length * self.chunk_length
        return whole + bucket_width(span - whole, self.chunk_length)

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The batches of `epoch` in training order, each an array of `m` line numbers."""
        return self._epoch_plan(epoch)[0]

    def _epoch_plan(self, epoch: int):
        """`(batches, ends)`: the batches of `epoch` and the cumulative count of their chunks."""
        if epoch != self._plan_epoch:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_ORDER_STREAM, epoch)))
            order = rng.permutation(len(self._spans))
            by_width = order[np.argsort(self._keys[order], kind="stable")]  # shuffled within each width
            batches, leftovers = [], []
            for key in np.unique(self._keys):
                group = by_width[self._keys[by_width] == key]
                batches += self._whole_batches(group)
                leftovers.append(group[len(group) // self.batch_size * self.batch_size :])
            # The rest, narrowest first, in mixed batches of neighbours; the final few wait for another epoch.
            batches += self._whole_batches(np.concatenate(leftovers))
            batches = [batches[i] for i in rng.permutation(len(batches))]
            chunks = [-(-int(self._spans[rows].max()) // self.chunk_length) for rows in batches]
            self._plan_epoch, self._plan = epoch, (batches, np.cumsum(chunks))
        return self._plan

    def _whole_batches(self, rows: np.ndarray) -> list[np.ndarray]:
        m = self.batch_size
        return [rows[i : i + m] for i in range(0, len(rows) - m + 1, m)]

    def chunk(self, step: int) -> Chunk:
        epoch, within = divmod(step, self.steps_per_epoch)
        batches, ends = self._epoch_plan(epoch)
        b = int(np.searchsorted(ends, within, side="right"))
        c = within - (int(ends[b - 1]) if b else 0)
        rows = batches[b]
        spans = self._spans[rows]
        start = c * self.chunk_length
        width = bucket_width(int(spans.max()) - start, self.chunk_length)
        return self._rows(rows, start, width, reset=c == 0)

    def _rows(self, rows: np.ndarray, start: int, width: int, reset: bool) -> Chunk:
        """Columns `start … start + width` of the given lines, padded where a line has ended."""
        spans = self._spans[rows]
        positions = start + np.arange(width)[None]
        valid = positions < spans[:, None]
        index = np.where(valid, self._offsets[rows][:, None] + positions, 0)
        return Chunk(
            np.where(valid, self._inputs[index], START).astype(np.int32),
            np.where(valid, self._targets[index], 0).astype(np.int32),
            np.clip(spans - start, 0, width).astype(np.int32),
            np.asarray(reset),
        )


def heldout_count(total: int, fraction: float | None, lines: bool) -> int:
    """How many lines (`lines`) or characters the held-out part has.

    `fraction` None is the default: min(1000, 10%) of the lines, or 10% of the text up to
    100,000 characters; otherwise `round(fraction × total)`.
    """
    if fraction is None:
        cap = DEFAULT_HELDOUT_LINES if lines else DEFAULT_HELDOUT_CHARACTERS
        return min(cap, int(total * DEFAULT_HELDOUT_FRACTION))
    return round(fraction * total)


def split_lines(lines: list[str], fraction: float | None, seed: int) -> tuple[list[str], list[str]]:
    """`(training lines, held-out lines)`, both in file order; the held-out ones drawn at random
    from `seed` (`heldout_count` of them)."""
    count = heldout_count(len(lines), fraction, lines=True)
    if count == 0:
        return lines, []
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SPLIT_STREAM,)))
    held = np.zeros(len(lines), bool)
    held[rng.permutation(len(lines))[:count]] = True
    return [line for line, h in zip(lines, held) if not h], [line for line, h in zip(lines, held) if h]


def split_text(text: str, fraction: float | None) -> tuple[str, str]:
    """`(training text, held-out text)`: the held-out part is the tail of about `heldout_count`
    characters, starting at the first line boundary inside it (at the cut when there is none)."""
    count = heldout_count(len(text), fraction, lines=False)
    if count == 0:
        return text, ""
    cut = len(text) - count
    newline = text.find("\n", cut, len(text) - 1)
    if newline >= 0:
        cut = newline + 1
    return text[:cut], text[cut:]


def corpus_vocabulary(text: str, lines: bool) -> Vocabulary:
    """The characters of `text`; with `lines`, of its non-blank lines plus "\\n" (the end of a line)."""
    return Vocabulary.of("".join(text_lines(text)) + "\n" if lines else text)


def data_digest(*texts: str) -> str:
    """The sha256 of the texts (each length-prefixed, so the split between them counts too)."""
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little") + encoded)
    return digest.hexdigest()
