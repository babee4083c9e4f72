"""The published-benchmark scripts (`benchmarks/mnist1d.py`, `mnist1d_reference_torch.py`, `adding.py`)
at tiny sizes: each run writes its JSON, the reports write their tables and plots, and the adding
problem's data are what the problem says. No accuracy is asserted: that is what the benchmarks report.

MNIST-1D is built offline by `mnist1d.make_dataset` (the `mnist1d` extra, part of `test`); without the
package those tests skip.
"""

import importlib.util
import json
import os
import socket
import sys

import jax.numpy as jnp
import numpy as np
import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


adding = _load("adding")
mnist1d = _load("mnist1d")
needs_mnist1d = pytest.mark.skipif(importlib.util.find_spec("mnist1d") is None, reason="needs the mnist1d package")

TINY = {"steps": 6, "eval_every": 3, "batch": 16, "hidden": 3}  # what the published protocol lets one change
TINY_WARMUP = TINY | {"warmup": 2}  # the recipes with a schedule
SAMPLES = 200  # make_dataset's num_samples: 160 training and 40 test sequences


@needs_mnist1d
def test_the_data_set_is_built_offline_with_the_published_shapes(monkeypatch):
    def no_network(*args):
        raise OSError("this test has no network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    data = mnist1d.load_dataset(num_samples=SAMPLES)
    assert data["x"].shape == (160, 40) and data["x_eval"].shape == (40, 40)
    assert data["x"].dtype == np.float32 and set(np.unique(data["y"])) <= set(range(10))
    held_out = mnist1d.load_dataset(validation=True, num_samples=SAMPLES)
    assert len(held_out["y"]) + len(held_out["y_eval"]) == 160
    np.testing.assert_array_equal(held_out["x_eval"], data["x"][len(held_out["y"]) :])


def test_batches_in_order_follow_the_protocol_and_shuffled_ones_cover_each_epoch():
    recipe = mnist1d.PROTOCOL | {"steps": 7, "batch": 4}
    in_order = mnist1d.batch_order(recipe, 12, seed=0)
    np.testing.assert_array_equal(in_order[3], [0, 1, 2, 3])  # bix = step · batch mod N
    shuffled = mnist1d.batch_order(recipe | {"batches": "shuffled"}, 12, seed=0)
    assert sorted(shuffled[:3].ravel()) == list(range(12))


@needs_mnist1d
@pytest.mark.parametrize(
    "name, changes",
    [
        ("gru-protocol", {}),
        pytest.param(
            "vanilla-protocol",
            {"nonlinearity": "relu", "identity_scale": 1.0, "head": "max", "clip": 1.0},
            marks=pytest.mark.slow,
        ),
        ("lstm-protocol", {"layers": 2, "bidirectional": False, "dropout": 0.1, "head": "mean", "schedule": "cosine"}),
        pytest.param(
            "vanilla-best",
            {"bidirectional": False, "weight_decay": 0.01, "batches": "shuffled"},
            marks=pytest.mark.slow,
        ),
    ],
)
def test_an_mnist1d_run_writes_its_json(tmp_path, name, changes):
    result = mnist1d.run(name, 0, TINY_WARMUP | changes, False, str(tmp_path), num_samples=SAMPLES)
    written = list((tmp_path / "mnist1d_runs").glob("*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["accuracy"] == result["accuracy"]
    assert [p["step"] for p in result["curve"]] == [3, 6]
    assert 0 <= result["accuracy"] <= 100 and result["implementation"] == "jaxrnn"


@needs_mnist1d
def test_the_mnist1d_report_shows_the_published_rows_and_every_run(tmp_path):
    for seed in (0, 1):
        mnist1d.run("vanilla-protocol", seed, TINY, False, str(tmp_path), num_samples=SAMPLES)
    mnist1d.run("vanilla-best", 0, TINY_WARMUP, True, str(tmp_path), num_samples=SAMPLES)
    mnist1d.main(["table", "--out", str(tmp_path)])
    table = (tmp_path / "mnist1d.md").read_text()
    for label, accuracy in mnist1d.PUBLISHED:
        assert f"| {label} | published (Greydanus 2020) | — | {accuracy:.0f} |" in table
    rows = [line for line in table.splitlines() if line.startswith("| vanilla-protocol+")]
    assert len(rows) == 1 and "| jaxrnn |" in rows[0] and "| 2 |" in rows[0]  # the two seeds in one row
    assert "| vanilla-best | vanilla tanh, 1×3 bidirectional, max head;" in table  # the try scored on validation
    assert (tmp_path / "mnist1d.png").stat().st_size > 0
    assert len(json.loads((tmp_path / "mnist1d.json").read_text())["runs"]) == 3


@needs_mnist1d
@pytest.mark.slow  # a fresh interpreter with torch
def test_the_pytorch_reference_runs_the_same_protocol(tmp_path):
    pytest.importorskip("torch")
    result = mnist1d.run("torch-gru-protocol", 0, TINY, False, str(tmp_path), num_samples=SAMPLES)
    assert result["implementation"].startswith("PyTorch") and result["implementation"].endswith("nn.GRU")
    assert [p["step"] for p in result["curve"]] == [3, 6] and result["threads"] == 1


def test_torch_seed_weights_are_the_pytorch_references_initial_weights():
    torch = pytest.importorskip("torch")
    reference = _load("mnist1d_reference_torch")
    recipe = mnist1d.RECIPES["gru-protocol-torch-weights"]
    params = mnist1d.init_model(None, recipe, 40, seed=3)
    torch.manual_seed(3)
    model = reference.Classifier("gru", 6, 40)
    x = np.random.default_rng(0).normal(size=(5, 40)).astype(np.float32)
    ours = np.asarray(mnist1d.logits(params, jnp.asarray(x), recipe))
    np.testing.assert_allclose(ours, model(torch.as_tensor(x)).detach().numpy(), atol=1e-5)


def test_the_pytorch_reference_refuses_a_recipe_it_does_not_implement():
    pytest.importorskip("torch")
    reference = _load("mnist1d_reference_torch")
    with pytest.raises(SystemExit, match="head"):
        reference.main(["--recipe", json.dumps({"head": "max"})])


def test_an_adding_sequence_has_one_marker_in_each_half_and_the_sum_as_its_target():
    import jax

    x, y = adding.adding_batch(jax.random.key(0), 4096, 10)
    values, markers = np.asarray(x[..., 0]), np.asarray(x[..., 1])
    np.testing.assert_array_equal(markers[:, :5].sum(1), 1)
    np.testing.assert_array_equal(markers[:, 5:].sum(1), 1)
    np.testing.assert_allclose(np.asarray(y), (values * markers).sum(1), rtol=1e-6)
    assert abs(float(jnp.mean((y - 1.0) ** 2)) - adding.BASELINE) < 0.01  # always answering 1


@pytest.fixture(scope="module")
def adding_runs(tmp_path_factory):
    """`(folder, run)`: `run(cell)` trains one tiny model (T 6, 6 steps) into the folder, once per cell."""
    out, done = tmp_path_factory.mktemp("adding"), {}

    def run(cell):
        if cell not in done:
            done[cell] = adding.run(cell, 6, 1e-3, 6, 0, str(out), eval_every=3)
        return done[cell]

    return out, run


@pytest.mark.parametrize(
    "cell", [pytest.param(c, marks=pytest.mark.slow) if c in ("tanh", "gru") else c for c in adding.CELLS]
)
def test_an_adding_run_writes_its_json(adding_runs, cell):
    out, run = adding_runs
    result = run(cell)
    written = json.loads((out / "adding_runs" / f"{cell}-T6-lr0.001-seed0.json").read_text())
    assert written["test_mse"] == result["test_mse"] and [p["step"] for p in written["curve"]] == [3, 6]
    assert np.isfinite(written["test_mse"])


def test_the_irnn_starts_from_the_identity_with_small_input_weights():
    import jax

    params = adding.init_model(jax.random.key(0), "irnn", n_a=5)
    np.testing.assert_array_equal(params["rnn"]["Waa"], np.eye(5))
    assert float(jnp.abs(params["rnn"]["Wax"]).max()) < 0.01


def test_the_adding_report_has_a_row_per_run_and_a_plot(adding_runs):
    out, run = adding_runs
    run("irnn"), run("lstm")
    assert adding.main(["table", "--out", str(out)]) == 0
    rows = [line for line in (out / "adding.md").read_text().splitlines() if line.startswith("| 6 |")]
    assert len(rows) == len(list((out / "adding_runs").glob("*.json"))) >= 2
    assert (out / "adding.png").stat().st_size > 0


@needs_mnist1d
@pytest.mark.slow  # a fresh interpreter
def test_the_mnist1d_script_runs_from_the_command_line(tmp_path):
    """As the docs run it: `python benchmarks/mnist1d.py run ...`, where the script's own name must not
    shadow the `mnist1d` package."""
    import subprocess

    command = [sys.executable, os.path.join(BENCHMARKS, "mnist1d.py"), "run", "vanilla-protocol", "--set"]
    command += ["steps=2", "eval_every=2", "hidden=2", "batch=8", "--num-samples", "100", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["tag"] == "vanilla-protocol+batch=8+eval_every=2+hidden=2+steps=2"
