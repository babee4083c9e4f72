"""`jaxrnn bench` at tiny sizes: every variant computes the same loss, the report is complete.

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
from jaxrnn.bench import variants


def seed_layout_gradients(variant):
    """`(dx, da0, dparameters)` of one variant's step, in the seed layout (Flax's: batch-major, `(in, out)` kernels)."""
    _, gradients = variant.step()
    if variant.name != "flax":
        return gradients
    dvariables, dx, dh0 = gradients
    cell, dense = dvariables["params"]["SimpleCell_0"], dvariables["params"]["Dense_0"]
    dparams = {
        "Wax": cell["i"]["kernel"].T,
        "Waa": cell["h"]["kernel"].T,
        "Wya": dense["kernel"].T,
        "ba": cell["i"]["bias"][:, None],
        "by": dense["bias"][:, None],
    }
    return jnp.transpose(dx, (2, 0, 1)), dh0.T, dparams


def test_variants_agree_on_the_loss_and_the_jax_variants_on_the_gradients():
    """Every variant takes the same step: the same loss, and (JAX and Flax) the same gradients with respect to
    `x`, `a0` and every parameter. PyTorch's step is compared by its loss only: its gradients stay on its tensors."""
    sizes = variants.Sizes(3, 5, 4, 2, 6)
    built, skipped = variants.build_variants(
        ["hand", "hand-ckpt", "autodiff", "seed-scan", "flax", "torch"], sizes, np.float32, jax.devices()[0], 4, "cpu"
    )
    losses = {v.name: v.loss for v in built}
    assert {"hand", "hand-ckpt", "autodiff", "seed-scan"} <= set(losses), skipped
    np.testing.assert_allclose(list(losses.values()), losses["hand"], rtol=1e-5)
    gradients = {v.name: seed_layout_gradients(v) for v in built if v.name != "torch"}
    reference = {name: gradients["autodiff"] for name in gradients}  # an error names the variant and the leaf
    assert_trees_close(gradients, reference, TOLERANCE[jnp.float32])
    if "torch" in losses:
        next(v for v in built if v.name == "torch").step()  # runs


def test_seed_scan_equals_the_library_forward():
    problem = variants.make_problem(variants.Sizes(3, 5, 4, 2, 6))
    a, y = variants.seed_scan(problem.x, problem.a0, problem.params)
    a_ref, y_ref = jaxrnn.rnn_autodiff(problem.x, problem.a0, problem.params)
    np.testing.assert_allclose(a, a_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)


def test_bench_command_writes_table_json_and_plot(tmp_path, capsys):
    out = tmp_path / "results"
    status = jaxrnn.cli.main(
        [
            "bench",
            "--configs",
            "3:5:4:2:6",
            "--repeats",
            "2",
            "--out",
            str(out),
            "--long",
            "--long-config",
            "3:64:4:8:400",
            "--checkpoint-every",
            "20",
            "--train",
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "bench.json").read_text())
    assert (out / "bench.md").read_text().strip() == printed.split("\nwrote ")[0].strip()
    config = results["configs"][0]
    assert config["sizes"] == {"n_x": 3, "n_a": 5, "n_y": 4, "m": 2, "T": 6}
    rows = {r["variant"]: r for r in config["rows"]}
    assert rows["hand"]["ratio_to_hand"] == 1.0
    for r in rows.values():
        assert r["loss_matches"], r["variant"]
        assert len(r["samples_s"]) == 2 and r["min_s"] <= r["median_s"] <= r["max_s"]
        assert r["gflops"] > 0 and r["percent_of_gemm"] > 0
    assert config["gemm_gflops"] > 0
    assert f"| hand | {rows['hand']['median_s'] * 1e3:.1f} |" in printed
    assert "Machine:" in printed and results["machine"]["jax"] == jax.__version__
    # Checkpointing keeps one state in 20 instead of all 400: less compiled temp memory.
    long_rows = {r["variant"]: r for r in results["long"]["rows"]}
    assert long_rows["hand-ckpt"]["temp_bytes"] < long_rows["hand"]["temp_bytes"]
    assert long_rows["hand-ckpt"]["temp_bytes"] < long_rows["autodiff"]["temp_bytes"]
    rates = results["training"]["tokens_per_s"]
    assert set(rates) == {"hand", "autodiff"} and min(rates.values()) > 0
    assert "### Training throughput of `jaxrnn train`" in printed
    if importlib.util.find_spec("matplotlib"):
        assert (out / "bench.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--configs", "R3"], "--configs item 'R3' is neither R1, R2 nor n_x:n_a:n_y:m:T"),
        (["--configs", "1:2:3:4"], "--configs item '1:2:3:4' is neither"),
        (["--variants", "hand,keras"], "unknown --variants ['keras']"),
        (["--repeats", "0"], "--repeats and --checkpoint-every must be positive ints"),
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


def test_gpu_check_script_dry_run(tmp_path):
    """The accelerator script's steps, on the CPU at tiny sizes (its --dry-run)."""
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
    assert [c["label"] for c in results["configs"]] == ["3:8:4:2:6"] and "long" in results
