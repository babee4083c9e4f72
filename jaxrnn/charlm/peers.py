"""Noticing at once that a process of a multi-process run is gone: killed, crashed or frozen.

JAX's coordination service counts a process as dead only after `heartbeat_timeout_seconds`
without a heartbeat (100 s by default), and then ends every other process from C++: a fatal
log line, a stack trace, SIGABRT (exit 134). Its one hook, the distributed client's
`missed_heartbeat_callback`, is not reachable through `jax.distributed.initialize`, and set
through the private API it aborts with `std::bad_cast` in jaxlib 0.10.2 and 0.12 alike. A
process that loses process 0 goes the same way within a second (the service lives there).

So the processes of a run also watch each other over connections of their own: process 0
listens on a free port (all interfaces), tells the others the port and a random token through
a JAX broadcast, and every other process connects to it. Each side sends a heartbeat every
second. A process that exits or is killed has its connection closed by the kernel at once; one
that freezes or is cut off falls silent. Either way the others print one line and exit with
status 2 (process 0 first tells the rest which process was lost, and waits a moment for them
to go, since JAX's service dies with it). A process that ends normally says goodbye first
(`PeerWatch.close`), so its end is not taken for a loss; one that ends with an unexpected
error does not, so the others stop too. JAX's own heartbeat timeout, set to
`JAX_TIMEOUT_FACTOR` times ours, stays as the backstop.

What this cannot catch: a native abort that races it. When a process dies in the middle of a
collective, the gloo transport thread of a peer can abort that peer from C++ in the same
instant (`std::terminate`, seen once in about 35 kills on CPU), before any Python code runs.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
import threading
import time

import numpy as np
from jax.experimental import multihost_utils

from jaxrnn.charlm.errors import CharLMError
from jaxrnn.charlm.signals import Progress

BEAT_INTERVAL_S = 1.0
JAX_TIMEOUT_FACTOR = 2  # JAX's heartbeat timeout, in multiples of ours: ours always acts first
LOST_EXIT_STATUS = 2
_TOKEN_BYTES = 16
_MESSAGE = struct.Struct("!ci")  # a kind and a process id
_BEAT, _GOODBYE, _LOST, _HELLO = b".", b"B", b"L", b"H"


class PeerWatch:
    """The connections of one process to the others (process 0: to each; the others: to 0).

    Args:
      connections: `{process id: connected socket}`.
      process_id: this process's number.
      timeout_s: seconds of silence after which a process counts as lost.
      progress: where the run is, for the line printed when a process is lost.
    """

    def __init__(self, connections: dict[int, socket.socket], process_id: int, timeout_s: float, progress: Progress):
        self._connections = connections
        self._process_id, self._timeout_s, self._progress = process_id, timeout_s, progress
        self._finished: set[int] = set()
        self._lock = threading.Lock()
        self._closing = False
        for peer, connection in connections.items():
            connection.settimeout(timeout_s)
            threading.Thread(target=self._listen, args=(peer, connection), daemon=True).start()
        threading.Thread(target=self._beat, daemon=True).start()

    def close(self) -> None:
        """Says goodbye to every connected process (this one ends normally) and stops watching."""
        with self._lock:
            self._closing = True
            for connection in self._connections.values():
                _send(connection, _GOODBYE, self._process_id)

    def linger(self) -> None:
        """Waits a moment without saying goodbye: time for the watch to name a lost process (and
        exit) when an error in a collective came from it. Then the others, too, will see this
        process go without a word."""
        time.sleep(2 * BEAT_INTERVAL_S)

    def _beat(self) -> None:
        while True:
            time.sleep(BEAT_INTERVAL_S)
            with self._lock:
                if self._closing:
                    return
                for connection in self._connections.values():
                    _send(connection, _BEAT, self._process_id)

    def _listen(self, peer: int, connection: socket.socket) -> None:
        while True:
            try:
                kind, process = _MESSAGE.unpack(_receive(connection, _MESSAGE.size))
            except TimeoutError:
                return self._lost(peer, f"no sign of life for {self._timeout_s:g} s: frozen or cut off?")
            except (ConnectionError, OSError):
                return self._lost(peer, "it stopped without a word: killed or crashed?")
            if kind == _GOODBYE:
                with self._lock:
                    self._finished.add(peer)
                return
            if kind == _LOST:
                return self._lost(process, "noticed by process 0")

    def _lost(self, process: int, why: str) -> None:
        with self._lock:
            if self._closing or process in self._finished:
                return
            self._closing = True  # no further beats, and only one line
            others = [c for p, c in self._connections.items() if p not in self._finished and p != process]
            for connection in others:
                _send(connection, _LOST, process)
        line = f"jaxrnn train: lost process {process} ({why}); the run stops {self._progress.where()}"
        os.write(2, (line + "\n").encode("utf-8", "replace"))
        if self._process_id == 0:  # JAX's service dies with this process: let the others end first
            deadline = time.monotonic() + 2 * BEAT_INTERVAL_S
            for connection in others:
                _wait_closed(connection, deadline)
        os._exit(LOST_EXIT_STATUS)


def watch_peers(coordinator: str, timeout_s: float, progress: Progress) -> PeerWatch:
    """Connects the processes of the run (call on every process right after `initialize_distributed`).

    Args:
      coordinator: `host:port` of process 0 (`--coordinator`); process 0 listens on another,
        free port of the same host.
      timeout_s: seconds of silence after which a process counts as lost (`--heartbeat-timeout`).
      progress: where the run is, for the line printed when a process is lost.

    Raises:
      CharLMError: a process could not connect within `timeout_s`.
    """
    import jax

    process_id, count = jax.process_index(), jax.process_count()
    server = None
    if process_id == 0:
        family = socket.AF_INET6 if socket.has_dualstack_ipv6() else socket.AF_INET
        server = socket.create_server(("", 0), family=family, dualstack_ipv6=family == socket.AF_INET6)
        address = struct.pack("!H", server.getsockname()[1]) + secrets.token_bytes(_TOKEN_BYTES)
    else:
        address = bytes(2 + _TOKEN_BYTES)
    shared = multihost_utils.broadcast_one_to_all(np.frombuffer(address, np.uint8))
    shared = np.asarray(shared, np.uint8).tobytes()
    (port,), token = struct.unpack("!H", shared[:2]), shared[2:]
    if server is not None:
        with server:
            return PeerWatch(_accept(server, token, count, timeout_s), process_id, timeout_s, progress)
    host = coordinator.rpartition(":")[0].strip("[]")
    try:
        connection = socket.create_connection((host, port), timeout=timeout_s)
        connection.sendall(token + _MESSAGE.pack(_HELLO, process_id))
    except OSError as err:
        raise CharLMError(
            f"cannot connect to process 0 at {host}:{port} to watch it ({err.strerror or err}); the processes "
            f"of a run must reach each other on any port, as JAX's collectives do"
        ) from None
    return PeerWatch({0: connection}, process_id, timeout_s, progress)


def _accept(server: socket.socket, token: bytes, count: int, timeout_s: float) -> dict[int, socket.socket]:
    """The connection of every other process, each known by its hello (the token, then its id)."""
    connections: dict[int, socket.socket] = {}
    deadline = time.monotonic() + timeout_s
    while len(connections) < count - 1:
        server.settimeout(max(0.0, deadline - time.monotonic()))
        try:
            connection, _ = server.accept()
            connection.settimeout(max(0.1, deadline - time.monotonic()))
            hello = _receive(connection, len(token) + _MESSAGE.size)
        except TimeoutError:
            missing = sorted(set(range(1, count)) - set(connections))
            raise CharLMError(
                f"process(es) {', '.join(map(str, missing))} did not connect to process 0 within "
                f"--heartbeat-timeout {timeout_s:g} s"
            ) from None
        except OSError:
            continue
        kind, process = _MESSAGE.unpack(hello[len(token) :])
        if hello[: len(token)] != token or kind != _HELLO or not 0 < process < count or process in connections:
            connection.close()  # not one of ours
            continue
        connections[process] = connection
    return connections


def _send(connection: socket.socket, kind: bytes, process: int) -> None:
    try:
        connection.sendall(_MESSAGE.pack(kind, process))
    except OSError:
        pass  # a broken connection is the listener's news


def _receive(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _wait_closed(connection: socket.socket, deadline: float) -> None:
    """Reads until the other side closes the connection, or until `deadline`."""
    try:
        while (left := deadline - time.monotonic()) > 0:
            connection.settimeout(left)
            if not connection.recv(64):
                return
    except OSError:
        return
