# %% [markdown]
# # 3. Gradients through time: vanishing, exploding, and clipping
#
# Backpropagation through time ([notebook 1](01_derivation.ipynb)) carries the gradient from step $t$ to step
# $t-1$ as
#
# $$\delta a_{t-1} = (\text{outside})_{t-1} + W_{aa}^\top \big((1 - a_t^2) \odot \delta a_t\big)
#   = (\text{outside})_{t-1} + J_t^\top \delta a_t, \qquad J_t = \mathrm{diag}(1 - a_t^2)\, W_{aa} .$$
#
# A loss at the last step reaches $a_t$ only through the product $J_T^\top \cdots J_{t+1}^\top$. If the
# factors shrink vectors, $\|\partial L / \partial a_t\|$ decays geometrically as $t$ moves back: the loss cannot
# teach the early steps anything (vanishing gradients). If they stretch them, it grows geometrically
# (exploding gradients), and one gradient step can throw the parameters far away. $W_{aa}$'s scale sets which.
#
# `jaxrnn.gradients_through_time` computes $\partial L / \partial a_t$ for every $t$ with the hand-derived backward
# of `jaxrnn` (no `jax.grad`), and its norms:

# %%
import inspect

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from IPython.display import Markdown, display

import jaxrnn

plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "font.size": 9})
display(Markdown(f"```python\n{inspect.getsource(jaxrnn.gradients_through_time).rstrip()}\n```"))

# %% [markdown]
# ## A loss on the last step only
#
# The task: read a sequence of $T = 60$ inputs, predict one of $n_y$ classes at the end. The loss is the
# cross-entropy of the last prediction, averaged over the batch, $L = -\frac1m \sum_i \log (y_T)_{c_i, i}$, so
# $\partial L / \partial y_T = -e_{c_i} / (m\, (y_T)_{c_i,i})$ and $\partial L / \partial y_t = 0$ for $t < T$;
# there is no loss on the hidden states. Every gradient with respect to $a_t$, $t < T$, arrives through the
# recurrence. We scale an orthogonal $W_{aa}$ (all singular values 1, the `init_parameters` default) by a
# factor $s$.

# %%
n_x, n_a, n_y, m, T = 8, 32, 8, 16, 60
k_params, k_x, k_c = jax.random.split(jax.random.PRNGKey(0), 3)
params = jaxrnn.init_parameters(k_params, n_x, n_a, n_y)
x = 0.5 * jax.random.normal(k_x, (n_x, m, T))
a0 = jnp.zeros((n_a, m))
classes = jax.random.randint(k_c, (m,), 0, n_y)


def last_step_cotangents(y, classes):
    """dL/da = 0 and dL/dy for L = -mean_i log y[c_i, i, T]: nonzero at the last step only."""
    one_hot = jax.nn.one_hot(classes, y.shape[0]).T  # (n_y, m)
    dy_last = -one_hot / (y[:, :, -1] * y.shape[1])
    return jnp.zeros((n_a, m, y.shape[2])), jnp.zeros_like(y).at[:, :, -1].set(dy_last)


@jax.jit
def through_time(scale):
    scaled = dict(params, Waa=scale * params["Waa"])
    a, y = jaxrnn.rnn(x, a0, scaled, layout="seed")
    da, dy = last_step_cotangents(y, classes)
    return jaxrnn.gradients_through_time(x, a0, scaled, da, dy), a


SCALES = [0.5, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0]
norms, states = {}, {}
for s in SCALES:
    g, a = through_time(s)
    norms[s], states[s] = np.asarray(g.norms), np.asarray(a)

fig, ax = plt.subplots(figsize=(6.5, 3.2))
colors = plt.cm.coolwarm(np.linspace(0, 1, len(SCALES)))
for s, c in zip(SCALES, colors):
    ax.semilogy(np.arange(1, T + 1), norms[s], color=c, label=f"s = {s}")
ax.set_xlabel("t")
ax.set_ylabel("‖∂L/∂a_t‖")
ax.set_title("gradient of a last-step loss with respect to each hidden state, W_aa = s · orthogonal")
ax.legend(ncol=2, fontsize=8)
fig.tight_layout()

# %% [markdown]
# Read each curve from the right (the loss, at $t = T$) to the left (the start of the sequence). For $s < 1$ the
# norm falls by orders of magnitude within a few tens of steps (at $s = 0.5$ it leaves float32's range: the
# curve stops where it underflows to 0); at $s = 1$ it still falls, because every factor also contains
# $1 - a_t^2 \le 1$; from about $s = 1.5$ it grows backward through time, by many orders of magnitude at $s = 3$.
#
# The rate is the typical stretch of one factor $J_t^\top = W_{aa}^\top \mathrm{diag}(1 - a_t^2)$: the table gives
# the mean tanh derivative along the sequence (larger $s$ drives the states toward $\pm 1$, where tanh is flat),
# the measured average change of the norm per step back in time, and the ratio
# $\|\partial L/\partial a_1\| / \|\partial L/\partial a_T\|$.

# %%
print(f"{'s':>5} {'mean 1 - a²':>12} {'norm change per step back':>27} {'‖dL/da_1‖ / ‖dL/da_T‖':>24}")
for s in SCALES:
    seen = norms[s][norms[s] > 0][::-1]  # from t = T back; float32 underflows to 0 below ~1e-45
    per_step = np.exp(np.mean(np.diff(np.log(seen))))
    ratio = norms[s][0] / norms[s][-1]
    print(f"{s:>5} {np.mean(1 - states[s] ** 2):>12.3f} {per_step:>27.3f} {ratio:>24.2e}")

# %% [markdown]
# The diagnostic also returns the norm for each example of the batch. The spread is wide: how fast the gradient
# decays depends on the path the hidden state took, i.e. on the input.

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 2.8), sharey=False)
for ax, s in zip(axes, (1.0, 2.0)):
    per_example = np.asarray(through_time(s)[0].norms_per_example)  # (m, T)
    t = np.arange(1, T + 1)
    ax.fill_between(t, per_example.min(0), per_example.max(0), alpha=0.3, label="min..max over the batch")
    ax.semilogy(t, np.median(per_example, 0), label="median example")
    ax.set_title(f"s = {s}")
    ax.set_xlabel("t")
axes[0].set_ylabel("‖∂L/∂a_t‖ per example")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## What clipping does
#
# Exploding gradients are usually handled by clipping the parameter gradient before the update. optax has two
# kinds:
#
# - `optax.clip_by_global_norm(c)` rescales the whole gradient $g$ (all parameters together) to norm at most $c$:
#   $g \leftarrow g \cdot \min(1, c / \|g\|)$. The direction is kept.
# - `optax.clip(c)` clips each entry to $[-c, c]$: the size is bounded, the direction changes.
#
# The parameter gradients are sums over time of per-step terms (e.g.
# $\partial L/\partial W_{aa} = \sum_t \delta z_t a_{t-1}^\top$), so they inherit the explosion of the early steps:


# %%
def last_step_loss(params):
    _, y = jaxrnn.rnn(x, a0, params, layout="seed")
    return -jnp.mean(jnp.log(y[classes, jnp.arange(m), -1]))


@jax.jit
def parameter_gradient(scale):
    return jax.grad(last_step_loss)(dict(params, Waa=scale * params["Waa"]))


def cosine(u, v):
    u, v = jax.flatten_util.ravel_pytree(u)[0], jax.flatten_util.ravel_pytree(v)[0]
    return float(u @ v / (jnp.linalg.norm(u) * jnp.linalg.norm(v)))


by_norm, by_value = optax.clip_by_global_norm(1.0), optax.clip(0.01)
rows = []
for s in SCALES:
    g = parameter_gradient(s)
    g_norm, _ = by_norm.update(g, by_norm.init(g))
    g_value, _ = by_value.update(g, by_value.init(g))
    rows.append((s, optax.global_norm(g), optax.global_norm(g_norm), optax.global_norm(g_value), cosine(g, g_value)))

print(f"{'s':>5} {'‖g‖':>10} {'‖clip_by_global_norm(1)‖':>26} {'‖clip(0.01)‖':>14} {'cos(g, clip(0.01))':>20}")
for s, n, n_norm, n_value, cos in rows:
    print(f"{s:>5} {float(n):>10.2e} {float(n_norm):>26.3f} {float(n_value):>14.3f} {cos:>20.3f}")

# %% [markdown]
# Clipping by global norm caps the size of the step and keeps its direction (cosine 1 by construction). Clipping by
# value caps each entry, which also changes the direction once many entries hit the bound.
#
# Clipping acts on the parameter gradient as a whole: it multiplies every per-step contribution by the same
# factor. It tames explosion, but it cannot repair vanishing: the *shape* of the curve over $t$, how much the
# early steps count relative to the late ones, is unchanged. Below, for $s = 2$, the per-step contributions
# $\|\delta z_t a_{t-1}^\top\|$ to $\partial L/\partial W_{aa}$ (from the diagnostic's $\partial L/\partial a_t$)
# before and after `clip_by_global_norm(1.0)`:

# %%
s = 2.0
g_time, a = through_time(s)
da = np.asarray(g_time.da)  # (n_a, m, T)
states_s = np.asarray(a)
dz = (1 - states_s**2) * da  # δz_t = (1 - a_t²) ⊙ ∂L/∂a_t
a_prev = np.concatenate([np.asarray(a0)[:, :, None], states_s[:, :, :-1]], axis=2)
contributions = np.linalg.norm(np.einsum("imt,jmt->tij", dz, a_prev), axis=(1, 2))  # ‖δz_t a_{t-1}^T‖
g = parameter_gradient(s)
factor = min(1.0, 1.0 / float(optax.global_norm(g)))
# The per-step terms built from the diagnostic add up to the gradient jax.grad returns through rnn (float32):
error = np.max(np.abs(np.einsum("imt,jmt->ij", dz, a_prev) - g["Waa"])) / np.max(np.abs(g["Waa"]))
print(f"max |Σ_t δz_t a_(t-1)^T − ∂L/∂W_aa| / max |∂L/∂W_aa| = {error:.1e}")

fig, ax = plt.subplots(figsize=(6, 2.8))
t = np.arange(2, T + 1)  # a_0 = 0, so step 1 adds nothing to ∂L/∂W_aa
ax.semilogy(t, contributions[1:], label="before clipping")
ax.semilogy(t, contributions[1:] * factor, label="after clip_by_global_norm(1.0)")
ax.set_xlabel("t")
ax.set_ylabel("‖δz_t a_{t-1}ᵀ‖")
ax.set_title(f"contributions of each step to ∂L/∂W_aa, s = {s}")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Training with and without clipping
#
# A task that needs the gradient to travel: the first input of each sequence is a one-hot code of its class, the
# next 29 inputs are noise, and the model must name the class at the last step. With $s = 2$ and plain SGD at
# learning rate 0.3, the first gradients are huge: without clipping the first updates throw the parameters into
# a region where tanh saturates and the model stays at chance ($\log 8 pprox 2.08$). With
# `clip_by_global_norm(1.0)` in front of the same SGD, it learns the task.

# %%
T_task, m_task, steps = 30, 64, 300


def batch(key):
    k_class, k_noise = jax.random.split(key)
    c = jax.random.randint(k_class, (m_task,), 0, n_y)
    x = 0.3 * jax.random.normal(k_noise, (n_x, m_task, T_task))
    return x.at[:, :, 0].set(3.0 * jax.nn.one_hot(c, n_x).T), c


def task_loss(params, x, c):
    _, y = jaxrnn.rnn(x, jnp.zeros((n_a, m_task)), params, layout="seed")
    return -jnp.mean(jnp.log(y[c, jnp.arange(m_task), -1]))


def train(optimizer, scale=2.0):
    p = dict(params, Waa=scale * params["Waa"])
    state = optimizer.init(p)

    @jax.jit
    def step(p, state, key):
        x, c = batch(key)
        loss, g = jax.value_and_grad(task_loss)(p, x, c)
        updates, state = optimizer.update(g, state, p)
        return optax.apply_updates(p, updates), state, loss, optax.global_norm(g)

    losses, grad_norms = [], []
    for key in jax.random.split(jax.random.PRNGKey(1), steps):
        p, state, loss, grad_norm = step(p, state, key)
        losses.append(float(loss))
        grad_norms.append(float(grad_norm))
    return np.array(losses), np.array(grad_norms)


runs = {
    "SGD(0.3)": train(optax.sgd(0.3)),
    "clip_by_global_norm(1.0), SGD(0.3)": train(optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.3))),
}
fig, axes = plt.subplots(1, 2, figsize=(8.5, 2.8))
for name, (losses, grad_norms) in runs.items():
    axes[0].plot(np.convolve(losses, np.ones(10) / 10, mode="valid"), label=name)
    axes[1].semilogy(grad_norms, label=name)
axes[0].axhline(np.log(n_y), color="gray", linestyle=":", label="chance, log n_y")
axes[0].set_xlabel("step")
axes[0].set_ylabel("loss (moving average of 10)")
axes[1].set_xlabel("step")
axes[1].set_ylabel("‖g‖ before clipping")
axes[0].legend(fontsize=8)
fig.tight_layout()
for name, (losses, grad_norms) in runs.items():
    print(f"{name:<36} loss over the last 30 steps {losses[-30:].mean():.3f}   largest ‖g‖ {grad_norms.max():.1e}")

# %% [markdown]
# Clipping made the exploding start survivable; it did nothing for the gradients of the early steps that would
# vanish at smaller scales. Those are the business of the architecture (gated cells such as LSTM and GRU, whose
# additive memory path has derivative close to 1) and of initialisation (an orthogonal $W_{aa}$ with $s$ near 1,
# as `jaxrnn.init_parameters` draws it).
