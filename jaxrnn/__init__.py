"""jaxrnn: a vanilla RNN in JAX with its backward pass derived by hand.

    a_t = tanh(Waa a_{t-1} + Wax x_t + ba),    y_t = softmax(Wya a_t + by)

`rnn` is the layer (a `jax.custom_vjp` whose backward is the hand derivation),
`rnn_autodiff` the same forward left to `jax.grad`, and the seed's four functions
(`rnn_cell_forward`, `rnn_forward`, `rnn_cell_backward`, `rnn_backward`) keep their
names, arguments and layouts: `x (n_x, m, T_x)`, `a (n_a, m, T_x)`, `y (n_y, m, T_x)`.
"""

from jaxrnn.backward import rnn_backward, rnn_cell_backward
from jaxrnn.batch_major import rnn_batch_major, rnn_cross_entropy_batch_major
from jaxrnn.cross_entropy import rnn_cross_entropy, rnn_cross_entropy_autodiff
from jaxrnn.diagnostics import GradientsThroughTime, gradients_through_time
from jaxrnn.forward import Caches, rnn_autodiff, rnn_cell_forward, rnn_forward
from jaxrnn.layer import rnn
from jaxrnn.params import init_parameters

__version__ = "0.1.0"

__all__ = [
    "Caches",
    "GradientsThroughTime",
    "gradients_through_time",
    "init_parameters",
    "rnn",
    "rnn_autodiff",
    "rnn_backward",
    "rnn_batch_major",
    "rnn_cell_backward",
    "rnn_cell_forward",
    "rnn_cross_entropy",
    "rnn_cross_entropy_autodiff",
    "rnn_cross_entropy_batch_major",
    "rnn_forward",
]
