"""Timing a set of built variants side by side, and the progress display.

The variants of one table are timed in interleaved rounds (hand, autodiff, …, GEMM, hand, …),
so the drift of a shared machine hits them alike; each row reports the median, min–max, the
ratio to a baseline, model FLOP/s and their share of the fastest square GEMM timed in the same
rounds, XLA's compiled temp memory, and how far the variant is from the oracle.
"""

from __future__ import annotations

import contextlib
import sys

from jaxrnn._measure import interleaved_timings
from jaxrnn.bench.problem import agreement
from jaxrnn.bench.variants import gemm_variant


class Progress:
    """A rich progress bar when rich is installed, else one line per task."""

    def __init__(self, total: int):
        self.total = total
        self._rich = None
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        try:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        except ImportError:
            return self
        self._rich = self._stack.enter_context(
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
        )
        self._task = self._rich.add_task("benchmark", total=self.total)
        return self

    def describe(self, text: str) -> None:
        if self._rich is None:
            print(f"  {text}", file=sys.stderr, flush=True)
        else:
            self._rich.update(self._task, description=text)

    def advance(self, _round: int | None = None) -> None:
        if self._rich is not None:
            self._rich.advance(self._task)

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)


def time_variants(
    variants,
    reference,
    flops: int,
    *,
    repeats: int,
    device,
    dtype,
    tolerance_keys: dict[str, str],
    progress: Progress,
    baseline: str = "hand",
) -> dict:
    """Times `variants` (and a square GEMM) interleaved: `{"gemm_gflops", "rows"}`.

    `tolerance_keys[name]` picks the row of `problem.LOSS_TOLERANCE`/`GRADIENT_TOLERANCE` that
    variant is held to; `baseline` names the variant the ratios divide by (else the first).
    """
    gemm, gemm_flops = gemm_variant(device, dtype=dtype)
    runs = {v.name: v.step for v in variants} | {"GEMM": gemm}
    timings = interleaved_timings(runs, repeats, warmup=2, on_round=progress.advance)
    # The ceiling is the fastest GEMM of the rounds: one that follows a large variant often runs
    # 30-50% slower (its median is no ceiling: the model products beat it), the fastest does not.
    gemm_gflops = gemm_flops / timings["GEMM"].low / 1e9
    base = timings.get(baseline, timings[variants[0].name]).median
    rows = []
    for v in variants:
        t = timings[v.name]
        gflops = flops / t.median / 1e9
        rows.append(
            {
                "variant": v.name,
                "median_s": t.median,
                "min_s": t.low,
                "max_s": t.high,
                "ratio_to_hand": t.median / base,
                "gflops": gflops,
                "percent_of_gemm": 100 * gflops / gemm_gflops,
                "temp_bytes": v.temp_bytes,
                **agreement(v, reference, tolerance_keys[v.name]),
                "tolerance": tolerance_keys[v.name],
                "samples_s": list(t.samples),
            }
        )
    return {"gemm_gflops": gemm_gflops, "gemm_samples_s": list(timings["GEMM"].samples), "rows": rows}


def disagreements(results: dict) -> list[str]:
    """`"table: variant (loss|gradients)"` for every row outside its tolerance."""
    tables = [*results["configs"], *results.get("bf16", [])]
    tables += [results[name] for name in ("long", "stack") if name in results]
    found = []
    for table in tables:
        for r in table["rows"]:
            what = [kind for kind, ok in (("loss", r["loss_matches"]), ("gradients", r["gradient_matches"])) if not ok]
            if what:
                found.append(f"{table['label']}: {r['variant']} ({', '.join(what)})")
    for r in results["sweep"]:
        if not (r["loss_matches"] and r["gradient_matches"]):
            found.append(f"sweep {r['axis']}={r['sizes'][r['axis']]}: {r['variant']}")
    return found
