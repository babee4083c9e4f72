"""`jaxrnn train`, `jaxrnn eval` and `jaxrnn sample` end to end for every cell; signals, full disks, stale
temporary files, and every kind of bad input they must refuse cleanly."""

import collections
import errno
import io
import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from _charlm_helpers import NAMES_TEXT, TINY, start_jaxrnn

from jaxrnn.charlm import checkpoint as checkpoint_module
from jaxrnn.charlm.checkpoint import load_checkpoint
from jaxrnn.charlm.config import TrainConfig
from jaxrnn.charlm.data import split_lines
from jaxrnn.charlm.dataset import prepare
from jaxrnn.charlm.evaluate import heldout_nll
from jaxrnn.cli import main

DINOS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "dinos.txt")
TINY_FLAGS = [f"--{name.replace('_', '-')}={value}" for name, value in TINY.items()]


@pytest.fixture
def names(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text(NAMES_TEXT)
    return str(path)


def train(names, out, *extra):
    return main(["train", "--data", names, "--lines", *TINY_FLAGS, "--out", str(out), *extra])


def snapshot(directory):
    """Every file under `directory` with its bytes."""
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, directory)] = open(path, "rb").read()
    return found


def assert_one_line_error(capsys, command, *fragments):
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"jaxrnn {command}: ") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_train_writes_checkpoint_best_and_plot_and_eval_repeats_its_figure(tmp_path, names, capsys):
    out = tmp_path / "run"
    assert train(names, out, "--steps", "40", "--sample-every", "20", "--eval-every", "20") == 0
    printed = capsys.readouterr().out
    for text in ("held out: 2 lines drawn with seed 0", "sample at step 20:", "held-out at step 40: ", "done, step 40"):
        assert text in printed
    assert sorted(os.listdir(out)) == ["best.npz", "checkpoint.npz", "loss.png"]
    assert open(out / "loss.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    checkpoint = load_checkpoint(str(out / "checkpoint.npz"))
    assert checkpoint.step == 40 and checkpoint.validation[:, 0].tolist() == [20, 40]
    best = load_checkpoint(str(out / "best.npz"))
    assert best.validation[-1, 1] == checkpoint.validation[:, 1].min()

    # `jaxrnn eval` on the run's own held-out set, and on a file of the same lines, gives the figure of training.
    assert main(["eval", "--checkpoint", str(out / "checkpoint.npz")]) == 0
    own = capsys.readouterr().out
    assert own.startswith(f"held-out set: {checkpoint.validation[-1, 1]:.4f} nats/char (")
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("".join(line + "\n" for line in split_lines(NAMES_TEXT.split(), None, seed=0)[1]))
    assert main(["eval", "--checkpoint", str(out / "checkpoint.npz"), "--data", str(held_out)]) == 0
    assert f": {checkpoint.validation[-1, 1]:.4f} nats/char" in capsys.readouterr().out
    data = prepare(TrainConfig.from_dict(checkpoint.config), NAMES_TEXT)
    assert heldout_nll(checkpoint.params, data.heldout) == checkpoint.validation[-1, 1]  # bitwise


def test_sample_draws_independent_examples_that_start_with_the_prime(finished_run, capsys):
    checkpoint = str(finished_run / "checkpoint.npz")

    def draw(*flags):
        assert main(["sample", "--checkpoint", checkpoint, "--temperature", "2", *flags]) == 0
        return capsys.readouterr().out.splitlines()

    first, again, other_seed = draw("--seed", "1"), draw("--seed", "1"), draw("--seed", "2")
    assert len(first) == 10 and first == again and first != other_seed
    assert len(set(first)) > 5  # the examples of one call are not copies of one another
    primed, other_prime = draw("--prime", "al", "--num", "30"), draw("--prime", "ox", "--num", "30")
    assert all(name.startswith("al") for name in primed) and all(name.startswith("ox") for name in other_prime)
    assert [name[2:] for name in primed] != [name[2:] for name in other_prime]
    assert draw("--num", "3") == draw()[:3]  # sample i does not depend on how many are drawn
    greedy = draw("--top-k", "1", "--seed", "1")
    assert greedy == draw("--top-k", "1", "--seed", "2") and len(set(greedy)) == 1  # the most likely, every time
    assert len(draw("--length", "3", "--top-k", "2")[0]) <= 3


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "no such file"), (b"", "empty"), (b"\x00\x01\x02binary", "looks binary"), (b"\xff\xfe\xfa", "not UTF-8")],
    ids=["missing", "empty", "binary", "not-utf8"],
)
def test_unusable_data_is_refused_before_anything_is_written(tmp_path, capsys, content, fragment):
    data = tmp_path / "data.txt"
    if content is not None:
        data.write_bytes(content)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run")]) == 2
    assert_one_line_error(capsys, "train", fragment, str(data))
    assert not os.path.exists(tmp_path / "run")


@pytest.fixture
def finished_run(tmp_path_factory, names):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert train(names, out, "--steps", "3") == 0
    return out


def test_a_corrupted_checkpoint_is_refused_and_kept(finished_run, names, capsys):
    path = finished_run / "checkpoint.npz"
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    before = snapshot(finished_run)
    capsys.readouterr()
    assert train(names, finished_run, "--resume", "--steps", "6") == 2
    assert_one_line_error(capsys, "train", "is not a readable jaxrnn checkpoint")
    assert main(["sample", "--checkpoint", str(path)]) == 2
    assert_one_line_error(capsys, "sample", "is not a readable jaxrnn checkpoint")
    assert snapshot(finished_run) == before


def _rewrite(path, change):
    """Applies `change(header, arrays)` to the checkpoint at `path`, as a hand edit or a damaged disk would."""
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(str(arrays.pop("header")))
    change(header, arrays)
    buffer = io.BytesIO()
    np.savez(buffer, header=np.asarray(json.dumps(header)), **arrays)
    open(path, "wb").write(buffer.getvalue())


def _with_nan(name):
    def change(header, arrays):
        arrays[name] = arrays[name].copy()
        arrays[name].flat[0] = np.nan

    return change


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda header, arrays: arrays.update(key=np.zeros(3, np.uint32)), "key has shape (3,) and dtype uint32"),
        (
            lambda header, arrays: arrays.update(key=arrays["key"].astype(np.int64)),
            "key has shape (2,) and dtype int64",
        ),
        (_with_nan("params.Waa"), "params.Waa is not finite"),
        (_with_nan("opt_state.1"), "opt_state.1 (the optimiser's [1][0].mu['Waa']) is not finite"),
        (
            lambda header, arrays: arrays.update({"opt_state.1": arrays["opt_state.1"].astype(np.float64)}),
            "opt_state.1 (the optimiser's [1][0].mu['Waa']) has shape (16, 16) and dtype float64; --optimizer adamw "
            "--clip global-norm keeps shape (16, 16) and dtype float32 there",
        ),
    ],
    ids=["key-shape", "key-dtype", "nan-parameter", "nan-moment", "moment-dtype"],
)
def test_a_damaged_checkpoint_is_refused_by_every_command(finished_run, names, capsys, change, fragment):
    path = finished_run / "checkpoint.npz"
    _rewrite(path, change)
    before = snapshot(finished_run)
    capsys.readouterr()
    assert train(names, finished_run, "--resume", "--steps", "6") == 2
    assert_one_line_error(capsys, "train", f"{path} is not a readable jaxrnn checkpoint: ", fragment)
    assert main(["eval", "--checkpoint", str(path)]) == 2
    assert_one_line_error(capsys, "eval", fragment)
    assert main(["sample", "--checkpoint", str(path)]) == 2
    assert_one_line_error(capsys, "sample", fragment)
    assert snapshot(finished_run) == before


def test_a_checkpoint_from_before_cells_continues_as_a_vanilla_run(finished_run, names, capsys):
    path = finished_run / "checkpoint.npz"

    def format_2(header, arrays):
        header["format"] = "jaxrnn.charlm.checkpoint/2"
        del header["config"]["cell"]

    _rewrite(path, format_2)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(path)]) == 0
    assert "vanilla model of step 3" in capsys.readouterr().out
    assert main(["sample", "--checkpoint", str(path), "--num", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert train(names, finished_run, "--resume", "--steps", "4", "--cell", "gru") == 2
    assert_one_line_error(capsys, "train", f"--cell gru differs from vanilla in {path}")
    assert train(names, finished_run, "--resume", "--steps", "5", "--cell", "vanilla") == 0
    resumed = load_checkpoint(str(path))
    assert resumed.step == 5 and resumed.config["cell"] == "vanilla"


@pytest.mark.parametrize("cell", [pytest.param(c, marks=pytest.mark.slow) for c in ("vanilla", "gru")] + ["lstm"])
def test_every_cell_trains_resumes_evaluates_and_samples(tmp_path, names, capsys, cell):
    out = tmp_path / "run"
    assert train(names, out, "--cell", cell, "--learn-initial-state", "--steps", "4", "--eval-every", "2") == 0
    initial_state = "a0, c0" if cell == "lstm" else "a0"
    assert f"model {cell} n_a=16 (learned {initial_state}), batch 4" in capsys.readouterr().out
    assert train(names, out, "--resume", "--steps", "6") == 0
    checkpoint = load_checkpoint(str(out / "checkpoint.npz"))
    assert checkpoint.step == 6 and checkpoint.config["cell"] == cell
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "checkpoint.npz")]) == 0
    figure = capsys.readouterr().out
    assert figure.startswith(f"held-out set: {checkpoint.validation[-1, 1]:.4f} nats/char (")
    assert figure.rstrip().endswith(f"{cell} model of step 6")
    assert main(["sample", "--checkpoint", str(out / "best.npz"), "--num", "3", "--prime", "a"]) == 0
    samples = capsys.readouterr().out.splitlines()
    assert len(samples) == 3 and all(sample.startswith("a") for sample in samples)


def test_resume_refuses_another_vocabulary_or_shape(tmp_path, finished_run, names, capsys):
    other = tmp_path / "other.txt"
    other.write_text("Aardvark\nBison\nCamel\nDingo\nEmu\n")
    before = snapshot(finished_run)
    capsys.readouterr()
    assert main(["train", "--data", str(other), "--out", str(finished_run), "--resume", "--steps", "6"]) == 2
    assert_one_line_error(capsys, "train", "vocabulary", "differs")
    assert train(names, finished_run, "--resume", "--steps", "6", "--hidden-size", "32") == 2
    assert_one_line_error(capsys, "train", "--hidden-size 32 differs from 16")
    fewer = tmp_path / "fewer.txt"
    fewer.write_text(NAMES_TEXT.replace("mike\n", ""))  # the same characters, not the same text
    assert main(["train", "--data", str(fewer), "--out", str(finished_run), "--resume", "--steps", "6"]) == 2
    assert_one_line_error(capsys, "train", "the data's text differs from the text", "was trained on (sha256 ")
    assert snapshot(finished_run) == before
    assert train(names, finished_run, "--resume", "--steps", "5") == 0  # the same data continues
    assert load_checkpoint(str(finished_run / "checkpoint.npz")).step == 5


def test_an_existing_run_is_not_overwritten_without_being_asked(finished_run, names, capsys):
    before = snapshot(finished_run)
    capsys.readouterr()
    assert train(names, finished_run, "--steps", "3") == 2
    assert_one_line_error(capsys, "train", "exists; continue it with --resume, replace it with --overwrite")
    assert snapshot(finished_run) == before
    assert train(names, finished_run, "--steps", "2", "--overwrite") == 0
    assert load_checkpoint(str(finished_run / "checkpoint.npz")).step == 2


def test_an_unwritable_output_directory_is_refused(tmp_path, names, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    assert train(names, blocker, "--steps", "2") == 2
    assert_one_line_error(capsys, "train", "exists and is not a directory")
    assert train(names, blocker / "run", "--steps", "2") == 2
    assert_one_line_error(capsys, "train", "cannot write there")
    assert blocker.read_text() == "keep me"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert train(names, locked, "--steps", "2") == 2
        assert_one_line_error(capsys, "train", "cannot write there")
        assert os.listdir(locked) == []


def test_sample_and_eval_refuse_bad_arguments(tmp_path, finished_run, capsys):
    checkpoint = str(finished_run / "checkpoint.npz")
    assert main(["sample", "--checkpoint", checkpoint, "--prime", "ALPHA"]) == 2
    assert_one_line_error(capsys, "sample", "--prime has characters outside the model's vocabulary: 'AHLP'")
    assert main(["sample", "--checkpoint", checkpoint, "--temperature", "0"]) == 2
    assert_one_line_error(capsys, "sample", "--temperature 0.0: expected a positive number")
    assert main(["sample", "--checkpoint", checkpoint, "--top-k", "0"]) == 2
    assert_one_line_error(capsys, "sample", "--top-k 0: expected a positive integer")
    assert main(["sample", "--checkpoint", checkpoint, "--num", "0"]) == 2
    assert_one_line_error(capsys, "sample", "--num 0: expected a positive integer")
    assert main(["sample", "--checkpoint", str(finished_run / "none.npz")]) == 2
    assert_one_line_error(capsys, "sample", "no checkpoint at")
    other = tmp_path / "other.txt"
    other.write_text("Zebra\n")
    assert main(["eval", "--checkpoint", checkpoint, "--data", str(other)]) == 2
    assert_one_line_error(capsys, "eval", f"--data {other} has characters outside the model's vocabulary: 'Z'")
    assert main(["eval", "--checkpoint", checkpoint, "--data", str(tmp_path / "none.txt")]) == 2
    assert_one_line_error(capsys, "eval", "no such file")


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--val-fraction", "1.5"], "--val-fraction 1.5: expected a number from 0 (no held-out set) up to"),
        (["--val-fraction", "-0.1"], "--val-fraction -0.1: expected a number from 0"),
        (["--val-fraction", "nan"], "--val-fraction nan: expected a number from 0"),
        (["--val-fraction", "0.01"], "--val-fraction 0.01 holds out no line of 26; raise it, or pass 0"),
        (["--val-fraction", "0.9"], "holding out 23 of 26 lines leaves 3 to train on, fewer than --batch-size 4"),
        (["--val-data", "MISSING"], "--val-data MISSING: no such file"),
        (["--val-data", "EMPTY"], "--val-data EMPTY: empty"),
        (["--val-data", "NAMES", "--val-fraction", "0.2"], "--val-data and --val-fraction both choose the held-out"),
        (["--eval-every", "0"], "--eval-every 0: expected a positive integer"),
    ],
    ids=["above-1", "negative", "nan", "nothing-held-out", "nothing-left", "missing", "empty", "both", "eval-every"],
)
def test_bad_held_out_settings_are_refused_before_anything_is_written(tmp_path, names, capsys, flags, fragment):
    (tmp_path / "EMPTY").write_text("")
    paths = {"MISSING": str(tmp_path / "MISSING"), "EMPTY": str(tmp_path / "EMPTY"), "NAMES": names}
    flags = [paths.get(value, value) for value in flags]
    assert train(names, tmp_path / "run", *flags) == 2
    assert_one_line_error(
        capsys, "train", fragment.replace("MISSING", paths["MISSING"]).replace("EMPTY", paths["EMPTY"])
    )
    assert not os.path.exists(tmp_path / "run")


def test_bad_flags_are_refused(tmp_path, names, capsys):
    assert train(names, tmp_path / "a", "--devices", "99") == 2
    assert_one_line_error(capsys, "train", "--devices 99: expected 1 … 1")
    assert train(names, tmp_path / "b", "--coordinator", "127.0.0.1:1") == 2
    assert_one_line_error(capsys, "train", "needs all of --coordinator, --num-processes and --process-id")
    assert train(names, tmp_path / "c", "--learning-rate", "-1") == 2
    assert_one_line_error(capsys, "train", "--learning-rate -1.0: expected a positive number")
    assert not any(os.path.exists(tmp_path / d) for d in "abc")


def test_training_runs_without_the_cli_extra(tmp_path, names, capsys, monkeypatch):
    for module in ("rich", "rich.progress", "matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # `import` raises ImportError
    assert train(names, tmp_path / "run", "--steps", "20") == 0
    captured = capsys.readouterr()
    assert captured.err.count("rich is not installed") == 1 and captured.err.count("matplotlib is not installed") == 1
    assert "step 20/20  loss " in captured.out and " chars/s  ETA " in captured.out
    assert "step 20/20  held-out " in captured.out and " bits/char)" in captured.out
    assert sorted(os.listdir(tmp_path / "run")) == ["best.npz", "checkpoint.npz"]


def _stop_at_a_sample(arguments, signums, gap_s=0.0, sample="sample at step 25:"):
    """Runs `jaxrnn ARGUMENTS`, sends `signums` (`gap_s` apart) once it prints `sample`; returns `(status, stderr)`."""
    process = start_jaxrnn(arguments)
    watchdog = threading.Timer(120, process.kill)  # a child that never prints the line cannot hang the test
    watchdog.start()
    try:
        for line in process.stdout:
            if line.startswith(sample):
                break
        for i, signum in enumerate(signums):
            if i:
                threading.Event().wait(gap_s)
            process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        watchdog.cancel()
        process.kill()
    return process.returncode, err


@pytest.mark.parametrize(
    ("signum", "status", "said"),
    [
        pytest.param(signal.SIGINT, 130, "interrupted (SIGINT) at step ", marks=pytest.mark.slow),
        (signal.SIGTERM, 143, "terminated (SIGTERM) at step "),
    ],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_saves_a_checkpoint_that_resume_continues(tmp_path, names, signum, status, said):
    out = tmp_path / "run"
    arguments = ["train", "--data", names, "--lines", *TINY_FLAGS]
    arguments += ["--out", str(out), "--steps", "1000000", "--sample-every", "25", "--checkpoint-every", "1000000"]
    returncode, err = _stop_at_a_sample(arguments, [signum])
    assert returncode == status, err
    step = load_checkpoint(str(out / "checkpoint.npz")).step
    assert 25 <= step < 1_000_000
    assert err.strip() == (
        f"jaxrnn train: {said}{step}; saved {out / 'checkpoint.npz'}; continue with: jaxrnn train --out {out} --resume"
    )
    assert train(names, out, "--resume", "--steps", str(step + 3)) == 0
    saved = load_checkpoint(str(out / "checkpoint.npz"))
    assert saved.step == step + 3 and np.all(np.isfinite(saved.losses))


@pytest.mark.slow  # two signals at two gaps; test_the_second_signal_exits_at_once_with_one_line runs by default
@pytest.mark.parametrize("gap_s", [0.05, 0.5])
def test_a_second_ctrl_c_stops_cleanly_whenever_it_comes(tmp_path, names, gap_s):
    """Inside the save, after it, or while the process exits: never a traceback or an ignored exception.

    Python puts the default handlers back at the very end of its shutdown; a Ctrl-C then ends the
    process by the signal itself, which a shell reports as 130 too.
    """
    out = tmp_path / "run"
    arguments = ["train", "--data", names, "--lines", *TINY_FLAGS]
    arguments += ["--out", str(out), "--steps", "1000000", "--sample-every", "25", "--checkpoint-every", "10"]
    returncode, err = _stop_at_a_sample(arguments, [signal.SIGINT, signal.SIGINT], gap_s)
    assert returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err and "Exception ignored" not in err and "KeyboardInterrupt" not in err, err
    assert err and all(line.startswith("jaxrnn train: ") for line in err.splitlines()), err
    step = load_checkpoint(str(out / "checkpoint.npz")).step  # whole, whichever step it holds
    assert step >= 20
    assert train(names, out, "--resume", "--steps", str(step + 2)) == 0  # clearing any write cut short


_SECOND_SIGNAL = """
import os, signal, sys, time
from jaxrnn.charlm.signals import Progress, StopSignals
with StopSignals(Progress(os.path.join("run", "checkpoint.npz"), step=7, saved_step=5)) as signals:
    os.kill(os.getpid(), signal.SIGINT)
    while not signals.requested:
        time.sleep(0.01)
    print("requested", signals.requested, flush=True)
    os.kill(os.getpid(), signal.{second})
    time.sleep(60)
"""


@pytest.mark.parametrize(("second", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_the_second_signal_exits_at_once_with_one_line(second, status):
    done = subprocess.run(
        [sys.executable, "-c", _SECOND_SIGNAL.format(second=second)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == status and done.stdout == "requested 1\n", done
    run = os.path.join("run", "checkpoint.npz")
    assert done.stderr == (
        f"jaxrnn train: stopped at once by a second signal ({second}) at step 7; {run} keeps step 5 "
        f"(continue with: jaxrnn train --out run --resume)\n"
    )


def _savez_failing_from(call):
    """`np.savez` that writes part of the file, then fails as a full disk does, from its `call`-th call on."""
    real, calls = np.savez, []

    def savez(file, **arrays):
        calls.append(None)
        if len(calls) < call:
            return real(file, **arrays)
        file.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    return savez


def test_a_full_disk_names_the_file_and_leaves_nothing_half_written(tmp_path, names, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(checkpoint_module.np, "savez", _savez_failing_from(1))
    assert train(names, out, "--steps", "8", "--eval-every", "2", "--checkpoint-every", "4") == 2
    checkpoint = out / "checkpoint.npz"
    assert_one_line_error(
        capsys,
        "train",
        f"cannot write {checkpoint}: No space left on device; stopped at step 2; no checkpoint was written to "
        f"{checkpoint}",
    )
    assert os.listdir(out) == []  # no best.npz without a checkpoint.npz, no temporary file


def test_a_full_disk_at_best_npz_leaves_a_checkpoint_that_resumes(tmp_path, names, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(checkpoint_module.np, "savez", _savez_failing_from(2))  # checkpoint.npz, then best.npz
    assert train(names, out, "--steps", "8", "--eval-every", "2", "--checkpoint-every", "4") == 2
    assert_one_line_error(
        capsys,
        "train",
        f"cannot write {out / 'best.npz'}: No space left on device; stopped at step 2; {out / 'checkpoint.npz'} "
        f"keeps step 2 (continue with: jaxrnn train --out {out} --resume)",
    )
    assert sorted(os.listdir(out)) == ["checkpoint.npz"]
    monkeypatch.undo()
    assert train(names, out, "--resume") == 0
    assert load_checkpoint(str(out / "checkpoint.npz")).step == 8


def test_stale_temporary_files_are_removed_at_start_and_said(finished_run, names, capsys):
    stale, other = ".checkpoint.npz.k1ll3d9x.tmp", ".notes.k1ll3d9x.tmp"
    for name in (stale, other):
        (finished_run / name).write_bytes(b"PK\x03\x04 cut short by kill -9")
    capsys.readouterr()
    assert train(names, finished_run, "--resume", "--steps", "4") == 0
    assert (
        f"jaxrnn train: removed 1 temporary file(s) of a write cut short (kill -9?) from {finished_run}: {stale}"
        in capsys.readouterr().out
    )
    assert sorted(os.listdir(finished_run)) == [other, "best.npz", "checkpoint.npz", "loss.png"]


@pytest.mark.skipif(not os.path.exists(DINOS), reason="../shared/data/dinos.txt is not there")
def test_dinosaur_names_the_course_data(tmp_path):
    """The loss starts at chance, ln(vocabulary size), and ends well below the entropy of the data's character
    frequencies: the best any model can do without looking at the characters before."""
    flags = ["--hidden-size", "32", "--batch-size", "16", "--steps", "150", "--learning-rate", "0.01"]
    assert main(["train", "--data", DINOS, "--lines", *flags, "--sample-every", "150", "--out", str(tmp_path)]) == 0
    checkpoint = load_checkpoint(str(tmp_path / "checkpoint.npz"))
    counts = np.array(list(collections.Counter(open(DINOS, encoding="utf-8").read()).values()))
    frequencies = counts / counts.sum()
    unigram_entropy = -np.sum(frequencies * np.log(frequencies))  # 3.04 nats; chance: ln(53) = 3.97
    assert abs(checkpoint.losses[0] - np.log(len(checkpoint.vocabulary))) < 0.25
    assert np.mean(checkpoint.losses[-20:]) < unigram_entropy - 0.5  # about 1.9 nats after 150 steps
