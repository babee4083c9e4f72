"""The configuration of a training run: one frozen dataclass, stored in every checkpoint."""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxrnn.charlm.errors import CharLMError

GRADIENTS = ("hand", "autodiff")
OPTIMIZERS = ("adam", "sgd")
CLIPPING = ("value", "global-norm", "none")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; each field is the command-line flag `--field-name`.

    The fields named in `RUN_OPTIONS` may change when a run is continued (`--resume`); the
    others define the run and must match the checkpoint's.
    """

    data: str | None = None  # a UTF-8 file; None: the standard library's docstrings
    lines: bool = False  # one example per line
    hidden_size: int = 256  # n_a
    batch_size: int = 32  # m, rows per step, split over the devices
    chunk_length: int = 32  # T, characters per step and row (truncated BPTT)
    optimizer: str = "adam"
    learning_rate: float = 0.003
    clip: str = "value"  # per element (the course), "global-norm", or "none"
    clip_value: float = 5.0
    gradient: str = "hand"  # hand-derived backward, or "autodiff" (jax.grad)
    seed: int = 0
    steps: int = 3000  # total steps of the run
    checkpoint_every: int = 500
    sample_every: int = 500
    sample_length: int = 200
    temperature: float = 0.7

    def __post_init__(self):
        for name in ("hidden_size", "batch_size", "chunk_length", "steps", "checkpoint_every", "sample_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CharLMError(f"{flag(name)} {value!r}: expected a positive integer")
        for name in ("learning_rate", "clip_value", "temperature"):
            if not float(getattr(self, name)) > 0:
                raise CharLMError(f"{flag(name)} {getattr(self, name)!r}: expected a positive number")
        if self.sample_length < 0:
            raise CharLMError(f"--sample-length {self.sample_length}: expected 0 or more")
        for name, choices in (("optimizer", OPTIMIZERS), ("clip", CLIPPING), ("gradient", GRADIENTS)):
            if getattr(self, name) not in choices:
                raise CharLMError(f"{flag(name)} {getattr(self, name)!r}: expected one of {', '.join(choices)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


RUN_OPTIONS = ("data", "steps", "checkpoint_every", "sample_every", "sample_length", "temperature")


def flag(field: str) -> str:
    """The command-line flag of a `TrainConfig` field: `hidden_size` -> `--hidden-size`."""
    return "--" + field.replace("_", "-")
