"""The public layer calls: `rnn` (the seed's layer, head optional) and `rnn_cross_entropy`
(the fused softmax–cross-entropy head), each with its autodiff twin, for every cell.

Each call checks its inputs once, here, and hands them to `_layer.run_layer`.
"""

from __future__ import annotations

import jax

from jaxrnn import _batch, _layout, _validate
from jaxrnn._layer import Config, run_layer


def rnn(
    x: jax.Array,
    a0: jax.Array | None,
    parameters: dict,
    *,
    seq_lengths: jax.Array | None = None,
    reverse: bool = False,
    nonlinearity: str = "tanh",
    layout: str = "batch_major",
    checkpoint_every: int | None = None,
    gradient: str = "hand",
    return_final_state: bool = False,
    cell: str = "vanilla",
):
    """The recurrent layer — vanilla RNN, GRU or LSTM — differentiated by the hand-derived backward.

        vanilla: a_t = f(Waa a_{t-1} + Wax x_t + ba)          (the seed's)
        gru:     PyTorch's nn.GRU equations (gates r, z, n)
        lstm:    PyTorch's nn.LSTM equations (gates i, f, g, o; state (h, c))
        head:    y_t = softmax(Wya a_t + by)

    Reverse mode (`jax.grad`, `jax.vjp`, grad-of-grad) runs the hand-written backward of
    `jaxrnn._backward` and `jaxrnn._cells`. Forward mode (`jax.jvp`, `jax.jacfwd`) is not
    defined for a `custom_vjp` function; use `rnn_jvp` (the hand-derived forward mode), or
    `rnn_autodiff` (or `gradient="autodiff"`).

    Args:
      x: inputs: `(B, T, n_x)` batch-major (the default, Flax's), `(T, B, n_x)` time-major
        (PyTorch's), `(n_x, m, T_x)` in the seed layout (see `layout`). Batch- and time-major
        take any number of batch dimensions, as Flax does: `(*batch, T, n_x)` / `(T, *batch,
        n_x)`, one sequence `(T, n_x)` included; `a0`, `seq_lengths`, labels and every result
        then carry the same `*batch`.
      a0: initial state: `(B, n_a)` (`(*batch, n_a)`), `(n_a, m)` in the seed layout; for an
        LSTM a pair `(h0, c0)` of them (`jaxrnn.LSTMState` or a tuple); None: zeros.
      parameters: dict with `Wax (G·n_a, n_x)`, `Waa (G·n_a, n_a)`, `ba (G·n_a, 1)` — `G` = 1,
        3, 4 gates stacked in PyTorch's order for the vanilla cell, GRU, LSTM — the GRU's
        `bhn (n_a, 1)` and, for the softmax head, `Wya (n_y, n_a)`, `by (n_y, 1)`; all of the
        dtype of `x` (`jaxrnn.init_parameters` draws them).
      seq_lengths: `(B,)` (`(*batch,)`, `(m,)`) integers in `[0, T]`, or None (every
        sequence is full length).
        Steps `t >= seq_lengths[i]` are padding: the state is frozen, `a` and `y` are zero
        there, and padded inputs get zero gradient. Concrete lengths outside `[0, T]` raise;
        traced ones (under `jit`) make that example's outputs and every gradient NaN.
      reverse: read each sequence from its last valid step back to its first; outputs stay
        in the original time order, padding at the end (Flax's `keep_order=True`).
      nonlinearity: `"tanh"` (the seed) or `"relu"`.
      layout: `"batch_major"` (the default), `"time_major"` (the internal layout: no
        transposes at all) or `"seed"` (the seed notebook's features-first layout).
      checkpoint_every: None to keep every state for the backward pass, or a static int k to
        keep one per k steps (balanced segments) and recompute the rest.
      gradient: `"hand"` (the derivation) or `"autodiff"` (the same forward left to JAX).
      return_final_state: also return the state after each sequence's last valid step
        (`a0` itself for length 0), with its gradient.
      cell: `"vanilla"` (the seed's), `"gru"` or `"lstm"`; `nonlinearity` is the vanilla cell's.

    Returns:
      `(a, y)`, or `(a, y, a_final)` with `return_final_state=True`: `a` `(B, T, n_a)` /
      `(T, B, n_a)` / `(n_a, m, T_x)` (the hidden states `h_t`), `y` likewise with `n_y` (None
      without a head), `a_final` in the layout of `a0` (an `LSTMState(h, c)` for an LSTM).
    """
    return _call(
        "rnn",
        x,
        a0,
        parameters,
        None,
        seq_lengths=seq_lengths,
        reverse=reverse,
        nonlinearity=nonlinearity,
        layout=layout,
        checkpoint_every=checkpoint_every,
        gradient=gradient,
        return_final_state=return_final_state,
        cell=cell,
    )


def rnn_autodiff(x: jax.Array, a0: jax.Array | None, parameters: dict, **options):
    """`rnn` with no custom gradient: `jax.grad` differentiates the same forward.

    The oracle the hand-derived backward is checked against, and the path for forward mode
    (`jax.jvp`, `jax.jacfwd`, `jax.linearize`). Arguments, options (but `checkpoint_every`)
    and returns as in `rnn`.
    """
    return _call("rnn_autodiff", x, a0, parameters, None, gradient="autodiff", **options)


def rnn_cross_entropy(
    x: jax.Array,
    a0: jax.Array | None,
    parameters: dict,
    labels: jax.Array,
    *,
    seq_lengths: jax.Array | None = None,
    ignore_index: int | None = None,
    reverse: bool = False,
    nonlinearity: str = "tanh",
    layout: str = "batch_major",
    checkpoint_every: int | None = None,
    gradient: str = "hand",
    return_final_state: bool = False,
    cell: str = "vanilla",
):
    """Per-token cross-entropy of the RNN's predictions, with the hand-derived backward.

        loss_t = c_t · (logsumexp(o_t) − o_t[label_t]),    o_t = Wya a_t + by

    computed from log-softmax (huge logits never give `log(0)`); its backward is
    `dL/do_t = g_t c_t ⊙ (softmax(o_t) − onehot(label_t))` followed by the core backward.
    No `(T, m, n_y)` array is kept between the passes.

    `x`, `a0`, `seq_lengths`, `reverse`, `nonlinearity`, `layout`, `checkpoint_every`, `gradient`,
    `return_final_state` and `cell` are as in `rnn`.

    Args:
      parameters: the cell's and the head's `Wya`, `by`.
      labels: integer class indices in `[0, n_y)`: `(B, T)` batch-major (`(*batch, T)`),
        `(T, B)` time-major, `(m, T_x)` in the seed layout.
      ignore_index: a label value whose tokens have no loss (e.g. PyTorch's `-100`), or None.

    A token counts (`c_t = 1`) when its step is valid (inside `seq_lengths`) and its label is
    not `ignore_index`; other tokens have loss 0 and no gradient, whatever their label. A
    counted label outside `[0, n_y)` raises a `ValueError` naming its position when the labels
    (and lengths) are concrete; traced under `jit`, it makes its loss and every gradient it
    reaches NaN.

    Returns:
      `(losses, a)` or `(losses, a, a_final)`: losses `(B, T)` / `(T, B)` / `(m, T_x)`, as the
      labels, in the dtype of `x`; `a` and `a_final` as in `rnn`.
    """
    return _call(
        "rnn_cross_entropy",
        x,
        a0,
        parameters,
        labels,
        seq_lengths=seq_lengths,
        ignore_index=ignore_index,
        reverse=reverse,
        nonlinearity=nonlinearity,
        layout=layout,
        checkpoint_every=checkpoint_every,
        gradient=gradient,
        return_final_state=return_final_state,
        cell=cell,
    )


def rnn_cross_entropy_autodiff(x: jax.Array, a0: jax.Array | None, parameters: dict, labels: jax.Array, **options):
    """`rnn_cross_entropy` with no custom gradient (the oracle, and forward mode); options as there."""
    return _call("rnn_cross_entropy_autodiff", x, a0, parameters, labels, gradient="autodiff", **options)


def balanced_segment_length(k: int | None, T: int) -> int | None:
    """The same number of segments as `k` gives, lengths balanced: padding stays under one step
    per segment (k = 1000 on T = 5 runs one 5-step segment, not a 1000-step one)."""
    if k is None:
        return None
    n_segments = -(-T // k)
    return -(-T // n_segments)


def _call(
    fn,
    x,
    a0,
    parameters,
    labels,
    *,
    seq_lengths=None,
    ignore_index=None,
    reverse=False,
    nonlinearity="tanh",
    layout="batch_major",
    checkpoint_every=None,
    gradient="hand",
    return_final_state=False,
    cell="vanilla",
):
    """The one implementation behind every layer call: checks, then `run_layer`."""
    layout = _validate.choice(fn, "layout", layout, _layout.LAYOUTS)
    x, batch = _batch.of(x, layout)
    a0 = _batch.per_example(fn, "a0", a0, batch, trailing=1)
    seq_lengths = _batch.per_example(fn, "seq_lengths", seq_lengths, batch, trailing=0)
    labels = _batch.sequence_like(fn, "labels", labels, batch, features=False)
    options = _validate.layer_options(
        fn,
        reverse=reverse,
        nonlinearity=nonlinearity,
        checkpoint_every=checkpoint_every,
        gradient=gradient,
        return_final_state=return_final_state,
        cell=cell,
    )
    head = "required" if labels is not None else "optional"
    checked = _validate.layer_inputs(fn, x, a0, parameters, seq_lengths, layout, head=head, cell=options.cell)
    T = checked.sizes.T_x
    if labels is not None:
        ignore_index = _validate.ignore_index(fn, ignore_index)
        labels = _validate.integer_labels(fn, labels, checked.sizes, layout)
        _validate.label_values(fn, labels, checked.lengths, ignore_index, checked.sizes.n_y, layout)
        labels = _layout.labels_to_time_major(labels, layout)
        head = "cross_entropy"
    else:
        head = None if checked.sizes.n_y is None else "softmax"
    lengths, poison = _validate.guard_lengths(checked.lengths, T)
    carry0 = poisoned(checked.carry0, poison)
    every = balanced_segment_length(options.checkpoint_every, T)
    config = Config(layout, options.reverse, options.nonlinearity, every, head, ignore_index, options.cell)
    a, head_output, final = run_layer(config, checked.x, carry0, checked.params, lengths, labels, options.gradient)
    final = _batch.restore_states(_validate.public_state(final, layout), batch)
    if head == "cross_entropy":
        outputs = (_layout.losses_from_time_major(head_output, layout), a)
    else:
        outputs = (a, head_output)
    outputs = tuple(_batch.restore_sequence(v, batch) for v in outputs)
    return (*outputs, final) if options.return_final_state else outputs


def poisoned(carry: tuple, poison) -> tuple:
    """The carry with `poison` added (NaN for an example whose traced length is out of range;
    see `_validate.guard_lengths`), or the carry itself without lengths."""
    return carry if poison is None else tuple(part + poison.astype(part.dtype) for part in carry)
