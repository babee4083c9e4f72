"""Chunks for truncated BPTT: next-character targets, continuity across chunks, padding, order."""

import numpy as np
import pytest

from jaxrnn.charlm.corpus import START, Vocabulary
from jaxrnn.charlm.data import LineBatches, TextStream, corpus_vocabulary, make_dataset
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
    assert all(c.weights.dtype == np.float32 and np.all(c.weights == 1) for c in chunks)


def test_line_batches_pad_with_zero_weight_and_end_each_line_with_a_newline():
    vocabulary = corpus_vocabulary(NAMES, lines=True)
    batches = make_dataset(NAMES, vocabulary, lines=True, batch_size=3, chunk_length=6, seed=0)
    assert isinstance(batches, LineBatches)
    assert batches.chunks_per_batch == 3  # the longest line, "Acrocanthosaurus" + "\n", needs 17 ≤ 18
    assert batches.steps_per_epoch == (8 // 3) * 3
    newline = int(vocabulary.encode("\n")[0])
    seen = []
    for batch in range(batches.batches_per_epoch):
        chunks = [batches.chunk(batch * 3 + c) for c in range(3)]
        assert [bool(c.reset) for c in chunks] == [True, False, False]
        inputs, targets, weights = (np.concatenate(parts, axis=1) for parts in zip(*(c[:3] for c in chunks)))
        for row in range(3):
            n = int(weights[row].sum())
            line = vocabulary.decode(targets[row, : n - 1])
            seen.append(line)
            assert targets[row, n - 1] == newline and np.all(weights[row, :n] == 1) and np.all(weights[row, n:] == 0)
            assert inputs[row, 0] == START and vocabulary.decode(inputs[row, 1:n]) == line
            assert 0 <= targets[row].min() and targets[row].max() < len(vocabulary)  # valid ids under padding
    assert len(set(seen)) == 6 and set(seen) <= set(NAMES.split())


def test_line_order_is_a_fresh_permutation_each_epoch_fixed_by_the_seed():
    vocabulary = corpus_vocabulary(NAMES, lines=True)
    make = lambda seed: make_dataset(NAMES, vocabulary, lines=True, batch_size=2, chunk_length=32, seed=seed)
    batches = make(0)
    orders = [batches.order(epoch) for epoch in range(3)]
    assert all(sorted(order) == list(range(8)) for order in orders)
    assert not np.array_equal(orders[0], orders[1])
    np.testing.assert_array_equal(make(0).chunk(9).targets, batches.chunk(9).targets)  # a function of the step
    assert not np.array_equal(make(1).order(0), orders[0])


def test_too_little_data_is_a_clear_error():
    vocabulary = Vocabulary.of("abc")
    with pytest.raises(CharLMError, match="fewer than --batch-size × --chunk-length = 64"):
        make_dataset("abc" * 10, vocabulary, lines=False, batch_size=4, chunk_length=16, seed=0)
    with pytest.raises(CharLMError, match="3 non-blank lines, fewer than --batch-size 4"):
        make_dataset(
            "a\nb\n\nc\n", corpus_vocabulary("a\nb\nc", True), lines=True, batch_size=4, chunk_length=4, seed=0
        )


def test_lines_vocabulary_always_has_the_newline():
    assert corpus_vocabulary("abc", lines=True).characters == "\nabc"
    assert corpus_vocabulary("abc", lines=False).characters == "abc"
