"""The jaxrnn layer as a Flax NNX module: `from jaxrnn.nnx import RNN`.

A drop-in for `nnx.RNN(nnx.SimpleCell(in_features, hidden_features, rngs=rngs))` with the same
call — `rnn(inputs, initial_carry=..., seq_lengths=..., return_carry=...)`, batch-major
`(B, T, features)` unless `time_major` — whose gradient is the hand-derived backward; also
stacks, bidirectional layers and a softmax head. Needs flax (`pip install "jaxrnn[flax]"`).

    rnn = RNN(3, 16, rngs=nnx.Rngs(0))  # was nnx.RNN(nnx.SimpleCell(3, 16, rngs=nnx.Rngs(0)))

    layers, options = jaxrnn.from_flax(flax_rnn)  # a trained Flax model's weights ...
    rnn = RNN.from_parameters(layers, **options)  # ... in this module

One difference from Flax with `seq_lengths`: steps past a sequence's length keep its state
(Flax keeps running the cell over the padding) and output zeros there, and a length-0
sequence's carry is its initial carry (Flax returns the last step's). Valid steps and the
carry of sequences with length >= 1 are the same numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrnn import _modules
from jaxrnn._params import init_stack


class RNN(nnx.Module):
    """A stack of vanilla RNN layers with the hand-derived backward, as an NNX module.

    Parameters: `self.layers`, a list bottom first of dicts of `nnx.Param` (`Wax (n_a, n_x)`,
    `Waa (n_a, n_a)`, `ba (n_a, 1)`; `Wya (n_y, n_a)`, `by (n_y, 1)` on a top layer with a
    head), a pair of dicts for a bidirectional layer; `parameters()` gives them as arrays
    for `jaxrnn.rnn_stack` and `jaxrnn.to_flax`/`to_torch`.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        out_features: int | None = None,
        nonlinearity: str = "tanh",
        time_major: bool = False,
        return_carry: bool = False,
        checkpoint_every: int | None = None,
        gradient: str = "hand",
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        """A new stack, initialised as `jaxrnn.init_stack` does.

        Args:
          in_features, hidden_features: input and hidden sizes, as `nnx.SimpleCell`'s.
          num_layers, bidirectional: the stack (`jaxrnn.init_stack`; jaxrnn's initialisation:
            Glorot-uniform `Wax`, orthogonal `Waa`, zero biases).
          out_features: the size of a softmax head on the top layer (unidirectional only); the
            call then returns its probabilities. None: no head, the call returns states.
          nonlinearity: `"tanh"` (SimpleCell's default) or `"relu"`.
          time_major, return_carry: as `nnx.RNN`'s.
          checkpoint_every, gradient: as `jaxrnn.rnn`'s.
          param_dtype: the parameters' dtype; inputs and carries are cast to it.
          rngs: `nnx.Rngs` with a `params` stream.
        """
        layers = init_stack(
            rngs.params(),
            in_features,
            hidden_features,
            num_layers=num_layers,
            bidirectional=bidirectional,
            n_y=out_features,
            dtype=param_dtype,
        )
        layout = "time_major" if time_major else "batch_major"
        self.options = _modules.options("jaxrnn.nnx.RNN", nonlinearity, layout, checkpoint_every, gradient)
        self.return_carry = return_carry
        self.layers = nnx.data(jax.tree.map(nnx.Param, layers))

    @classmethod
    def from_parameters(
        cls,
        layers: list,
        *,
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
        _modules.options(fn, nonlinearity, layout, checkpoint_every, gradient)
        layers = _modules.checked_layers(fn, layers)
        top = layers[-1] if isinstance(layers[-1], dict) else layers[-1][0]
        bottom = layers[0] if isinstance(layers[0], dict) else layers[0][0]
        module = nnx.eval_shape(
            lambda: cls(
                *bottom["Wax"].shape[::-1],
                out_features=top["Wya"].shape[0] if "Wya" in top else None,
                nonlinearity=nonlinearity,
                time_major=layout == "time_major",
                return_carry=return_carry,
                checkpoint_every=checkpoint_every,
                gradient=gradient,
                param_dtype=bottom["Wax"].dtype,
                rngs=nnx.Rngs(0),
            )
        )
        module.layers = nnx.data(jax.tree.map(nnx.Param, layers))
        return module

    def parameters(self) -> list:
        """The parameters as arrays, structured as `jaxrnn.rnn_stack` takes them."""
        return jax.tree.map(lambda p: p[...], self.layers, is_leaf=lambda x: isinstance(x, nnx.Variable))

    def __call__(self, inputs, *, initial_carry=None, seq_lengths=None, return_carry: bool | None = None):
        """Runs the stack.

        Args:
          inputs: `(B, T, in_features)` (`(T, B, in_features)` when time-major), or one sequence
            `(T, in_features)`.
          initial_carry: None (zeros), or for one layer its state `(B, hidden_features)` (a pair
            `(forward, backward)` for a bidirectional layer, as `nnx.Bidirectional`), for a
            stack a list of them, bottom first.
          seq_lengths: `(B,)` integers in `[0, T]`, or None; see the module's docstring.
          return_carry: also return the final carry, as `initial_carry` is structured; None:
            the module's setting.

        Returns:
          `outputs`, or `(carry, outputs)` as Flax returns them: outputs `(B, T, D·hidden_features)`
          (D = 2 for a bidirectional top layer), or the head's probabilities `(B, T, out_features)`.
        """
        outputs, carry = _modules.run(self.parameters(), inputs, initial_carry, seq_lengths, self.options)
        return (carry, outputs) if (self.return_carry if return_carry is None else return_carry) else outputs
