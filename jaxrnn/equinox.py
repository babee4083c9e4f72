"""The jaxrnn layer as an Equinox module: `from jaxrnn.equinox import RNN`.

A stack of vanilla RNN, GRU or LSTM layers (bidirectional layers, a softmax head,
`seq_lengths`) whose gradient is the hand-derived backward. As Equinox's layers do, it takes
one sequence `(T, input_size)` — `jax.vmap` it over a batch — and also takes a whole batch
`(*batch, T, input_size)` at once, which runs each step as one matrix product over the batch.
States follow Equinox: an array `(hidden_size,)` (`(*batch, hidden_size)` for a batch), an
LSTM's the pair `(h, c)` as `eqx.nn.LSTMCell`'s; a pair `(forward, reverse)` of them for a
bidirectional layer, a list of those, bottom first, for a stack. Needs equinox
(`pip install "jaxrnn[equinox]"`).

    rnn = RNN(3, 16, cell="lstm", key=jax.random.key(0))
    outputs, (h, c) = rnn(x)  # x (T, 3) or (B, T, 3)

    layers, options = jaxrnn.from_torch(torch_rnn)  # a PyTorch (or Equinox: from_equinox) model's weights ...
    rnn = RNN.from_parameters(layers, **options)  # ... in this module
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxrnn import _modules
from jaxrnn._params import init_stack


class RNN(eqx.Module):
    """A stack of recurrent layers with the hand-derived backward, as an Equinox module.

    `layers` is a list, bottom first, of parameter dicts (`Wax (G·n_a, n_x)`, `Waa (G·n_a,
    n_a)`, `ba (G·n_a, 1)`, a GRU's `bhn (n_a, 1)`; `Wya (n_y, n_a)`, `by (n_y, 1)` on a top
    layer with a head), a pair of them for a bidirectional layer: exactly what
    `jaxrnn.rnn_stack`, `to_torch`, `to_flax` and `to_equinox` take.
    """

    layers: list
    options: _modules.Options = eqx.field(static=True)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        output_size: int | None = None,
        cell: str = "vanilla",
        nonlinearity: str = "tanh",
        time_major: bool = False,
        checkpoint_every: int | None = None,
        gradient: str = "hand",
        dtype=jnp.float32,
        key: jax.Array,
    ):
        """A new stack, initialised as `jaxrnn.init_stack` does.

        Args:
          input_size, hidden_size: as `eqx.nn.GRUCell`'s.
          num_layers, bidirectional: the stack (`jaxrnn.init_stack`'s initialisation).
          output_size: the size of a softmax head on the top layer (unidirectional only); the
            call then returns its probabilities. None: no head, the call returns states.
          cell: `"vanilla"`, `"gru"` or `"lstm"`.
          nonlinearity: `"tanh"` or `"relu"` (the vanilla cell's).
          time_major: batches are `(T, B, input_size)` instead of `(B, T, input_size)`.
          checkpoint_every, gradient: as `jaxrnn.rnn`'s.
          dtype: the parameters' dtype; inputs and states are cast to it.
          key: a `jax.random` key.
        """
        layout = "time_major" if time_major else "batch_major"
        self.options = _modules.options("jaxrnn.equinox.RNN", cell, nonlinearity, layout, checkpoint_every, gradient)
        self.layers = init_stack(
            key,
            input_size,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            n_y=output_size,
            dtype=dtype,
            cell=self.options.cell,
        )

    @classmethod
    def from_parameters(
        cls,
        layers: list,
        *,
        cell: str = "vanilla",
        nonlinearity: str = "tanh",
        layout: str = "batch_major",
        checkpoint_every: int | None = None,
        gradient: str = "hand",
    ) -> RNN:
        """The module holding `layers` (as `rnn_stack` takes them, e.g. from `jaxrnn.from_equinox`,
        `from_torch` or `from_flax`); `layout` `"batch_major"` or `"time_major"`, so
        `RNN.from_parameters(layers, **options)` takes a converter's result."""
        fn = "jaxrnn.equinox.RNN.from_parameters"
        checked = _modules.options(fn, cell, nonlinearity, layout, checkpoint_every, gradient)
        layers = _modules.checked_layers(fn, layers, checked.cell)
        options = {
            "cell": checked.cell,
            "nonlinearity": checked.nonlinearity,
            "checkpoint_every": checked.checkpoint_every,
            "gradient": checked.gradient,
        }
        shell = eqx.filter_eval_shape(cls, 1, 1, time_major=layout == "time_major", **options, key=jax.random.key(0))
        return eqx.tree_at(lambda module: module.layers, shell, layers)

    def __call__(self, inputs, initial_state=None, *, seq_lengths=None, key=None):
        """Runs the stack.

        Args:
          inputs: one sequence `(T, input_size)`, or a batch `(*batch, T, input_size)`
            (`(T, *batch, input_size)` when time-major).
          initial_state: None (zeros), or the state (see the module docstring): arrays
            `(hidden_size,)` for one sequence, `(*batch, hidden_size)` for a batch.
          seq_lengths: the sequence's length (a scalar) or `(*batch,)` lengths in `[0, T]`, or
            None. Steps past a length keep the state and output zeros.
          key: unused; Equinox's call convention.

        Returns:
          `(outputs, final_state)`: outputs `(T, D·hidden_size)` / `(*batch, T, D·hidden_size)`
          (D = 2 for a bidirectional top layer), or the head's probabilities; `final_state`
          structured as `initial_state`, each sequence's state after its last valid step.
        """
        del key
        fn, cell = "jaxrnn.equinox.RNN", self.options.cell
        states = _modules.to_states(fn, "initial_state", initial_state, self.layers, cell, "hc")
        outputs, final = _modules.run(fn, self.layers, inputs, states, seq_lengths, self.options)
        return outputs, _modules.from_states(final, self.layers, cell, "hc")
