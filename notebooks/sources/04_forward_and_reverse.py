# %% [markdown]
# # 4. Forward and reverse: tangents through time beside backpropagation through time
#
# Notebooks 1–3 differentiate the RNN in reverse mode: one backward pass gives the derivative of *one scalar*
# with respect to *every* input. Forward mode answers the transposed question: if every input moves along
# one direction, how does *every* output move? This notebook derives the forward-mode derivative of the RNN by
# hand, next to the code of `jaxrnn.rnn_jvp` that computes it, for the vanilla cell and then for the GRU and the
# LSTM, gate by gate; follows it to its limit, real-time recurrent learning (RTRL), which carries the whole Jacobian
# forward; and measures forward and reverse mode side by side on this machine. The math, as one page, is the last
# section of [`docs/derivation.md`](../docs/derivation.md).
#
# `jaxrnn.rnn_jvp(primals, tangents, **options)` has the call and the result of
# `jax.jvp(jaxrnn.rnn_autodiff, primals, tangents)`: `primals = (x, a0, parameters)`, `tangents` one array
# per primal, and it returns `((a, y), (ȧ, ẏ))`. Every call here names its layout: `layout="seed"`
# (`x (n_x, m, T)`), or `"time_major"`. A dot marks a tangent: $\dot u$ is the rate at which $u$ changes as the
# inputs move along the direction, $\dot u = \frac{d}{d\varepsilon} u(\theta + \varepsilon
# \dot\theta)\big|_{\varepsilon = 0}$.

# %%
import importlib
import inspect

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

import jaxrnn
from jaxrnn import _cells, _forward, _jvp
from jaxrnn._measure import interleaved_timings

# The three cells' modules. (`jaxrnn._cells` re-exports a function named `vanilla`, which hides the module of that
# name from `from jaxrnn._cells import vanilla`; importlib returns the modules themselves.)
vanilla_cell, gru_cell, lstm_cell = (importlib.import_module(f"jaxrnn._cells.{name}") for name in _cells.CELL_NAMES)

plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "font.size": 9})
device = jax.devices()[0]
print(f"device: {device.platform} ({device.device_kind}), jax {jax.__version__}")


def show(function):
    """Displays the source code of a jaxrnn function, as it is in the installed package."""
    function = getattr(function, "func", function)  # a functools.partial: its function
    display(Markdown(f"```python\n{inspect.getsource(function).rstrip()}\n```"))


def relative_error(actual, reference):
    actual, reference = np.asarray(actual, np.float64), np.asarray(reference, np.float64)
    return float(np.max(np.abs(actual - reference)) / np.max(np.abs(reference)))


def random_problem(n_x, n_a, n_y, m, T, dtype, seed=0):
    """Random `(x, a0, parameters)` (seed layout, orthogonal Waa, non-zero biases) and loss weights `(ca, cy)`.

    Drawn with numpy: eager JAX would compile each random op anew for every new shape.
    """
    rng = np.random.default_rng(seed)
    normal = lambda *shape, scale=1.0: jnp.asarray(scale * rng.standard_normal(shape), dtype)
    params = {
        "Wax": normal(n_a, n_x, scale=n_x**-0.5),
        "Waa": jnp.asarray(np.linalg.qr(rng.standard_normal((n_a, n_a)))[0], dtype),
        "ba": normal(n_a, 1, scale=0.1),
        "Wya": normal(n_y, n_a, scale=n_a**-0.5),
        "by": normal(n_y, 1, scale=0.1),
    }
    x, a0 = normal(n_x, m, T), normal(n_a, m, scale=0.5)
    return (x, a0, params), (normal(n_a, m, T), normal(n_y, m, T))


def random_direction(tree, seed=1):
    """A random tangent for every array of `tree`: same shapes and dtypes, normal entries."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda v: jnp.asarray(rng.standard_normal(v.shape), v.dtype), tree)


# %% [markdown]
# ## 1. The derivative along a direction, step by step
#
# The forward pass, as in notebook 1: $z_t = W_{aa} a_{t-1} + W_{ax} x_t + b_a$, $a_t = \tanh(z_t)$,
# $o_t = W_{ya} a_t + b_y$, $y_t = \mathrm{softmax}(o_t)$. A direction gives every input a tangent:
# $\dot x_t, \dot a_0, \dot W_{ax}, \dot W_{aa}, \dot b_a, \dot W_{ya}, \dot b_y$. Differentiate each line along it.
#
# **Step 1, the pre-activation.** $z_t$ is a sum of products, so the product rule gives one term per factor that
# moves:
#
# $$\dot z_t = \dot W_{aa}\, a_{t-1} + W_{aa}\, \dot a_{t-1} + \dot W_{ax}\, x_t + W_{ax}\, \dot x_t + \dot b_a .$$
#
# **Step 2, tanh.** Elementwise, with $\tanh' = 1 - \tanh^2$ written through the state itself:
#
# $$\dot a_t = (1 - a_t \odot a_t) \odot \dot z_t \qquad (\text{relu: } \mathbf 1[a_t > 0] \odot \dot z_t).$$
#
# This is the diagonal Jacobian of notebook 1's step 3, applied to a tangent instead of transposed onto a
# cotangent.
#
# **Step 3, the recurrence runs forward.** $\dot a_t$ needs $\dot a_{t-1}$ and $a_{t-1}$, both known when step
# $t$ runs. So the tangent rides along with the forward pass, in the same loop, from the given $\dot a_0$, and
# nothing is kept for later: forward mode has no residuals. Two of the five terms depend on the step before,
# $W_{aa} \dot a_{t-1}$ and $\dot W_{aa} a_{t-1}$: they are in the loop, next to the forward's own $W_{aa} a_{t-1}$.
# The other three do not: $\dot W_{ax} x_t + W_{ax} \dot x_t + \dot b_a$ is computed for all steps before the loop,
# each product over all $T m$ rows at once, as the forward pass computes $W_{ax} x_t$.
#
# **Step 4, the output.** $\dot o_t = \dot W_{ya} a_t + W_{ya} \dot a_t + \dot b_y$, and softmax's Jacobian
# $J = \mathrm{diag}(y_t) - y_t y_t^\top$ gives
#
# $$\dot y_t = J \dot o_t = y_t \odot \big(\dot o_t - (y_t \cdot \dot o_t)\,\mathbf 1\big),$$
#
# the backward's $\delta o_t$ formula with $\dot o_t$ in place of $\bar y_t$ ($J$ is symmetric). It needs every
# $\dot a_t$, so it runs after the loop, as products over all rows.
#
# **Step 5, padded steps** (`seq_lengths`). A padded step keeps the state and outputs zero:
# $\mathrm{carry}_t = v_t f(z_t) + (1 - v_t)\, \mathrm{carry}_{t-1}$ and $a_t = v_t f(z_t)$, with $v_t \in \{0, 1\}$
# set by the integer lengths, which have no tangent. Differentiating, $\dot{\mathrm{carry}}_t = v_t \dot a_t +
# (1 - v_t)\, \dot{\mathrm{carry}}_{t-1}$: the tangent is frozen too; the output's tangent is $v_t \dot a_t$, zero
# at a padded step; and $\dot y_t = 0$ there because $y_t = 0$. With `reverse=True` the same loop runs from the
# last step down.
#
# In the code, the loop belongs to the engine and is the same for every cell: it computes the drive
# $\dot W_{ax} x_t + W_{ax} \dot x_t + \dot b_a$ before the loop and, inside it, `hidden_dot`
# $= W_{aa} \dot a_{t-1} + \dot W_{aa} a_{t-1}$ beside the forward's $W_{aa} a_{t-1}$; the sum of the two is
# $\dot z_t$. The cell's tangent step does the rest, here step 2; `masked_step`, the forward's, applied to the
# tangents, does step 5. With the comment by each line giving its formula:

# %%
show(_jvp.states_and_tangents)
show(vanilla_cell._tangent_step)
show(_jvp.prediction_tangents)

# %% [markdown]
# `rnn_jvp` checks the primals as `rnn` does, checks that the tangents have the primals' structure, shapes and
# dtypes, and calls these two. Checked live, in float64, on a batch with one padded sequence: against `jax.jvp`
# of `rnn_autodiff` (automatic differentiation of the same forward pass) and against a central finite
# difference $(F(\theta + \varepsilon \dot\theta) - F(\theta - \varepsilon \dot\theta)) / 2\varepsilon$ of the
# outputs themselves, which knows nothing about derivatives:

# %%
with jax.enable_x64(True):
    n_x, n_a, n_y, m, T = 3, 5, 4, 2, 6
    (x, a0, params), (c, _) = random_problem(n_x, n_a, n_y, m, T, jnp.float64)
    primals = (x, a0, params)
    direction = random_direction(primals)
    options = dict(seq_lengths=jnp.array([6, 4]), return_final_state=True, layout="seed")

    outputs, hand = jax.jit(lambda p, v: jaxrnn.rnn_jvp(p, v, **options))(primals, direction)
    _, autodiff = jax.jit(lambda p, v: jax.jvp(lambda *q: jaxrnn.rnn_autodiff(*q, **options), p, v))(primals, direction)
    moved = jax.jit(lambda p, v, s: jaxrnn.rnn_autodiff(*jax.tree.map(lambda p, v: p + s * v, p, v), **options))
    step = 1e-6
    plus, minus = moved(primals, direction, step), moved(primals, direction, -step)
    differences = [(p - q) / (2 * step) for p, q in zip(plus, minus)]
    for name, h, a, d in zip(("ȧ", "ẏ", "ȧ_final"), hand, autodiff, differences):
        print(
            f"{name:<8} relative error against jax.jvp: {relative_error(h, a):.1e}"
            f"   against finite differences: {relative_error(h, d):.1e}"
        )
    padded = lambda v: np.asarray(v[:, 1, 4:]).ravel()  # example 1 has length 4: steps t = 5, 6 are padding
    print("tangents at the padded steps of example 1: ȧ =", padded(hand[0]), " ẏ =", padded(hand[1]))

# %% [markdown]
# Agreement with `jax.jvp` is at float64 rounding; with finite differences, at the accuracy of the difference
# quotient itself (1e-11 to 1e-10 here). `rnn_jvp` is a plain function of arrays, so `jax.vmap` maps it over many
# directions at once: mapped over a basis of the inputs' directions, it gives a Jacobian column by column, all
# columns in one pass, which is what `jax.jacfwd` computes (the test suite checks that the two agree). Section 2
# uses exactly that.

# %% [markdown]
# ### The GRU and the LSTM, tangent by tangent
#
# Nothing in the loop above names a cell. For every cell the engine hands the tangent step the same two sums, for
# all gates at once: the drive $\dot W_{ax} x_t + W_{ax} \dot x_t + \dot b_a$ and `hidden_dot`
# $= W_{aa} \dot h_{t-1} + \dot W_{aa} h_{t-1}$, where $h$ is the hidden state, the first part of the carry. Each
# gate's pre-activation $a_\cdot$ (notebook 1 has the equations) has the tangent $\dot a_\cdot = \text{drive}_\cdot +
# \text{hidden\_dot}_\cdot$, except where a gate multiplies a recurrent term; the cell's tangent step differentiates
# the rest of its step, line by line, with the product rule and $\sigma' = \sigma(1 - \sigma)$,
# $\tanh' = 1 - \tanh^2$ written through the gates' values. Those values are the forward step's residuals, computed a
# moment earlier in the same loop iteration: forward mode keeps nothing for later. Below, $h$ and $c$ are the carry
# before the step, $h'$ and $c'$ after it.
#
# **GRU.** The reset and update gates are plain: $\dot r = r(1 - r) \odot \dot a_r$, $\dot z = z(1 - z) \odot \dot a_z$.
# The new gate is not: $a_n = (W_{in} x + b_{in}) + r \odot hn$ with $hn = W_{hn} h + b_{hn}$, so by the product rule
#
# $$\dot{hn} = \text{hidden\_dot}_n + \dot b_{hn}, \qquad \dot n = (1 - n^2) \odot \big(\text{drive}_n + \dot r \odot hn
#   + r \odot \dot{hn}\big),$$
#
# the backward's two sums (notebook 1) seen from the other side: the drive enters $a_n$ with coefficient 1, the
# recurrent part, $b_{hn}$ with it, with coefficient $r$. Then $h' = (1 - z) \odot n + z \odot h$ gives
#
# $$\dot h' = (1 - z) \odot \dot n + \dot z \odot (h - n) + z \odot \dot h .$$
#
# **LSTM.** Four plain gates, $\dot i = i(1 - i) \odot \dot a_i$, $\dot f = f(1 - f) \odot \dot a_f$,
# $\dot g = (1 - g^2) \odot \dot a_g$, $\dot o = o(1 - o) \odot \dot a_o$, and the product rule on
# $c' = f \odot c + i \odot g$ and $h' = o \odot \tanh(c')$:
#
# $$\dot c' = \dot f \odot c + f \odot \dot c + \dot i \odot g + i \odot \dot g, \qquad
#   \dot h' = \dot o \odot \tanh(c') + o \odot \big(1 - \tanh^2(c')\big) \odot \dot c' .$$
#
# The carry's tangent is a pair $(\dot h, \dot c)$, carried forward as the backward carries $(\delta h, \delta c)$
# back; at a padded step the engine freezes both parts, as it freezes $(h, c)$.

# %%
show(gru_cell._tangent_step)
show(lstm_cell._tangent_step)

# %% [markdown]
# Checked live in float64, first one step: a cell's forward step is a function of the carry before it, the input
# product `projected` $= W_{ax} x_t$, the recurrent product `hidden` $= W_{aa} h_{t-1}$ and the biases, and
# `jax.jvp` of it along random tangents of all four must equal the tangent step given `drive` $=$ the tangent of
# `projected` plus $\dot b_a$, and `hidden_dot` $=$ the tangent of `hidden`. Then the whole layer: `rnn_jvp(...,
# cell=...)` against `jax.jvp` of `rnn_autodiff` and against central finite differences of the outputs, on a
# padded batch (lengths 6, 3 and 0), the LSTM in reverse.


# %%
def tangent_step_error(cell, params, m=3, seed=0):
    """max |hand − jax.jvp| over the parts of the carry's tangent, for one step of `cell` on random rows."""
    rng = np.random.default_rng(seed)
    normal = lambda *shape: jnp.asarray(rng.standard_normal(shape))
    n_a, width = params["Waa"].shape[1], params["Waa"].shape[0]
    previous = tuple(0.5 * normal(m, n_a) for _ in cell.carry)
    projected, hidden = normal(m, width), previous[0] @ params["Waa"].T
    biases = _forward.bias_rows(cell, params, jnp.float64)
    tangents = (tuple(normal(m, n_a) for _ in cell.carry), normal(m, width), normal(m, width))
    tangents += (jax.tree.map(lambda b: normal(*b.shape), biases),)
    previous_dot, projected_dot, hidden_dot, biases_dot = tangents

    new, residuals = cell.step(previous, projected, hidden, biases)
    _, by_jvp = jax.jvp(lambda *args: cell.step(*args)[0], (previous, projected, hidden, biases), tangents)
    drive = projected_dot + biases_dot["ba"]  # Ẇax x_t + Wax ẋ_t + ḃa
    by_hand = cell.tangent_step(previous, previous_dot, new, residuals, drive, hidden_dot, biases_dot)
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(by_hand, by_jvp))


def layer_jvp_errors(cell, primals, step=1e-6, **options):
    """rnn_jvp(..., cell=cell) against jax.jvp of rnn_autodiff and central finite differences, output by output."""
    options = dict(options, cell=cell, layout="seed", return_final_state=True)
    direction = random_direction(primals)
    hand = jax.jit(lambda p, v: jaxrnn.rnn_jvp(p, v, **options))(primals, direction)[1]
    autodiff = jax.jit(lambda p, v: jax.jvp(lambda *q: jaxrnn.rnn_autodiff(*q, **options), p, v))(primals, direction)[1]
    moved = jax.jit(lambda p, v, s: jaxrnn.rnn_autodiff(*jax.tree.map(lambda p, v: p + s * v, p, v), **options))
    plus, minus = moved(primals, direction, step), moved(primals, direction, -step)
    differences = jax.tree.map(lambda p, q: (p - q) / (2 * step), plus, minus)
    names = ("ḣ", "ẏ", "ḣ_final", "ċ_final")  # the outputs, then the final carry's parts (an LSTM's two)
    for name, h, a, d in zip(names, *map(jax.tree.leaves, (hand, autodiff, differences))):
        print(
            f"  {name:<9} relative error against jax.jvp: {relative_error(h, a):.1e}"
            f"   against finite differences: {relative_error(h, d):.1e}"
        )


with jax.enable_x64(True):
    rng = np.random.default_rng(3)
    n_x, n_a, n_y, m, T = 3, 5, 4, 3, 6
    inputs = jnp.asarray(rng.standard_normal((n_x, m, T)))  # seed layout
    start = lambda: jnp.asarray(0.5 * rng.standard_normal((n_a, m)))
    lengths = jnp.array([6, 3, 0])
    for name, carry0, options in (
        ("gru", start(), dict(seq_lengths=lengths)),
        ("lstm", (start(), start()), dict(seq_lengths=lengths, reverse=True)),  # a0 = (h0, c0)
    ):
        key = jax.random.PRNGKey(4)
        cell_params = jaxrnn.init_parameters(key, n_x, n_a, n_y, jnp.float64, cell=name, initialization="pytorch")
        error = tangent_step_error(_cells.get(name), cell_params)
        print(f"{name}: one tangent step, max |hand − jax.jvp| = {error:.0e}; the layer:")
        layer_jvp_errors(name, (inputs, carry0, cell_params), **options)

# %% [markdown]
# Both cells agree with `jax.jvp` at float64 rounding and with finite differences at the accuracy of the difference
# quotient, as the vanilla cell does. The rest of this notebook measures the vanilla cell.

# %% [markdown]
# ## 2. The limit: carrying the whole Jacobian forward (RTRL)
#
# One JVP is the derivative along one direction: for a loss $L$, the single number $\langle \nabla L,
# \dot\theta\rangle$. Training wants all of $\nabla L$, one number per parameter: $P$ directions. Run all of them
# at once, for the recurrent weights say, the $n_a^2$ basis directions $\dot W_{aa} = E_{ij}$: the tangent $\dot a_t$
# becomes the Jacobian $J_t = \partial a_t / \partial W_{aa}$, $n_a \times n_a^2$ per example, and steps 1–2 read
#
# $$J_t = D_t \big(W_{aa} J_{t-1} + \partial z_t / \partial W_{aa}\big), \qquad
#   \big(\partial z_t / \partial (W_{aa})_{ij}\big)_k = \delta_{ik}\, (a_{t-1})_j, \qquad
#   D_t = \mathrm{diag}(1 - a_t^2).$$
#
# For a loss $L = \sum_t \ell_t(a_t)$, the gradient can then be accumulated while the sequence is read,
# $\nabla_{W_{aa}} L \mathrel{+}= J_t^\top \partial \ell_t / \partial a_t$ at step $t$: an exact gradient at every step,
# with nothing kept from the past. This is real-time recurrent learning (RTRL, Williams and Zipser, 1989).
#
# Its price is in the first term. $W_{aa} J_{t-1}$ multiplies an $n_a \times n_a$ matrix into $n_a^2$ columns:
# $n_a^4$ multiply-adds per step and example (for $n_a = 256$, $4.3 \cdot 10^9$), against the $n_a^2$ of each of
# BPTT's products (65,536), and $J_t$ holds $n_a^3$ numbers per example. BPTT (the hand-derived backward of
# `rnn`) costs a few $n_a^2$ products per step instead, but keeps every state for its backward pass, so its memory
# grows with $T$, and its gradient exists only once the sequence has ended.
#
# RTRL for $W_{aa}$, written out for this notebook (jaxrnn does not ship it) as one `lax.scan`:


# %%
def rtrl_gradient(x, a0, params, c):
    """dL/dWaa for L = Σ_t Σ c_t ⊙ a_t, by RTRL: one forward loop carrying a_t and J_t = ∂a_t/∂Waa.

    Time-major, as rnn(..., layout="time_major"): x (T, m, n_x), a0 (m, n_a), c (T, m, n_a). J[i, j] = ∂a_t/∂Waa[i, j]
    is kept as rows (n_a, n_a, m, n_a); step t adds J_t^T c_t to the gradient at once: nothing from past steps is kept.
    """
    m, n_a = a0.shape
    Waa_T, eye = params["Waa"].T, jnp.eye(n_a, dtype=x.dtype)

    def step(carry, inputs):
        a_prev, J_prev, gradient = carry
        x_t, c_t = inputs  # (m, n_x), (m, n_a)
        a_t = jnp.tanh(a_prev @ Waa_T + x_t @ params["Wax"].T + params["ba"].T)
        direct = eye[:, None, None, :] * a_prev.T[None, :, :, None]  # ∂z_t/∂Waa[i, j] = e_i a_{t-1, j}
        J_t = (1 - a_t**2) * (J_prev @ Waa_T + direct)  # J_t = D_t (Waa J_{t-1} + ∂z_t/∂Waa): n_a⁴ per example
        gradient = gradient + jnp.einsum("ijmk,mk->ij", J_t, c_t)  # dL/dWaa += J_t^T c_t, as step t is read
        return (a_t, J_t, gradient), None

    carry = (a0, jnp.zeros((n_a, n_a, m, n_a), x.dtype), jnp.zeros((n_a, n_a), x.dtype))
    (_, _, gradient), _ = jax.lax.scan(step, carry, (x, c))
    return gradient


def bptt_gradient(x, a0, params, c):
    """The same dL/dWaa by backpropagation through time: jax.grad through rnn's hand-derived backward."""
    loss = lambda Waa: jnp.sum(c * jaxrnn.rnn(x, a0, dict(params, Waa=Waa), layout="time_major")[0])
    return jax.grad(loss)(params["Waa"])


def jvp_columns_gradient(x, a0, params, c):
    """The same again, as vmap of rnn_jvp over the n_a² directions E_ij (jacfwd-style: every J_t is stored)."""
    n_a = params["Waa"].shape[0]
    zeros = jax.tree.map(jnp.zeros_like, (x, a0, params))
    tangents = lambda E: (*zeros[:2], dict(zeros[2], Waa=E))
    along = lambda E: jnp.sum(c * jaxrnn.rnn_jvp((x, a0, params), tangents(E), layout="time_major")[1][0])
    return jax.vmap(along)(jnp.eye(n_a * n_a, dtype=x.dtype).reshape(-1, n_a, n_a)).reshape(n_a, n_a)


def time_major(x, a0, params, c):
    return jnp.transpose(x, (2, 1, 0)), a0.T, {k: params[k] for k in ("Wax", "Waa", "ba")}, jnp.transpose(c, (2, 1, 0))


with jax.enable_x64(True):
    problem = time_major(x, a0, params, c)
    gradients = {f.__name__: jax.jit(f)(*problem) for f in (rtrl_gradient, bptt_gradient, jvp_columns_gradient)}
    for name in ("rtrl_gradient", "jvp_columns_gradient"):
        error = relative_error(gradients[name], gradients["bptt_gradient"])
        print(f"{name:<21} relative error against bptt_gradient: {error:.1e}")

# %% [markdown]
# The three agree to rounding. Now their costs: time and XLA's compiled temp memory (`jax.jit(f).lower(...)
# .compile().memory_analysis()`: the scratch the program allocates beyond its inputs and outputs), RTRL against
# BPTT, as $n_a$ grows at fixed $T$, and as $T$ grows at fixed $n_a$ (float32, batch 4). Each program is compiled
# once; the runs are interleaved so that whatever else the machine does slows all of them alike; times are medians
# of a few rounds, so read them to within tens of percent.


# %%
def measure(functions, args, repeats=15):
    """Compiles each function once for `args`; {name: (median seconds, compiled temp bytes, value)}."""
    compiled = {name: jax.jit(f).lower(*args).compile() for name, f in functions.items()}
    timings = interleaved_timings({n: (lambda c=c: c(*args)) for n, c in compiled.items()}, repeats, warmup=1)
    return {n: (timings[n].median, c.memory_analysis().temp_size_in_bytes, c(*args)) for n, c in compiled.items()}


def online_problem(n_a, T, m=4, n_x=4):
    problem, (c, _) = random_problem(n_x, n_a, 2, m, T, jnp.float32, seed=n_a)
    return time_major(*problem, c)


ONLINE = {"RTRL": rtrl_gradient, "BPTT": bptt_gradient}
HIDDEN, LENGTHS = (8, 16, 32), (100, 400)
by_size = {n_a: measure(ONLINE, online_problem(n_a, LENGTHS[0])) for n_a in HIDDEN}
by_length = {LENGTHS[0]: by_size[8], LENGTHS[1]: measure(ONLINE, online_problem(8, LENGTHS[1]))}

print(f"{'':<16}" + "".join(f"{name + ' ms':>11}{name + ' KiB':>11}" for name in ONLINE))
rows = {(n_a, LENGTHS[0]): r for n_a, r in by_size.items()} | {(8, LENGTHS[1]): by_length[LENGTHS[1]]}
for (n_a, T), r in rows.items():
    cells = "".join(f"{r[name][0] * 1e3:>11.2f}{r[name][1] / 1024:>11.0f}" for name in ONLINE)
    print(f"n_a={n_a:<3} T={T:<6}{cells}")
for name in ONLINE:
    (t16, *_), (t32, *_) = by_size[16][name], by_size[32][name]
    (_, short, _), (_, long, _) = by_length[LENGTHS[0]][name], by_length[LENGTHS[1]][name]
    print(
        f"{name}: time, n_a 16 → 32: ×{t32 / t16:.1f} (n_a² is ×4, n_a⁴ ×16); "
        f"temp memory, T 100 → 400: ×{long / max(short, 1):.1f}"
    )

fig, (left, right) = plt.subplots(1, 2, figsize=(8, 2.8))
for name, color in (("RTRL", "tab:red"), ("BPTT", "tab:blue")):
    left.loglog(HIDDEN, [by_size[n][name][0] * 1e3 for n in HIDDEN], "o-", color=color, label=name, base=2)
    right.plot(LENGTHS, [by_length[T][name][1] / 1024 for T in LENGTHS], "o-", color=color, label=name)
reference = by_size[HIDDEN[-1]]["RTRL"][0] * 1e3
for power, style in ((4, ":"), (2, "--")):
    left.loglog(
        HIDDEN, [reference * (n / HIDDEN[-1]) ** power for n in HIDDEN], style, color="gray", label=f"∝ $n_a^{power}$"
    )
left.set(xlabel="n_a", ylabel="ms per gradient", title=f"time, T = {LENGTHS[0]}")
left.set_xticks(HIDDEN, [str(n) for n in HIDDEN])
left.xaxis.set_minor_formatter(plt.NullFormatter())
left.yaxis.set_major_formatter(plt.FormatStrFormatter("%g"))
right.set(xlabel="T", ylabel="compiled temp KiB", title="memory, n_a = 8")
left.legend(fontsize=8)
right.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# At these small sizes fixed costs per step blur the exponents, but the shape is there: RTRL's time climbs
# toward the $n_a^4$ line while BPTT's barely moves, and BPTT's memory grows with $T$ while RTRL's does not.
# That is the trade in one picture: RTRL is exact and online, at a cost that rules it out beyond tiny hidden
# sizes (approximations such as UORO and SnAp exist to bring it down); BPTT is cheap per step and pays in
# memory, which truncation (`jaxrnn train` carries the state between chunks, not its gradient) or
# `checkpoint_every` bounds.
#
# ## 3. One directional derivative, four ways
#
# Now the like-for-like comparison: one number, the derivative $\dot L = \langle \nabla L, \dot\theta\rangle$ of
# $L = \sum c_a \odot a + \sum c_y \odot y$ along one random direction $\dot\theta$ of all inputs, computed
#
# - by the hand JVP: `rnn_jvp`, then $\sum c_a \odot \dot a + \sum c_y \odot \dot y$;
# - by `jax.jvp` of the same loss through `rnn_autodiff`;
# - by the hand VJP: `jax.grad` of the loss through `rnn` (the hand-derived backward), then $\langle \nabla L,
#   \dot\theta\rangle$;
# - by `jax.grad` of the loss through `rnn_autodiff`.
#
# The reverse-mode two compute the whole gradient on the way, which a single direction does not need; that is the
# point of the comparison. The vanilla cell; sizes: $n_x = n_y = 16$, batch $m = 8$, float32; $T$ varies at
# $n_a = 32$, then $n_a$ at $T = 50$.


# %%
def loss_of(forward):
    def loss(primals, ca, cy):
        a, y = forward(*primals, layout="seed")
        return jnp.sum(ca * a) + jnp.sum(cy * y)

    return loss


def inner(gradient, direction):
    return sum(jnp.vdot(g, v) for g, v in zip(jax.tree.leaves(gradient), jax.tree.leaves(direction)))


def hand_jvp(primals, direction, ca, cy):
    a_dot, y_dot = jaxrnn.rnn_jvp(primals, direction, layout="seed")[1]
    return jnp.sum(ca * a_dot) + jnp.sum(cy * y_dot)


FOUR = {
    "hand JVP": hand_jvp,
    "jax.jvp": lambda p, v, ca, cy: jax.jvp(lambda q: loss_of(jaxrnn.rnn_autodiff)(q, ca, cy), (p,), (v,))[1],
    "hand VJP": lambda p, v, ca, cy: inner(jax.grad(loss_of(jaxrnn.rnn))(p, ca, cy), v),
    "jax.grad": lambda p, v, ca, cy: inner(jax.grad(loss_of(jaxrnn.rnn_autodiff))(p, ca, cy), v),
}
COLORS = {"hand JVP": "tab:green", "jax.jvp": "tab:olive", "hand VJP": "tab:blue", "jax.grad": "tab:orange"}


def directional_problem(n_a, T, n_x=16, n_y=16, m=8):
    primals, (ca, cy) = random_problem(n_x, n_a, n_y, m, T, jnp.float32, seed=T + n_a)
    return primals, random_direction(primals), ca, cy


BASE_N_A, BASE_T = 32, 50
POINTS = {"T": [(BASE_N_A, T) for T in (50, 200, 800)], "n_a": [(n_a, BASE_T) for n_a in (32, 128)]}
results = {
    point: measure(FOUR, directional_problem(*point))
    for point in sorted({p for points in POINTS.values() for p in points})
}

print(f"{'n_a':>4}{'T':>5} |" + "".join(f"{name:>18}" for name in FOUR) + " |  L̇ spread")
for (n_a, T), r in results.items():
    values = [float(r[name][2]) for name in FOUR]
    cells = "".join(f"{r[name][0] * 1e3:>7.2f} ms {r[name][1] / 2**20:>5.2f} MiB" for name in FOUR)
    print(f"{n_a:>4}{T:>5} |{cells} | {(max(values) - min(values)) / abs(values[-1]):.0e}")

fig, axes = plt.subplots(2, 2, figsize=(8, 5), sharex="col")
for col, (axis, points) in enumerate(POINTS.items()):
    xs = [T if axis == "T" else n_a for n_a, T in points]
    for name in FOUR:
        axes[0, col].loglog(xs, [results[p][name][0] * 1e3 for p in points], "o-", color=COLORS[name], label=name)
        axes[1, col].loglog(xs, [results[p][name][1] / 2**20 for p in points], "o-", color=COLORS[name], label=name)
    fixed = f"n_a = {BASE_N_A}" if axis == "T" else f"T = {BASE_T}"
    axes[0, col].set_title(f"varying {axis} ({fixed})")
    axes[1, col].set_xlabel(axis)
    axes[1, col].set_xticks(xs, [str(v) for v in xs])
    axes[1, col].xaxis.set_minor_formatter(plt.NullFormatter())
    for ax in axes[:, col]:
        ax.yaxis.set_major_locator(plt.LogLocator(subs=(1, 2, 5)))  # ticks 0.1 0.2 0.5 1 2 5 ...
        ax.yaxis.set_major_formatter(plt.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(plt.NullFormatter())
axes[0, 0].set_ylabel("ms per directional derivative")
axes[1, 0].set_ylabel("compiled temp MiB")
axes[0, 0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# The last column is the spread of the four values of $\dot L$, relative: the four compute the same number, to
# float32 rounding. What the measurements show (the table has this machine's numbers; on a shared machine,
# differences of a few tens of percent between two runs are noise):
#
# - **One direction costs about the same either way.** A JVP does three $n_a \times n_a$ products per step (the
#   forward's and the two tangent terms); a VJP does one in the forward loop and one in the backward loop (the
#   carried $W_{aa}^\top \delta z_t$), plus the weight gradients, which the hand VJP computes after the loop as
#   single large products. Time grows linearly in $T$ for all four; with $n_a$ it grows more slowly than the
#   $n_a^2$ of the products at these small sizes, where fixed costs per step still weigh. How the hand VJP compares
#   with `jax.grad` is measured carefully in notebook 2 and by `jaxrnn bench`.
# - **Memory is of the same order for all four.** Forward mode keeps no residuals, but `rnn_jvp` returns whole
#   sequences $\dot a_t$, $\dot y_t$, as large as the states reverse mode keeps for its backward pass: compiled memory
#   grows linearly with $T$ in every column. Forward mode's memory stops growing with $T$ only when each step's
#   tangent is used up as soon as it is made, as RTRL does in section 2.
#
# ## 4. When forward mode wins, and when it does not
#
# Count directions. A JVP costs about as much as a forward and a backward pass, and yields one column of the
# Jacobian (the outputs' response to one input direction); a VJP yields one row (one scalar's gradient). For a
# Jacobian with $k$ input directions and $r$ scalar outputs, forward mode needs $k$ passes (batched by `vmap`),
# reverse mode $r$. Forward mode wins:
#
# - **with few inputs and many outputs**: the response of every $a_t$ and $y_t$ to a perturbation of $a_0$, or to
#   one hyperparameter (a scale on $W_{aa}$, say), is one JVP, where reverse mode would need one VJP per output
#   number; the whole Jacobian $\partial a_t / \partial a_0$ is $n_a m$ JVPs, in one `vmap`;
# - **on long sequences, or with no end to the sequence**, when the derivative is consumed as it is produced:
#   the tangent rides along with the forward pass, and nothing is kept for a backward pass. That is what makes
#   RTRL work online, for any $T$;
# - **for online learning**: a gradient at every step, exactly, without waiting for the sequence to end or
#   truncating it; exactly and affordably only for small $n_a$ (section 2).
#
# It loses for **training**, the common case: one scalar loss and $P$ parameters ($n_a^2 + n_a n_x + n_y n_a +
# n_a + n_y$: 114,014 for `jaxrnn train`'s character model, vocabulary 94 and $n_a = 256$). Reverse mode gets all
# of $\nabla L$ in one pass; forward mode needs $P$ JVPs, or RTRL's $n_a^4$ work per step.
#
# ## 5. Why `rnn` is a `custom_vjp`, and what registering both rules would take
#
# `rnn` exists to be trained, so its custom rule is the reverse one: `jax.custom_vjp` lets the hand-derived
# backward choose its residuals (the states, kept once; or with `checkpoint_every`, one state per segment), which
# is where it saves time and memory (notebook 2). A JAX function carries one custom rule, though, and a
# `custom_vjp` defines reverse mode only: `jax.jvp(jaxrnn.rnn, ...)` raises. Hence the separate `rnn_jvp`, a plain
# function, and `rnn_autodiff` for JAX's own forward mode (and for forward mode of any order).
#
# Registering both rules on one function would take a `jax.custom_jvp` (JAX derives reverse mode from a JVP rule
# by linearising it and transposing the linear part) whose rule computes the primal outputs and wraps the tangent
# computation in `jax.custom_derivatives.linear_call(jvp_fn, vjp_fn, residuals, tangents)`: `jax.jvp` runs
# `jvp_fn`, the hand JVP, and when `jax.grad` transposes the rule, `linear_call` transposes into `vjp_fn`, the hand
# VJP, with the residuals the rule's primal half produced. A prototype built that way, with `rnn_jvp` and `rnn`'s
# VJP as the two functions (kept out of the library), gives `jax.jvp` and `jax.grad` with respect to all three
# arguments, equal to autodiff, on JAX 0.10.2 and 0.12. It fails for most of what `rnn` supports today:
#
# - `jax.vmap`, and so `jax.jacfwd`, `jax.jacrev` and `jax.hessian`: `linear_call` has no batching rule
#   (`NotImplementedError`);
# - `jax.grad` with respect to some arguments only (`argnums=2`, the parameters): transposing `linear_call`
#   asserts that every linear input is being differentiated (`AssertionError`), eagerly and under `jit`;
# - grad-of-grad, `jax.jvp` of `jax.jvp`, and `jax.grad` of `jax.checkpoint` of it (`AssertionError`).
#
# And the residuals the hand VJP reads, and `checkpoint_every`'s recomputation, would have to come out of the JVP
# rule's primal half, where `custom_vjp` states them directly. So jaxrnn ships the two rules as two functions, each
# of which composes with everything: `rnn` for reverse mode, `rnn_jvp` for forward mode by hand.
