"""The configuration of a training run: one frozen dataclass, stored in every checkpoint."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from jaxrnn._cells import CELL_NAMES
from jaxrnn.charlm.errors import CharLMError

CELLS = CELL_NAMES  # "vanilla" (the seed's), "gru", "lstm"
GRADIENTS = ("hand", "autodiff")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant")
CLIPPING = ("global-norm", "value", "none")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; each field is the command-line flag `--field-name`.

    The fields named in `RUN_OPTIONS` may change when a run is continued (`--resume`); the
    others define the run and must match the checkpoint's. The defaults come from measurements
    on the default corpus and on names (benchmarks/NOTES.md, "Training the character model").
    """

    data: str | None = None  # a UTF-8 file; None: the standard library's docstrings
    lines: bool = False  # one example per line
    val_data: str | None = None  # held-out data; None: hold out part of --data
    val_fraction: float | None = None  # None: min(1000, 10%) of the lines, or 10% of the text (≤ 100,000)
    eval_every: int = 500
    hidden_size: int = 256  # n_a
    cell: str = "vanilla"  # the recurrent cell: vanilla (the seed's), gru or lstm
    learn_initial_state: bool = False  # the initial state (a0; an LSTM's a0 and c0) is a parameter (else zeros)
    batch_size: int = 32  # m, rows per step, split over the devices
    chunk_length: int = 32  # T, the most characters per step and row (truncated BPTT)
    optimizer: str = "adamw"
    learning_rate: float = 0.01  # the peak of the schedule
    beta2: float = 0.99
    weight_decay: float = 0.01  # AdamW, on the matrices Wax, Waa, Wya
    schedule: str = "cosine"  # warmup, then cosine down to a tenth over --steps; or constant
    warmup_steps: int = 100
    clip: str = "global-norm"  # by global norm, per element (the course), or none
    clip_value: float = 1.0
    gradient: str = "hand"  # hand-derived backward, or "autodiff" (jax.grad)
    seed: int = 0
    steps: int = 3000  # total steps of the run
    checkpoint_every: int = 500
    sample_every: int = 500
    sample_length: int = 200
    temperature: float = 0.7

    def __post_init__(self):
        positive = ("eval_every", "hidden_size", "batch_size", "chunk_length", "steps", "checkpoint_every")
        for name in (*positive, "sample_every", "warmup_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "warmup_steps" else 1):
                kind = "an integer ≥ 0" if name == "warmup_steps" else "a positive integer"
                raise CharLMError(f"{flag(name)} {value!r}: expected {kind}")
        for name in ("learning_rate", "clip_value", "temperature"):
            if not float(getattr(self, name)) > 0:
                raise CharLMError(f"{flag(name)} {getattr(self, name)!r}: expected a positive number")
        if not 0 <= self.beta2 < 1:
            raise CharLMError(f"--beta2 {self.beta2!r}: expected a number from 0 up to but not including 1")
        if not 0 <= self.weight_decay < math.inf:
            raise CharLMError(f"--weight-decay {self.weight_decay!r}: expected a number ≥ 0")
        if self.sample_length < 0:
            raise CharLMError(f"--sample-length {self.sample_length}: expected 0 or more")
        if self.val_fraction is not None and not 0 <= self.val_fraction < 1:
            raise CharLMError(
                f"--val-fraction {self.val_fraction!r}: expected a number from 0 (no held-out set) "
                f"up to but not including 1"
            )
        if self.val_fraction is not None and self.val_data is not None:
            raise CharLMError("--val-data and --val-fraction both choose the held-out set; give one of them")
        choices = (
            ("cell", CELLS),
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("clip", CLIPPING),
            ("gradient", GRADIENTS),
        )
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise CharLMError(f"{flag(name)} {getattr(self, name)!r}: expected one of {', '.join(allowed)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config of `values` (a checkpoint's); a field it lacks takes its default (no `cell`: vanilla)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


RUN_OPTIONS = (
    "data",
    "val_data",
    "steps",
    "eval_every",
    "checkpoint_every",
    "sample_every",
    "sample_length",
    "temperature",
)


def flag(field: str) -> str:
    """The command-line flag of a `TrainConfig` field: `hidden_size` -> `--hidden-size`."""
    return "--" + field.replace("_", "-")
