"""Data parallelism with JAX's own SPMD: one mesh axis, `batch`, over every device.

The batch of each step is split over the devices; the parameters and the optimiser state are
replicated. `jax.jit` compiles the train step once for the whole mesh and inserts the
all-reduce of the gradients itself (the weight gradients are sums over the batch axis), so
there is no hand-written communication. The same code runs on several processes (machines)
after `initialize_distributed`: the mesh then spans every process's devices, each process
computes the same global batch on the host and hands its devices their rows.

Layouts: character ids `(m, W)`, row lengths `(m,)` and the carried hidden state `(m, n_a)`
are split on axis 0; scalars and parameters are replicated.

Processes must agree: at start-up they exchange a digest of their data and settings
(`agree_at_start`), and in every step a stop code (`process_codes`), so that an interrupted
or failed process stops all of them after the same step instead of leaving them waiting.
SIGTERM is JAX's in a multi-process run (its preemption notifier); every process asks
`reached_preemption_sync_point` after each step, and all of them get True after the same one.
A process that dies is noticed by `peers.PeerWatch`.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrnn.charlm.errors import CharLMError

BATCH = "batch"


def initialize_distributed(
    coordinator: str, num_processes: int, process_id: int, timeout_s: int = 300, heartbeat_timeout_s: int = 100
) -> None:
    """Joins a multi-process run (call before any other JAX call).

    Args:
      coordinator: `host:port` of process 0, reachable by every process.
      num_processes: the number of processes.
      process_id: this process's number, `0 … num_processes - 1`.
      timeout_s: how long to wait for every process to join.
      heartbeat_timeout_s: after how long without a heartbeat JAX's coordination service
        counts a process as dead, and then ends every other process with a fatal error.
    """
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout_s,
        heartbeat_timeout_seconds=heartbeat_timeout_s,
    )


def jax_handles_sigterm() -> bool:
    """Whether JAX's preemption notifier owns SIGTERM: a multi-process run with
    `jax_enable_preemption_service` on (the default)."""
    return jax.distributed.is_initialized() and bool(jax.config.jax_enable_preemption_service)


def reached_preemption_sync_point(steps_taken: int) -> bool:
    """Whether every process is to stop now because SIGTERM reached one of them.

    Call it on every process after every step with the number of steps this process has taken
    (1, 2, …; the same on every process). JAX's notifier tells every process of a SIGTERM; a
    protocol in the background then takes the largest count any process has reported and names
    the next one, at which every process gets True. The count starts afresh in each process,
    not at a resumed run's step: a notice that comes before the first call is met at count 1,
    while with the run's step (say 500) the sync point would be 1 and never reached (measured
    on jax 0.10.2 and 0.12). False where JAX does not handle SIGTERM (one process:
    `signals.StopSignals` does).
    """
    return jax_handles_sigterm() and multihost_utils.reached_preemption_sync_point(steps_taken)


def batch_mesh(device_count: int | None = None) -> Mesh:
    """A one-axis mesh named `batch` over the first `device_count` devices (default: all, every process)."""
    devices = jax.devices()
    if device_count is not None:
        if not 1 <= device_count <= len(devices):
            raise CharLMError(f"--devices {device_count}: expected 1 … {len(devices)} (the devices JAX sees)")
        if jax.process_count() > 1 and device_count != len(devices):
            raise CharLMError("--devices: a multi-process run uses every device of every process")
        devices = devices[:device_count]
    return Mesh(np.asarray(devices), (BATCH,))


def check_batch_divides(batch_size: int, mesh: Mesh) -> None:
    """The batch is split evenly over the mesh, so it must be a multiple of its size."""
    devices = mesh.devices.size
    if batch_size % devices:
        raise CharLMError(
            f"--batch-size {batch_size} does not split evenly over {devices} devices; "
            f"use a multiple of {devices} or --devices N with N dividing {batch_size}"
        )


def replicated(mesh: Mesh) -> NamedSharding:
    """The same whole value on every device."""
    return NamedSharding(mesh, PartitionSpec())


def rows(mesh: Mesh) -> NamedSharding:
    """`(m, …)` arrays (character ids, the hidden state) split over the batch axis 0."""
    return NamedSharding(mesh, PartitionSpec(BATCH, None))


def vector(mesh: Mesh) -> NamedSharding:
    """`(m,)` arrays (and one entry per device) split over the batch axis."""
    return NamedSharding(mesh, PartitionSpec(BATCH))


@functools.lru_cache(maxsize=16)
def process_codes(code: int, mesh: Mesh) -> jax.Array:
    """`(devices,)` int32: `code` on this process's devices (the other processes fill theirs)."""
    devices = mesh.devices.size
    return jax.make_array_from_callback((devices,), vector(mesh), lambda index: np.full(devices, code, np.int32)[index])


def agree_at_start(digest: str, failure: str | None) -> None:
    """Checks that every process starts the same run, on every process.

    Args:
      digest: sha256 (hex) of this process's data and settings.
      failure: why this process cannot start, or None.

    Raises:
      CharLMError: on every process, when a process failed (its own message there) or when
        the digests differ.
    """
    if jax.process_count() == 1:
        if failure is not None:
            raise CharLMError(failure)
        return
    payload = bytes(32) if failure is not None else bytes.fromhex(digest)  # the same size from every process
    mine = np.concatenate([[np.uint8(failure is not None)], np.frombuffer(payload, np.uint8)])
    everyone = np.asarray(multihost_utils.process_allgather(mine))  # (processes, 33)
    if failure is not None:
        raise CharLMError(failure)
    failed = [i for i in range(len(everyone)) if everyone[i, 0]]
    if failed:
        raise CharLMError(f"process {failed[0]} could not start (see its message); every process stops")
    digests = [bytes(row[1:]).hex() for row in everyone]
    differing = [i for i, d in enumerate(digests) if d != digests[0]]
    if differing:
        i = differing[0]
        raise CharLMError(
            f"process {i} has other data or settings than process 0 (sha256 {digests[i][:12]}… against "
            f"{digests[0][:12]}…); start every process with the same data, --val-data, flags and checkpoint"
        )


def any_process_failed(failed: bool) -> bool:
    """Whether `failed` holds on any process (on every process: a collective where there are several)."""
    if jax.process_count() == 1:
        return failed
    return bool(np.any(multihost_utils.process_allgather(np.asarray([failed], np.int32))))


def to_global(value, sharding: NamedSharding) -> jax.Array:
    """A global array from the same host value on every process; each process fills its own devices."""
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def tree_to_global(tree, sharding: NamedSharding):
    return jax.tree_util.tree_map(lambda leaf: to_global(leaf, sharding), tree)


def to_host(array: jax.Array) -> np.ndarray:
    """The whole value of a global array as numpy, on every process (gathers split arrays)."""
    if array.is_fully_addressable:
        return np.asarray(array)
    if array.sharding.is_fully_replicated:
        return np.asarray(array.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def tree_to_host(tree):
    return jax.tree_util.tree_map(to_host, tree)


def is_main_process() -> bool:
    """Process 0 prints and writes files; the others compute alongside it."""
    return jax.process_index() == 0
