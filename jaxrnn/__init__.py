"""jaxrnn: recurrent layers in JAX — vanilla RNN, GRU, LSTM — whose backward pass is derived by hand.

    vanilla: a_t = f(Waa a_{t-1} + Wax x_t + ba),  f = tanh | relu      (the seed notebook's)
    gru, lstm: PyTorch's equations;  head: y_t = softmax(Wya a_t + by)

`rnn` is the layer (a `jax.custom_vjp` whose backward is the hand derivation) with its
options — `cell`, `seq_lengths`, `reverse`, `layout`, `checkpoint_every`, ... — and
`rnn_cross_entropy` the same layer with a fused softmax–cross-entropy head; `rnn_stack` runs
stacked and bidirectional layers, `rnn_step` one step at a time, `rnn_jvp` forward mode by
hand. `rnn_autodiff` and `rnn_cross_entropy_autodiff` are the same forward left to `jax.grad`.
Sequences are batch-major `(B, T, n)` by default. The seed's four functions
(`rnn_cell_forward`, `rnn_forward`, `rnn_cell_backward`, `rnn_backward`) keep their names,
arguments and layouts: `x (n_x, m, T_x)`, `a (n_a, m, T_x)`, `y (n_y, m, T_x)`.
"""

from jaxrnn._cells import LSTMState
from jaxrnn._diagnostics import GradientsThroughTime, gradients_through_time
from jaxrnn._equinox_interop import from_equinox, to_equinox
from jaxrnn._flax import from_flax, to_flax
from jaxrnn._jvp import rnn_jvp
from jaxrnn._params import init_parameters, init_stack, weight_decay_mask
from jaxrnn._rnn import (
    rnn,
    rnn_autodiff,
    rnn_cross_entropy,
    rnn_cross_entropy_autodiff,
)
from jaxrnn._seed import Caches, rnn_backward, rnn_cell_backward, rnn_cell_forward, rnn_forward
from jaxrnn._stack import rnn_stack, rnn_step
from jaxrnn._torch import from_torch, from_torch_hidden, to_torch, to_torch_hidden

__version__ = "0.3.0"

__all__ = [
    "Caches",
    "GradientsThroughTime",
    "LSTMState",
    "from_equinox",
    "from_flax",
    "from_torch",
    "from_torch_hidden",
    "gradients_through_time",
    "init_parameters",
    "init_stack",
    "rnn",
    "rnn_autodiff",
    "rnn_backward",
    "rnn_cell_backward",
    "rnn_cell_forward",
    "rnn_cross_entropy",
    "rnn_cross_entropy_autodiff",
    "rnn_forward",
    "rnn_jvp",
    "rnn_stack",
    "rnn_step",
    "to_equinox",
    "to_flax",
    "to_torch",
    "to_torch_hidden",
    "weight_decay_mask",
]


def __getattr__(name: str):
    """`jaxrnn.nnx` and `jaxrnn.equinox` on first use, so `import jaxrnn` imports neither Flax nor Equinox."""
    if name in ("nnx", "equinox"):
        import importlib

        return importlib.import_module(f"jaxrnn.{name}")
    raise AttributeError(f"module 'jaxrnn' has no attribute {name!r}")
