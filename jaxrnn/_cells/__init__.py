"""The cells the recurrence engine runs: vanilla RNN, GRU and LSTM.

A cell brings four things and nothing else (the engine — masks, direction, layouts,
checkpoint segments, final state, stacks — is written once, in `_forward`, `_backward` and
`_jvp`):

- its **parameters**: `Wax (G·n_a, n_x)`, `Waa (G·n_a, n_a)`, `ba (G·n_a, 1)` with its `G`
  gates stacked on the rows, PyTorch's gate order, plus any further bias (`extra_biases`);
- a **forward step** on `(m, ·)` rows: `step(carry, projected, hidden, biases) -> (carry',
  residuals)`, where the engine has computed `projected = x_t Wax^T` for every step before the
  scan and `hidden = h_{t-1} Waa^T` — the one product per step for all gates;
- a **backward step**, derived by hand: `backward_step(carry, previous, residuals, d_carry) ->
  (direct, d_input, d_hidden)`: given `d_carry = dL/d carry_t` (every path), the gradients
  with respect to the input pre-activations `x_t Wax^T + ba` (`d_input`), to the recurrent
  product `h_{t-1} Waa^T` (`d_hidden`; None when it equals `d_input`), and `direct`, the
  gradient with respect to each part of the carry before the step by every path except the
  recurrent product (None where there is none); the engine adds `d_hidden Waa` to the `h`
  part and sums the weight gradients over time as single matrix products;
- a **tangent step**, derived by hand: `tangent_step(carry, carry_dot, carry', residuals,
  drive, hidden_dot, biases_dot) -> carry_dot'`, where `drive = Ẇax x_t + Wax ẋ_t + ḃa` and
  `hidden_dot = ḣ_{t-1} Waa^T + h_{t-1} Ẇaa^T`.

A carry is a tuple of `(m, n_a)` arrays, the hidden state `h` first (the layer's output):
`(a,)` for the vanilla cell and the GRU, `(h, c)` for the LSTM. The steps compute in the
accumulation dtype; carries are stored in the input dtype.
"""

from __future__ import annotations

from jaxrnn._cells.base import CELL_NAMES, Cell, LSTMState
from jaxrnn._cells.gru import GRU
from jaxrnn._cells.lstm import LSTM
from jaxrnn._cells.vanilla import vanilla_cell

__all__ = ["CELL_NAMES", "Cell", "LSTMState", "get"]


def get(name: str, nonlinearity: str = "tanh") -> Cell:
    """The cell called `name` (`"vanilla"`, `"gru"` or `"lstm"`); `nonlinearity` is the vanilla cell's."""
    if name == "vanilla":
        return vanilla_cell(nonlinearity)
    return {"gru": GRU, "lstm": LSTM}[name]
