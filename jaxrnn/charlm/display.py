"""What a training run shows: a progress bar (rich) or plain lines, samples, held-out figures, and the loss-curve PNG.

rich and matplotlib come with the `cli` extra (`pip install "jaxrnn[cli]"`) and are imported
only here, when needed. Without rich the run prints a plain progress line every 5% of the
steps; without matplotlib it writes no plot. Either case is said once, on stderr.
"""

from __future__ import annotations

import io
import math
import sys
import time

import numpy as np

from jaxrnn.charlm.checkpoint import atomic_write

EXTRA_HINT = 'pip install "jaxrnn[cli]"'


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-:--:--"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class PlainDisplay:
    """Progress as plain lines on stdout: step, loss, held-out NLL, characters/s and the time left."""

    def __init__(self, total: int, completed: int):
        self.total = total
        self.every = max(1, total // 20)
        self._start_step, self._start_time = completed, time.perf_counter()
        self._printed_step = completed

    def rates(self, step: int, characters: int) -> tuple[float, float]:
        """`(real characters per second, seconds left)` since the display started."""
        elapsed = time.perf_counter() - self._start_time
        steps_per_second = (step - self._start_step) / elapsed if elapsed > 0 else 0.0
        left = (self.total - step) / steps_per_second if steps_per_second > 0 else math.inf
        return (characters / elapsed if elapsed > 0 else 0.0), left

    def update(self, step: int, loss: float, characters: int) -> None:
        """`loss`: the recent training loss; `characters`: real characters trained on since the start."""
        if step - self._printed_step < self.every and step != self.total:
            return
        self._printed_step = step
        characters_per_second, left = self.rates(step, characters)
        print(
            f"step {step}/{self.total}  loss {loss:.3f}  {characters_per_second:,.0f} chars/s  ETA {_eta(left)}",
            flush=True,
        )

    def validation(self, step: int, nll: float) -> None:
        print(f"step {step}/{self.total}  held-out {_nats_and_bits(nll)}", flush=True)

    def message(self, text: str) -> None:
        print(text, flush=True)

    def close(self) -> None:
        pass


def _nats_and_bits(nll: float) -> str:
    return f"{nll:.4f} nats/char ({nll / math.log(2):.4f} bits/char)"


class RichDisplay(PlainDisplay):
    """A rich progress bar with loss, held-out NLL, characters/s and ETA; messages print above it."""

    def __init__(self, total: int, completed: int, rich_progress):
        super().__init__(total, completed)
        p = rich_progress
        self._progress = p.Progress(
            p.TextColumn("train"),
            p.BarColumn(),
            p.MofNCompleteColumn(),
            p.TextColumn("loss {task.fields[loss]}"),
            p.TextColumn("held-out {task.fields[heldout]}"),
            p.TextColumn("{task.fields[rate]} chars/s"),
            p.TextColumn("ETA {task.fields[eta]}"),
        )
        fields = dict(loss="-", heldout="-", rate="-", eta="-")
        self._task = self._progress.add_task("train", total=total, completed=completed, **fields)
        self._progress.start()

    def update(self, step: int, loss: float, characters: int) -> None:
        characters_per_second, left = self.rates(step, characters)
        self._progress.update(
            self._task, completed=step, loss=f"{loss:.3f}", rate=f"{characters_per_second:,.0f}", eta=_eta(left)
        )

    def validation(self, step: int, nll: float) -> None:
        self._progress.update(self._task, heldout=f"{nll:.3f} ({nll / math.log(2):.3f} bits)")
        self.message(f"held-out at step {step}: {_nats_and_bits(nll)}")

    def message(self, text: str) -> None:
        self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        self._progress.stop()


class QuietDisplay:
    """For the processes other than process 0 of a multi-process run."""

    def update(self, step: int, loss: float, characters: int) -> None:
        pass

    def validation(self, step: int, nll: float) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def make_display(total: int, completed: int, show: bool = True):
    """A `RichDisplay` when rich is installed, else a `PlainDisplay` (said once on stderr)."""
    if not show:
        return QuietDisplay()
    try:
        import rich.progress
    except ImportError:
        print(f"note: rich is not installed, so progress is shown as plain lines ({EXTRA_HINT})", file=sys.stderr)
        return PlainDisplay(total, completed)
    return RichDisplay(total, completed, rich.progress)


def plot_losses(losses: np.ndarray, validation: np.ndarray, path: str, title: str) -> bool:
    """Writes the loss curves to the PNG `path`, atomically: the training loss of every step, its
    moving average, and the held-out NLL of each evaluation (`validation`, rows `(step, NLL)`).

    Returns False, after saying so on stderr, when matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print(f"note: matplotlib is not installed, so no loss plot is written ({EXTRA_HINT})", file=sys.stderr)
        return False
    losses = np.asarray(losses, np.float64)
    steps = np.arange(1, len(losses) + 1)
    figure = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(steps, losses, color="0.75", linewidth=0.8, label="training, each step")
    window = max(1, len(losses) // 50)
    if len(losses) >= window:
        average = np.convolve(losses, np.ones(window), "valid") / window
        axes.plot(steps[window - 1 :], average, color="C0", label=f"training, mean of {window} steps")
    if len(validation):
        axes.plot(validation[:, 0], validation[:, 1], "o-", color="C1", markersize=4, label="held-out (whole set)")
        best = int(np.argmin(validation[:, 1]))
        axes.annotate(
            f"{validation[best, 1]:.3f}",
            (validation[best, 0], validation[best, 1]),
            textcoords="offset points",
            xytext=(0, -14),
            ha="center",
            fontsize=8,
            color="C1",
        )
    axes.set_xlabel("step")
    axes.set_ylabel("cross-entropy (nats per character)")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return True
