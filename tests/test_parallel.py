"""Data parallel training: 8 simulated CPU devices, and two processes joined by jax.distributed:
agreement at start, Ctrl-C and SIGTERM on one process, a process killed.

Each test starts fresh Python processes (XLA's device count is fixed at start-up) and bounds
every wait with a timeout, so a hang fails the test instead of stalling the suite.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import jax.numpy as jnp
import numpy as np
import pytest
from _charlm_helpers import LAUNCHER, NAMES_TEXT
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
    assert facts["hidden_spec"] == ["batch", None]
    assert facts["hidden_shards"] == [[2, 8]] * 8  # (m / 8, n_a) on each device
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


def start_processes(tmp_path, flags_of):
    """Two `jaxrnn train` processes of one run (2 CPU devices each); `flags_of(i)`: process i's own flags."""
    coordinator = f"127.0.0.1:{free_port()}"
    distributed = lambda i: ["--coordinator", coordinator, "--num-processes", "2", "--process-id", str(i)]
    return [
        subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "train", *flags_of(i), *distributed(i)],
            cwd=REPOSITORY,
            env=cpu_environment(2),  # 2 processes × 2 devices: a mesh of 4
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]


def finish(processes, before=None):
    """Waits for both processes (at most TIMEOUT_S; `before(processes)` first); returns their outputs."""
    watchdog = threading.Timer(TIMEOUT_S, lambda: [p.kill() for p in processes])
    watchdog.start()
    try:
        if before is not None:
            before(processes)
        return [p.communicate()[0] for p in processes]
    finally:
        watchdog.cancel()
        for p in processes:
            p.kill()


def names_flags(tmp_path, text=NAMES_TEXT, name="names.txt"):
    names = tmp_path / name
    names.write_text(text)
    flags = ["--data", str(names), "--lines", "--hidden-size", "16", "--batch-size", "8", "--chunk-length", "4"]
    return [*flags, "--coordinator-timeout", "60"]  # ignored by a single-process run


@pytest.mark.slow  # two JAX processes; the default run keeps the SIGTERM one
def test_two_processes_train_like_one(tmp_path):
    flags = [*names_flags(tmp_path), "--steps", "6", "--optimizer", "sgd", "--learning-rate", "0.5"]
    flags += ["--sample-length", "0", "--eval-every", "3"]
    outputs = finish(start_processes(tmp_path, lambda i: [*flags, "--out", str(tmp_path / "two")]))
    assert "on 4 cpu device(s) in 2 processes" in outputs[0], outputs
    assert "done, step 6" in outputs[0] and "held-out" in outputs[0], outputs

    assert main(["train", *flags, "--out", str(tmp_path / "one")]) == 0
    two, one = (load_checkpoint(str(tmp_path / d / "checkpoint.npz")) for d in ("two", "one"))
    assert two.step == one.step == 6
    assert_trees_close(two.params, one.params, TOLERANCE[jnp.float32])
    assert relative_error(two.hidden, one.hidden) <= TOLERANCE[jnp.float32]  # gathered from both processes
    assert relative_error(two.losses, one.losses) <= TOLERANCE[jnp.float32]
    assert relative_error(two.validation, one.validation) <= TOLERANCE[jnp.float32]


@pytest.mark.parametrize("fault", ["other-data", pytest.param("no-data", marks=pytest.mark.slow)])
def test_a_process_with_other_or_no_data_stops_every_process_with_a_clear_error(tmp_path, fault):
    for i in range(2):
        (tmp_path / str(i)).mkdir()
    other = NAMES_TEXT.replace("mike", "mick")  # process 1 reads another file, or none

    def flags(i):
        own = names_flags(tmp_path / str(i), NAMES_TEXT if i == 0 else other)
        if i == 1 and fault == "no-data":
            os.remove(own[1])
        return [*own, "--steps", "2", "--out", str(tmp_path / "run")]

    processes = start_processes(tmp_path, flags)
    outputs = finish(processes)
    assert [p.returncode for p in processes] == [2, 2], outputs
    if fault == "other-data":
        for output in outputs:
            assert "jaxrnn train: process 1 has other data or settings than process 0 (sha256 " in output, output
    else:
        assert "jaxrnn train: process 1 could not start (see its message)" in outputs[0], outputs
        assert f"jaxrnn train: --data {tmp_path / '1' / 'names.txt'}: no such file" in outputs[1], outputs
    assert not os.path.exists(tmp_path / "run")  # not even an empty --out


def endless_flags(tmp_path):
    flags = [*names_flags(tmp_path), "--steps", "1000000", "--checkpoint-every", "5"]
    return [*flags, "--sample-every", "5", "--sample-length", "4", "--out", str(tmp_path / "run")]


def at_step_10(action):
    """`before` for `finish`: waits for process 0's sample at step 10, then `action(processes)`."""

    def before(processes):
        for line in processes[0].stdout:
            if line.startswith("sample at step 10:"):
                break
        action(processes)

    return before


@pytest.mark.parametrize(
    ("signum", "status", "said"),
    [
        pytest.param(signal.SIGINT, 130, "interrupted (SIGINT) at step", marks=pytest.mark.slow),
        (signal.SIGTERM, 143, "terminated (SIGTERM) at step"),
    ],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_to_one_process_stops_every_process_after_the_same_step(tmp_path, signum, status, said):
    """SIGINT travels with the next step's stop code; SIGTERM through JAX's preemption sync point."""
    processes = start_processes(tmp_path, lambda i: endless_flags(tmp_path))
    outputs = finish(processes, before=at_step_10(lambda processes: processes[1].send_signal(signum)))
    assert [p.returncode for p in processes] == [status, status], outputs
    assert said in outputs[0] and "; saved " in outputs[0] and "--resume" in outputs[0], outputs
    step = load_checkpoint(str(tmp_path / "run" / "checkpoint.npz")).step
    assert 10 <= step < 1_000_000 and f"{said} {step};" in outputs[0], outputs


@pytest.mark.slow  # two JAX processes; the default run keeps the SIGTERM one
@pytest.mark.parametrize("victim", [1, 0], ids=["worker", "coordinator"])
def test_a_killed_process_ends_the_others_at_once_with_one_line_and_the_run_resumes(tmp_path, victim):
    processes = start_processes(tmp_path, lambda i: endless_flags(tmp_path))
    killed = []

    def kill(processes):
        processes[victim].kill()  # SIGKILL: no goodbye
        killed.append(time.monotonic())

    outputs = finish(processes, before=at_step_10(kill))
    survivor = processes[1 - victim]
    seconds = time.monotonic() - killed[0]  # an upper bound: finish() waited for both, in turn
    assert processes[victim].returncode == -signal.SIGKILL
    assert survivor.returncode == 2, outputs
    assert seconds < 10, seconds  # JAX alone: 100 s (its heartbeat timeout), then a C++ abort
    errors = [line for line in outputs[1 - victim].splitlines() if line.startswith("jaxrnn train: lost")]
    assert len(errors) == 1, outputs
    assert errors[0].startswith(f"jaxrnn train: lost process {victim} (it stopped without a word: killed or crashed?)")
    assert "Traceback" not in outputs[1 - victim] and "Check failure" not in outputs[1 - victim], outputs

    out = tmp_path / "run"
    saved = load_checkpoint(str(out / "checkpoint.npz")).step
    assert saved >= 5
    assert main(["train", *names_flags(tmp_path), "--out", str(out), "--resume", "--steps", str(saved + 2)]) == 0
    assert load_checkpoint(str(out / "checkpoint.npz")).step == saved + 2
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]


@pytest.mark.slow  # waits out a heartbeat timeout
def test_a_frozen_process_is_noticed_after_the_heartbeat_timeout(tmp_path):
    """SIGSTOP: the process lives but sends nothing. Its peer says so once `--heartbeat-timeout`
    passes (not at once, not after JAX's own much longer timeout) and exits 2, checkpoint kept."""
    timeout_s = 3
    processes = start_processes(tmp_path, lambda i: [*endless_flags(tmp_path), "--heartbeat-timeout", str(timeout_s)])
    frozen = []

    def freeze(processes):
        processes[1].send_signal(signal.SIGSTOP)
        frozen.append(time.monotonic())
        processes[0].wait(timeout=TIMEOUT_S)
        frozen.append(time.monotonic())
        processes[1].kill()

    outputs = finish(processes, before=at_step_10(freeze))
    assert processes[0].returncode == 2, outputs
    assert timeout_s - 1 <= frozen[1] - frozen[0] < timeout_s + 10, frozen[1] - frozen[0]
    errors = [line for line in outputs[0].splitlines() if line.startswith("jaxrnn train: lost")]
    assert len(errors) == 1 and errors[0].startswith("jaxrnn train: lost process 1 (no sign of life for 3 s"), outputs
    assert "Traceback" not in outputs[0], outputs
    assert load_checkpoint(str(tmp_path / "run" / "checkpoint.npz")).step >= 5


def test_a_heartbeat_timeout_below_a_second_is_refused(capsys):
    assert main(["train", "--heartbeat-timeout", "0", "--coordinator", "127.0.0.1:1", "--num-processes", "2",
                 "--process-id", "0"]) == 2  # fmt: skip
    assert "--heartbeat-timeout 0: expected at least 1 (seconds)" in capsys.readouterr().err
