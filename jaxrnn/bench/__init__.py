"""The benchmark behind `jaxrnn bench`: see `run.py` (orchestration), `variants.py` (what is
compared) and `report.py` (tables, JSON, plot)."""

from jaxrnn.bench.run import add_arguments, main

__all__ = ["add_arguments", "main"]
