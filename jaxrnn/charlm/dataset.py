"""From a run's configuration to its data: the texts, the split, the vocabulary, the training
batches, the held-out set and the digest that identifies them."""

from __future__ import annotations

from typing import NamedTuple

from jaxrnn.charlm.config import TrainConfig
from jaxrnn.charlm.corpus import Vocabulary, default_corpus, read_corpus, text_lines
from jaxrnn.charlm.data import (
    LineBatches,
    TextStream,
    corpus_vocabulary,
    data_digest,
    split_lines,
    split_text,
)
from jaxrnn.charlm.errors import CharLMError
from jaxrnn.charlm.evaluate import HeldOut, heldout_lines, heldout_text


class Data(NamedTuple):
    """Everything a run reads.

    Attributes:
      vocabulary: the characters of the training and held-out data together.
      train: the training batches (`chunk(step)`).
      heldout: the held-out set, or None (`--val-fraction 0`, or too little data for the default).
      digest: sha256 of the data and held-out texts as read (`data.data_digest`).
      characters: the length of the data (with `--val-data`, of both files).
    """

    vocabulary: Vocabulary
    train: TextStream | LineBatches
    heldout: HeldOut | None
    digest: str
    characters: int


def read_texts(config: TrainConfig) -> tuple[str, str | None]:
    """`(data, held-out data or None)` as `config` names them (the default corpus when `data` is None)."""
    text = read_corpus(config.data) if config.data is not None else default_corpus()
    val_text = read_corpus(config.val_data, "--val-data") if config.val_data is not None else None
    return text, val_text


def prepare(config: TrainConfig, text: str, val_text: str | None = None) -> Data:
    """The split, vocabulary, batches and held-out set of a run.

    Args:
      config: the run's configuration (`lines`, `val_fraction`, `seed`, sizes).
      text: the data (`--data`).
      val_text: the held-out data (`--val-data`), or None to hold out part of `text`.

    Raises:
      CharLMError: the held-out part would be empty (an explicit `--val-fraction`), or what
        is left for training is too small for a batch.
    """
    vocabulary = corpus_vocabulary(text if val_text is None else f"{text}\n{val_text}", config.lines)
    if config.lines:
        lines = text_lines(text)
        if val_text is None:
            train, held = split_lines(lines, config.val_fraction, config.seed)
        else:
            train, held = lines, text_lines(val_text)
        _check_split(config, val_text, len(lines), len(held), len(train), config.batch_size, "line")
        newline = int(vocabulary.encode("\n")[0])
        encode = lambda line: vocabulary.encode(line, "the data")
        batches = LineBatches([encode(line) for line in train], newline, *_sizes(config))
        heldout = heldout_lines([encode(line) for line in held], newline) if held else None
    else:
        if val_text is None:
            train, held = split_text(text, config.val_fraction)
        else:
            train, held = text, val_text
        needed = config.batch_size * config.chunk_length
        _check_split(config, val_text, len(text), len(held), len(train), needed, "character")
        batches = TextStream(vocabulary.encode(train, "the data"), config.batch_size, config.chunk_length)
        heldout = heldout_text(vocabulary.encode(held, "the data")) if held else None
    characters = len(text) + (len(val_text) if val_text is not None else 0)
    return Data(vocabulary, batches, heldout, data_digest(text, val_text or ""), characters)


def _sizes(config: TrainConfig):
    return config.batch_size, config.chunk_length, config.seed


def _check_split(config: TrainConfig, val_text, total: int, held: int, left: int, needed: int, unit: str) -> None:
    """Refuses a held-out part that is empty, or that leaves too little to train on."""
    if val_text is not None:
        if held == 0:
            raise CharLMError(f"--val-data {config.val_data}: no {unit}s to evaluate on")
        return
    if held == 0 and config.val_fraction:
        raise CharLMError(
            f"--val-fraction {config.val_fraction} holds out no {unit} of {total:,}; "
            f"raise it, or pass 0 to train without a held-out set"
        )
    if held and left < needed:
        size = "--batch-size" if unit == "line" else "--batch-size × --chunk-length ="
        raise CharLMError(
            f"holding out {held:,} of {total:,} {unit}s leaves {left:,} to train on, fewer than {size} {needed}; "
            f"lower --val-fraction (0: none) or {size.split()[0]}"
        )


def describe_heldout(config: TrainConfig, data: Data) -> str:
    """What the held-out set is, for the start of a run."""
    if data.heldout is None:
        return "no held-out set" if config.val_fraction == 0 else "no held-out set (too little data to hold some out)"
    if config.val_data is not None:
        return f"held out: {config.val_data} ({data.heldout.description})"
    if config.lines:
        return f"held out: {data.heldout.description} drawn with seed {config.seed}"
    return f"held out: the last {data.heldout.characters:,} characters"
