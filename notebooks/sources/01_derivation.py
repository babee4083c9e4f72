# %% [markdown]
# # 1. Deriving the backward pass of a vanilla RNN
#
# This notebook derives, one step at a time, the gradients that `jaxrnn` computes by hand, shows each formula next
# to the code that computes it, and then checks every one of them live: against `jax.grad` (automatic
# differentiation) and against finite differences. The same derivation, as one page of math, is in
# [`docs/derivation.md`](../docs/derivation.md).
#
# You need calculus (the chain rule, for vectors) and a little numpy. No JAX knowledge is assumed: wherever JAX
# appears, the text says what it does.

# %%
import inspect

import jax
import jax.numpy as jnp
import numpy as np
from IPython.display import Markdown, display

import jaxrnn
import jaxrnn._backward
import jaxrnn._forward
import jaxrnn._heads
import jaxrnn.verify

# Float64 throughout this notebook, so that agreement shows at the level of float64 rounding (~1e-16).
# (A notebook may switch JAX's global configuration; the jaxrnn library never does.)
jax.config.update("jax_enable_x64", True)


def show(function):
    """Displays the source code of a jaxrnn function, as it is in the installed package."""
    display(Markdown(f"```python\n{inspect.getsource(function).rstrip()}\n```"))


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
# `x` is `(n_x, m, T)`, `a0` is `(n_a, m)`, and `rnn` returns `a (n_a, m, T)` and `y (n_y, m, T)`.
#
# In the code, the input term $W_{ax} x_t$ is computed for all steps at once, before the loop; the loop
# (`jax.lax.scan`, JAX's compiled for-loop: it calls `step(carry, x_t)` for each t and stacks the outputs) then
# does only the recurrent product, the bias and the tanh. The code stores each step as an `(m, n)` block of *row*
# vectors (one row per example), so $W_{aa} a_{t-1}$ appears as the product of `a_prev` with $W_{aa}^\top$: the
# same numbers, transposed. The comment next to each line gives the formula in the column-vector form used here.

# %%
show(jaxrnn._forward.project_inputs)
show(jaxrnn._forward.cell_step)
show(jaxrnn._forward.hidden_states)
show(jaxrnn._heads.predictions)

# %%
n_x, n_a, n_y, m, T = 3, 5, 4, 2, 6
k_params, k_x, k_a0, k_ca, k_cy = jax.random.split(jax.random.PRNGKey(0), 5)
params = jaxrnn.init_parameters(k_params, n_x, n_a, n_y, jnp.float64)
x = jax.random.normal(k_x, (n_x, m, T), jnp.float64)
a0 = 0.5 * jax.random.normal(k_a0, (n_a, m), jnp.float64)
a, y = jax.jit(jaxrnn.rnn)(x, a0, params)  # jax.jit compiles the whole call once
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
show(jaxrnn._backward.softmax_backward)

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
# `logits_backward` does (the comment by each line is the formula; the code applies it to row blocks):

# %%
show(jaxrnn._backward.logits_backward)

# %% [markdown]
# ## Step 3: tanh
#
# $a_t = \tanh(z_t)$ elementwise, and $\tanh'(z) = 1 - \tanh^2(z)$, so the Jacobian is the diagonal matrix
# $\mathrm{diag}(1 - a_t^2)$ and
#
# $$\delta z_t = (1 - a_t \odot a_t) \odot \delta a_t .$$
#
# The derivative is written with the *output* $a_t$, which the forward pass stored anyway: nothing else about
# $z_t$ needs to be kept. The same holds for ReLU, $a_t = \max(0, z_t)$: its derivative is
# $\mathbf{1}[z_t > 0] = \mathbf{1}[a_t > 0]$, so `nonlinearity="relu"` changes only this one factor.
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
# with respect to the initial state. Only the carried term $W_{aa}^\top \delta z_{t+1}$ and the tanh derivative
# depend on the previous backward step; everything else can be computed for all steps at once. So the reverse loop
# (`jax.lax.scan(..., reverse=True)`) contains just this:

# %%
show(jaxrnn._backward.cell_backward_step)
show(jaxrnn._backward.recurrent_backward)

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
# product over all stacked $\delta z_t$:

# %%
show(jaxrnn._backward.weight_gradients)

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
    a, y = jaxrnn.rnn(x, a0, params)
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
# steps 3 and 4, then the sums of step 5.

# %%
show(jaxrnn._backward.sequence_backward)
show(jaxrnn._backward.hidden_backward)

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
# step is the same code, and `lengths=None` skips the mask statically. `reverse=True` runs the same recurrence from
# $t = T$ down to 1; padded steps then come *first*, so the carry stays $a_0$ through them and each sequence is
# read from its last valid step back (its backward walks forward in time). The one place the direction shows in
# the weight gradients is "the state before step $t$", $a_{t+1}$ in reverse, or $a_0$ for the last valid step:

# %%
show(jaxrnn._forward.masked_step)
show(jaxrnn._backward.previous_states)

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
options = {"seq_lengths": lengths, "reverse": True, "return_final_state": True}


def padded_loss(forward, params):
    a, y, final = forward(x, a0, params, **options)
    return jnp.sum(ca * a) + jnp.sum(cy * y) + jnp.sum(final)


hand = jax.jit(jax.grad(lambda p: padded_loss(jaxrnn.rnn, p)))(params)
auto = jax.jit(jax.grad(lambda p: padded_loss(jaxrnn.rnn_autodiff, p)))(params)
print("masked, reverse: max |hand − autodiff| over all parameters:", max(error_of(hand, auto).values()))
short = jaxrnn.rnn(x[:, 1:2, :3][:, :, ::-1], a0[:, 1:2], params)[0][:, :, ::-1]  # example 1 alone, flipped
a_padded = jaxrnn.rnn(x, a0, params, **options)[0]
print("example 1 (length 3) alone vs in the batch:", float(jnp.max(jnp.abs(short - a_padded[:, 1:2, :3]))))
print("its padded outputs are zero:", bool(jnp.all(a_padded[:, 1, 3:] == 0)))

# %% [markdown]
# ## Checked live: against `jax.grad` and finite differences
#
# The same forward pass without the custom rule is `jaxrnn.rnn_autodiff`: `jax.grad` of it is automatic
# differentiation, an independent computation of the same gradients. `jaxrnn.verify` compares, for a random
# loss $L = \sum c_a \odot a + \sum c_y \odot y$ (so both $\overline{a}_t$ and $\overline{y}_t$ are generic):
#
# - the gradient of every input through `rnn` with `jax.grad` of `rnn_autodiff` (relative error
#   $\max|g - g_\text{ref}| / \max|g_\text{ref}|$);
# - the directional derivative $\langle g, v \rangle$ along a random unit direction $v$ with the central finite
#   difference $(L(\theta + \varepsilon v) - L(\theta - \varepsilon v)) / 2\varepsilon$, $\varepsilon = 10^{-6}$.
#
# (`jaxrnn verify` runs the same checks on every local device, in float32 too.)

# %%
sizes = (n_x, n_a, n_y, m, T)
device = jax.devices()[0]
key = jax.random.PRNGKey(2)
checks = jaxrnn.verify.compare_with_autodiff(device, jnp.float64, sizes, key)
checks += jaxrnn.verify.compare_with_finite_differences(device, sizes, key)
print(jaxrnn.verify.format_table(checks))
print("all passed:", all(c.passed for c in checks))

# %% [markdown]
# The float64 agreement with `jax.grad` is at the level of rounding (~1e-15): the hand derivation and automatic
# differentiation compute the same function, in a different order. Finite differences agree to ~1e-9, the
# accuracy of the difference quotient itself.
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
