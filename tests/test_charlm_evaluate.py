"""The held-out measure: the mean NLL per character over the whole set, for lines and for running text."""

import numpy as np
import pytest

from jaxrnn.charlm import evaluate
from jaxrnn.charlm.corpus import START
from jaxrnn.charlm.evaluate import bits, heldout_lines, heldout_nll, heldout_text

V, N_A = 6, 5


@pytest.fixture
def params():
    rng = np.random.default_rng(0)
    shapes = {"Wax": (N_A, V), "Waa": (N_A, N_A), "Wya": (V, N_A), "ba": (N_A, 1), "by": (V, 1), "a0": (N_A,)}
    return {name: (0.7 * rng.standard_normal(shape)).astype(np.float32) for name, shape in shapes.items()}


def _sequence_nll_sum(params, inputs, targets):
    """Σ −log y_t[target] of one sequence from the initial state a0: the seed's equations in float64 numpy."""
    p = {name: np.float64(value) for name, value in params.items()}
    a, total = p["a0"], 0.0
    for character, target in zip(inputs, targets):
        x = np.zeros(V) if character == START else np.eye(V)[character]
        a = np.tanh(p["Wax"] @ x + p["Waa"] @ a + p["ba"][:, 0])  # a_t = tanh(Wax x_t + Waa a_{t-1} + ba)
        o = p["Wya"] @ a + p["by"][:, 0]
        total -= o[target] - np.log(np.sum(np.exp(o)))  # −log softmax(o_t)[target]
    return total


def test_lines_are_each_read_from_the_initial_state_and_end_with_the_newline(params, monkeypatch):
    monkeypatch.setattr(evaluate, "EVAL_ROWS", 3)  # several batches, the last one short
    rng = np.random.default_rng(1)
    lines = [rng.integers(1, V, n).astype(np.int32) for n in (3, 1, 7, 4, 2, 9, 5)]
    heldout = heldout_lines(lines, newline=0)
    assert heldout.characters == sum(len(line) + 1 for line in lines) and heldout.description == "7 lines"
    assert len(heldout.batches) == 3
    total = sum(_sequence_nll_sum(params, np.append(START, line), np.append(line, 0)) for line in lines)
    assert heldout_nll(params, heldout) == pytest.approx(total / heldout.characters, rel=1e-5)


def test_text_is_read_in_parts_each_with_its_state_carried_to_its_end(params, monkeypatch):
    monkeypatch.setattr(evaluate, "EVAL_CHUNK", 16)  # several chunks per part: the state crosses them
    ids = np.random.default_rng(2).integers(0, V, 300).astype(np.int32)
    heldout = heldout_text(ids)
    assert heldout.characters == 300 and len(heldout.batches[0]) == 5  # 4 parts of 75: 5 chunks of 16
    parts = np.array_split(ids, 300 // 64)
    total = sum(_sequence_nll_sum(params, np.append(START, part[:-1]), part) for part in parts)
    assert heldout_nll(params, heldout) == pytest.approx(total / 300, rel=1e-5)


def test_the_figure_is_the_same_on_every_call_and_in_bits(params):
    heldout = heldout_lines([np.asarray([1, 2, 3], np.int32)] * 5, newline=0)
    first = heldout_nll(params, heldout)
    assert heldout_nll(params, heldout) == first
    assert bits(first) == pytest.approx(first / np.log(2))
    no_a0 = {name: value for name, value in params.items() if name != "a0"}
    assert heldout_nll(no_a0, heldout) != first  # zeros, not the learned a0
