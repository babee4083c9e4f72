# %% [markdown]
# # 2. The hand-derived backward next to `jax.grad`
#
# `jaxrnn.rnn` and `jaxrnn.rnn_autodiff` compute the same forward pass. Differentiating `rnn` runs the backward
# pass derived by hand in [notebook 1](01_derivation.ipynb); differentiating `rnn_autodiff` lets JAX build the
# backward pass itself, by linearising and transposing every operation of the forward pass. Both give the same
# gradients (to rounding). This notebook looks at *how* they get there:
#
# 1. the programs JAX builds (jaxprs): their size, and what runs inside the loops;
# 2. what each keeps from the forward pass for the backward pass (the residuals), and the memory XLA allocates;
# 3. the time of one gradient step on this machine's default device, and how the picture changes with the
#    sequence length, the batch and the hidden size.
#
# The same numbers, for any sizes, come from the command line: `jaxrnn compare --n-a 64 --batch 16 --steps 50`.

# %%
import collections
import contextlib
import io
from pathlib import Path

import jax
import jax.ad_checkpoint
import jax.numpy as jnp
import matplotlib.pyplot as plt

import jaxrnn
from jaxrnn import _jaxpr, compare
from jaxrnn._measure import compiled_memory, interleaved_timings

plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "font.size": 9})
device = jax.devices()[0]
print(f"device: {device.platform} ({device.device_kind}), jax {jax.__version__}")

SIZES = (27, 64, 27, 16, 50)  # n_x, n_a, n_y, m, T_x: a character-level model's sizes
inputs = compare.random_inputs(0, SIZES, jnp.float32)  # x, a0, parameters, and the loss weights ca, cy
variants = compare.variants()  # {"rnn (hand VJP)": rnn, "rnn_autodiff (jax.grad)": rnn_autodiff}
HAND, AUTODIFF = compare.HAND, compare.AUTODIFF

# %% [markdown]
# ## 1. The two programs
#
# The gradient step is `jax.value_and_grad` of $L = \sum c_a \odot a + \sum c_y \odot y$ with respect to
# `x`, `a0` and the parameters (see `jaxrnn.compare.gradient_step`). `jax.make_jaxpr` traces it into a *jaxpr*,
# JAX's intermediate program: a list of equations, one primitive operation each, in which a loop (`scan`) holds
# its body as a nested jaxpr. This is what XLA compiles. (How a jaxpr stores its nested jaxprs changes between
# JAX releases; `jaxrnn._jaxpr` reads them the same way under each, and `_jaxpr.all_equations` lists every
# equation, those of nested jaxprs included, each once.)

# %%
steps = {name: compare.gradient_step(forward) for name, forward in variants.items()}
jaxprs = {name: jax.make_jaxpr(step)(*inputs) for name, step in steps.items()}
primitives = {
    name: collections.Counter(e.primitive.name for e in _jaxpr.all_equations(j)) for name, j in jaxprs.items()
}
names = sorted(set().union(*primitives.values()), key=lambda p: -primitives[AUTODIFF][p] - primitives[HAND][p])
print(f"{'primitive':<20}{'rnn (hand VJP)':>16}{'rnn_autodiff':>14}")
for p in names:
    print(f"{p:<20}{primitives[HAND][p]:>16}{primitives[AUTODIFF][p]:>14}")
print(f"{'total':<20}{sum(primitives[HAND].values()):>16}{sum(primitives[AUTODIFF].values()):>14}")

# %% [markdown]
# The totals count each equation once, where it is written: a loop body of 5 equations counts 5, not 5 × T.
# What runs T times is what is inside the scans, so that is where to look. Each program has two scans: the
# forward recurrence (`reverse=False`) and a backward one (`reverse=True`): for `rnn` the reverse scan written
# by hand, for `rnn_autodiff` the scan that JAX obtains by transposing the linearised forward scan.


# %%
def side_by_side(title, left, right, width=58):
    print(f"{title}\n{HAND:<{width}}{AUTODIFF}\n{'-' * (2 * width)}")
    for i in range(max(len(left), len(right))):
        print(f"{left[i] if i < len(left) else '':<{width}}{right[i] if i < len(right) else ''}")
    print()


for reverse, title in ((False, "forward scan body (runs T times)"), (True, "backward scan body (runs T times)")):
    bodies = {name: _jaxpr.scan_bodies(j, reverse) for name, j in jaxprs.items()}
    lines = {name: [_jaxpr.describe(e) for body in bodies[name] for e in _jaxpr.equations_of(body)] for name in bodies}
    side_by_side(title, lines[HAND], lines[AUTODIFF])

# %% [markdown]
# Read the two backward bodies line by line:
#
# - **hand**: add the gradient from outside to the one carried from step $t+1$, multiply by $1 - a_t^2$ (tanh),
#   one matrix product to carry $W_{aa}^\top \delta z_t$ to step $t-1$. The weight gradients are not in the loop:
#   they are sums over time, computed after it as single large matrix products.
# - **autodiff**: the transposed forward body, plus the accumulation of $\delta W_{aa}$ *inside* the loop: a
#   second matrix product per step (with a transpose) and an `(n_a, n_a)` carry. JAX's rule for tanh writes the
#   derivative as $g(1 - a_t) + g(1 - a_t)a_t$: the forward body computes $1 - a_t$ (its extra `sub`) and keeps it
#   as a residual next to $a_t$.
#
# `jaxrnn.compare.count_equations` turns this into four numbers:

# %%
for name, jaxpr in jaxprs.items():
    print(f"{name:<26}", compare.count_equations(jaxpr))

# %% [markdown]
# ## 2. What each keeps for the backward pass
#
# Reverse mode runs the forward pass, keeps some of its values (the *residuals*), and reads them back in the
# backward pass. `jax.ad_checkpoint.print_saved_residuals` lists them, with the line of code that made each
# one. Inputs (`x`, the parameters, the loss weights) are kept by reference and cost nothing new; everything else
# is memory held from the forward pass until the backward pass reads it.

# %%
root = str(Path(jaxrnn.__file__).parent.parent) + "/"
for name, forward in variants.items():
    loss = lambda x, a0, params, forward=forward: compare.weighted_loss(forward)(x, a0, params, *inputs[3:])
    listing = io.StringIO()
    with contextlib.redirect_stdout(listing):
        jax.ad_checkpoint.print_saved_residuals(loss, *inputs[:3])
    print(f"{name}:\n  " + listing.getvalue().replace(root, "").strip().replace("\n", "\n  ") + "\n")

# %% [markdown]
# The hand-written rule keeps exactly what its derivation uses: the hidden states $a_1..a_T$ (for $1 - a_t^2$
# and the sums $\sum_t \delta z_t a_{t-1}^\top$), the predictions $y_t$ (for the softmax backward), and the inputs
# in its internal layout. Automatic differentiation keeps what each linearised operation needs: the states
# several times over (once per use), $1 - a_t^2$, and pieces of the softmax. In bytes, and as XLA finally
# allocates them (`temp`: scratch buffers plus the residuals alive between the two passes, after XLA's own
# optimisations, which may remove duplicates):

# %%
for name, forward in variants.items():
    saved = compare.saved_residuals(forward, *inputs)
    memory = compiled_memory(steps[name], *inputs)
    print(
        f"{name:<26} residuals computed by the forward: {saved.computed_bytes / 1024:7.1f} KiB"
        f"   inputs kept: {saved.input_bytes / 1024:6.1f} KiB   compiled temp: {memory.temp / 1024:7.1f} KiB"
    )
states = SIZES[4] * SIZES[1] * SIZES[3] * 4
print(f"for scale: the hidden states a_1..a_T alone are T·n_a·m·4 bytes = {states / 1024:.1f} KiB")

# %% [markdown]
# ## 3. Time on this device
#
# The two steps are compiled once, then timed interleaved (hand, autodiff, hand, autodiff, ...), so that
# whatever else the machine is doing slows both alike; the bars are medians, the whiskers the fastest and
# slowest rounds.

# %%
jitted = {name: jax.jit(step) for name, step in steps.items()}
timings = interleaved_timings({name: (lambda step=step: step(*inputs)) for name, step in jitted.items()}, repeats=30)
for name, timing in timings.items():
    print(
        f"{name:<26} median {timing.median * 1e3:.3f} ms"
        f"  (fastest {timing.low * 1e3:.3f}, slowest {timing.high * 1e3:.3f})"
    )

fig, ax = plt.subplots(figsize=(5, 2.2))
medians = [t.median * 1e3 for t in timings.values()]
spread = [
    [t.median * 1e3 - t.low * 1e3 for t in timings.values()],
    [t.high * 1e3 - t.median * 1e3 for t in timings.values()],
]
ax.barh(list(timings), medians, xerr=spread, color=["tab:blue", "tab:orange"])
ax.set_xlabel(f"ms per gradient step ({device.platform})")
ax.invert_yaxis()
fig.tight_layout()

# %% [markdown]
# ## 4. How the picture changes with T, batch and hidden size
#
# `jaxrnn.compare.compare` takes all of the above measurements for one size. Below, one size at a time moves
# away from the base point (n_a = 64, m = 16, T = 50). Top row: time per step; bottom row: the residuals computed
# by the forward pass. Equation counts do not depend on the sizes at all: the programs are the same, only their
# arrays grow.

# %%
BASE = dict(n_x=27, n_a=64, n_y=27, m=16, T_x=50)
SWEEPS = {"T_x": [25, 50, 100, 200], "m": [4, 16, 64], "n_a": [32, 64, 128]}
results = {}
for axis, values in SWEEPS.items():
    for value in values:
        sizes = dict(BASE, **{axis: value})
        key = tuple(sizes.values())
        if key not in results:
            results[key] = compare.compare(key, jnp.float32, repeats=10)

fig, axes = plt.subplots(2, 3, figsize=(9, 4.4), sharex="col")
for col, (axis, values) in enumerate(SWEEPS.items()):
    rows = [results[tuple(dict(BASE, **{axis: v}).values())] for v in values]
    for name, color in ((HAND, "tab:blue"), (AUTODIFF, "tab:orange")):
        axes[0, col].plot(values, [r[name].step_time.median * 1e3 for r in rows], "o-", color=color, label=name)
        axes[1, col].plot(values, [r[name].residuals.computed_bytes / 2**20 for r in rows], "o-", color=color)
    axes[0, col].set_title(f"varying {axis}")
    axes[1, col].set_xlabel(axis)
    for row in (0, 1):
        axes[row, col].set_xscale("log", base=2)
        axes[row, col].set_yscale("log")
        axes[row, col].set_xticks(values, [str(v) for v in values])
        axes[row, col].yaxis.set_major_locator(plt.LogLocator(subs=(1, 2, 5)))  # ticks 0.1 0.2 0.5 1 2 5 ...
        axes[row, col].yaxis.set_major_formatter(plt.FormatStrFormatter("%g"))
        axes[row, col].yaxis.set_minor_formatter(plt.NullFormatter())
axes[0, 0].set_ylabel("ms per step")
axes[1, 0].set_ylabel("residuals (MiB)")
axes[0, 0].legend(fontsize=8)
fig.tight_layout()

print(
    f"{'n_x, n_a, n_y, m, T_x':<24}{'time autodiff/hand':>20}{'residuals autodiff/hand':>25}{'temp autodiff/hand':>20}"
)
for key, r in results.items():
    hand, auto = r[HAND], r[AUTODIFF]
    print(
        f"{key!s:<24}{auto.step_time.median / hand.step_time.median:>20.2f}"
        f"{auto.residuals.computed_bytes / hand.residuals.computed_bytes:>25.2f}"
        f"{auto.temp_bytes / max(hand.temp_bytes, 1):>20.2f}"
    )

# %% [markdown]
# What to take from it:
#
# - **Residuals** grow linearly in T, m and n_a for both, and the ratio between them is fixed by the two
#   programs: automatic differentiation keeps the hidden states several times (and $1 - a_t^2$), the hand rule
#   once. This holds on every device.
# - **Time** depends on the device. The backward loop is sequential, T steps, each a small matrix product; the
#   per-step work of the autodiff loop includes a second product (the in-loop $\delta W_{aa}$) that the hand rule
#   moves out of the loop into one large product. Small sizes are dominated by fixed per-step costs; large
#   hidden sizes by the products themselves.
# - For forward-mode derivatives (`jax.jvp`, `jax.jacfwd`) only `rnn_autodiff` works: a `custom_vjp` function
#   defines reverse mode only. See the section "When to use `rnn` vs `rnn_autodiff`" of
#   [`docs/derivation.md`](../docs/derivation.md).
