"""The output heads on the hidden states, forward pass (their backward is in `_backward.py`).

    o_t = Wya a_t + by                                       logits
    y_t = softmax(o_t)                                       the seed's head ("softmax")
    loss_t = c_t · (logsumexp(o_t) − o_t[label_t])           the fused head ("cross_entropy")

`c_t` is 1 where a token counts: a valid step (inside its sequence's length) whose label is
not `ignore_index`; elsewhere the loss is exactly 0 and so is its gradient, whatever the
label holds there (PyTorch's `-100` padding included). A counted label outside `[0, n_y)`
gets a target row of NaN: its loss and every gradient it reaches are NaN, loudly.

The loss comes from log-softmax, never `log(softmax(o_t))`, so it stays finite when a
probability underflows to zero. `y_t` is zero at padded steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn._forward import accumulation_dtype


def output_logits(states: jax.Array, Wya: jax.Array, by: jax.Array) -> jax.Array:
    """`o_t = a_t Wya^T + by^T` for states `(T, m, n_a)` -> `(T, m, n_y)`, accumulation dtype."""
    acc = accumulation_dtype(states.dtype)
    return jnp.einsum("tma,ya->tmy", states, Wya, preferred_element_type=acc) + by.astype(acc).T[None]


def predictions(states: jax.Array, params, valid) -> jax.Array:
    """`y_t = softmax(o_t)` over the features, `(T, m, n_y)`, zero where `valid (T, m)` is False."""
    y = jax.nn.softmax(output_logits(states, params["Wya"], params["by"]), axis=-1).astype(states.dtype)
    return y if valid is None else jnp.where(valid[:, :, None], y, jnp.zeros_like(y))


def counted_tokens(labels, valid, ignore_index):
    """`(T, m)` booleans: which tokens have a loss (valid and not `ignore_index`); None: all."""
    counted = valid
    if ignore_index is not None:
        not_ignored = labels != ignore_index
        counted = not_ignored if counted is None else counted & not_ignored
    return counted


def cross_entropy_targets(labels, counted, n_y: int, dtype):
    """`(T, m)` labels -> `(T, m, n_y)` targets: one-hot where counted, zeros where not, and a
    row of NaN for a counted label outside `[0, n_y)`."""
    in_range = labels >= 0
    if jnp.iinfo(labels.dtype).max >= n_y:  # a static dtype fact: uint8 labels are all < 300
        in_range = in_range & (labels < n_y)
    classes = jnp.arange(n_y, dtype=jnp.int32)[None, None]
    one_hot = (labels.astype(jnp.int32)[:, :, None] == classes).astype(dtype)  # in-range labels fit int32
    targets = jnp.where(in_range[:, :, None], one_hot, jnp.nan)
    return targets if counted is None else jnp.where(counted[:, :, None], targets, 0)


def cross_entropy(states, params, labels, counted):
    """Per-token losses `(T, m)` in the accumulation dtype, 0 where a token is not counted."""
    logits = output_logits(states, params["Wya"], params["by"])
    log_probabilities = jax.nn.log_softmax(logits, axis=-1)  # o_t − logsumexp(o_t): no log(0)
    targets = cross_entropy_targets(labels, counted, logits.shape[-1], logits.dtype)
    return -jnp.sum(targets * log_probabilities, axis=-1)  # loss_t = −Σ_k target_k log softmax(o_t)_k


def head_forward(head, states, params, labels, valid, ignore_index):
    """The head's output for `states (T, m, n_a)`: `y (T, m, n_y)`, losses `(T, m)` or None."""
    if head == "softmax":
        return predictions(states, params, valid)
    if head == "cross_entropy":
        return cross_entropy(states, params, labels, counted_tokens(labels, valid, ignore_index))
    return None
