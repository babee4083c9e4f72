"""Checkpoints: one `.npz` file (numpy arrays plus a JSON header), written atomically, checked whole on load.

Contents: the parameters, the optimiser state (its leaves in `jax.tree_util` order; the
structure comes back from the optimiser named in the config), the state carried into the next
chunk (`hidden`, and an LSTM's `cell_state`), the random key, the step, the loss of every
step so far, the held-out NLL of every evaluation so far, the digest of the data, the
vocabulary and the training configuration (its cell included). Nothing is pickled:
`np.load(..., allow_pickle=False)` reads it. Format 3; format 2 (before `--cell`: a vanilla
model) is read as well.

Writes go to a temporary file `.NAME.XXXXXXXX.tmp` in the same directory, are flushed to disk,
then renamed over the old file (`os.replace` is atomic) and the directory is flushed too, so a
crash, a full disk or Ctrl-C while writing leaves the previous checkpoint whole, and a finished
write survives a power cut. Only `kill -9` (or a power cut) in the middle of a write leaves
the temporary file behind; `remove_stale_temporary_files` clears those when a run starts. The
file gets the mode of any new file (0666 less the umask). Non-finite parameters (a diverged
run) are never written.

Loading checks every array against the header and the config — names, shapes, dtypes, and
finiteness where a value must be finite — so a damaged or hand-edited file is refused with one
line naming what is wrong, never half-used.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO, NamedTuple

import jax
import numpy as np

from jaxrnn import LSTMState, _cells
from jaxrnn.charlm.config import TrainConfig
from jaxrnn.charlm.corpus import Vocabulary
from jaxrnn.charlm.errors import CharLMError
from jaxrnn.charlm.model import INITIAL_STATE, parameter_names
from jaxrnn.charlm.optimizer import opt_state_mismatch

_FORMAT_FAMILY = "jaxrnn.charlm.checkpoint/"
CHECKPOINT_FORMAT = _FORMAT_FAMILY + "3"
READABLE_FORMATS = (_FORMAT_FAMILY + "2", CHECKPOINT_FORMAT)  # 2: before --cell, a vanilla model
CHECKPOINT_NAME = "checkpoint.npz"
BEST_NAME = "best.npz"  # the checkpoint of the lowest held-out NLL so far
FLOAT = np.dtype(np.float32)  # every parameter, moment and carried state of jaxrnn train
_ZIP_MAGIC = b"PK\x03\x04"
_TEMPORARY = r"\.{name}\.[a-z0-9_]{{8}}\.tmp"  # what tempfile.mkstemp makes of prefix ".NAME." and suffix ".tmp"


class Checkpoint(NamedTuple):
    """Everything needed to continue a run bit for bit, as host (numpy) values.

    Attributes:
      config: the training configuration (`TrainConfig.to_dict()`; on load every field is
        there, a format-2 file's missing `cell` as "vanilla").
      vocabulary: the characters of the model.
      step: the number of training steps taken.
      params: see `jaxrnn.charlm.model`: `Wax (G·n_a, V)`, `Waa (G·n_a, n_a)`, `ba (G·n_a, 1)`,
        the GRU's `bhn (n_a, 1)`, `Wya (V, n_a)`, `by (V, 1)`, and `a0 (n_a,)` (an LSTM's `a0`,
        `c0`) when the initial state is learned; float32.
      opt_state: the optimiser state's leaves, in `jax.tree_util.tree_leaves` order.
      hidden: the state carried into the next chunk: `(m, n_a)`, or an LSTM's `LSTMState(h, c)`.
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
    hidden: Any
    key: np.ndarray
    losses: np.ndarray
    validation: np.ndarray
    data_digest: str


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Calls `write(file)` on a temporary file next to `path`, then renames it to `path`.

    On any error (or KeyboardInterrupt) the temporary file is removed and `path` is untouched;
    an `OSError` names `path` (`err.filename`). After the rename the directory is flushed to
    disk, so the new name is durable too.
    """
    directory, name = os.path.split(os.path.abspath(path))
    try:
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
    except OSError as err:
        if err.filename is None:  # a failed write() or fsync() names no file
            raise OSError(err.errno, err.strerror, path) from err
        raise


def remove_stale_temporary_files(directory: str, names: Iterable[str]) -> list[str]:
    """Removes the temporary files `atomic_write` left in `directory` for `names` when killed mid-write.

    Only regular files of this user named `.NAME.XXXXXXXX.tmp` (what `atomic_write` makes for
    `NAME` in `names`) are removed; nothing else is touched. Call it when no write of the run
    is under way (at its start). Returns the names of the removed files.
    """
    pattern = re.compile("|".join(_TEMPORARY.format(name=re.escape(name)) for name in names))
    removed = []
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if not pattern.fullmatch(entry):
            continue
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid():
                os.unlink(path)
                removed.append(entry)
    return removed


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
      OSError: the file system refused the write (the file at `path` is kept as it was); its
        `filename` is `path`.
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
    hidden = checkpoint.hidden
    carried = {"hidden": hidden.h, "cell_state": hidden.c} if isinstance(hidden, LSTMState) else {"hidden": hidden}
    arrays = {
        "header": np.asarray(json.dumps(header)),
        **{f"params.{name}": np.asarray(value) for name, value in checkpoint.params.items()},
        **{f"opt_state.{i}": np.asarray(leaf) for i, leaf in enumerate(checkpoint.opt_state)},
        **{name: np.asarray(value) for name, value in carried.items()},
        "key": np.asarray(checkpoint.key),
        "losses": np.asarray(checkpoint.losses, np.float32),
        "validation": np.asarray(checkpoint.validation, np.float64).reshape(-1, 2),
    }
    atomic_write(path, lambda f: np.savez(f, **arrays))


class _Unreadable(Exception):
    """The file cannot be read as an archive of plain arrays (damaged, or not a checkpoint)."""


def load_checkpoint(path: str) -> Checkpoint:
    """Reads a checkpoint written by `save_checkpoint` and checks every part of it.

    Raises:
      CharLMError: no file; a file that is not a whole `.npz` archive of plain arrays; one of
        another version; or one whose contents are not those of a jaxrnn checkpoint: a missing
        or extra array, a shape or dtype that does not fit the config and vocabulary, a
        non-finite parameter, optimiser moment or carried state, a key that is not a
        `jax.random` key. The message is one line and names the array.
    """
    if not os.path.isfile(path):
        raise CharLMError(f"no checkpoint at {path}")
    header = None
    try:
        arrays = _read_arrays(path)
        header = json.loads(str(arrays.pop("header")))
        if header.get("format") not in READABLE_FORMATS:
            raise ValueError(f"format {header.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
        checkpoint = _checked(header, arrays)
    except _Unreadable as err:
        raise CharLMError(f"{path} is not a readable jaxrnn checkpoint (corrupted or truncated? {err})") from None
    except Exception as err:  # any failure to read means the same to the user: not a usable checkpoint
        written_by = str(header.get("format", "")) if isinstance(header, dict) else ""
        if written_by.startswith(_FORMAT_FAMILY) and written_by not in READABLE_FORMATS:
            raise CharLMError(
                f"{path} was written by another version of jaxrnn (format {header['format']}, this one reads "
                f"{' and '.join(READABLE_FORMATS)}); start a new run, or use that version to sample from it"
            ) from None
        reason = str(err) if isinstance(err, (ValueError, CharLMError)) else f"{type(err).__name__}: {err}"
        raise CharLMError(f"{path} is not a readable jaxrnn checkpoint: {' '.join(reason.split())}") from None
    return checkpoint


def _read_arrays(path: str) -> dict[str, np.ndarray]:
    """Every array of the `.npz` archive at `path`; `_Unreadable` if it is not one of plain arrays."""
    with open(path, "rb") as f:
        start = f.read(len(_ZIP_MAGIC))
    if start != _ZIP_MAGIC:  # np.load would take anything else for a pickle and suggest loading it unsafely
        raise _Unreadable("the file is empty" if not start else "not an .npz (zip) archive")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # every member against its CRC-32: numpy does not check them all
        if damaged is not None:
            raise _Unreadable(f"{damaged} fails its CRC check")
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except _Unreadable:
        raise
    except ValueError as err:
        if "pickle" in str(err):
            raise _Unreadable("it holds a pickled (object) array, which a jaxrnn checkpoint never has") from None
        raise _Unreadable(f"ValueError: {err}") from None
    except Exception as err:
        raise _Unreadable(f"{type(err).__name__}: {' '.join(str(err).split())}") from None
    if "header" not in arrays:
        raise _Unreadable("it has no header array")
    return arrays


def _checked(header: dict, arrays: dict[str, np.ndarray]) -> Checkpoint:
    """The checkpoint of `header` and `arrays`, each array checked; ValueError names the first that is wrong."""
    try:
        config = TrainConfig.from_dict(dict(header["config"]))
    except CharLMError as err:
        raise ValueError(f"its config: {err}") from None
    vocabulary = Vocabulary(header["vocabulary"])
    step = header["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step {step!r} in its header, expected an integer ≥ 0")
    digest = header["data_digest"]
    if not isinstance(digest, str) or not re.fullmatch("[0-9a-f]{64}", digest):
        raise ValueError(f"data_digest {digest!r} in its header, expected 64 hex digits (sha256)")
    leaves = header["opt_state_leaves"]
    expected_arrays = {f"params.{name}" for name in header["params"]} | {f"opt_state.{i}" for i in range(leaves)}
    expected_arrays |= {"hidden", "key", "losses", "validation"} | ({"cell_state"} if config.cell == "lstm" else set())
    missing, extra = sorted(expected_arrays - set(arrays)), sorted(set(arrays) - expected_arrays)
    if missing or extra:
        raise ValueError(f"arrays missing: {missing or 'none'}; unexpected: {extra or 'none'}")

    params = {name: arrays[f"params.{name}"] for name in header["params"]}
    _check_parameters(params, config, len(vocabulary))
    opt_state = [arrays[f"opt_state.{i}"] for i in range(leaves)]
    mismatch = opt_state_mismatch(config, params, opt_state)
    if mismatch:
        raise ValueError(mismatch)
    carried = (config.batch_size, config.hidden_size)
    parts = ("hidden", "cell_state") if config.cell == "lstm" else ("hidden",)
    for name in parts:
        _check_array(name, arrays[name], carried, FLOAT, f"(batch_size, n_a) = {carried}")
    hidden = LSTMState(arrays["hidden"], arrays["cell_state"]) if config.cell == "lstm" else arrays["hidden"]
    key = jax.eval_shape(lambda: jax.random.PRNGKey(0))
    _check_array("key", arrays["key"], key.shape, np.dtype(key.dtype), "a jax.random.PRNGKey", finite=False)
    _check_array("losses", arrays["losses"], (step,), FLOAT, f"one per step, step {step}")
    validation = arrays["validation"]
    if validation.ndim != 2 or validation.shape[1] != 2:
        raise ValueError(f"validation has shape {validation.shape}; expected (k, 2): (step, NLL) per evaluation")
    _check_array("validation", validation, validation.shape, np.dtype(np.float64), "")
    steps = validation[:, 0]
    if np.any(steps != np.round(steps)) or np.any(steps < 1) or np.any(steps > step) or np.any(np.diff(steps) <= 0):
        raise ValueError(f"validation steps {steps.tolist()} are not increasing whole steps in 1 … {step}")
    return Checkpoint(
        config.to_dict(),
        vocabulary,
        step,
        params,
        opt_state,
        hidden,
        arrays["key"],
        arrays["losses"],
        validation,
        digest,
    )


def _check_parameters(params: dict[str, np.ndarray], config: TrainConfig, vocabulary_size: int) -> None:
    """The parameter names, shapes and dtypes of a `config.cell` model over the vocabulary; all finite."""
    cell, n_a, V = config.cell, config.hidden_size, vocabulary_size
    names = parameter_names(cell, config.learn_initial_state)
    if set(params) != names:
        learned = "a learned" if config.learn_initial_state else "a zero"
        raise ValueError(
            f"parameters {sorted(params)}; a {cell} model with {learned} initial state has {sorted(names)}"
        )
    G = _cells.get(cell).gates
    shapes = {"Wax": (G * n_a, V), "Waa": (G * n_a, n_a), "ba": (G * n_a, 1), "bhn": (n_a, 1)}
    shapes |= {"Wya": (V, n_a), "by": (V, 1)} | {name: (n_a,) for name in INITIAL_STATE[cell]}
    for name in sorted(params):
        why = f"{cell} cell, n_a={n_a} (hidden_size), {V} characters"
        _check_array(f"params.{name}", params[name], shapes[name], FLOAT, why)


def _check_array(name: str, value: np.ndarray, shape: tuple, dtype: np.dtype, why: str, finite: bool = True) -> None:
    if value.shape != tuple(shape) or value.dtype != dtype:
        because = f" ({why})" if why else ""
        raise ValueError(
            f"{name} has shape {value.shape} and dtype {value.dtype}; expected shape {tuple(shape)}{because} "
            f"and dtype {dtype}"
        )
    if finite and not np.all(np.isfinite(value)):
        raise ValueError(f"{name} is not finite (it holds NaN or infinite values)")
