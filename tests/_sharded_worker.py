"""Run by tests/test_parallel.py in a subprocess with 8 simulated CPU devices; writes its results to OUT.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/_sharded_worker.py OUT

Computes the loss gradient of one chunk on one device and split over 8 (a `batch` mesh), runs
three train steps on 1 and on 8 devices, and tries `jaxrnn train` with a batch that does not
split over 8 devices. The test compares the numbers; this script only computes them.
"""

import contextlib
import io
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.charlm import parallel
from jaxrnn.charlm.config import TrainConfig
from jaxrnn.charlm.data import Chunk
from jaxrnn.charlm.train import chunk_loss, initial_state, make_train_step
from jaxrnn.cli import main
from jaxrnn.verify import random_problem

V, N_A, M, T = 7, 8, 16, 5


def problem():
    (_, a0, params), _ = random_problem(jax.random.PRNGKey(0), V, N_A, V, M, T, jnp.float32)
    params = {**params, "a0": np.linspace(-0.5, 0.5, N_A, dtype=np.float32)}
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, (M, T + 1), dtype=np.int32)
    lengths = rng.integers(1, T + 1, M).astype(np.int32)  # some padding
    return params, np.asarray(a0).T, ids[:, :-1], ids[:, 1:], lengths


def gradients(mesh, params, a0, inputs, targets, lengths):
    """`jax.grad` of the chunk loss with the batch split over `mesh` (parameters replicated)."""
    replicated, rows, vector = parallel.replicated(mesh), parallel.rows(mesh), parallel.vector(mesh)
    arguments = (
        parallel.tree_to_global(jax.tree_util.tree_map(np.asarray, params), replicated),
        parallel.to_global(a0, rows),
        *(parallel.to_global(v, rows) for v in (inputs, targets)),
        parallel.to_global(lengths, vector),
    )
    loss = lambda p, a, i, t, n: chunk_loss(p, a, i, t, n, jnp.asarray(False), 10.0)[0]
    grad = jax.jit(jax.grad(loss), out_shardings=replicated)
    return jax.tree_util.tree_map(np.asarray, grad(*arguments))


def train_three_steps(mesh, inputs, targets, lengths):
    config = TrainConfig(hidden_size=N_A, batch_size=M, chunk_length=T, optimizer="sgd", learning_rate=0.5)
    state = initial_state(config, V, mesh)
    train_step = make_train_step(config, mesh, loss_scale=float(M * T))
    params, opt_state, hidden = state.params, state.opt_state, state.hidden
    for step in range(3):
        chunk = Chunk(inputs, targets, lengths, np.asarray(step == 0))
        params, opt_state, hidden, _ = train_step(params, opt_state, hidden, chunk)
    return jax.tree_util.tree_map(np.asarray, params), hidden


def main_worker(out):
    params, a0, inputs, targets, lengths = problem()
    everywhere = parallel.batch_mesh()
    one = parallel.batch_mesh(1)
    results = {
        "grads_one": gradients(one, params, a0, inputs, targets, lengths),
        "grads_all": gradients(everywhere, params, a0, inputs, targets, lengths),
    }
    results["params_one"], _ = train_three_steps(one, inputs, targets, lengths)
    results["params_all"], hidden = train_three_steps(everywhere, inputs, targets, lengths)

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = main(["train", "--batch-size", "12", "--out", f"{out}-run"])
    facts = {
        "device_count": jax.device_count(),
        "mesh_size": int(everywhere.devices.size),
        "hidden_shards": [list(shard.data.shape) for shard in hidden.addressable_shards],
        "hidden_spec": list(hidden.sharding.spec),
        "indivisible_status": status,
        "indivisible_error": stderr.getvalue(),
    }
    flat = {f"{group}.{name}": value for group, tree in results.items() for name, value in tree.items()}
    np.savez(f"{out}.npz", **flat)
    with open(f"{out}.json", "w") as f:
        json.dump(facts, f)


if __name__ == "__main__":
    main_worker(sys.argv[1])
