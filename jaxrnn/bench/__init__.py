"""The benchmark behind `jaxrnn bench`: `run.py` (options, orchestration), `problem.py` (the
shared numbers, workloads, oracle and agreement checks), `variants.py` and `frameworks.py` (the
single-layer steps compared), `stacks.py` (bidirectional stacks), `precision.py` (bfloat16),
`linearity.py` (time at T and 4T), `compile_time.py` (first-call build time), `timing.py`
(interleaved rounds) and `report.py` (tables, JSON, plot)."""

from jaxrnn.bench.run import add_arguments, main

__all__ = ["add_arguments", "main"]
