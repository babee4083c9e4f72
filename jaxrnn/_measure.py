"""Measurement helpers shared by `jaxrnn bench` and `jaxrnn compare`.

Timings are taken side by side in one process: the variants run interleaved
(A B C, B C A, C A B, ...), so drift of a shared machine hits every variant alike; report medians
and ratios, not single runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import jax


class MemoryUse(NamedTuple):
    """Bytes, from XLA's compiled memory analysis."""

    temp: int
    argument: int
    output: int
    generated_code: int


def compiled_memory(fn: Callable, *args) -> MemoryUse:
    """What XLA allocates for `jax.jit(fn)(*args)`: temp (scratch and saved residuals) etc."""
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    return MemoryUse(
        int(analysis.temp_size_in_bytes),
        int(analysis.argument_size_in_bytes),
        int(analysis.output_size_in_bytes),
        int(analysis.generated_code_size_in_bytes),
    )


class Timing(NamedTuple):
    """Seconds per call."""

    median: float
    low: float
    high: float
    samples: tuple[float, ...]


def interleaved_timings(
    variants: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 2,
    on_round: Callable[[int], None] | None = None,
) -> dict[str, Timing]:
    """Times each zero-argument callable `repeats` times, interleaved, after `warmup` rounds.

    Each callable must return JAX arrays (they are blocked on, so the time is the device's).
    `on_round(i)` is called after each timed round (for a progress display).
    """
    for _ in range(warmup):
        for run in variants.values():
            jax.block_until_ready(run())
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for i in range(repeats):
        # Each round starts one variant later, so no variant is always the one after a given other.
        for name in order[i % len(order) :] + order[: i % len(order)]:
            start = time.perf_counter()
            jax.block_until_ready(variants[name]())
            samples[name].append(time.perf_counter() - start)
        if on_round is not None:
            on_round(i)
    return {name: Timing(statistics.median(s), min(s), max(s), tuple(s)) for name, s in samples.items()}
