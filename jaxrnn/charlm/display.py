"""What a training run shows: a progress bar (rich) or plain lines, samples, and the loss-curve PNG.

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
    """Progress as plain lines on stdout: step, loss, tokens/s and the time left."""

    def __init__(self, total: int, completed: int, tokens_per_step: int):
        self.total, self.tokens_per_step = total, tokens_per_step
        self.every = max(1, total // 20)
        self._start_step, self._start_time = completed, time.perf_counter()
        self._printed_step = completed

    def rates(self, step: int) -> tuple[float, float]:
        """`(tokens per second, seconds left)` since the display started."""
        elapsed = time.perf_counter() - self._start_time
        steps_per_second = (step - self._start_step) / elapsed if elapsed > 0 else 0.0
        left = (self.total - step) / steps_per_second if steps_per_second > 0 else math.inf
        return steps_per_second * self.tokens_per_step, left

    def update(self, step: int, loss: float) -> None:
        if step - self._printed_step < self.every and step != self.total:
            return
        self._printed_step = step
        tokens_per_second, left = self.rates(step)
        print(
            f"step {step}/{self.total}  loss {loss:.3f}  {tokens_per_second:,.0f} tokens/s  ETA {_eta(left)}",
            flush=True,
        )

    def message(self, text: str) -> None:
        print(text, flush=True)

    def close(self) -> None:
        pass


class RichDisplay(PlainDisplay):
    """A rich progress bar with loss, tokens/s and ETA; messages print above it."""

    def __init__(self, total: int, completed: int, tokens_per_step: int, rich_progress):
        super().__init__(total, completed, tokens_per_step)
        p = rich_progress
        self._progress = p.Progress(
            p.TextColumn("train"),
            p.BarColumn(),
            p.MofNCompleteColumn(),
            p.TextColumn("loss {task.fields[loss]}"),
            p.TextColumn("{task.fields[rate]} tokens/s"),
            p.TextColumn("ETA {task.fields[eta]}"),
        )
        self._task = self._progress.add_task("train", total=total, completed=completed, loss="-", rate="-", eta="-")
        self._progress.start()

    def update(self, step: int, loss: float) -> None:
        tokens_per_second, left = self.rates(step)
        self._progress.update(
            self._task, completed=step, loss=f"{loss:.3f}", rate=f"{tokens_per_second:,.0f}", eta=_eta(left)
        )

    def message(self, text: str) -> None:
        self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        self._progress.stop()


class QuietDisplay:
    """For the processes other than process 0 of a multi-process run."""

    def update(self, step: int, loss: float) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def make_display(total: int, completed: int, tokens_per_step: int, show: bool = True):
    """A `RichDisplay` when rich is installed, else a `PlainDisplay` (said once on stderr)."""
    if not show:
        return QuietDisplay()
    try:
        import rich.progress
    except ImportError:
        print(f"note: rich is not installed, so progress is shown as plain lines ({EXTRA_HINT})", file=sys.stderr)
        return PlainDisplay(total, completed, tokens_per_step)
    return RichDisplay(total, completed, tokens_per_step, rich.progress)


def plot_losses(losses: np.ndarray, path: str, title: str) -> bool:
    """Writes the loss curve (every step, and a moving average) to the PNG `path`, atomically.

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
    axes.plot(steps, losses, color="0.75", linewidth=0.8, label="each step")
    window = max(1, len(losses) // 50)
    if len(losses) >= window:
        finite = np.nan_to_num(losses, nan=0.0)
        counts = np.convolve(np.isfinite(losses), np.ones(window), "valid")
        average = np.convolve(finite, np.ones(window), "valid") / np.maximum(counts, 1)
        axes.plot(steps[window - 1 :], average, color="C0", label=f"mean of {window} steps")
    axes.set_xlabel("step")
    axes.set_ylabel("cross-entropy (nats per character)")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return True
