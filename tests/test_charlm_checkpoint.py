"""Checkpoints: exact round trip, atomic and durable writes, file modes, and clear errors for anything unreadable."""

import io
import json
import os
import stat
import zipfile

import numpy as np
import pytest

from jaxrnn.charlm import checkpoint as checkpoint_module
from jaxrnn.charlm.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from jaxrnn.charlm.config import TrainConfig
from jaxrnn.charlm.corpus import Vocabulary
from jaxrnn.charlm.errors import CharLMError


def make_checkpoint(step=3, n_a=5, seed=0):
    vocabulary = Vocabulary("\nabc")
    config = TrainConfig(hidden_size=n_a, batch_size=2).to_dict()
    rng = np.random.default_rng(seed)
    V = len(vocabulary)
    shapes = {"Wax": (n_a, V), "Waa": (n_a, n_a), "Wya": (V, n_a), "ba": (n_a, 1), "by": (V, 1), "a0": (n_a,)}
    params = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    opt_state = [np.asarray(step, np.int32), *(rng.standard_normal(s).astype(np.float32) for s in shapes.values())]
    hidden = rng.standard_normal((2, n_a)).astype(np.float32)
    key = np.asarray([0, 42], np.uint32)
    losses = rng.random(step).astype(np.float32)
    validation = np.asarray([[2, 1.5], [3, 1.25]])
    return Checkpoint(config, vocabulary, step, params, opt_state, hidden, key, losses, validation, "ab" * 32)


def assert_checkpoints_equal(actual, expected):
    assert actual.config == expected.config and actual.vocabulary == expected.vocabulary
    assert actual.step == expected.step and actual.data_digest == expected.data_digest
    assert sorted(actual.params) == sorted(expected.params)
    for name in expected.params:
        np.testing.assert_array_equal(actual.params[name], expected.params[name], strict=True)
    assert len(actual.opt_state) == len(expected.opt_state)
    for a, e in zip(actual.opt_state, expected.opt_state):
        np.testing.assert_array_equal(a, e, strict=True)
    for field in ("hidden", "key", "losses", "validation"):
        np.testing.assert_array_equal(getattr(actual, field), getattr(expected, field), strict=True)


def test_round_trip_is_exact(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    original = make_checkpoint()
    save_checkpoint(path, original)
    assert_checkpoints_equal(load_checkpoint(path), original)
    with zipfile.ZipFile(path) as archive:  # plain numpy arrays, nothing pickled
        assert all(name.endswith(".npy") for name in archive.namelist())
    np.load(path, allow_pickle=False)["header"]


def test_the_file_has_the_mode_of_a_new_file_under_the_umask(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    previous = os.umask(0o027)
    try:
        save_checkpoint(path, make_checkpoint())
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    save_checkpoint(path, make_checkpoint())  # the umask the suite runs under
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~previous


def test_the_directory_is_flushed_after_the_rename(tmp_path, monkeypatch):
    path = str(tmp_path / "checkpoint.npz")
    flushed = []
    real_fsync = os.fsync

    def fsync(descriptor):
        is_directory = stat.S_ISDIR(os.fstat(descriptor).st_mode)
        flushed.append(("directory" if is_directory else "file", os.path.exists(path)))
        real_fsync(descriptor)

    monkeypatch.setattr(checkpoint_module.os, "fsync", fsync)
    save_checkpoint(path, make_checkpoint())
    assert flushed == [("file", False), ("directory", True)]  # the data, then the new name


def _failing_savez(error):
    def savez(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise error

    return savez


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()], ids=repr)
def test_a_failed_write_leaves_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch, error):
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, make_checkpoint(step=3))
    before = open(path, "rb").read()
    monkeypatch.setattr(checkpoint_module.np, "savez", _failing_savez(error))
    with pytest.raises(type(error)):
        save_checkpoint(path, make_checkpoint(step=4, seed=1))
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["checkpoint.npz"]


def test_non_finite_parameters_are_never_written(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, make_checkpoint(step=3))
    before = open(path, "rb").read()
    diverged = make_checkpoint(step=4)
    diverged.params["Waa"][1, 2] = np.nan
    with pytest.raises(CharLMError, match=r"training diverged: parameters\['Waa'\] is not finite at step 4"):
        save_checkpoint(path, diverged)
    assert open(path, "rb").read() == before


def _truncated(data):
    return data[: len(data) // 2]


def _flipped(data):
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def _other_npz(_):
    buffer = io.BytesIO()
    np.savez(buffer, weights=np.ones(3))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "damage",
    [_truncated, _flipped, lambda data: b"\x00" * len(data), lambda data: b"", _other_npz],
    ids=["truncated", "flipped-byte", "zeros", "empty", "other-npz"],
)
def test_damaged_checkpoints_give_one_clear_error(tmp_path, damage):
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, make_checkpoint())
    damaged = damage(open(path, "rb").read())
    open(path, "wb").write(damaged)
    with pytest.raises(CharLMError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path} is not a readable jaxrnn checkpoint") and "\n" not in message
    assert open(path, "rb").read() == damaged  # reading never changes it


def test_inconsistent_contents_are_rejected(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    wrong_vocabulary = make_checkpoint()._replace(vocabulary=Vocabulary("\nabcd"))
    save_checkpoint(path, wrong_vocabulary)
    with pytest.raises(CharLMError, match="n_x=4, n_y=4 but a vocabulary of 5 characters"):
        load_checkpoint(path)


def test_a_checkpoint_of_another_format_says_so(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, make_checkpoint())
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(str(arrays["header"]))
    arrays["header"] = np.asarray(json.dumps({**header, "format": "jaxrnn.charlm.checkpoint/1"}))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    open(path, "wb").write(buffer.getvalue())
    with pytest.raises(CharLMError, match=r"written by another version of jaxrnn \(format jaxrnn.charlm.checkpoint/1"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CharLMError, match="no checkpoint at"):
        load_checkpoint(str(tmp_path / "none.npz"))
