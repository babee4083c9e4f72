"""Stopping `jaxrnn train` by signal: SIGINT (Ctrl-C) and SIGTERM (what schedulers send before SIGKILL).

The first signal asks the run to stop: the step under way finishes, every process learns of it
(the stop code of the next step; a lone process stops at once), all of them stop after the
same step, the checkpoint is written and the command exits with 128 + the signal's number:
130 for SIGINT, 143 for SIGTERM. A second signal stops at once: one line on stderr, nothing
more written, exit 128 + its number; `checkpoint.npz` keeps the last step written whole
(writes are atomic) and the next start clears any temporary file of a write cut short.

A handler is installed only where the signal is not ignored (a background job's SIGINT), and
for SIGTERM only where JAX does not own it: in a multi-process run JAX's preemption notifier
catches it (installed from C++ by `jax.distributed.initialize`, so Python still reports the
default handler) and the training loop asks `parallel.reached_preemption_sync_point` for the
step at which every process stops.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading

from jaxrnn.charlm.train import CONTINUE, INTERRUPT, TERMINATE

STOP_CODES = {signal.SIGINT: INTERRUPT, signal.SIGTERM: TERMINATE}
SIGNAL_OF_CODE = {code: signum for signum, code in STOP_CODES.items()}


def exit_status(code: int) -> int:
    """The exit status of a run stopped with `code` (`INTERRUPT`, `TERMINATE`): 128 + the signal's number."""
    return 128 + int(SIGNAL_OF_CODE[code])


def describe(code: int) -> str:
    """`"interrupted (SIGINT)"` or `"terminated (SIGTERM)"`."""
    return {INTERRUPT: "interrupted (SIGINT)", TERMINATE: "terminated (SIGTERM)"}[code]


@dataclasses.dataclass
class Progress:
    """Where a run is, for the one line printed when a process must end at once (a second
    signal, a lost peer); the training loop keeps it up to date.

    Attributes:
      checkpoint_path: the run's `checkpoint.npz` (None: not known yet).
      step: the steps taken (None: training has not started).
      saved_step: the step `checkpoint.npz` holds (None: none written).
      writer: whether this process writes the checkpoints (process 0); another one only
        knows which step was last handed to process 0 to write.
    """

    checkpoint_path: str | None = None
    step: int | None = None
    saved_step: int | None = None
    writer: bool = True

    def where(self) -> str:
        """`"at step N; PATH keeps step M (continue with: …)"`, or what else holds."""
        at = f"at step {self.step}" if self.step is not None else "before training"
        if self.checkpoint_path is None:
            return f"{at}; nothing was written"
        if self.saved_step is None:
            return f"{at}; no checkpoint was written to {self.checkpoint_path}"
        out = os.path.dirname(self.checkpoint_path)
        kept = f"keeps step {self.saved_step}" if self.writer else "keeps the last step process 0 wrote"
        return f"{at}; {self.checkpoint_path} {kept} (continue with: jaxrnn train --out {out} --resume)"


class StopSignals:
    """While active, the first SIGINT or SIGTERM sets `requested`; a second one exits at once.

    Args:
      progress: where the run is (`Progress`), for the line a second signal prints.
      signals: the signals to handle, of `STOP_CODES` (SIGINT and SIGTERM).

    Attributes:
      requested: `CONTINUE`, or the stop code of the first signal (`INTERRUPT`, `TERMINATE`).
      progress: as given.

    After a signal the handlers stay installed when the context exits, so that one more
    signal while the process shuts down still exits at once, with its line.
    """

    def __init__(self, progress: Progress | None = None, signals=tuple(STOP_CODES)):
        self.requested = CONTINUE
        self.progress = progress or Progress()
        self._signals = signals
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self._signals:
                previous = signal.getsignal(signum)
                if previous not in (signal.SIG_IGN, None):  # None: a handler Python cannot put back
                    self._previous[signum] = previous
                    signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.requested == CONTINUE:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)

    def _handle(self, signum, frame) -> None:
        if self.requested == CONTINUE:
            self.requested = STOP_CODES[signum]
            return
        # Stopping at once: no exception (it could land in a finaliser or an atexit hook and be
        # swallowed there), no buffered print (the main thread may be inside one): a raw write, then exit.
        name = signal.Signals(signum).name
        line = f"jaxrnn train: stopped at once by a second signal ({name}) {self.progress.where()}"
        os.write(2, (line + "\n").encode("utf-8", "replace"))
        os._exit(128 + int(signum))
