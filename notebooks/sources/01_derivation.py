# %% [markdown]
# # 1. Deriving the backward pass: vanilla RNN, GRU and LSTM
#
# This notebook derives, one step at a time, the gradients that `jaxrnn` computes by hand, shows each formula next
# to the code that computes it, and then checks every one of them live: against `jax.grad` (automatic
# differentiation) and against finite differences. It starts with the vanilla RNN, where every idea appears in its
# simplest form, then derives the GRU and the LSTM gate by gate: they run on the same engine, and each brings only
# its own step. The same derivation, as math, is in [`docs/derivation.md`](../docs/derivation.md); forward mode
# (tangents instead of gradients) is [notebook 4](04_forward_and_reverse.ipynb).
#
# You need calculus (the chain rule, for vectors) and a little numpy. No JAX knowledge is assumed: wherever JAX
# appears, the text says what it does.

# %%
import importlib
import inspect
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from IPython.display import Markdown, display

import jaxrnn
import jaxrnn.verify
from jaxrnn import _backward, _cells, _forward, _heads

# The three cells' modules. (`jaxrnn._cells` re-exports a function named `vanilla`, which hides the module of that
# name from `from jaxrnn._cells import vanilla`; importlib returns the modules themselves.)
vanilla_cell, gru_cell, lstm_cell = (importlib.import_module(f"jaxrnn._cells.{name}") for name in _cells.CELL_NAMES)

# Float64 throughout this notebook, so that agreement shows at the level of float64 rounding (~1e-16).
# (A notebook may switch JAX's global configuration; the jaxrnn library never does.)
jax.config.update("jax_enable_x64", True)


def show(function):
    """Displays the source code of a jaxrnn function, as it is in the installed package."""
    function = getattr(function, "func", function)  # a functools.partial: its function
    display(Markdown(f"```python\n{inspect.getsource(function).rstrip()}\n```"))


def show_assignment(module, name):
    """Displays the lines of `module` that assign `name`, up to the next blank line."""
    lines = inspect.getsource(module).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name} = "))
    display(Markdown("```python\n" + "\n".join(itertools.takewhile(str.strip, lines[start:])) + "\n```"))


def error_of(got, want):
    """max |got − want| for each entry of two dicts of arrays."""
    return {k: float(jnp.max(jnp.abs(got[k] - want[k]))) for k in want}


# %% [markdown]
# ## The forward pass
#
# One example is a sequence of inputs $x_1, \dots, x_T$ (column vectors of size $n_x$). Starting from $a_0$, the
# RNN computes for $t = 1, \dots, T$
#
# $$z_t = W_{aa}\, a_{t-1} + W_{ax}\, x_t + b_a, \qquad a_t = \tanh(z_t),$$
# $$o_t = W_{ya}\, a_t + b_y, \qquad y_t = \mathrm{softmax}(o_t),
#   \quad (y_t)_k = \frac{e^{(o_t)_k}}{\sum_j e^{(o_t)_j}}.$$
#
# The same five parameters $W_{ax}\ (n_a \times n_x)$, $W_{aa}\ (n_a \times n_a)$, $W_{ya}\ (n_y \times n_a)$,
# $b_a\ (n_a)$, $b_y\ (n_y)$ are used at every step. A batch of $m$ examples puts $m$ such columns side by side:
# in the seed's layout (`layout="seed"`, which every call here names), `x` is `(n_x, m, T)`, `a0` is `(n_a, m)`,
# and `rnn` returns `a (n_a, m, T)` and `y (n_y, m, T)`.
#
# **One engine, several cells.** The code splits this in two. The *engine* (`jaxrnn/_forward.py`,
# `_backward.py`, `_jvp.py`) runs the loop over time and everything around it: padding masks, direction,
# layouts, checkpointing. A *cell* (`jaxrnn/_cells/`) brings one step and its derivatives, and nothing else. The
# engine computes the input term $W_{ax} x_t$ for all steps at once, before the loop; the loop
# (`jax.lax.scan`, JAX's compiled for-loop: it calls `step(carry, x_t)` for each t and stacks the outputs) does the
# one recurrent product $W_{aa} a_{t-1}$ (`cell_forward`) and hands both to the cell's step, which adds the bias
# and applies tanh. The carry is a tuple, `(a,)` here (the LSTM's is `(h, c)`), and the step also returns
# *residuals*, what its backward step will need besides the states; the vanilla cell needs none, `()`.
#
# The code stores each step as an `(m, n)` block of *row* vectors (one row per example), so $W_{aa} a_{t-1}$ appears
# as the product of `a_prev` with $W_{aa}^\top$: the same numbers, transposed. The comment next to each line gives
# the formula in the column-vector form used here.

# %%
show(_forward.project_inputs)
show(_forward.cell_forward)
show(vanilla_cell._step)
show(_forward.hidden_states)
show(_heads.predictions)

# %%
n_x, n_a, n_y, m, T = 3, 5, 4, 2, 6
k_params, k_x, k_a0, k_ca, k_cy = jax.random.split(jax.random.PRNGKey(0), 5)
params = jaxrnn.init_parameters(k_params, n_x, n_a, n_y, jnp.float64)
x = jax.random.normal(k_x, (n_x, m, T), jnp.float64)
a0 = 0.5 * jax.random.normal(k_a0, (n_a, m), jnp.float64)
a, y = jax.jit(lambda x, a0, params: jaxrnn.rnn(x, a0, params, layout="seed"))(x, a0, params)  # compiled once
print("a:", a.shape, " y:", y.shape)
print("each y_t sums to 1 over the n_y outputs:", np.allclose(y.sum(axis=0), 1.0))

# %% [markdown]
# ## The loss and what flows backward
#
# Let $L$ be any scalar computed from the outputs $a_t$ and $y_t$. The backward pass receives
# $\overline{a}_t = \partial L / \partial a_t$ and $\overline{y}_t = \partial L / \partial y_t$ *from the loss only*
# (for example, for the cross-entropy $L = -\sum_t \log (y_t)_{c_t}$: $\overline{a}_t = 0$ and
# $\overline{y}_t = -e_{c_t} / (y_t)_{c_t}$), and must return $\partial L / \partial \theta$ for every input
# $\theta \in \{x, a_0, W_{ax}, W_{aa}, W_{ya}, b_a, b_y\}$.
#
# Write $\delta v = \partial L / \partial v$ for the total gradient with respect to any intermediate $v$. The chain rule
# for a map $u = f(v)$ with Jacobian $J = \partial u / \partial v$ reads $\delta v \mathrel{+}= J^\top \delta u$: each
# use of $v$ adds its contribution. We go backward through the four maps of one step: softmax, the output
# layer, tanh, and the recurrence.
#
# ## Step 1: softmax
#
# For $y = \mathrm{softmax}(o)$, $\partial y_k / \partial o_j = y_k(\mathbf{1}[k = j] - y_j)$, so the Jacobian is
# $J = \mathrm{diag}(y) - y y^\top$ (symmetric) and
#
# $$\delta o_t = J^\top \overline{y}_t = y_t \odot \overline{y}_t - y_t\,(y_t^\top \overline{y}_t)
#   = y_t \odot \big(\overline{y}_t - (y_t \cdot \overline{y}_t)\,\mathbf{1}\big).$$
#
# (For the cross-entropy above this collapses to the familiar $\delta o_t = y_t - e_{c_t}$.) The seed notebook stops
# before this layer; `jaxrnn` adds it in `softmax_backward`:

# %%
show(_backward.softmax_backward)

# %% [markdown]
# ## Step 2: the output layer $o_t = W_{ya} a_t + b_y$
#
# $o_t$ is linear in each of $W_{ya}$, $b_y$ and $a_t$. For one step,
# $\partial (o_t)_k / \partial (W_{ya})_{kj} = (a_t)_j$,
# so the contribution of step $t$ to $\delta W_{ya}$ is the outer product $\delta o_t\, a_t^\top$; for $b_y$ it is
# $\delta o_t$; and $a_t$ receives $W_{ya}^\top \delta o_t$. Because the **same** $W_{ya}$ and $b_y$ are used at
# every step (and for every example of the batch), their gradients add up over all uses:
#
# $$\delta W_{ya} = \sum_t \delta o_t\, a_t^\top, \qquad \delta b_y = \sum_t \sum_{i=1}^m (\delta o_t)_{:,i}.$$
#
# With a batch, $\delta o_t$ is an $n_y \times m$ matrix and
# $\sum_i (\delta o_t)_{:,i}\,(a_t)_{:,i}^\top = \delta o_t\, a_t^\top$
# is one matrix product; summing over $t$ too makes it **one** product over all $T m$ columns. That is what
# `logits_backward` does (the comment by each line is the formula; the code applies it to row blocks). The head
# reads only the hidden state (`carries[0]`), whatever the cell.

# %%
show(_backward.logits_backward)

# %% [markdown]
# ## Step 3: tanh
#
# $a_t = \tanh(z_t)$ elementwise, and $\tanh'(z) = 1 - \tanh^2(z)$, so the Jacobian is the diagonal matrix
# $\mathrm{diag}(1 - a_t^2)$ and
#
# $$\delta z_t = (1 - a_t \odot a_t) \odot \delta a_t .$$
#
# The derivative is written with the *output* $a_t$, which the forward pass stored anyway: nothing else about
# $z_t$ needs to be kept, which is why the vanilla step returns no residuals. The same holds for ReLU,
# $a_t = \max(0, z_t)$: its derivative is $\mathbf{1}[z_t > 0] = \mathbf{1}[a_t > 0]$, so `nonlinearity="relu"`
# changes only this one factor. This is the vanilla cell's backward step, with $f'$ from its table `DERIVATIVES`:

# %%
show_assignment(vanilla_cell, "DERIVATIVES")
show(vanilla_cell._backward_step)

# %% [markdown]
# The backward step of any cell has this shape: `backward_step(carry_t, carry_{t-1}, residuals_t, dL/dcarry_t)`
# returns `(direct, d_input, d_hidden)`: the gradient with respect to the input pre-activations
# ($W_{ax} x_t + b_a$, all gates), with respect to the recurrent product ($W_{aa} a_{t-1}$; None when it equals
# `d_input`), and `direct`, the gradient reaching each part of the previous carry by any path *other than* the
# recurrent product (None where there is none). For the vanilla cell, $z_t$ is both pre-activations at once, so
# `d_input` $=$ `d_hidden` $= \delta z_t$, and $a_{t-1}$ reaches $a_t$ only through $W_{aa} a_{t-1}$: `direct` is
# `(None,)`. The GRU and the LSTM below fill in all three.
#
# ## Step 4: the recurrence, backpropagation through time
#
# $a_{t-1}$ is used twice: by the output at step $t-1$ (and the loss on $a_{t-1}$), and by
# $z_t = W_{aa} a_{t-1} + \dots$.
# So its total gradient has two parts:
#
# $$\delta a_{t-1} = \underbrace{\overline{a}_{t-1} + W_{ya}^\top \delta o_{t-1}}_{\text{from outside the recurrence}}
#   \;+\; \underbrace{W_{aa}^\top \delta z_t}_{\text{through } a_t},
#   \qquad \delta z_t = (1 - a_t^2) \odot \delta a_t .$$
#
# This is a recursion backward in time: $\delta z_T$ needs only the outside term at $T$; then
# $\delta a_{T-1}$ needs $\delta z_T$, and so on down to $\delta a_0 = W_{aa}^\top \delta z_1$, the gradient
# with respect to the initial state. Only the carried term $W_{aa}^\top \delta z_{t+1}$ and the cell's backward step
# depend on the previous backward step; everything else can be computed for all steps at once. So the reverse loop
# (`jax.lax.scan(..., reverse=True)`) contains just this: add the outside term to the carried gradient, run the
# cell's backward step, and form the gradient of the previous carry, $W_{aa}^\top$ `d_hidden` plus `direct`. (The
# lines with `valid` are the padding mask, below.)

# %%
show(_backward.recurrent_backward)

# %% [markdown]
# ## Step 5: why the weight gradients are sums over time
#
# $z_t = W_{aa} a_{t-1} + W_{ax} x_t + b_a$ uses the same $W_{aa}$, $W_{ax}$, $b_a$ at every step. Imagine giving
# step $t$ its own copy $W_{aa}^{(t)}$. Then $\partial L / \partial W_{aa}^{(t)} = \delta z_t\, a_{t-1}^\top$ (a
# linear map again), and since all copies are equal to $W_{aa}$, the chain rule adds the uses:
#
# $$\delta W_{aa} = \sum_t \delta z_t\, a_{t-1}^\top, \qquad \delta W_{ax} = \sum_t \delta z_t\, x_t^\top, \qquad
#   \delta b_a = \sum_t \sum_i (\delta z_t)_{:,i}, \qquad \delta x_t = W_{ax}^\top \delta z_t .$$
#
# None of these feed back into the recursion, so they are computed **after** the reverse loop, each as one matrix
# product over all stacked $\delta z_t$. The code writes `d_hidden` for the $\delta z_t$ of the recurrent sum and
# `d_input` for the others: the same array for the vanilla cell, two different ones for the GRU (below).

# %%
show(_backward.weight_gradients)

# %% [markdown]
# We can watch the "copies" argument happen. Below, a plain forward pass (a Python loop) takes one copy of $W_{aa}$
# per step. `jax.grad` gives the gradient with respect to each copy; their sum is the gradient with respect to
# the shared $W_{aa}$, and each copy's gradient is exactly $\delta z_t\, a_{t-1}^\top$ from the formulas above.


# %%
def loss_with_copies(Waa_copies, x, a0, params, ca, cy):
    """L = Σ ca ⊙ a + Σ cy ⊙ y for a plain forward pass in which step t uses Waa_copies[t]."""
    a_prev, loss = a0, 0.0
    for t in range(x.shape[-1]):
        a_prev = jnp.tanh(Waa_copies[t] @ a_prev + params["Wax"] @ x[:, :, t] + params["ba"])
        y_t = jax.nn.softmax(params["Wya"] @ a_prev + params["by"], axis=0)
        loss = loss + jnp.sum(ca[:, :, t] * a_prev) + jnp.sum(cy[:, :, t] * y_t)
    return loss


# A loss on both outputs with random weights, so that every term of the derivation is exercised.
ca = jax.random.normal(k_ca, (n_a, m, T), jnp.float64)
cy = jax.random.normal(k_cy, (n_y, m, T), jnp.float64)
copies = jnp.stack([params["Waa"]] * T)
per_copy = jax.jit(jax.grad(loss_with_copies))(copies, x, a0, params, ca, cy)  # (T, n_a, n_a): one per step

# The formulas of steps 1-4, written out for this check, then δz_t a_{t-1}^T for each step.
delta_o = y * (cy - jnp.sum(y * cy, axis=0, keepdims=True))  # step 1: softmax
delta_z = [None] * T
carried = jnp.zeros((n_a, m))  # W_aa^T δz_{t+1}; nothing comes after the last step
for t in reversed(range(T)):
    delta_a = ca[:, :, t] + params["Wya"].T @ delta_o[:, :, t] + carried  # steps 2 and 4
    delta_z[t] = (1 - a[:, :, t] ** 2) * delta_a  # step 3: tanh
    carried = params["Waa"].T @ delta_z[t]
a_prev = [a0] + [a[:, :, t] for t in range(T - 1)]
by_hand = jnp.stack([delta_z[t] @ a_prev[t].T for t in range(T)])


def loss(params):
    a, y = jaxrnn.rnn(x, a0, params, layout="seed")
    return jnp.sum(ca * a) + jnp.sum(cy * y)


dWaa = jax.jit(jax.grad(loss))(params)["Waa"]  # through jaxrnn's hand-derived backward
print("max |jax.grad per copy − δz_t a_{t-1}^T| :", float(jnp.max(jnp.abs(per_copy - by_hand))))
print("max |Σ_t per-copy gradients − dWaa (rnn)| :", float(jnp.max(jnp.abs(per_copy.sum(0) - dWaa))))
print("‖δz_t a_{t-1}^T‖ for t = 1..T:", np.round(np.linalg.norm(np.asarray(by_hand), axis=(1, 2)), 4))

# %% [markdown]
# ## Putting it together: the custom VJP
#
# `jaxrnn.rnn` registers the backward pass with `jax.custom_vjp`: when JAX differentiates a program that calls
# `rnn` in reverse mode (`jax.grad`, `jax.vjp`), it runs this function instead of differentiating the forward
# pass itself. `sequence_backward` is the whole rule: step 1 and 2 for every $t$ at once, the reverse loop of
# steps 3 and 4, then the sums of step 5. None of it names a cell: it runs whatever cell it is given.

# %%
show(_backward.sequence_backward)
show(_backward.hidden_backward)

# %% [markdown]
# ## Padded batches, reverse, stacks: the same derivation with a mask
#
# Real batches hold sequences of different lengths, padded to a common $T$. With `seq_lengths`, step $t$ of
# example $i$ is *valid* while $t < \ell_i$; write $v_t \in \{0, 1\}$ for it. A padded step leaves the state
# alone and outputs zero:
#
# $$a_t = v_t \odot \tanh(z_t) + (1 - v_t) \odot a_{t-1}, \qquad \text{output}_t = v_t \odot \tanh(z_t).$$
#
# So the final state is the state after each example's last valid step ($a_0$ when $\ell_i = 0$). Going back,
# a padded step has no $z_t$ and passes the carried gradient $g_t$ straight through:
#
# $$\delta z_t = v_t \odot (1 - a_t^2) \odot (\overline{a}_t + g_t), \qquad
#   g_{t-1} = W_{aa}^\top \delta z_t + (1 - v_t) \odot g_t ,$$
#
# with $g_T$ the gradient of the final state. With every step valid ($v_t = 1$) this is step 4 above: the masked
# step is the same code, and `lengths=None` skips the mask statically. The engine applies the mask to the whole
# carry, part by part, so a cell never sees it: for the LSTM a padded step freezes both $h$ and $c$, and passes both
# carried gradients through. `reverse=True` runs the same recurrence from $t = T$ down to 1; padded steps then come
# *first*, so the carry stays $a_0$ through them and each sequence is read from its last valid step back (its
# backward walks forward in time). The one place the direction shows in the weight gradients is "the state before
# step $t$", $a_{t+1}$ in reverse, or $a_0$ for the last valid step:

# %%
show(_forward.masked_step)
show(_backward.previous_states)

# %% [markdown]
# In a stack, layer $l$ reads layer $l-1$'s states, so the gradient reaching layer $l-1$'s outputs is layer $l$'s
# $\delta x_t = W_{ax}^{(l)\top} \delta z^{(l)}_t$: each layer's hand-derived backward hands its `dx` to the layer
# below as that layer's $\overline{a}_t$ (the chain rule across layers; JAX's autodiff carries it through the
# concatenation of the two directions of a bidirectional layer).
#
# Checked live: the padded batch, in reverse, against each sequence run alone and unpadded, and against
# `jax.grad` of the same masked forward.

# %%
lengths = jnp.array([T, 3])
options = {"seq_lengths": lengths, "reverse": True, "return_final_state": True, "layout": "seed"}


def padded_loss(forward, params):
    a, y, final = forward(x, a0, params, **options)
    return jnp.sum(ca * a) + jnp.sum(cy * y) + jnp.sum(final)


hand = jax.jit(jax.grad(lambda p: padded_loss(jaxrnn.rnn, p)))(params)
auto = jax.jit(jax.grad(lambda p: padded_loss(jaxrnn.rnn_autodiff, p)))(params)
print("masked, reverse: max |hand − autodiff| over all parameters:", max(error_of(hand, auto).values()))
short = jaxrnn.rnn(x[:, 1:2, :3][:, :, ::-1], a0[:, 1:2], params, layout="seed")[0][:, :, ::-1]  # example 1 alone
a_padded = jaxrnn.rnn(x, a0, params, **options)[0]
print("example 1 (length 3) alone vs in the batch:", float(jnp.max(jnp.abs(short - a_padded[:, 1:2, :3]))))
print("its padded outputs are zero:", bool(jnp.all(a_padded[:, 1, 3:] == 0)))

# %% [markdown]
# ## Checked live: against `jax.grad` and finite differences
#
# The same forward pass without the custom rule is `jaxrnn.rnn_autodiff` (or `rnn(..., gradient="autodiff")`):
# `jax.grad` of it is automatic differentiation, an independent computation of the same gradients. `jaxrnn.verify`
# compares, for a random loss $L = \sum c_a \odot a + \sum c_y \odot y$ (so both $\overline{a}_t$ and
# $\overline{y}_t$ are generic):
#
# - the gradient of every input through `rnn` with `jax.grad` of `rnn_autodiff` (relative error
#   $\max|g - g_\text{ref}| / \max|g_\text{ref}|$);
# - the directional derivative $\langle g, v \rangle$ along a random unit direction $v$ with the central finite
#   difference $(L(\theta + \varepsilon v) - L(\theta - \varepsilon v)) / 2\varepsilon$, $\varepsilon = 10^{-5}$,
#   relative to $\|g\|$.
#
# (`jaxrnn verify` runs the same checks on every local device, in float32 too.)

# %%
sizes = (n_x, n_a, n_y, m, T)
device = jax.devices()[0]
key = jax.random.PRNGKey(2)
checks = jaxrnn.verify.compare_with_autodiff(device, jnp.float64, sizes, key, "vanilla")
checks += jaxrnn.verify.compare_with_finite_differences(device, sizes, key)
print(jaxrnn.verify.format_table(checks))
print("all passed:", all(c.passed for c in checks))

# %% [markdown]
# The float64 agreement with `jax.grad` is at the level of rounding (~1e-16): the hand derivation and automatic
# differentiation compute the same function, in a different order. Finite differences agree to 1e-12 to 1e-10,
# the accuracy of the difference quotient itself.
#
# Each step of the derivation can also be checked on its own, against `jax.vjp` of the single operation
# (`jax.vjp(f, v)` returns $f(v)$ and the function $u \mapsto J^\top u$):

# %%
k1, k2 = jax.random.split(jax.random.PRNGKey(3))
o, dy = jax.random.normal(k1, (n_y, m), jnp.float64), jax.random.normal(k2, (n_y, m), jnp.float64)
error = lambda u, v: float(jnp.max(jnp.abs(u - v)))

y, softmax_vjp = jax.vjp(lambda o: jax.nn.softmax(o, axis=0), o)
print(
    "softmax:  max|J^T ȳ − y ⊙ (ȳ − y·ȳ)| =",
    error(softmax_vjp(dy)[0], y * (dy - jnp.sum(y * dy, axis=0, keepdims=True))),
)
a_t, tanh_vjp = jax.vjp(jnp.tanh, o)
print("tanh:     max|J^T δa − (1 − a²) ⊙ δa| =", error(tanh_vjp(dy)[0], (1 - a_t**2) * dy))
W, a_prev = jax.random.normal(k1, (n_y, n_y), jnp.float64), jax.random.normal(k2, (n_y, m), jnp.float64)
dW, da = jax.vjp(lambda W, a: W @ a, W, a_prev)[1](dy)
print("z = W a:  max|δW − δz aᵀ| =", error(dW, dy @ a_prev.T), "  max|δa − Wᵀ δz| =", error(da, W.T @ dy))

# %% [markdown]
# And a whole step of a cell, the unit the engine runs. A cell's forward step is a function of the carry before
# it, the input pre-activations `projected` $= W_{ax} x_t$, the recurrent product `hidden` $= W_{aa} h_{t-1}$ and
# the biases; `jax.vjp` of it, given $\partial L / \partial \mathrm{carry}_t$, returns one cotangent for each of
# them. Since `hidden` is an argument of its own, the carry's cotangent is exactly the backward step's `direct`
# (zero where it is None), `projected`'s is `d_input` and `hidden`'s is `d_hidden`; the biases' are the sums of
# `d_input` over the batch (and, for the GRU's `bhn`, of part of `d_hidden`). Then, through `cell_forward`,
# which computes `hidden` itself, the carry's cotangent must be the engine's `direct` $+ W_{aa}^\top$ `d_hidden`.
# The function below checks all of it on random rows; it is used again for the GRU and the LSTM.


# %%
def backward_step_errors(cell, params, m=3, seed=0):
    """max |hand − jax.vjp| for each result of `cell`'s backward step on one random step of `m` rows."""
    rng = np.random.default_rng(seed)
    normal = lambda *shape: jnp.asarray(rng.standard_normal(shape))
    n_a = params["Waa"].shape[1]
    previous = tuple(0.5 * normal(m, n_a) for _ in cell.carry)  # carry_{t-1}
    projected = normal(m, cell.gates * n_a)  # x_t Wax^T
    hidden = previous[0] @ params["Waa"].T  # h_{t-1} Waa^T
    biases = _forward.bias_rows(cell, params, jnp.float64)
    d_carry = tuple(normal(m, n_a) for _ in cell.carry)  # dL/dcarry_t

    # jax.vjp of the forward step, and of cell_forward (the step with its recurrent product)
    carry, residuals = cell.step(previous, projected, hidden, biases)
    step_vjp = jax.vjp(lambda *args: cell.step(*args)[0], previous, projected, hidden, biases)[1]
    d_previous, d_projected, d_hidden_auto, d_biases = step_vjp(d_carry)
    forward_vjp = jax.vjp(lambda c: _forward.cell_forward(cell, c, projected, params["Waa"].T, biases)[0], previous)[1]
    (d_previous_total,) = forward_vjp(d_carry)

    # the hand backward step, and the engine's gradient of the previous carry
    direct, d_input, d_hidden = cell.backward_step(carry, previous, residuals, d_carry)
    d_hidden = d_input if d_hidden is None else d_hidden
    direct = tuple(jnp.zeros_like(p) if d is None else d for d, p in zip(direct, previous))
    total = (direct[0] + d_hidden @ params["Waa"], *direct[1:])  # direct + Waa^T d_hidden
    bias_grads = {"ba": jnp.sum(d_input, axis=0)[:, None], **cell.extra_bias_gradients(d_hidden[None])}

    worst = lambda pairs: max(error(u, v) for u, v in pairs)
    return {
        "d_input": error(d_input, d_projected),
        "d_hidden": error(d_hidden, d_hidden_auto),
        "direct": worst(zip(direct, d_previous)),
        "direct + Waa^T d_hidden": worst(zip(total, d_previous_total)),
        "biases": worst((bias_grads[k], d_biases[k].T) for k in bias_grads),
    }


def print_errors(name, errors):
    print(f"{name:<8}" + "   ".join(f"{k} {v:.0e}" for k, v in errors.items()))


print_errors("vanilla", backward_step_errors(_cells.get("vanilla"), params))

# %% [markdown]
# ## The GRU: three gates on the same engine
#
# `cell="gru"` runs PyTorch's `nn.GRU` equations in its gate order: reset $r$, update $z$, new $n$. For one step,
# write $h$ for $h_{t-1}$ and $h'$ for $h_t$ (and, in this section, $z$ for the update gate, not the vanilla
# pre-activation):
#
# $$r = \sigma(W_{ir} x + W_{hr} h + b_r), \qquad z = \sigma(W_{iz} x + W_{hz} h + b_z),$$
# $$n = \tanh\big(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})\big), \qquad
#   h' = (1 - z) \odot n + z \odot h = n + z \odot (h - n).$$
#
# The parameters stack the three gates on the rows, so the engine still does one input product for all steps
# before the loop and one recurrent product per step: $W_{ax} = [W_{ir}; W_{iz}; W_{in}]$ $(3n_a \times n_x)$,
# $W_{aa} = [W_{hr}; W_{hz}; W_{hn}]$ $(3n_a \times n_a)$, $b_a = [b_r; b_z; b_{in}]$ $(3n_a)$, with PyTorch's two
# biases $b_{ir} + b_{hr}$ and $b_{iz} + b_{hz}$ merged, and a fourth parameter `bhn` $= b_{hn}$ $(n_a)$, which cannot
# be merged into $b_a$: the reset gate multiplies it. Call the three pre-activations $a_r, a_z, a_n$ (the arguments
# of $\sigma$, $\sigma$, $\tanh$). The step splits `projected + ba` and `hidden` into the three gates' blocks:

# %%
show(gru_cell._step)

# %% [markdown]
# **Residuals.** The step returns $r, z, n$ and $hn = W_{hn} h + b_{hn}$, and the engine keeps them for every step,
# one $(T, m, n_a)$ array each, beside the states. $r$, $z$ and $n$ give the derivatives of $\sigma$ and $\tanh$
# from their outputs, $\sigma' = \sigma(1 - \sigma)$ and $\tanh' = 1 - \tanh^2$, as $1 - a_t^2$ did for the vanilla
# cell. $hn$ is part of a matrix product's result: the backward needs it ($\partial a_n / \partial r = hn$), and
# keeping it costs one array where recomputing it would cost one more $n_a \times n_a$ product per step. ($n$ could
# in principle be recovered from $h' = (1 - z) \odot n + z \odot h$, but only by dividing by $1 - z$, which loses
# all accuracy as $z \to 1$.) The state before the step, $h$, is not a residual: it is the previous step's stored
# output, which the engine hands to the backward step as `previous` (the cell declares `uses_previous=True`).
#
# **Backward, gate by gate.** Let $g = \delta h'$ be the gradient reaching $h'$ by every path (the loss on $h'$,
# the head, and all later steps): the engine's $\partial L / \partial \mathrm{carry}_t$. Walk the step's lines
# backward:
#
# 1. $h' = n + z \odot (h - n)$ is linear in each of $n$, $z$, $h$ separately:
#    $\delta n = g \odot (1 - z)$, $\delta z = g \odot (h - n)$, and $h$ receives $z \odot g$ directly.
# 2. $n = \tanh(a_n)$: $\delta a_n = \delta n \odot (1 - n^2)$.
# 3. $a_n = (W_{in} x + b_{in}) + r \odot hn$: the input part receives $\delta a_n$ itself; $r$ receives
#    $\delta r = \delta a_n \odot hn$; and $hn = W_{hn} h + b_{hn}$ receives $r \odot \delta a_n$.
# 4. $z = \sigma(a_z)$ and $r = \sigma(a_r)$: $\delta a_z = \delta z \odot z(1 - z)$,
#    $\delta a_r = \delta r \odot r(1 - r)$; both pre-activations are plain sums of an input part and a recurrent
#    part, so each part receives the same gradient.
#
# Each line of the backward step is one of these, with its formula beside it:

# %%
show(gru_cell._backward_step)

# %% [markdown]
# **Why two gradient sums.** In the vanilla cell the input product and the recurrent product enter the
# pre-activation with the same coefficient, 1, so one $\delta z_t$ serves both sums:
# $\delta W_{ax} = \sum_t \delta z_t x_t^\top$ and $\delta W_{aa} = \sum_t \delta z_t a_{t-1}^\top$. The GRU's reset and
# update gates are like that; its new gate is not. By line 3, the input part $W_{in} x + b_{in}$ enters $a_n$ with
# coefficient 1 but the recurrent part $W_{hn} h + b_{hn}$ with coefficient $r$. So the backward step returns two
# gradients, which differ in their third block:
#
# - `d_input` $= [\delta a_r;\ \delta a_z;\ \delta a_n]$, the gradient of $W_{ax} x_t + b_a$, for
#   $\delta W_{ax} = \sum_t$ `d_input`$_t\, x_t^\top$, $\delta b_a$ and $\delta x_t = W_{ax}^\top$ `d_input`$_t$;
# - `d_hidden` $= [\delta a_r;\ \delta a_z;\ r \odot \delta a_n]$, the gradient of $W_{aa} h_{t-1}$, for
#   $\delta W_{aa} = \sum_t$ `d_hidden`$_t\, h_{t-1}^\top$, the carried $W_{aa}^\top$ `d_hidden`$_t$ and, since $b_{hn}$
#   sits beside $W_{hn} h$, $\delta b_{hn} = \sum_t \sum_i (r \odot \delta a_n)$, the third block of `d_hidden`:

# %%
show(gru_cell._extra_bias_gradients)

# %% [markdown]
# `weight_gradients` (step 5) already takes the two: one sum reads `d_hidden`, the others `d_input`. And $h$ reaches
# $h'$ by two paths, so its gradient has two parts: $z \odot g$ through $z \odot h$ (the step's `direct`), and
# $W_{aa}^\top$ `d_hidden` through all three gates' recurrent product, which the engine adds (step 4):
#
# $$\delta h_{t-1} = \underbrace{\overline{h}_{t-1} + W_{ya}^\top \delta o_{t-1}}_{\text{outside}}
#   + z_t \odot \delta h_t + W_{aa}^\top\, \texttt{d\_hidden}_t .$$
#
# Checked live, first one step against `jax.vjp` of the GRU's forward step. The last line shows what the two
# sums are for: `d_input` in place of `d_hidden` is wrong, and only in the new gate's block.

# %%
n_x, n_a, n_y, m, T = 3, 5, 4, 3, 6
gru = _cells.get("gru")
gru_params = jaxrnn.init_parameters(
    jax.random.PRNGKey(4), n_x, n_a, n_y, jnp.float64, cell="gru", initialization="pytorch"
)
print({k: v.shape for k, v in gru_params.items()})
print_errors("gru", backward_step_errors(gru, gru_params))

rng = np.random.default_rng(5)
h_prev, projected = jnp.asarray(rng.standard_normal((m, n_a))), jnp.asarray(rng.standard_normal((m, 3 * n_a)))
biases, d_carry = _forward.bias_rows(gru, gru_params, jnp.float64), (jnp.asarray(rng.standard_normal((m, n_a))),)
hidden = h_prev @ gru_params["Waa"].T
(h_next,), residuals = gru.step((h_prev,), projected, hidden, biases)
_, d_input, d_hidden = gru.backward_step((h_next,), (h_prev,), residuals, d_carry)
d_hidden_auto = jax.vjp(lambda hidden: gru.step((h_prev,), projected, hidden, biases)[0], hidden)[1](d_carry)[0]
blocks = lambda v: np.split(np.asarray(v), 3, axis=1)  # the r, z, n blocks of (m, 3 n_a)
wrong = [error(u, v) for u, v in zip(blocks(d_input), blocks(d_hidden_auto))]
print("d_input used as d_hidden: max error in the blocks r, z, n:", ", ".join(f"{e:.1e}" for e in wrong))

# %% [markdown]
# Then the whole layer, in float64: `jax.grad` through `rnn(..., cell="gru")` with the hand-derived backward
# (`gradient="hand"`, the default) against `gradient="autodiff"`, and against central finite differences along a
# random unit direction per argument, for a loss on the states, the predictions and the final state. The batch is
# padded (lengths 6, 3 and 0), so the masks are exercised too. The function is used again for the LSTM.


# %%
def layer_checks(cell, x, carry0, params, step=1e-5, seed=6, **options):
    """Per argument of `rnn(x, carry0, params, cell=cell, **options)`: the relative error of the hand gradient
    against autodiff (max|g − g_auto| / max|g_auto|) and against a central finite difference along a random unit
    direction v (|⟨g, v⟩ − FD| / ‖g‖), for L = Σ c ⊙ (every output, the final state included)."""
    rng = np.random.default_rng(seed)
    forward = lambda gradient, args: jaxrnn.rnn(
        *args, cell=cell, layout="seed", gradient=gradient, return_final_state=True, **options
    )
    args = (x, carry0, params)
    weights = jax.tree.map(lambda v: jnp.asarray(rng.standard_normal(v.shape)), forward("autodiff", args))
    loss_of = lambda gradient: (
        lambda args: sum(
            jnp.vdot(c, v) for c, v in zip(jax.tree.leaves(weights), jax.tree.leaves(forward(gradient, args)))
        )
    )
    hand = jax.tree.leaves(jax.jit(jax.grad(loss_of("hand")))(args))
    auto = jax.tree.leaves(jax.jit(jax.grad(loss_of("autodiff")))(args))
    loss = jax.jit(loss_of("hand"))
    leaves, tree = jax.tree.flatten(args)
    names = ["x", *(f"{part}0" for part in _cells.get(cell).carry), *sorted(params)]  # jax.tree's order
    rows = [f"{'':<5}{'vs autodiff':>12}{'vs finite diff':>16}"]
    for i, (name, g, g_auto) in enumerate(zip(names, hand, auto)):
        v = jnp.asarray(rng.standard_normal(g.shape))
        v = v / jnp.linalg.norm(v)
        shifted = [tree.unflatten([*leaves[:i], leaves[i] + s * step * v, *leaves[i + 1 :]]) for s in (1.0, -1.0)]
        finite_difference = (loss(shifted[0]) - loss(shifted[1])) / (2 * step)
        against_autodiff = float(jnp.max(jnp.abs(g - g_auto)) / jnp.max(jnp.abs(g_auto)))
        against_differences = float(jnp.abs(jnp.vdot(g, v) - finite_difference) / jnp.linalg.norm(g))
        rows.append(f"{name:<5}{against_autodiff:>12.1e}{against_differences:>16.1e}")
    print("\n".join(rows))


x = jax.random.normal(jax.random.PRNGKey(7), (n_x, m, T), jnp.float64)
h0 = 0.5 * jax.random.normal(jax.random.PRNGKey(8), (n_a, m), jnp.float64)
lengths = jnp.array([T, 3, 0])
layer_checks("gru", x, h0, gru_params, seq_lengths=lengths)

# %% [markdown]
# ## The LSTM: a second carried gradient
#
# `cell="lstm"` runs PyTorch's `nn.LSTM` equations in its gate order: input $i$, forget $f$, cell $g$, output $o$.
# The carry is a pair, the hidden state $h$ (the output) and the cell state $c$; `a0` is a pair `(h0, c0)` and the
# final state a `jaxrnn.LSTMState(h, c)`. For one step, with $a = W_{ax} x + W_{aa} h + b_a$ split into four
# blocks $a_i, a_f, a_g, a_o$ (and, in this section, $g$ for the cell gate, not a gradient):
#
# $$i = \sigma(a_i), \quad f = \sigma(a_f), \quad g = \tanh(a_g), \quad o = \sigma(a_o), \qquad
#   c' = f \odot c + i \odot g, \qquad h' = o \odot \tanh(c').$$
#
# $W_{ax}$ $(4n_a \times n_x)$, $W_{aa}$ $(4n_a \times n_a)$ and $b_a$ $(4n_a)$, PyTorch's $b_{ih} + b_{hh}$, stack the
# four gates; every gate's pre-activation is a plain sum, so one product per step serves all four:

# %%
show(lstm_cell._step)

# %% [markdown]
# **Residuals.** The step returns the four gates $i, f, g, o$: the derivatives of $\sigma$ and $\tanh$ come from
# them, and each gate multiplies another in $c'$ or $h'$. The engine keeps the carries $(h', c')$ of every step
# anyway ($h'$ is the output; $c'$ is the next step's $c$) and gives the backward step the carry before it,
# `previous` $= (h, c)$. $\tanh(c')$ is recomputed in the backward step, one elementwise $\tanh$, rather than kept:
# one $(T, m, n_a)$ array less. Per step the LSTM keeps 6 arrays of $(m, n_a)$, the GRU 5 and the vanilla cell 1:

# %%
for name in _cells.CELL_NAMES:
    cell = _cells.get(name)
    cell_params = jaxrnn.init_parameters(jax.random.PRNGKey(0), n_x, n_a, None, jnp.float64, cell=name)
    start = tuple(jnp.zeros((m, n_a)) for _ in cell.carry)
    carries, residuals, _ = _forward.hidden_states(
        cell, jnp.zeros((T, m, n_x)), start, cell_params, None, reverse=False
    )
    print(f"{name:<8} carries {[v.shape for v in carries]}  residuals {[v.shape for v in residuals]}")

# %% [markdown]
# **Backward, gate by gate.** The engine's carried gradient is now a pair. Let $g_h = \delta h'$ be the gradient
# reaching $h'$ by every path, and $g_c$ the gradient reaching $c'$ by every path *except* through $h'$: through the
# next step's $c'' = f'' \odot c' + \dots$, and through the final state when $c'$ is the last one. $c$ is not an
# output, so no outside term is added to it: in `recurrent_backward`, `d_carry = (da_t + d_future[0],
# *d_future[1:])` adds the loss's $\overline{h}_t$ to the $h$ part only. Walk the step's lines backward:
#
# 1. $h' = o \odot \tanh(c')$: $\delta o = g_h \odot \tanh(c')$, and $c'$ receives
#    $g_h \odot o \odot (1 - \tanh^2(c'))$. Together with the path through the next step, all that reaches $c'$ is
#    $$\delta c' = g_c + g_h \odot o \odot (1 - \tanh^2(c')).$$
# 2. $c' = f \odot c + i \odot g$, linear in each factor: $\delta i = \delta c' \odot g$,
#    $\delta f = \delta c' \odot c$, $\delta g = \delta c' \odot i$, and the previous cell state receives
#    $\delta c = \delta c' \odot f$ directly: the second carried gradient.
# 3. Through the nonlinearities: $\delta a_i = \delta i \odot i(1 - i)$, $\delta a_f = \delta f \odot f(1 - f)$,
#    $\delta a_g = \delta g \odot (1 - g^2)$, $\delta a_o = \delta o \odot o(1 - o)$.
# 4. Every gate's pre-activation is a plain sum: `d_input` $=$ `d_hidden` $= [\delta a_i; \delta a_f; \delta a_g;
#    \delta a_o]$, one sum as for the vanilla cell. $h$ reaches the step only through the product $W_{aa} h$, so
#    `direct` $= (\text{None}, \delta c' \odot f)$, and the engine adds $W_{aa}^\top$ `d_hidden` to the $h$ part.

# %%
show(lstm_cell._backward_step)

# %% [markdown]
# So two gradients travel back in time: $\delta h_{t-1} = \overline{h}_{t-1} + W_{ya}^\top \delta o_{t-1} +
# W_{aa}^\top\, \texttt{d\_hidden}_t$, through a matrix product and the gates' derivatives as in the vanilla cell,
# and $g_c \leftarrow \delta c'_t \odot f_t$, elementwise, through no matrix and no squashing derivative. With $f_t$
# near 1 the cell state's gradient passes many steps almost unchanged: the reason an LSTM remembers further back
# than a vanilla RNN (and why `init_parameters` starts the forget gate's bias at 1). At a padded step the engine
# freezes both parts of the carry and passes both gradients through unchanged: for the example of length 0 below,
# every step is padding, the final state is $(h_0, c_0)$, and $\partial L / \partial h_0$ and
# $\partial L / \partial c_0$ are exactly the weights of the final state's two parts in the loss.
#
# Checked live: one step against `jax.vjp`, then the whole layer, padded and in reverse, against autodiff and
# finite differences.

# %%
lstm = _cells.get("lstm")
lstm_params = jaxrnn.init_parameters(
    jax.random.PRNGKey(9), n_x, n_a, n_y, jnp.float64, cell="lstm", initialization="pytorch"
)
print({k: v.shape for k, v in lstm_params.items()})
print_errors("lstm", backward_step_errors(lstm, lstm_params))
c0 = 0.5 * jax.random.normal(jax.random.PRNGKey(10), (n_a, m), jnp.float64)
layer_checks("lstm", x, (h0, c0), lstm_params, seq_lengths=lengths, reverse=True)

# %%
w_h, w_c = jax.random.normal(jax.random.PRNGKey(11), (2, n_a, m), jnp.float64)


def final_state_loss(h0, c0):
    """L = Σ w_h ⊙ h_final + Σ w_c ⊙ c_final: only the final state's two parts are weighed."""
    _, _, final = jaxrnn.rnn(
        x, (h0, c0), lstm_params, cell="lstm", layout="seed", seq_lengths=lengths, return_final_state=True
    )
    return jnp.sum(w_h * final.h) + jnp.sum(w_c * final.c)


dh0, dc0 = jax.jit(jax.grad(final_state_loss, argnums=(0, 1)))(h0, c0)
print(
    "example 2, length 0:  max|dL/dh0 − w_h| =",
    error(dh0[:, 2], w_h[:, 2]),
    "  max|dL/dc0 − w_c| =",
    error(dc0[:, 2], w_c[:, 2]),
)

# %% [markdown]
# All three cells agree with automatic differentiation at float64 rounding and with finite differences at the
# accuracy of the difference quotient. Forward mode, the tangent steps $\dot r, \dot z, \dot n$ and
# $\dot i, \dot f, \dot g, \dot o, \dot c, \dot h$ that each cell also brings, is derived and checked in
# [notebook 4](04_forward_and_reverse.ipynb).
