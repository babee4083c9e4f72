"""Data parallel training: 8 simulated CPU devices, and two processes joined by jax.distributed.

Each test starts fresh Python processes (XLA's device count is fixed at start-up) and bounds
every wait with a timeout, so a hang fails the test instead of stalling the suite.
"""

import json
import os
import socket
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from _charlm_helpers import NAMES_TEXT
from helpers import TOLERANCE, assert_trees_close, relative_error

from jaxrnn.charlm.checkpoint import load_checkpoint
from jaxrnn.cli import main

HERE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.dirname(HERE)
TIMEOUT_S = 120


def cpu_environment(device_count):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo")
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={device_count}".strip()
    return env


def unflatten(archive, group):
    return {key.split(".", 1)[1]: archive[key] for key in archive.files if key.startswith(group + ".")}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("sharded") / "result")
    worker = os.path.join(HERE, "_sharded_worker.py")
    done = subprocess.run(
        [sys.executable, worker, out],
        cwd=tmp_path_factory.getbasetemp(),
        env=cpu_environment(8),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out + ".json") as f:
        facts = json.load(f)
    return facts, np.load(out + ".npz")


def test_sharded_gradients_equal_single_device_gradients(sharded):
    facts, arrays = sharded
    assert facts["device_count"] == 8 and facts["mesh_size"] == 8  # every local device by default
    assert_trees_close(unflatten(arrays, "grads_all"), unflatten(arrays, "grads_one"), TOLERANCE[jnp.float32])


def test_a_sharded_train_step_runs_and_matches_one_device(sharded):
    facts, arrays = sharded
    assert facts["hidden_spec"] == [None, "batch"]
    assert facts["hidden_shards"] == [[8, 2]] * 8  # (n_a, m / 8) on each device
    params_all, params_one = unflatten(arrays, "params_all"), unflatten(arrays, "params_one")
    assert_trees_close(params_all, params_one, TOLERANCE[jnp.float32])


def test_a_batch_that_does_not_split_over_the_devices_is_refused(sharded):
    facts, _ = sharded
    assert facts["indivisible_status"] == 2
    assert facts["indivisible_error"].strip() == (
        "jaxrnn train: --batch-size 12 does not split evenly over 8 devices; "
        "use a multiple of 8 or --devices N with N dividing 12"
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text(NAMES_TEXT)
    flags = ["--data", str(names), "--lines", "--hidden-size", "16", "--batch-size", "8", "--chunk-length", "4"]
    flags += ["--steps", "6", "--optimizer", "sgd", "--learning-rate", "0.5", "--sample-length", "0"]
    flags += ["--coordinator-timeout", "60"]  # ignored by the single-process run
    coordinator = f"127.0.0.1:{free_port()}"
    distributed = lambda i: ["--coordinator", coordinator, "--num-processes", "2", "--process-id", str(i)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "jaxrnn", "train", *flags, "--out", str(tmp_path / "two"), *distributed(i)],
            cwd=REPOSITORY,
            env=cpu_environment(2),  # 2 processes × 2 devices: a mesh of 4
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=TIMEOUT_S)[0] for p in processes]
    finally:
        for p in processes:
            p.kill()
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert "on 4 cpu device(s) in 2 processes" in outputs[0]

    assert main(["train", *flags, "--out", str(tmp_path / "one")]) == 0
    two, one = (load_checkpoint(str(tmp_path / d / "checkpoint.npz")) for d in ("two", "one"))
    assert two.step == one.step == 6
    assert_trees_close(two.params, one.params, TOLERANCE[jnp.float32])
    assert relative_error(two.hidden, one.hidden) <= TOLERANCE[jnp.float32]  # gathered from both processes
    steps_with_targets = np.isfinite(one.losses)  # a chunk of padding only has loss NaN
    np.testing.assert_array_equal(np.isfinite(two.losses), steps_with_targets)
    assert relative_error(two.losses[steps_with_targets], one.losses[steps_with_targets]) <= TOLERANCE[jnp.float32]
