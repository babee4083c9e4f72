"""What a cell is to the engine (see `jaxrnn._cells`), and the LSTM's public carry."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax

CELL_NAMES = ("vanilla", "gru", "lstm")


class Cell(NamedTuple):
    """One recurrent cell, as the engine runs it.

    Attributes:
      name: `"vanilla"`, `"gru"` or `"lstm"`.
      gates: `G`, the number of `n_a`-row blocks stacked in `Wax`, `Waa` and `ba`.
      carry: the names of the carry's parts, the hidden state first: `("a",)`, `("h",)`, `("h", "c")`.
      extra_biases: bias keys besides `ba`, each `(n_a, 1)` (the GRU's `bhn`).
      uses_previous: whether `backward_step` reads the carry before the step.
      step, backward_step, tangent_step: see `jaxrnn._cells`.
      extra_bias_gradients: `d_hidden (T, m, G·n_a) -> {key: (n_a, 1)}`, the sums over time
        of the gradients of `extra_biases`.
    """

    name: str
    gates: int
    carry: tuple[str, ...]
    extra_biases: tuple[str, ...]
    uses_previous: bool
    step: Callable
    backward_step: Callable
    tangent_step: Callable
    extra_bias_gradients: Callable


class LSTMState(NamedTuple):
    """An LSTM layer's state: the hidden state `h` and the cell state `c`, each `(n_a, m)` in
    the seed layout or `(B, n_a)` otherwise. A tuple: `h, c = state` works."""

    h: jax.Array
    c: jax.Array


def split(gates: jax.Array, count: int) -> list[jax.Array]:
    """`(m, count·n_a)` -> `count` blocks `(m, n_a)`, in PyTorch's gate order.

    Plain slices, not `jnp.split`: XLA's CPU backend in jaxlib 0.10 miscompiles the gradient of a
    scan whose step splits a biased product with `jnp.split` (`jax.grad` of the forward differs
    from finite differences; benchmarks/NOTES.md has the reproduction). jaxlib 0.11.2 and newer
    compile both forms correctly.
    """
    n = gates.shape[-1] // count
    return [gates[..., k * n : (k + 1) * n] for k in range(count)]


def sigmoid_derivative(s: jax.Array) -> jax.Array:
    """σ'(u) = σ(u)(1 − σ(u)), from s = σ(u)."""
    return s * (1 - s)


def tanh_derivative(t: jax.Array) -> jax.Array:
    """tanh'(u) = 1 − tanh(u)², from t = tanh(u)."""
    return 1 - t**2


def no_extra_bias_gradients(d_hidden) -> dict:
    return {}
