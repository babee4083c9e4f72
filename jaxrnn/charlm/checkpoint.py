"""Checkpoints: one `.npz` file (numpy arrays plus a JSON header), written atomically.

Contents: the parameters, the optimiser state (its leaves in `jax.tree_util` order; the
structure comes back from the optimiser named in the config), the hidden state carried into
the next chunk, the random key, the step, the loss of every step so far, the held-out NLL of
every evaluation so far, the digest of the data, the vocabulary and the training
configuration. Nothing is pickled: `np.load(..., allow_pickle=False)` reads it.

Writes go to a temporary file in the same directory, are flushed to disk, then renamed over
the old file (`os.replace` is atomic) and the directory is flushed too, so a crash, a full
disk or Ctrl-C while writing leaves the previous checkpoint whole, and a finished write
survives a power cut. The file gets the mode of any new file (0666 less the umask).
Non-finite parameters (a diverged run) are never written.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from jaxrnn import _validate
from jaxrnn.charlm.corpus import Vocabulary
from jaxrnn.charlm.errors import CharLMError

_FORMAT_FAMILY = "jaxrnn.charlm.checkpoint/"
CHECKPOINT_FORMAT = _FORMAT_FAMILY + "2"
CHECKPOINT_NAME = "checkpoint.npz"
BEST_NAME = "best.npz"  # the checkpoint of the lowest held-out NLL so far


class Checkpoint(NamedTuple):
    """Everything needed to continue a run bit for bit, as host (numpy) values.

    Attributes:
      config: the training configuration (`TrainConfig.to_dict()`).
      vocabulary: the characters of the model.
      step: the number of training steps taken.
      params: `Wax (n_a, V)`, `Waa (n_a, n_a)`, `Wya (V, n_a)`, `ba (n_a, 1)`, `by (V, 1)`, and
        `a0 (n_a,)` when the initial state is learned.
      opt_state: the optimiser state's leaves, in `jax.tree_util.tree_leaves` order.
      hidden: `(m, n_a)`, the hidden state carried into the next chunk.
      key: the `jax.random` key (uint32) the periodic samples draw from.
      losses: `(step,)` float32, the mean loss per character of every step taken.
      validation: `(k, 2)` float64, `(step, held-out NLL in nats per character)` of every
        evaluation so far.
      data_digest: sha256 (hex) of the data and held-out data the run reads.
    """

    config: dict[str, Any]
    vocabulary: Vocabulary
    step: int
    params: dict[str, np.ndarray]
    opt_state: list[np.ndarray]
    hidden: np.ndarray
    key: np.ndarray
    losses: np.ndarray
    validation: np.ndarray
    data_digest: str


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Calls `write(file)` on a temporary file next to `path`, then renames it to `path`.

    On any error (or KeyboardInterrupt) the temporary file is removed and `path` is untouched.
    After the rename the directory is flushed to disk, so the new name is durable too.
    """
    directory, name = os.path.split(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, new_file_mode())  # mkstemp makes it private; a checkpoint is an ordinary file
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def new_file_mode() -> int:
    """The mode `open()` gives a new file: 0o666 less the process's umask."""
    umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: str) -> None:
    """Flushes a directory's entries to disk (POSIX; elsewhere directories cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def save_checkpoint(path: str, checkpoint: Checkpoint) -> None:
    """Writes `checkpoint` to `path` atomically.

    Raises:
      CharLMError: a parameter is NaN or infinite (the file at `path` is kept as it was).
      OSError: the file system refused the write (the file at `path` is kept as it was).
    """
    for name, value in checkpoint.params.items():
        if not np.all(np.isfinite(value)):
            raise CharLMError(
                f"training diverged: parameters['{name}'] is not finite at step {checkpoint.step}; "
                f"not writing it over {path} (lower --learning-rate or --clip)"
            )
    header = {
        "format": CHECKPOINT_FORMAT,
        "step": int(checkpoint.step),
        "vocabulary": checkpoint.vocabulary.characters,
        "config": checkpoint.config,
        "params": sorted(checkpoint.params),
        "opt_state_leaves": len(checkpoint.opt_state),
        "data_digest": checkpoint.data_digest,
    }
    arrays = {
        "header": np.asarray(json.dumps(header)),
        **{f"params.{name}": np.asarray(value) for name, value in checkpoint.params.items()},
        **{f"opt_state.{i}": np.asarray(leaf) for i, leaf in enumerate(checkpoint.opt_state)},
        "hidden": np.asarray(checkpoint.hidden),
        "key": np.asarray(checkpoint.key),
        "losses": np.asarray(checkpoint.losses, np.float32),
        "validation": np.asarray(checkpoint.validation, np.float64).reshape(-1, 2),
    }
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path: str) -> Checkpoint:
    """Reads and checks a checkpoint written by `save_checkpoint`.

    Raises:
      CharLMError: no file, or a file that is not a whole, consistent jaxrnn checkpoint.
    """
    if not os.path.isfile(path):
        raise CharLMError(f"no checkpoint at {path}")
    header = None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        header = json.loads(str(arrays["header"]))
        if header.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"format {header.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
        checkpoint = Checkpoint(
            config=dict(header["config"]),
            vocabulary=Vocabulary(header["vocabulary"]),
            step=int(header["step"]),
            params={name: arrays[f"params.{name}"] for name in header["params"]},
            opt_state=[arrays[f"opt_state.{i}"] for i in range(int(header["opt_state_leaves"]))],
            hidden=arrays["hidden"],
            key=arrays["key"],
            losses=arrays["losses"],
            validation=arrays["validation"],
            data_digest=str(header["data_digest"]),
        )
        _check_consistent(checkpoint)
    except Exception as err:  # any failure to read means the same to the user: not a usable checkpoint
        written_by = str(header.get("format", "")) if isinstance(header, dict) else ""
        if written_by.startswith(_FORMAT_FAMILY) and written_by != CHECKPOINT_FORMAT:
            raise CharLMError(
                f"{path} was written by another version of jaxrnn (format {header['format']}, this one reads "
                f"{CHECKPOINT_FORMAT}); start a new run, or use that version to sample from it"
            ) from None
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        raise CharLMError(f"{path} is not a readable jaxrnn checkpoint (corrupted or truncated? {reason})") from None
    return checkpoint


def _check_consistent(checkpoint: Checkpoint) -> None:
    layer = {name: value for name, value in checkpoint.params.items() if name != "a0"}
    _, (n_x, n_a, n_y) = _validate.parameters("checkpoint", layer)
    if "a0" in checkpoint.params and checkpoint.params["a0"].shape != (n_a,):
        raise ValueError(f"initial state a0 of shape {checkpoint.params['a0'].shape} for n_a={n_a}")
    size = len(checkpoint.vocabulary)
    if n_x != size or n_y != size:
        raise ValueError(f"parameters for n_x={n_x}, n_y={n_y} but a vocabulary of {size} characters")
    if n_a != checkpoint.config["hidden_size"]:
        raise ValueError(f"parameters for n_a={n_a} but a config with hidden_size={checkpoint.config['hidden_size']}")
    if checkpoint.hidden.shape != (checkpoint.config["batch_size"], n_a):
        raise ValueError(f"hidden state of shape {checkpoint.hidden.shape} for n_a={n_a}")
    if checkpoint.losses.shape != (checkpoint.step,):
        raise ValueError(f"{checkpoint.losses.shape[0]} losses for step {checkpoint.step}")
    if checkpoint.validation.ndim != 2 or checkpoint.validation.shape[1] != 2:
        raise ValueError(f"validation history of shape {checkpoint.validation.shape}, expected (k, 2)")
