"""The jaxrnn layer as Flax NNX modules: `jaxrnn.nnx.RNN` and `jaxrnn.nnx.Bidirectional`.

Drop-ins for `nnx.RNN` and `nnx.Bidirectional` — the same constructors, calls and carries —
whose gradient is the hand-derived backward. Needs flax (`pip install "jaxrnn[flax]"`).

    rnn = RNN(nnx.GRUCell(3, 16, rngs=nnx.Rngs(0)))  # was nnx.RNN(nnx.GRUCell(...)): the cell's own weights
    rnn = RNN(3, 16, cell="gru", num_layers=2, rngs=nnx.Rngs(0))  # or from sizes: jaxrnn's stack
    carry, outputs = rnn(x, initial_carry=..., seq_lengths=..., return_carry=True)

Given a Flax cell (`SimpleCell`, `GRUCell`, `LSTMCell`, `OptimizedLSTMCell`), the module keeps
it as `rnn.cell` — its `nnx.Param`s are the module's, under the names `nnx.RNN` gives them, so
the same seed gives the same numbers and checkpoints load either way — and reads its weights on
every call (`jaxrnn.from_flax`, which traces). Given sizes, it holds a stack of jaxrnn layers
(`rnn.layers`; any number of layers, bidirectional ones, a softmax head). The carry is Flax's:
an array `(*batch, hidden)`, for an LSTM the pair `(c, h)`; a pair `(forward, backward)` of
them for a bidirectional layer; a list of those, bottom first, for a stack.

Differences from Flax (docs/migration.md lists them all): with `seq_lengths`, steps past a
sequence's length keep its carry and output zeros (Flax runs the cell over the padding), so a
length-0 sequence's carry is its initial carry (Flax: the last step's); `unroll` is accepted and
has no effect on the numbers; cells jaxrnn does not compute (custom cells, `ConvLSTMCell`,
`MGUCell`, other activations) are refused.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrnn import _flax, _modules
from jaxrnn._params import init_stack


def _concatenate(forward: jax.Array, backward: jax.Array) -> jax.Array:
    """The two directions' outputs side by side on the feature axis, forward first (Flax's default)."""
    return jnp.concatenate([forward, backward], axis=-1)


def _carry_rngs(fn: str, rngs: Any):
    """Flax's `rngs=` of `nnx.RNN` and `nnx.Bidirectional`: the stream `initialize_carry` draws from."""
    if rngs is True or rngs is None:
        return nnx.RngStream(0, tag="carry")
    if rngs is False:
        return nnx.data(None)
    if isinstance(rngs, nnx.Rngs):
        return rngs.carry.fork()
    if isinstance(rngs, nnx.RngStream):
        return rngs
    raise TypeError(f"{fn}: rngs must be an nnx.Rngs, an nnx.RngStream or a bool; received {type(rngs).__name__}")


class RNN(nnx.Module):
    """A recurrent layer or stack — vanilla, GRU or LSTM — with the hand-derived backward.

    Parameters: `self.cell`, the Flax cell it was given, or `self.layers`, a list bottom first
    of dicts of `nnx.Param` (`Wax (G·n_a, n_x)`, `Waa (G·n_a, n_a)`, `ba (G·n_a, 1)`, a GRU's
    `bhn (n_a, 1)`; `Wya (n_y, n_a)`, `by (n_y, 1)` on a top layer with a head; a pair of
    dicts for a bidirectional layer). `parameters()` gives either as arrays for
    `jaxrnn.rnn_stack` and `jaxrnn.to_flax`/`to_torch`.
    """

    def __init__(
        self,
        in_features: int | nnx.RNNCellBase | None = None,
        hidden_features: int | None = None,
        *,
        cell: str | nnx.RNNCellBase | None = None,
        num_layers: int = 1,
        bidirectional: bool = False,
        out_features: int | None = None,
        nonlinearity: str | None = None,
        time_major: bool = False,
        return_carry: bool = False,
        reverse: bool = False,
        keep_order: bool = False,
        unroll: int = 1,
        state_axes: Any = None,
        broadcast_rngs: Any = None,
        checkpoint_every: int | None = None,
        gradient: str = "hand",
        param_dtype: Any = None,
        rngs: nnx.Rngs | nnx.RngStream | bool | None = None,
    ):
        """`RNN(flax_cell, ...)` as `nnx.RNN`, or `RNN(in_features, hidden_features, cell=..., rngs=...)`.

        Args:
          in_features: a Flax cell (as `nnx.RNN(cell)`; also `cell=flax_cell`), whose sizes,
            activation, dtypes and weights the module takes; or the input size, with
            `hidden_features` the hidden size, for a new jaxrnn stack.
          cell: a Flax cell (see `in_features`), or for a new stack `"vanilla"` (default),
            `"gru"` or `"lstm"`.
          num_layers, bidirectional: a new stack's shape (`jaxrnn.init_stack`, PyTorch's
            initialisation; zero biases for the vanilla cell).
          out_features: the size of a softmax head on a new stack's top layer (unidirectional
            only); the call then returns its probabilities. None: no head.
          nonlinearity: a new vanilla stack's `"tanh"` (default) or `"relu"`.
          time_major, return_carry, reverse, keep_order: `nnx.RNN`'s defaults for the call.
            `reverse` runs one unidirectional layer only.
          unroll: accepted for `nnx.RNN`'s signature; jaxrnn's scan does not unroll (the
            numbers are the same either way).
          state_axes, broadcast_rngs: `nnx.RNN`'s routes for a custom cell's state and random
            streams through the scan; the cells jaxrnn computes have neither: None only.
          checkpoint_every, gradient: as `jaxrnn.rnn`'s.
          param_dtype: a new stack's parameter dtype (default float32); inputs and carries are
            cast to it. A Flax cell computes in its `dtype` (its `param_dtype` promoted with
            the inputs' floating dtype when None), as Flax does.
          rngs: with a Flax cell, `nnx.RNN`'s: the stream (or `nnx.Rngs`, whose `carry`
            stream is forked; True: a new one) the cell's `initialize_carry` draws the initial
            carry from when the call gives none. For a new stack: `nnx.Rngs` with a `params`
            stream.
        """
        fn = "jaxrnn.nnx.RNN"
        flax_cell = in_features if isinstance(in_features, nnx.Module) else cell
        layout = "time_major" if time_major else "batch_major"
        if isinstance(flax_cell, nnx.Module):
            sizes = {"hidden_features": hidden_features, "out_features": out_features, "param_dtype": param_dtype}
            sizes |= {"nonlinearity": nonlinearity, "cell": cell if flax_cell is in_features else None}
            sizes |= {"num_layers": num_layers if num_layers != 1 else None, "bidirectional": bidirectional or None}
            read = _flax_cell_options(fn, flax_cell, sizes)
            self.options = _modules.options(fn, read["cell"], read["nonlinearity"], layout, checkpoint_every, gradient)
            self.cell, self.layers = flax_cell, None
            self.rngs = _carry_rngs(fn, rngs)
        else:
            if not isinstance(in_features, int) or not isinstance(hidden_features, int):
                raise TypeError(
                    f"{fn}: expected a Flax cell (RNN(nnx.GRUCell(...))) or the sizes RNN(in_features, "
                    f"hidden_features, ...); received {type(in_features).__name__}, {type(hidden_features).__name__}"
                    f"{_linen_hint(in_features)}"
                )
            if not isinstance(rngs, nnx.Rngs):
                raise TypeError(f"{fn}: a new stack needs rngs=nnx.Rngs(...) to draw its parameters")
            nonlinearity = "tanh" if nonlinearity is None else nonlinearity
            self.options = _modules.options(fn, cell or "vanilla", nonlinearity, layout, checkpoint_every, gradient)
            layers = init_stack(
                rngs.params(),
                in_features,
                hidden_features,
                num_layers=num_layers,
                bidirectional=bidirectional,
                n_y=out_features,
                dtype=jnp.float32 if param_dtype is None else param_dtype,
                cell=self.options.cell,
            )
            self.cell, self.layers = None, nnx.data(jax.tree.map(nnx.Param, layers))
        if state_axes is not None or broadcast_rngs is not None:
            raise ValueError(
                f"{fn}: state_axes and broadcast_rngs route a custom cell's state and random streams through "
                f"nnx.RNN's scan; the Flax cells jaxrnn computes hold neither: leave them None"
            )
        self.time_major = time_major
        self.return_carry = return_carry
        self.reverse = reverse
        self.keep_order = keep_order
        self.unroll = unroll

    @classmethod
    def from_parameters(
        cls,
        layers: list,
        *,
        cell: str = "vanilla",
        nonlinearity: str = "tanh",
        layout: str = "batch_major",
        return_carry: bool = False,
        checkpoint_every: int | None = None,
        gradient: str = "hand",
    ) -> RNN:
        """The module holding `layers` (as `rnn_stack` takes them, e.g. from `jaxrnn.from_flax`
        or `jaxrnn.from_torch`); `layout` `"batch_major"` or `"time_major"`, other options as in
        the constructor, so `RNN.from_parameters(layers, **options)` takes a converter's result."""
        fn = "jaxrnn.nnx.RNN.from_parameters"
        checked = _modules.options(fn, cell, nonlinearity, layout, checkpoint_every, gradient)
        layers = _modules.checked_layers(fn, layers, checked.cell)
        bottom = layers[0] if isinstance(layers[0], dict) else layers[0][0]
        module = nnx.eval_shape(
            lambda: cls(
                1,
                1,
                cell=checked.cell,
                nonlinearity=checked.nonlinearity,
                time_major=checked.layout == "time_major",
                return_carry=return_carry,
                checkpoint_every=checked.checkpoint_every,
                gradient=checked.gradient,
                param_dtype=bottom["Wax"].dtype,
                rngs=nnx.Rngs(0),
            )
        )
        module.layers = nnx.data(jax.tree.map(nnx.Param, layers))
        return module

    def parameters(self) -> list:
        """The parameters as arrays, structured as `jaxrnn.rnn_stack` takes them (a Flax cell's
        read with `jaxrnn.from_flax`)."""
        if self.cell is not None:
            return _flax.read("jaxrnn.nnx.RNN", self.cell, "cell")[0]
        return jax.tree.map(lambda p: p[...], self.layers, is_leaf=lambda x: isinstance(x, nnx.Variable))

    def initialize_carry(self, input_shape: tuple, rngs: Any = None, carry_init: Any = None):
        """The initial carry for one step's input shape `(*batch, in_features)`, as the call takes it.

        With a Flax cell, the cell's own `initialize_carry`. For a stack: zeros, or
        `carry_init(key, shape, dtype)` with keys from `rngs` (an `nnx.Rngs`, whose `carry`
        stream is used, or an `nnx.RngStream`), in the parameters' dtype.
        """
        if self.cell is not None:
            return self.cell.initialize_carry(input_shape, rngs, carry_init)
        layers = self.parameters()
        bottom = layers[0] if isinstance(layers[0], dict) else layers[0][0]
        shape = lambda n_a: (*tuple(input_shape)[:-1], n_a)
        if carry_init is None:
            draw = lambda n_a: jnp.zeros(shape(n_a), bottom["Wax"].dtype)
        else:
            if rngs is None:
                raise ValueError("jaxrnn.nnx.RNN.initialize_carry: carry_init needs rngs= to draw from")
            stream = rngs.carry if isinstance(rngs, nnx.Rngs) else rngs
            draw = lambda n_a: carry_init(stream(), shape(n_a), bottom["Wax"].dtype)
        states = _modules.new_states(layers, self.options.cell, draw)
        return _modules.from_states(states, layers, self.options.cell, "ch")

    def __call__(
        self,
        inputs,
        *,
        initial_carry=None,
        seq_lengths=None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | None = None,
    ):
        """Runs the layer (or stack), as `nnx.RNN.__call__`.

        Args:
          inputs: `(*batch, T, in_features)` (`(T, *batch, in_features)` when time-major): any
            number of batch dimensions, one sequence `(T, in_features)` included.
          initial_carry: None (the Flax cell's `initialize_carry`; zeros for a stack), or the
            carry (see the module docstring), `(*batch, hidden)` arrays.
          seq_lengths: `(*batch,)` integers in `[0, T]` (traced: an array), or None. Steps past
            a length output zeros and keep the carry.
          return_carry, time_major, reverse, keep_order: None: the module's setting. `reverse`
            reads each sequence from its last valid step back; its outputs come in that
            reversed order (Flax's `flip_sequences`) unless `keep_order`.
          rngs: the stream for the Flax cell's `initialize_carry` (None: the module's).

        Returns:
          `outputs`, or `(carry, outputs)` as Flax returns them: outputs `(*batch, T, D·hidden)`
          (D = 2 for a bidirectional top layer), or the head's probabilities `(*batch, T, out_features)`.
        """
        fn = "jaxrnn.nnx.RNN"
        time_major = self.time_major if time_major is None else time_major
        reverse = self.reverse if reverse is None else reverse
        keep_order = self.keep_order if keep_order is None else keep_order
        options = self.options._replace(layout="time_major" if time_major else "batch_major")
        layers = self.parameters()
        if self.cell is not None:
            dtype = self._compute_dtype(inputs, layers[0]["Wax"].dtype)
            layers = jax.tree.map(lambda p: p.astype(dtype), layers)
            if initial_carry is None:
                initial_carry = self._flax_initial_carry(inputs, time_major, rngs)
        states = _modules.to_states(fn, "initial_carry", initial_carry, layers, options.cell, "ch")
        outputs, final = _modules.run(fn, layers, inputs, states, seq_lengths, options, reverse)
        if reverse and not keep_order:
            outputs = _modules.flip_sequences(outputs, seq_lengths, options.layout)
        if not (self.return_carry if return_carry is None else return_carry):
            return outputs
        return _modules.from_states(final, layers, options.cell, "ch"), outputs

    def _compute_dtype(self, inputs, param_dtype):
        """The Flax cell's `dtype`, or (None) its parameters' promoted with floating inputs (Flax's `promote_dtype`)."""
        dtype = getattr(self.cell, "dtype", None)
        if dtype is not None:
            return jnp.dtype(dtype)
        input_dtype = jnp.asarray(inputs).dtype
        if jnp.issubdtype(input_dtype, jnp.floating) and input_dtype != param_dtype:
            return jnp.promote_types(input_dtype, param_dtype)
        return param_dtype

    def _flax_initial_carry(self, inputs, time_major: bool, rngs):
        """What `nnx.RNN` starts from without `initial_carry`: the cell's `initialize_carry`."""
        rngs = self.rngs if rngs is None else rngs
        if isinstance(rngs, nnx.Rngs):
            rngs = rngs.carry.fork()
        shape = jnp.shape(inputs)
        time_axis = 0 if time_major else len(shape) - 2
        return self.cell.initialize_carry(shape[:time_axis] + shape[time_axis + 1 :], rngs)


def _flax_cell_options(fn: str, cell: Any, sizes: dict) -> dict:
    """The `cell` and `nonlinearity` of a Flax cell jaxrnn computes; `sizes` (the stack's
    arguments, None where not given) must not be given with one."""
    given = {name: value for name, value in sizes.items() if value is not None}
    if given:
        named = ", ".join(f"{k}={v!r}" for k, v in given.items())
        raise TypeError(
            f"{fn}: {named} given with a Flax cell, which holds its own sizes, activation and dtypes; "
            f"for a stack, pass sizes: RNN(in_features, hidden_features, ...)"
        )
    if not isinstance(cell, (nnx.SimpleCell, nnx.GRUCell, nnx.LSTMCell, nnx.OptimizedLSTMCell)):
        raise TypeError(
            f"{fn}: cell is a {type(cell).__name__}; jaxrnn computes Flax's nnx.SimpleCell, GRUCell, LSTMCell and "
            f"OptimizedLSTMCell (run other cells in nnx.RNN)"
        )
    _, options = _flax.read(fn, cell, "cell")  # refuses a setting jaxrnn does not compute, naming it
    return {"nonlinearity": "tanh"} | options


def _linen_hint(value: Any) -> str:
    from flax import linen

    if isinstance(value, linen.Module):
        return (
            "; a Linen cell: build its NNX counterpart (nnx.GRUCell(in_features, hidden_features, rngs=...)), or "
            "convert Linen variables with jaxrnn.from_flax and RNN.from_parameters"
        )
    return ""


class Bidirectional(nnx.Module):
    """Two RNNs over the same inputs, the second reading each sequence backwards; as
    `nnx.Bidirectional` (the same constructor, call and carry `(forward, backward)`)."""

    def __init__(
        self,
        forward_rnn: Any,
        backward_rnn: Any,
        *,
        merge_fn=_concatenate,
        time_major: bool = False,
        return_carry: bool = False,
        rngs: nnx.Rngs | nnx.RngStream | bool = True,
    ):
        """Args:
        forward_rnn, backward_rnn: `jaxrnn.nnx.RNN`s (or any module with `nnx.RNN`'s call);
          both may share one cell.
        merge_fn: `(forward_outputs, backward_outputs) -> outputs`; default: concatenated on
          the feature axis, forward first.
        time_major, return_carry: the call's defaults.
        rngs: the stream both RNNs draw their initial carries from, as `nnx.Bidirectional`'s.
        """
        self.forward_rnn = forward_rnn
        self.backward_rnn = backward_rnn
        self.merge_fn = merge_fn
        self.time_major = time_major
        self.return_carry = return_carry
        self.rngs = _carry_rngs("jaxrnn.nnx.Bidirectional", rngs)

    def __call__(
        self,
        inputs,
        *,
        initial_carry=None,
        rngs: nnx.Rngs | nnx.RngStream | None = None,
        seq_lengths=None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
    ):
        """Runs both directions, as `nnx.Bidirectional.__call__` (`reverse`, `keep_order`:
        unused, as there). Returns `outputs`, or `((forward_carry, backward_carry), outputs)`;
        the backward outputs in the original time order."""
        del reverse, keep_order
        time_major = self.time_major if time_major is None else time_major
        return_carry = self.return_carry if return_carry is None else return_carry
        rngs = self.rngs if rngs is None else rngs
        if isinstance(rngs, nnx.Rngs):
            rngs = rngs.carry
        forward_carry, backward_carry = (None, None) if initial_carry is None else initial_carry
        common = {"rngs": rngs, "seq_lengths": seq_lengths, "return_carry": True, "time_major": time_major}
        forward_final, forward = self.forward_rnn(inputs, initial_carry=forward_carry, reverse=False, **common)
        backward_final, backward = self.backward_rnn(
            inputs, initial_carry=backward_carry, reverse=True, keep_order=True, **common
        )
        outputs = jax.tree.map(self.merge_fn, forward, backward)
        return ((forward_final, backward_final), outputs) if return_carry else outputs
