"""The optimiser of a training run (optax), and its state as a checkpoint holds it.

Clipping (by global norm, or per element as in the course), then AdamW (weight decay on the
matrices `Wax`, `Waa`, `Wya` only: not the biases `ba`, `bhn`, `by`, nor the learned initial
state `a0`, `c0`), Adam or SGD, with a learning rate that warms up linearly and then follows a
cosine down to a tenth of its peak at `--steps`.

A checkpoint stores the optimiser state as its leaves in `jax.tree_util` order; the structure
comes back from the optimiser of the run's config (`opt_state_template`), which also says
what shape and dtype each leaf must have.
"""

from __future__ import annotations

import jax
import numpy as np
import optax

from jaxrnn import weight_decay_mask
from jaxrnn.charlm.config import TrainConfig

FINAL_LEARNING_RATE = 0.1  # the cosine ends at this fraction of the peak


def learning_rate_schedule(config: TrainConfig) -> optax.Schedule:
    """Linear warmup from 0 over `warmup_steps`, then constant or a cosine down to
    `FINAL_LEARNING_RATE` × the peak at `steps`."""
    peak, warmup = config.learning_rate, min(config.warmup_steps, config.steps)
    if config.schedule == "constant" or warmup == config.steps:
        after = optax.constant_schedule(peak)
    else:
        after = optax.cosine_decay_schedule(peak, config.steps - warmup, alpha=FINAL_LEARNING_RATE)
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Clipping, then AdamW, Adam or SGD on the schedule of `learning_rate_schedule`."""
    clipping = {
        "value": optax.clip(config.clip_value),  # g ← min(max(g, −c), c), per element (the course's np.clip)
        "global-norm": optax.clip_by_global_norm(config.clip_value),  # g ← g · min(1, c / ‖g‖₂) over every leaf
        "none": optax.identity(),
    }[config.clip]
    schedule = learning_rate_schedule(config)
    if config.optimizer == "adamw":
        update = optax.adamw(schedule, b2=config.beta2, weight_decay=config.weight_decay, mask=weight_decay_mask)
    elif config.optimizer == "adam":
        update = optax.adam(schedule, b2=config.beta2)
    else:
        update = optax.sgd(schedule)
    return optax.chain(clipping, update)


def opt_state_template(config: TrainConfig, params: dict):
    """The fresh optimiser state of `config` for `params` (host arrays): the structure, shapes
    and dtypes a saved state must have."""
    return jax.tree_util.tree_map(np.asarray, make_optimizer(config).init(params))


def opt_state_mismatch(config: TrainConfig, params: dict, leaves: list[np.ndarray]) -> str | None:
    """Why `leaves` cannot be the optimiser state of `config` for `params`, or None when they fit.

    Names the first leaf that differs (`opt_state.i` and its place in the optax state) and
    says what it has and what `--optimizer`/`--clip` expect.
    """
    expected = jax.tree_util.tree_flatten_with_path(opt_state_template(config, params))[0]
    settings = f"--optimizer {config.optimizer} --clip {config.clip}"
    if len(leaves) != len(expected):
        return f"the optimiser state has {len(leaves)} arrays; {settings} keeps {len(expected)}"
    for i, (leaf, (path, template)) in enumerate(zip(leaves, expected)):
        if leaf.shape != template.shape or leaf.dtype != template.dtype:
            return (
                f"opt_state.{i} (the optimiser's {jax.tree_util.keystr(path)}) has shape {leaf.shape} and dtype "
                f"{leaf.dtype}; {settings} keeps shape {template.shape} and dtype {template.dtype} there"
            )
        if np.issubdtype(leaf.dtype, np.floating) and not np.all(np.isfinite(leaf)):
            return f"opt_state.{i} (the optimiser's {jax.tree_util.keystr(path)}) is not finite"
        if np.issubdtype(leaf.dtype, np.integer) and np.any(leaf < 0):
            return f"opt_state.{i} (the optimiser's {jax.tree_util.keystr(path)}) is negative"
    return None


def restore_opt_state(config: TrainConfig, params: dict, leaves: list[np.ndarray]):
    """The optimiser state of `config` with the given leaves (checked by `opt_state_mismatch`)."""
    structure = jax.tree_util.tree_structure(opt_state_template(config, params))
    return jax.tree_util.tree_unflatten(structure, leaves)
