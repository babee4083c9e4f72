"""Batches: next-character targets, continuity across chunks, bucketing by length, the held-out split."""

import numpy as np
import pytest

from jaxrnn.charlm.config import TrainConfig
from jaxrnn.charlm.corpus import START, Vocabulary
from jaxrnn.charlm.data import (
    LineBatches,
    TextStream,
    bucket_width,
    corpus_vocabulary,
    split_lines,
    split_text,
)
from jaxrnn.charlm.dataset import prepare
from jaxrnn.charlm.errors import CharLMError

NAMES = "Aardonyx\nAbelisaurus\nAchelousaurus\nAcrocanthosaurus\nAegyptosaurus\nAfrovenator\nAgilisaurus\nZby\n"


def test_text_stream_rows_continue_across_chunks_and_predict_the_next_character():
    text = "".join(chr(ord("a") + i % 26) for i in range(203))
    vocabulary = Vocabulary.of(text)
    stream = TextStream(vocabulary.encode(text), batch_size=4, chunk_length=5)
    assert stream.steps_per_epoch == (203 // 4) // 5  # 10 chunks of each 50-character stream
    chunks = [stream.chunk(step) for step in range(stream.steps_per_epoch + 1)]
    targets = np.concatenate([c.targets for c in chunks[:-1]], axis=1)
    inputs = np.concatenate([c.inputs for c in chunks[:-1]], axis=1)
    for row in range(4):  # row i is text[50 i : 50 i + 50], read in order
        assert vocabulary.decode(targets[row]) == text[50 * row : 50 * row + 50]
        assert inputs[row, 0] == START and vocabulary.decode(inputs[row, 1:]) == text[50 * row : 50 * row + 49]
    assert [bool(c.reset) for c in chunks] == [True] + [False] * 9 + [True]  # the epoch starts over
    np.testing.assert_array_equal(chunks[-1].inputs, chunks[0].inputs)
    assert all(c.lengths.dtype == np.int32 and np.all(c.lengths == 5) for c in chunks)
    assert stream.loss_scale == 4 * 5


def test_bucket_widths_grow_by_at_most_half_and_stop_at_the_chunk_length():
    widths = sorted({bucket_width(n, 64) for n in range(1, 65)})
    assert widths == [4, 6, 8, 12, 16, 24, 32, 48, 64]
    assert all(bucket_width(n, 64) < 1.5 * n + 4 for n in range(1, 65))  # at most a third of a row is padding
    assert bucket_width(7, 5) == 5 and bucket_width(40, 32) == 32


def _lines(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 9, rng.integers(1, 14)).astype(np.int32) for _ in range(count)]


def _read_epoch(batches, epoch):
    """Every line of `epoch` rebuilt from its chunks: {line number: (inputs, targets)}; also the chunks."""
    steps = range(epoch * batches.steps_per_epoch, (epoch + 1) * batches.steps_per_epoch)
    chunks = [batches.chunk(step) for step in steps]
    rebuilt, i = {}, 0
    for rows in batches.batches(epoch):
        parts = [chunks[i]]
        i += 1
        while i < len(chunks) and not chunks[i].reset:
            parts.append(chunks[i])
            i += 1
        for r, line in enumerate(rows):
            inputs = np.concatenate([c.inputs[r, : c.lengths[r]] for c in parts])
            targets = np.concatenate([c.targets[r, : c.lengths[r]] for c in parts])
            rebuilt[int(line)] = (inputs, targets)
    assert i == len(chunks)
    return rebuilt, chunks


def test_line_batches_are_bucketed_and_every_chunk_has_characters():
    lines = _lines(200)
    batches = LineBatches(lines, newline=0, batch_size=8, chunk_length=6, seed=3)
    rebuilt, chunks = _read_epoch(batches, epoch=0)
    assert len(rebuilt) >= 200 - 8  # fewer than a batch of lines wait for the next epoch
    for number, (inputs, targets) in rebuilt.items():  # START, c_1 … c_n -> c_1 … c_n, "\n"
        np.testing.assert_array_equal(inputs, np.append(START, lines[number]))
        np.testing.assert_array_equal(targets, np.append(lines[number], 0))
    for chunk in chunks:
        assert chunk.lengths.min() >= 0 and chunk.lengths.max() > 0  # no step of padding only
        assert chunk.inputs.shape[1] == bucket_width(int(chunk.lengths.max()), 6)  # as narrow as its longest row
        padding = chunk.inputs[np.arange(chunk.inputs.shape[1])[None] >= chunk.lengths[:, None]]
        assert np.all(padding == START)
    real = sum(int(c.lengths.sum()) for c in chunks)
    assert real / sum(c.inputs.size for c in chunks) > 0.75  # bucketing: mostly characters, little padding
    assert batches.loss_scale == pytest.approx(8 * np.mean([len(line) + 1 for line in lines]))


def test_line_order_is_a_fresh_grouping_each_epoch_fixed_by_the_seed():
    lines = _lines(120)
    batches = LineBatches(lines, newline=0, batch_size=4, chunk_length=32, seed=0)
    first, second = (list(map(tuple, batches.batches(e))) for e in (0, 1))
    assert first != second
    assert sum(len(r) for r in first) == sum(len(r) for r in second)  # the same number of steps every epoch
    again = LineBatches(lines, newline=0, batch_size=4, chunk_length=32, seed=0)
    np.testing.assert_array_equal(again.chunk(37).targets, batches.chunk(37).targets)  # a function of the step
    other = LineBatches(lines, newline=0, batch_size=4, chunk_length=32, seed=1)
    assert list(map(tuple, other.batches(0))) != first


def test_split_lines_is_drawn_from_the_seed_and_disjoint_from_training():
    lines = [f"line{i}" for i in range(50)]
    train, held = split_lines(lines, None, seed=0)
    assert len(held) == 5 and len(train) == 45  # min(1000, 10%)
    assert sorted(train + held) == sorted(lines) and not set(train) & set(held)
    assert [lines.index(line) for line in held] == sorted(lines.index(line) for line in held)  # in file order
    assert split_lines(lines, None, seed=0) == (train, held)
    assert split_lines(lines, None, seed=1)[1] != held
    assert len(split_lines(lines, 0.3, seed=0)[1]) == 15
    assert split_lines(lines, 0.0, seed=0) == (lines, [])
    assert len(split_lines([f"{i}" for i in range(20_000)], None, seed=0)[1]) == 1000


def test_split_text_holds_out_the_tail_from_a_line_start():
    text = "".join(f"paragraph {i} " * 5 + "\n" for i in range(100))
    train, held = split_text(text, None)
    assert train + held == text and train.endswith("\n")
    assert len(text) // 10 - 66 < len(held) <= len(text) // 10  # less at most one line (66 characters)
    assert split_text(text, 0.0) == (text, "")
    assert split_text("x" * 1000, 0.25) == ("x" * 750, "x" * 250)  # no line boundary: cut where it falls


def test_prepare_holds_out_lines_and_trains_on_the_rest():
    config = TrainConfig(lines=True, batch_size=2, chunk_length=8, val_fraction=0.25)
    data = prepare(config, NAMES)
    assert data.heldout.description == "2 lines" and data.heldout.characters == sum(
        len(line) + 1 for line in split_lines(NAMES.split(), 0.25, 0)[1]
    )
    assert data.vocabulary == corpus_vocabulary(NAMES, lines=True)  # from every line, held out or not
    assert len(set(int(r) for rows in data.train.batches(0) for r in rows)) == 6  # 6 training lines


def test_too_little_data_is_a_clear_error():
    vocabulary = Vocabulary.of("abc")
    with pytest.raises(CharLMError, match="fewer than --batch-size × --chunk-length = 64"):
        TextStream(vocabulary.encode("abc" * 10), batch_size=4, chunk_length=16)
    with pytest.raises(CharLMError, match="3 non-blank lines, fewer than --batch-size 4"):
        prepare(TrainConfig(lines=True, batch_size=4, val_fraction=0.0), "a\nb\n\nc\n")
    with pytest.raises(
        CharLMError,
        match="holding out 5 of 8 lines leaves 3 to train on, fewer than --batch-size 4; lower --val-fraction",
    ):
        prepare(TrainConfig(lines=True, batch_size=4, val_fraction=0.6), NAMES)


def test_lines_vocabulary_always_has_the_newline():
    assert corpus_vocabulary("abc", lines=True).characters == "\nabc"
    assert corpus_vocabulary("abc", lines=False).characters == "abc"
