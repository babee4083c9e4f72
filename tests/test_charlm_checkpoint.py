"""Checkpoints: exact round trip for every cell, atomic and durable writes, file modes, stale temporary
files, and one clear error for anything unreadable or inconsistent, array by array."""

import errno
import io
import json
import os
import pickle
import stat
import struct
import zipfile

import jax
import numpy as np
import pytest

from jaxrnn import LSTMState
from jaxrnn.charlm import checkpoint as checkpoint_module
from jaxrnn.charlm.checkpoint import (
    Checkpoint,
    load_checkpoint,
    remove_stale_temporary_files,
    save_checkpoint,
)
from jaxrnn.charlm.config import TrainConfig
from jaxrnn.charlm.corpus import Vocabulary
from jaxrnn.charlm.errors import CharLMError
from jaxrnn.charlm.model import zero_state
from jaxrnn.charlm.optimizer import opt_state_template
from jaxrnn.charlm.train import initial_parameters

CELLS = ("vanilla", "gru", "lstm")


def make_checkpoint(step=3, n_a=5, seed=0, cell="vanilla"):
    """A consistent checkpoint of random values: a learned initial state, AdamW, 2 rows."""
    vocabulary = Vocabulary("\nabc")
    config = TrainConfig(hidden_size=n_a, batch_size=2, cell=cell, learn_initial_state=True)
    rng = np.random.default_rng(seed)
    random_like = lambda value: rng.standard_normal(np.shape(value)).astype(np.float32)
    params = {name: random_like(value) for name, value in initial_parameters(config, len(vocabulary)).items()}
    opt_state = [
        np.asarray(step, leaf.dtype) if leaf.dtype == np.int32 else np.abs(random_like(leaf))
        for leaf in jax.tree_util.tree_leaves(opt_state_template(config, params))
    ]
    hidden = jax.tree_util.tree_map(random_like, zero_state(cell, 2, n_a))
    key = np.asarray([0, 42], np.uint32)
    losses = rng.random(step).astype(np.float32)
    validation = np.asarray([[2, 1.5], [3, 1.25]])
    return Checkpoint(config.to_dict(), vocabulary, step, params, opt_state, hidden, key, losses, validation, "ab" * 32)


def assert_checkpoints_equal(actual, expected):
    assert actual.config == expected.config and actual.vocabulary == expected.vocabulary
    assert actual.step == expected.step and actual.data_digest == expected.data_digest
    assert sorted(actual.params) == sorted(expected.params)
    for name in expected.params:
        np.testing.assert_array_equal(actual.params[name], expected.params[name], strict=True)
    assert len(actual.opt_state) == len(expected.opt_state)
    for a, e in zip(actual.opt_state, expected.opt_state):
        np.testing.assert_array_equal(a, e, strict=True)
    assert type(actual.hidden) is type(expected.hidden)
    for a, e in zip(jax.tree_util.tree_leaves(actual.hidden), jax.tree_util.tree_leaves(expected.hidden)):
        np.testing.assert_array_equal(a, e, strict=True)
    for field in ("key", "losses", "validation"):
        np.testing.assert_array_equal(getattr(actual, field), getattr(expected, field), strict=True)


@pytest.mark.parametrize("cell", CELLS)
def test_round_trip_is_exact(tmp_path, cell):
    path = str(tmp_path / "checkpoint.npz")
    original = make_checkpoint(cell=cell)
    save_checkpoint(path, original)
    loaded = load_checkpoint(path)
    assert_checkpoints_equal(loaded, original)
    assert isinstance(loaded.hidden, LSTMState) == (cell == "lstm")  # the LSTM's carried state is a pair
    assert {"a0", "c0"} & set(loaded.params) == ({"a0", "c0"} if cell == "lstm" else {"a0"})
    with zipfile.ZipFile(path) as archive:  # plain numpy arrays, nothing pickled
        assert all(name.endswith(".npy") for name in archive.namelist())
    np.load(path, allow_pickle=False)["header"]


def _arrays(path):
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return json.loads(str(arrays.pop("header"))), arrays


def _write(path, header, arrays):
    buffer = io.BytesIO()
    np.savez(buffer, header=np.asarray(json.dumps(header)), **arrays)
    open(path, "wb").write(buffer.getvalue())


def test_a_checkpoint_of_format_2_is_a_vanilla_model(tmp_path):
    """Written before `--cell`: format 2, no `cell` in its config."""
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, make_checkpoint())
    header, arrays = _arrays(path)
    config = {name: value for name, value in header["config"].items() if name != "cell"}
    _write(path, {**header, "format": "jaxrnn.charlm.checkpoint/2", "config": config}, arrays)
    loaded = load_checkpoint(path)
    assert loaded.config["cell"] == "vanilla"
    assert_checkpoints_equal(loaded, make_checkpoint())


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


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()], ids=repr)
def test_a_failed_write_leaves_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch, error):
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, make_checkpoint(step=3))
    before = open(path, "rb").read()
    monkeypatch.setattr(checkpoint_module.np, "savez", _failing_savez(error))
    with pytest.raises(type(error)) as raised:
        save_checkpoint(path, make_checkpoint(step=4, seed=1))
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["checkpoint.npz"]
    if isinstance(error, OSError):  # the error names the file it could not write
        assert raised.value.errno == errno.ENOSPC and raised.value.filename == path
        assert str(raised.value) == f"[Errno 28] No space left on device: '{path}'"


def test_non_finite_parameters_are_never_written(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, make_checkpoint(step=3))
    before = open(path, "rb").read()
    diverged = make_checkpoint(step=4)
    diverged.params["Waa"][1, 2] = np.nan
    with pytest.raises(CharLMError, match=r"training diverged: parameters\['Waa'\] is not finite at step 4"):
        save_checkpoint(path, diverged)
    assert open(path, "rb").read() == before


def test_stale_temporary_files_of_this_user_and_these_names_are_removed_and_nothing_else(tmp_path):
    stale = [".checkpoint.npz.a1b2_c3d.tmp", ".best.npz.zz99zz99.tmp"]
    kept = [
        "checkpoint.npz",
        ".checkpoint.npz.short.tmp",  # not what mkstemp makes
        ".other.npz.a1b2c3d4.tmp",  # another name
        "checkpoint.npz.a1b2c3d4.tmp",  # no leading dot
        ".checkpoint.npz.a1b2c3d4.tmp.bak",
        "notes.tmp",
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".best.npz.dir00000.tmp").mkdir()  # a directory is never removed
    os.symlink(tmp_path / "notes.tmp", tmp_path / ".best.npz.link0000.tmp")  # nor a link
    removed = remove_stale_temporary_files(str(tmp_path), ["checkpoint.npz", "best.npz"])
    assert removed == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == sorted([*kept, ".best.npz.dir00000.tmp", ".best.npz.link0000.tmp"])


def test_the_temporary_file_of_a_write_matches_what_is_removed(tmp_path, monkeypatch):
    seen = []

    def savez(file, **arrays):
        seen.extend(os.listdir(tmp_path))  # the temporary file, and nothing else yet
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.np, "savez", savez)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(str(tmp_path / "checkpoint.npz"), make_checkpoint())
    (tmp_path / seen[0]).write_bytes(b"as if killed mid-write")
    assert remove_stale_temporary_files(str(tmp_path), ["checkpoint.npz"]) == seen


def _truncated(data):
    return data[: len(data) // 2]


def _flipped(data):
    """One bit of `params.Waa`'s last number flipped: a finite number still, but not the one written."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        member = archive.getinfo("params.Waa.npy")
    name_length, extra_length = struct.unpack("<HH", data[member.header_offset + 26 : member.header_offset + 30])
    last = member.header_offset + 30 + name_length + extra_length + member.file_size - 1
    return data[:last] + bytes([data[last] ^ 0x01]) + data[last + 1 :]


def _other_npz(_):
    buffer = io.BytesIO()
    np.savez(buffer, weights=np.ones(3))
    return buffer.getvalue()


def _pickled_array(data):
    buffer = io.BytesIO()
    np.savez(buffer, header=np.asarray([{"format": 1}], dtype=object))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncated, "(corrupted or truncated? "),
        (_flipped, "params.Waa.npy fails its CRC check"),
        (lambda data: b"\x00" * len(data), "not an .npz (zip) archive"),
        (lambda data: np.random.default_rng(0).bytes(len(data)), "not an .npz (zip) archive"),
        (lambda data: pickle.dumps({"params": 1}), "not an .npz (zip) archive"),
        (lambda data: b"", "the file is empty"),
        (_other_npz, "it has no header array"),
        (_pickled_array, "pickled (object) array"),
    ],
    ids=["truncated", "flipped-byte", "zeros", "random", "pickle", "empty", "other-npz", "object-array"],
)
def test_damaged_files_give_one_clear_error(tmp_path, damage, reason):
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, make_checkpoint())
    damaged = damage(open(path, "rb").read())
    open(path, "wb").write(damaged)
    with pytest.raises(CharLMError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path} is not a readable jaxrnn checkpoint") and "\n" not in message
    assert reason in message
    assert "allow_pickle" not in message and "unsafe" not in message  # never advise loading it unsafely
    assert open(path, "rb").read() == damaged  # reading never changes it


def _set(name, value):
    return lambda header, arrays: arrays.__setitem__(name, value)


def _nan_at(name, index=0):
    def damage(header, arrays):
        arrays[name] = arrays[name].copy()
        arrays[name].flat[index] = np.nan

    return damage


def _drop(name):
    return lambda header, arrays: arrays.pop(name)


def _retype(name, dtype):
    return lambda header, arrays: arrays.__setitem__(name, arrays[name].astype(dtype))


def _config(**changes):
    return lambda header, arrays: header["config"].update(changes)


@pytest.mark.parametrize(
    ("cell", "damage", "reason"),
    [
        ("vanilla", _set("key", np.zeros(3, np.uint32)), "key has shape (3,) and dtype uint32; expected shape (2,)"),
        ("vanilla", _retype("key", np.float32), "key has shape (2,) and dtype float32; expected shape (2,) (a jax"),
        ("vanilla", _set("key", np.zeros((2, 2), np.uint32)), "key has shape (2, 2)"),
        ("vanilla", _nan_at("params.Waa"), "params.Waa is not finite (it holds NaN or infinite values)"),
        ("gru", _nan_at("params.bhn"), "params.bhn is not finite"),
        ("lstm", _nan_at("params.c0"), "params.c0 is not finite"),
        ("vanilla", _set("params.by", np.full((4, 1), np.inf, np.float32)), "params.by is not finite"),
        ("vanilla", _nan_at("hidden"), "hidden is not finite"),
        ("lstm", _nan_at("cell_state"), "cell_state is not finite"),
        ("vanilla", _nan_at("opt_state.1"), "opt_state.1 (the optimiser's [1][0].mu['Waa']) is not finite"),
        ("vanilla", _nan_at("losses"), "losses is not finite"),
        ("vanilla", _retype("params.Wax", np.float64), "params.Wax has shape (5, 4) and dtype float64; expected"),
        ("gru", _set("params.Wax", np.zeros((5, 4), np.float32)), "params.Wax has shape (5, 4) and dtype float32; "),
        ("lstm", _set("cell_state", np.zeros((3, 5), np.float32)), "cell_state has shape (3, 5) and dtype float32"),
        ("vanilla", _retype("hidden", np.float16), "hidden has shape (2, 5) and dtype float16"),
        ("vanilla", _retype("opt_state.1", np.float64), "opt_state.1 (the optimiser's [1][0].mu['Waa']) has shape"),
        ("vanilla", _set("opt_state.0", np.asarray(-1, np.int32)), "opt_state.0 (the optimiser's [1][0].count) is neg"),
        ("vanilla", _drop("losses"), "arrays missing: ['losses']; unexpected: none"),
        ("lstm", _drop("cell_state"), "arrays missing: ['cell_state']"),
        ("vanilla", _set("extra", np.ones(2)), "unexpected: ['extra']"),
        ("vanilla", _config(cell="lstm"), "arrays missing: ['cell_state']"),
        (
            "gru",
            _config(cell="vanilla"),
            "a vanilla model with a learned initial state has ['Waa', 'Wax', 'Wya', 'a0',",
        ),
        ("vanilla", _config(learn_initial_state=False), "a vanilla model with a zero initial state has"),
        ("vanilla", _config(cell="rnn"), "its config: --cell 'rnn': expected one of vanilla, gru, lstm"),
        ("vanilla", _config(hidden_size=6), "params.Waa has shape (5, 5) and dtype float32; expected shape (6, 6)"),
        ("vanilla", _config(batch_size=3), "hidden has shape (2, 5) and dtype float32; expected shape (3, 5)"),
        ("vanilla", _set("losses", np.zeros(2, np.float32)), "losses has shape (2,) and dtype float32; expected"),
        ("vanilla", _set("validation", np.asarray([[9.0, 1.0]])), "validation steps [9.0] are not increasing whole"),
        ("vanilla", _set("validation", np.zeros((2, 3))), "validation has shape (2, 3); expected (k, 2)"),
    ],
)
def test_inconsistent_contents_are_refused_naming_the_array(tmp_path, cell, damage, reason):
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, make_checkpoint(cell=cell))
    header, arrays = _arrays(path)
    damage(header, arrays)
    _write(path, header, arrays)
    with pytest.raises(CharLMError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path} is not a readable jaxrnn checkpoint: ") and "\n" not in message
    assert reason in message, message


def test_a_vocabulary_that_does_not_fit_the_parameters_is_refused(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, make_checkpoint()._replace(vocabulary=Vocabulary("\nabcd")))
    with pytest.raises(CharLMError, match=r"params.Wax has shape \(5, 4\) .* expected shape \(5, 5\) \(vanilla cell, "):
        load_checkpoint(path)


def test_a_checkpoint_of_another_format_says_so(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    save_checkpoint(path, make_checkpoint())
    header, arrays = _arrays(path)
    _write(path, {**header, "format": "jaxrnn.charlm.checkpoint/1"}, arrays)
    with pytest.raises(CharLMError, match=r"written by another version of jaxrnn \(format jaxrnn.charlm.checkpoint/1"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CharLMError, match="no checkpoint at"):
        load_checkpoint(str(tmp_path / "none.npz"))
