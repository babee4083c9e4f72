"""Stacked and bidirectional layers (`rnn_stack`) and streaming inference (`rnn_step`).

A stack of L layers, bottom first: layer l reads layer l-1's hidden states. A layer is a
parameter dict (left to right) or a pair `(forward, reverse)` of dicts (bidirectional:
both directions read the same input; their states are concatenated on the feature axis,
forward first, as PyTorch does). Every recurrence runs `_layer.run_layer`, so its backward
is the hand-derived one; the glue between layers — concatenating the two directions,
dropout — is plain `jax.numpy`, differentiated by JAX. Between layers everything stays
time-major: the input is transposed once on the way in and the output once on the way out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn import _batch, _cells, _layout, _validate
from jaxrnn._forward import bias_rows, cell_forward, project_inputs
from jaxrnn._heads import output_logits
from jaxrnn._layer import Config, run_layer
from jaxrnn._rnn import balanced_segment_length, poisoned


def rnn_stack(
    x: jax.Array,
    a0: list | None,
    layers: list,
    *,
    seq_lengths: jax.Array | None = None,
    nonlinearity: str = "tanh",
    layout: str = "batch_major",
    checkpoint_every: int | None = None,
    gradient: str = "hand",
    dropout: float = 0.0,
    key: jax.Array | None = None,
    return_final_state: bool = False,
    cell: str = "vanilla",
):
    """A stack of recurrent layers, each unidirectional or bidirectional, on the hand-derived backward.

    The multi-layer counterpart of `rnn` (and of PyTorch's `nn.RNN`/`nn.GRU`/`nn.LSTM(num_layers=L,
    bidirectional=...)`); a one-layer stack of a dict is `rnn`.

    Args:
      x: inputs in `layout` (see `rnn`: batch-major `(B, T, n_x)` by default, any number of
        batch dimensions).
      a0: None (zeros), or a list with one initial state per layer — a pair `(forward,
        reverse)` for a bidirectional layer — each `(B, n_a)` (`(n_a, m)` in the seed layout),
        an LSTM's itself a pair `(h, c)` of them (`jaxrnn.from_torch_hidden` converts
        PyTorch's `h_0`).
      layers: a list, bottom first, of parameter dicts of `cell` (see `rnn`; pairs of them for
        bidirectional layers). Layer l's `Wax` takes layer l-1's output width (`n_a`, or
        `2·n_a` after a bidirectional layer). The top layer, when unidirectional, may also
        carry `Wya, by`: the softmax head, whose `y` is returned.
      seq_lengths, nonlinearity, layout, checkpoint_every, gradient, cell: as in `rnn`, for
        every layer. Each reverse direction reads each sequence from its last valid step.
      dropout: the probability of zeroing each input of layers 1..L-1 (inverted dropout,
        PyTorch's `dropout`); 0 (the default) at inference.
      key: a `jax.random` key for the dropout masks; required when `dropout > 0`.
      return_final_state: also return every layer's final states.

    Returns:
      `(a, y)` or `(a, y, final_states)`: `a` the top layer's states (`2·n_a` features for a
      bidirectional top), `y` the head's predictions or None, `final_states` a list like `a0`
      (`jaxrnn.to_torch_hidden` gives PyTorch's `h_n`, or `(h_n, c_n)`).
    """
    fn = "rnn_stack"
    options = _validate.layer_options(
        fn,
        reverse=False,
        nonlinearity=nonlinearity,
        checkpoint_every=checkpoint_every,
        gradient=gradient,
        return_final_state=return_final_state,
        cell=cell,
    )
    rate = _validate.dropout(fn, dropout, key)
    layout = _validate.choice(fn, "layout", layout, _layout.LAYOUTS)
    x, batch = _batch.of(x, layout)
    a0 = _batch.per_example(fn, "a0", a0, batch, trailing=1)
    seq_lengths = _batch.per_example(fn, "seq_lengths", seq_lengths, batch, trailing=0)
    checked = _validate.stack_inputs(fn, x, a0, layers, seq_lengths, layout, options.cell)
    lengths, poison = _validate.guard_lengths(checked.lengths, checked.T)
    every = balanced_segment_length(options.checkpoint_every, checked.T)
    config = Config("time_major", False, options.nonlinearity, every, None, None, options.cell)
    inputs = _layout.to_time_major(checked.x, layout)
    dropout_keys = jax.random.split(key, len(checked.layers)) if rate > 0 else None
    y, final_states = None, []
    for l, (layer, carries) in enumerate(zip(checked.layers, checked.a0)):
        if l > 0 and rate > 0:
            keep = jax.random.bernoulli(dropout_keys[l], 1 - rate, inputs.shape)
            inputs = jnp.where(keep, inputs / (1 - rate), 0).astype(inputs.dtype)  # inverted dropout
        outputs, finals = [], []
        for params, carry0, reverse in zip(layer, carries, (False, True)):
            head = "softmax" if "Wya" in params else None
            direction = config._replace(reverse=reverse, head=head)
            a, y, final = run_layer(
                direction, inputs, poisoned(carry0, poison), params, lengths, None, options.gradient
            )
            outputs.append(a)
            finals.append(_validate.public_state(final, layout))
        inputs = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)
        final_states.append(finals[0] if len(finals) == 1 else tuple(finals))
    a = _batch.restore_sequence(_layout.from_time_major(inputs, layout), batch)
    y = None if y is None else _batch.restore_sequence(_layout.from_time_major(y, layout), batch)
    final_states = _batch.restore_states(final_states, batch)
    return (a, y, final_states) if options.return_final_state else (a, y)


def rnn_step(
    x_t: jax.Array,
    a_prev,
    parameters,
    *,
    nonlinearity: str = "tanh",
    layout: str = "batch_major",
    cell: str = "vanilla",
):
    """One time step of a layer or a unidirectional stack, for streaming inference.

    Carries the state across calls (or across the steps of a user's own `lax.scan`): the same
    numbers as `rnn`/`rnn_stack` one step at a time — the same step function runs inside
    their scan. Plain `jax.numpy`; its gradient, when taken, is JAX's.

    Args:
      x_t: one input step: `(B, n_x)` (any number of batch dimensions, `(*batch, n_x)`), or
        `(n_x, m)` in the seed layout.
      a_prev: the state: `(B, n_a)` / `(n_a, m)` for one layer (an LSTM's a pair `(h, c)`),
        a list of them for a stack; None: zeros.
      parameters: a parameter dict of `cell`, or a list of them (bottom first); the top one
        may have the softmax head `Wya, by`.
      nonlinearity: `"tanh"` or `"relu"` (the vanilla cell's).
      layout: `"batch_major"` (the default) or `"time_major"`, the same per step, or `"seed"`.
      cell: `"vanilla"`, `"gru"` or `"lstm"`.

    Returns:
      `(a_next, y_t)`: `a_next` structured like `a_prev`; `y_t` `(n_y, m)` / `(B, n_y)` from
      the top layer's head, or None.
    """
    fn = "rnn_step"
    cell = _validate.cell_option(fn, cell)
    nonlinearity = _validate.cell_nonlinearity(fn, cell, nonlinearity)
    layout = _validate.choice(fn, "layout", layout, _layout.LAYOUTS)
    batch = _batch.Batch((), False, layout)
    if layout != "seed" and getattr(x_t, "ndim", 2) != 2:  # (*batch, n_x): one step of (*batch, T, n_x)
        x_t, batch = _batch.of(jnp.expand_dims(x_t, -2), "batch_major")
        x_t = x_t[:, 0]
        a_prev = _batch.per_example(fn, "a_prev", a_prev, batch, trailing=1)
    single = not isinstance(parameters, (list, tuple))
    layers = _validate.layer_list(fn, [parameters] if single else parameters, bidirectional_allowed=False, cell=cell)
    x_t = _validate.as_float_array(fn, "x_t", x_t)
    _validate.check_rank(fn, "x_t", x_t, 2, "(n_x, m)" if layout == "seed" else "(B, n_x)")
    rows = _layout.state_to_rows(x_t, layout)  # (m, n_x)
    _validate.check_input_width(fn, layers[0][0], "x_t", x_t, rows.shape[1], key="layers[0]['Wax']")
    _validate.check_same_dtype(fn, {"x_t": x_t, "parameters['Wax']": layers[0][0]["Wax"]})
    a_prev = [a_prev] if single and a_prev is not None else a_prev
    states = _validate.initial_states(fn, a_prev, layers, rows.shape[0], layout, x_t.dtype, cell, "a_prev")
    step_cell = _cells.get(cell, nonlinearity)
    next_states = []
    for (params,), (carry,) in zip(layers, states):
        projected = project_inputs(rows[None], params["Wax"])[0]  # x_t Wax^T, (m, G·n_a)
        biases = bias_rows(step_cell, params, projected.dtype)
        carry, _ = cell_forward(step_cell, carry, projected, params["Waa"].T, biases)
        rows = carry[0]
        next_states.append(_validate.public_state(carry, layout))
    y_t = None
    if "Wya" in layers[-1][0]:
        logits = output_logits(rows[None], layers[-1][0]["Wya"], layers[-1][0]["by"])[0]
        y_t = _layout.state_from_rows(jax.nn.softmax(logits, axis=-1).astype(rows.dtype), layout)
    next_states = _batch.restore_states(next_states[0] if single else next_states, batch)
    return next_states, _batch.restore_states(y_t, batch)
