"""`jaxrnn bench` at tiny sizes: every variant computes the oracle's loss and gradients, a variant
that does not is flagged, and every table of the report is written.

No assertion here is about speed (speed is what the benchmark itself reports); these tests
check that the benchmark measures what it claims to.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOLERANCE, assert_trees_close

import jaxrnn.cli
from jaxrnn.bench import options, problem, run, stacks, variants

TINY = problem.Sizes(3, 5, 4, 2, 6)


@pytest.mark.parametrize(
    "workload", [problem.WORKLOADS[0], *(pytest.param(w, marks=pytest.mark.slow) for w in problem.WORKLOADS[1:])]
)
def test_every_variant_computes_the_oracles_loss_and_gradients(workload):
    """The same loss, and the same gradients with respect to `x`, `a0` and every parameter, PyTorch's included."""
    names = [*variants.ALL_VARIANTS, *variants.OPTIONAL_VARIANTS]
    built, skipped, reference = variants.build_variants(
        names, TINY, np.float32, jax.devices()[0], 4, "cpu", 0, workload
    )
    assert {"hand", "hand-tm", "hand-masked", "hand-ckpt", "autodiff", "seed-scan"} <= {v.name for v in built}, skipped
    assert ("hand-ce" in {v.name for v in built}) == (workload == "ce")
    for variant in built:
        checked = problem.agreement(variant, reference, "float32")
        assert checked["loss_matches"] and checked["gradient_matches"], (variant.name, checked)
    gradients = {v.name: v.gradients for v in built}
    assert_trees_close(gradients, dict.fromkeys(gradients, reference.gradients), TOLERANCE[jnp.float32])
    for variant in built:
        variant.step()  # what the rounds time runs


def test_stack_variants_compute_the_oracles_loss_and_gradients():
    sizes = stacks.StackSizes(3, 5, 2, 6, 2)
    built, skipped, reference = stacks.build_stack_variants(
        stacks.STACK_VARIANTS, sizes, np.float32, jax.devices()[0], "cpu"
    )
    assert {"hand", "hand-masked", "autodiff"} <= {v.name for v in built}, skipped
    for variant in built:
        checked = problem.agreement(variant, reference, "float32")
        assert checked["loss_matches"] and checked["gradient_matches"], (variant.name, checked)


def _without_bias_gradient(x, a0, params, **options):
    """A wrong step: the right loss, but `ba` gets no gradient."""
    return jaxrnn.rnn(x, a0, {**params, "ba": jax.lax.stop_gradient(params["ba"])}, **options)


def _another_function(x, a0, params, **options):
    return jaxrnn.rnn(1.5 * x, a0, params, **options)


def test_the_agreement_check_flags_a_wrong_gradient_and_a_wrong_loss():
    tiny = problem.make_problem(TINY)
    reference = problem.reference(tiny, "ce", jnp.float32)
    wrong = {
        name: variants.layer_variant(name, tiny, "ce", jnp.float32, jax.devices()[0], call=call)
        for name, call in (("no dba", _without_bias_gradient), ("1.5 x", _another_function))
    }
    no_bias = problem.agreement(wrong["no dba"], reference, "float32")
    assert no_bias["loss_matches"] and not no_bias["gradient_matches"]
    other = problem.agreement(wrong["1.5 x"], reference, "float32")
    assert not other["loss_matches"] and not other["gradient_matches"]
    shapes_differ = wrong["no dba"]._replace(gradients=(*reference.gradients[:2], {}))
    assert not problem.agreement(shapes_differ, reference, "float32")["gradient_matches"]


def test_a_wrong_variant_fails_the_command(tmp_path, monkeypatch, capsys):
    def build_with_a_wrong_one(names, sizes, dtype, device, *args, workload="ce", **kwargs):
        built, skipped, reference = variants.build_variants(names, sizes, dtype, device, *args, workload=workload)
        tiny = problem.make_problem(sizes)
        wrong = variants.layer_variant("no-dba", tiny, workload, dtype, device, call=_without_bias_gradient)
        return [*built, wrong], skipped, reference

    monkeypatch.setattr(run, "build_variants", build_with_a_wrong_one)
    out = tmp_path / "results"
    arguments = ["bench", "--configs", "3:5:4:2:6", "--variants", "hand", "--workload", "dense", "--repeats", "1"]
    assert jaxrnn.cli.main([*arguments, "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "do not compute the oracle's loss or gradients" in captured.err
    assert "3:5:4:2:6: no-dba (gradients)" in captured.err
    assert re.search(r"\| no-dba \|.* \| \d\.\d+e[+-]\d+ MISMATCH \|", (out / "bench.md").read_text())
    rows = {r["variant"]: r for r in json.loads((out / "bench.json").read_text())["configs"][0]["rows"]}
    assert rows["hand"]["gradient_matches"] and not rows["no-dba"]["gradient_matches"]


def test_seed_scan_equals_the_library_forward():
    tiny = problem.make_problem(TINY)
    a, y = variants.seed_scan(tiny.x, tiny.a0, tiny.params)
    a_ref, y_ref = jaxrnn.rnn_autodiff(tiny.x, tiny.a0, tiny.params, layout="seed")
    np.testing.assert_allclose(a, a_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)


def test_sweep_around_r1_is_the_published_one():
    points = [(axis, s.n_a, s.m, s.T) for axis, s in run.sweep_sizes(options.CONFIGS["R1"])]
    assert points == [("T", 256, 64, T) for T in (100, 200, 500, 1000, 2000)] + [
        ("m", 256, 16, 200),
        ("m", 256, 256, 200),
        ("n_a", 64, 64, 200),
        ("n_a", 512, 64, 200),
    ]


@pytest.mark.slow  # three cells x two workloads x sweep x training throughput
def test_bench_command_writes_both_workloads_the_sweep_training_json_and_plot(tmp_path, capsys):
    out = tmp_path / "results"
    arguments = ["--configs", "3:5:4:2:6", "--variants", "hand", "--repeats", "2", "--sweep", "--train"]
    assert jaxrnn.cli.main(["bench", *arguments, "--sweep-config", "3:5:4:4:4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "bench.json").read_text())
    assert (out / "bench.md").read_text().strip() == printed.split("\nwrote ")[0].strip()
    assert "Machine:" in printed and results["machine"]["jax"] == jax.__version__
    assert [(c["label"], c["cell"], c["workload"]) for c in results["configs"]] == [
        (label, cell, workload)
        for cell, label in (("vanilla", "3:5:4:2:6"), ("gru", "gru 3:5:4:2:6"), ("lstm", "lstm 3:5:4:2:6"))
        for workload in ("ce", "dense")
    ]
    for config in results["configs"]:
        assert config["sizes"] == {"n_x": 3, "n_a": 5, "n_y": 4, "m": 2, "T": 6}
        # the ceiling is the fastest square GEMM (1024 x 1024) of the rounds, not their median
        assert config["gemm_gflops"] == pytest.approx(2 * 1024**3 / min(config["gemm_samples_s"]) / 1e9)
        (row,) = config["rows"]
        assert row["variant"] == "hand" and row["ratio_to_hand"] == 1.0
        assert row["loss_matches"] and row["gradient_matches"] and row["gradient_error"] < 1e-4
        assert len(row["samples_s"]) == 2 and row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["gflops"] > 0 and row["percent_of_gemm"] > 0
        assert f"### {config['label']}, {config['workload']} workload" in printed
        assert f"| hand | {row['median_s'] * 1e3:.1f} |" in printed
    sizes = [(r["axis"], r["sizes"]["n_a"], r["sizes"]["m"], r["sizes"]["T"]) for r in results["sweep"]]
    assert sizes == [("T", 5, 4, T) for T in (2, 4, 10, 20, 40)] + [("m", 5, 1, 4), ("m", 5, 16, 4)] + [
        ("n_a", 1, 4, 4),
        ("n_a", 10, 4, 4),
    ]
    assert "### Scaling sweep (ce workload)" in printed
    rates = results["training"]["tokens_per_s"]
    assert set(rates) == {"hand", "autodiff"} and min(rates.values()) > 0
    assert "### Training throughput of `jaxrnn train`" in printed
    if importlib.util.find_spec("matplotlib"):
        assert (out / "bench.png").stat().st_size > 1000


def test_all_switches_on_every_table(tmp_path):
    args = jaxrnn.cli.build_parser().parse_args(["bench", "--all", "--out", str(tmp_path)])
    options.parse(args)
    assert all(
        getattr(args, table) for table in ("long", "train", "sweep", "stack", "compile_time", "bf16", "linearity")
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--configs", "R3"], "--configs item 'R3' is neither R1, R2 nor n_x:n_a:n_y:m:T"),
        (["--configs", "1:2:3:4"], "--configs item '1:2:3:4' is neither"),
        (["--variants", "hand,keras"], "unknown --variants ['keras']"),
        (["--workload", "mse"], "unknown --workload ['mse']"),
        (["--repeats", "0"], "--repeats, --checkpoint-every and --compile-repeats must be positive ints"),
        (["--stack-config", "3:5:2:6"], "--stack-config '3:5:2:6' is not n_x:n_a:m:T:layers with positive ints"),
        (["--compile-lengths", "100,0"], "--compile-lengths '100,0' is not a comma-separated list of positive ints"),
        (["--long-config", "R1,R2"], "--long-config takes one size configuration"),
        (["--linearity-config", "R1"], "--linearity-config 'R1' is not n_x:n_a:n_y:m:T with positive ints"),
    ],
)
def test_bad_arguments(arguments, message, tmp_path):
    with pytest.raises(SystemExit, match=re.escape(message)):
        jaxrnn.cli.main(["bench", "--out", str(tmp_path), *arguments])


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    with pytest.raises(SystemExit, match="cannot create --out folder"):
        jaxrnn.cli.main(["bench", "--configs", "3:5:4:2:6", "--out", str(blocker / "sub")])
    assert blocker.read_text() == "keep me"
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(SystemExit, match="is not writable"):
            jaxrnn.cli.main(["bench", "--configs", "3:5:4:2:6", "--out", str(locked)])


@pytest.mark.slow  # every table of the accelerator script, on the CPU
def test_gpu_check_script_dry_run(tmp_path):
    """The accelerator script's steps, on the CPU at tiny sizes (its --dry-run): masks, stacks and
    bidirectional layers, PyTorch, bfloat16, linearity and compile time included."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    result = subprocess.run(
        ["bash", "scripts/gpu_check.sh", str(tmp_path), "--dry-run"],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tests collected" in (tmp_path / "pytest.log").read_text()
    results = json.loads((tmp_path / "bench.json").read_text())
    printed = (tmp_path / "bench.md").read_text()
    cells = ["3:8:4:2:6", "gru 3:8:4:2:6", "lstm 3:8:4:2:6"]  # the vanilla cell, GRU and LSTM
    assert [(c["label"], c["workload"]) for c in results["configs"]] == [(label, "dense") for label in cells]
    torch = ["torch"] if importlib.util.find_spec("torch") else []
    flax = ["flax"] if importlib.util.find_spec("flax") else []
    masked_flax = ["flax-masked"] if flax else []
    tables = {c["label"]: c for c in results["configs"]} | {"long": results["long"], "stack": results["stack"]}
    tables |= {table["label"]: table for table in results["bf16"]}
    for label, table in tables.items():
        for r in table["rows"]:
            assert r["loss_matches"] and r["gradient_matches"], (label, r)
    for label in cells:
        assert [r["variant"] for r in tables[label]["rows"]] == ["hand", "hand-masked", *flax, *masked_flax, *torch]
    assert " MISMATCH |" not in printed
    # Checkpointing keeps one state in 10 instead of all 40: less compiled temp memory.
    long_rows = {r["variant"]: r for r in results["long"]["rows"]}
    assert long_rows["hand-ckpt"]["temp_bytes"] < long_rows["hand"]["temp_bytes"]
    assert long_rows["hand-ckpt"]["temp_bytes"] < long_rows["autodiff"]["temp_bytes"]
    # The bidirectional stack: rnn_stack with and without masks, Flax nn.Bidirectional, torch.
    assert results["stack"]["sizes"] == {"n_x": 3, "n_a": 8, "m": 2, "T": 6, "layers": 2}
    assert [r["variant"] for r in results["stack"]["rows"]] == ["hand", "hand-masked", *flax, *torch]
    assert "### stack 3:8:2:6:2, dense workload" in printed
    # bfloat16: its error against float32 autodiff is bfloat16's, float32's is float32's.
    (bf16,) = results["bf16"]
    rows = {r["variant"]: r for r in bf16["rows"]}
    assert list(rows) == ["hand bfloat16", "autodiff bfloat16", "hand float32"]
    assert rows["hand float32"]["gradient_error"] < 1e-4 < rows["hand bfloat16"]["gradient_error"] < 0.15
    assert "| hand bfloat16 |" in printed and "time / hand float32" in printed
    linearity = {r["function"]: r for r in results["linearity"]["rows"]}
    assert set(linearity) == {"hand", "autodiff", "grad-of-grad"}
    assert all(r["T"] == 10 and r["long_T"] == 40 and r["ratio"] > 0 for r in linearity.values())
    assert "| grad-of-grad through `rnn` |" in printed
    cells = [(r["layers"], r["T"], r["variant"]) for r in results["compile_time"]["rows"]]
    assert cells == [(layers, 6, name) for layers in (1, 2) for name in ("hand", *flax)]
    assert all(r["compile_s"] > 0 and r["lower_s"] > 0 for r in results["compile_time"]["rows"])
    assert "### First-call build time" in printed
    assert "| 3:8:4:2:6, dense | the cost of masks (seq_lengths, all T): hand-masked / hand ≤ 1.10 |" in printed
