"""Benchmark results as Markdown tables, JSON and a PNG plot."""

from __future__ import annotations

import json
import os
import tempfile


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def _mb(n_bytes: int | None) -> str:
    return "–" if n_bytes is None else f"{n_bytes / 2**20:.1f}"


def _agreement(r: dict) -> tuple[str, str]:
    """The loss and gradient-error cells, flagged when outside the tolerance."""
    loss = f"{r['loss']:.5f}{'' if r['loss_matches'] else ' MISMATCH'}"
    error = f"{r['gradient_error']:.1e}{'' if r['gradient_matches'] else ' MISMATCH'}"
    return loss, error


def step_table(rows: list[dict], baseline: str = "hand", error_header: str = "grad err") -> str:
    """Rows of one size configuration: time, ratio to `baseline`, FLOP/s, share of GEMM, memory,
    loss and the gradients' largest relative error against the oracle."""
    lines = [
        f"| variant | median ms | min–max ms | time / {baseline} | GFLOP/s | % of GEMM | temp MiB | loss "
        f"| {error_header} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        loss, error = _agreement(r)
        lines.append(
            f"| {r['variant']} | {_ms(r['median_s'])} | {_ms(r['min_s'])}–{_ms(r['max_s'])} | "
            f"{r['ratio_to_hand']:.2f} | {r['gflops']:.1f} | {r['percent_of_gemm']:.0f}% | "
            f"{_mb(r['temp_bytes'])} | {loss} | {error} |"
        )
    return "\n".join(lines)


def sweep_table(rows: list[dict]) -> str:
    """One line per (sizes, variant) of the scaling sweep."""
    lines = [
        "| n_a | m | T | variant | median ms | time / hand | GFLOP/s | temp MiB | grad err |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["sizes"]
        lines.append(
            f"| {s['n_a']} | {s['m']} | {s['T']} | {r['variant']} | {_ms(r['median_s'])} | "
            f"{r['ratio_to_hand']:.2f} | {r['gflops']:.1f} | {_mb(r['temp_bytes'])} | {_agreement(r)[1]} |"
        )
    return "\n".join(lines)


# (what, numerator, denominator, the largest ratio that meets the target)
TARGETS = (
    ("time-major entry against PyTorch's own layout", "hand-tm", "torch", 1.0),
    ("the cost of masks (seq_lengths, all T)", "hand-masked", "hand", 1.10),
    ("hand against autodiff of the same forward", "hand", "autodiff", 0.75),
    ("hand against Flax", "hand", "flax", 1.0),
    ("hand against PyTorch", "hand", "torch", 1.0),
)


def targets_table(tables: list[dict]) -> str:
    """The performance targets, one line per table that has both variants of a target."""
    lines = ["| table | target | ratio of medians | met |", "|---|---|---:|---|"]
    for table in tables:
        medians = {r["variant"]: r["median_s"] for r in table["rows"]}
        for what, numerator, denominator, limit in TARGETS:
            if numerator in medians and denominator in medians:
                ratio = medians[numerator] / medians[denominator]
                lines.append(
                    f"| {table['label']}, {table['workload']} | {what}: {numerator} / {denominator} ≤ {limit:.2f} "
                    f"| {ratio:.2f} | {'yes' if ratio <= limit else 'no'} |"
                )
    return "\n".join(lines) if len(lines) > 2 else ""


def compile_table(rows: list[dict]) -> str:
    """First-call build time per (layers, T, variant): tracing and lowering, XLA, total."""
    first = rows[0]["variant"] if rows else "hand"
    lines = [
        f"| layers | T | variant | trace + lower s | XLA compile s | total s | total / {first} |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layers']} | {r['T']} | {r['variant']} | {r['lower_s']:.2f} | {r['compile_s']:.2f} | "
            f"{r['total_s']:.2f} | {r['ratio_to_first']:.2f} |"
        )
    return "\n".join(lines)


def linearity_table(rows: list[dict], limit: float) -> str:
    """Median ms at T and at 4T per gradient function, their ratio, and the verdict."""
    if not rows:
        return ""
    T, long_T = rows[0]["T"], rows[0]["long_T"]
    lines = [
        f"| gradient | T = {T}, median ms | T = {long_T}, median ms | ratio | linear (ratio ≤ {limit:g}) |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        verdict = "yes" if r["linear"] else "NO: superlinear in T"
        lines.append(
            f"| {r['description']} | {_ms(r['median_s'])} | {_ms(r['long_median_s'])} | {r['ratio']:.2f} | {verdict} |"
        )
    return "\n".join(lines)


def _heading(table: dict) -> str:
    sizes = " ".join(f"{k}={v}" for k, v in table["sizes"].items())
    return (
        f"\n### {table['label']}, {table['workload']} workload: {sizes} "
        f"(GEMM ceiling, the fastest square GEMM of the same rounds: {table['gemm_gflops']:.0f} GFLOP/s)\n"
    )


def render(results: dict) -> str:
    """The whole Markdown report."""
    m, tolerances = results["machine"], results["tolerances"]
    applied = tolerances["applied"]
    parts = [
        f"Machine: {m['device']} ({m['platform']}), {m['cpu_count']} CPU cores, {m['processor']}; "
        f"jax {m['jax']}, Python {m['python']}; {m['date']}; dtype {results['dtype']}.",
        f"\nEvery row is checked against the oracle (`jax.grad` of `rnn_autodiff`, float32, full-precision "
        f"products, on the same numbers): loss within {tolerances['loss'][applied]:g} of Σ|terms|, and every "
        f"gradient within {tolerances['gradient'][applied]:g} of the oracle's largest entry (grad err: the "
        f"largest such relative error); MISMATCH marks a row outside them. Workloads: ce = mean cross-entropy "
        f"on y; dense = Σ a⊙g_a + Σ y⊙g_y with fixed random g_a, g_y.",
    ]
    for table in results["configs"] + [results[k] for k in ("long", "stack") if k in results]:
        parts.append(_heading(table))
        parts.append(step_table(table["rows"]))
        if table["skipped"]:
            parts.append(f"\nskipped: {', '.join(table['skipped'])}")
    met = targets_table(results["configs"] + [results[k] for k in ("stack",) if k in results])
    if met:
        parts += ["\n### Targets\n", met]
    if results.get("bf16"):
        parts.append(
            f"\n### bfloat16 (inputs and weights rounded to bfloat16 once; grad err against float32 autodiff on "
            f"the rounded numbers; tolerance {tolerances['gradient']['bfloat16']:g})"
        )
        for table in results["bf16"]:
            parts.append(_heading(table))
            parts.append(step_table(table["rows"], baseline="hand float32", error_header="max rel. grad error"))
    if "linearity" in results:
        lin = results["linearity"]
        sizes = " ".join(f"{k}={v}" for k, v in lin["sizes"].items() if k != "T")
        parts.append(f"\n### Linear in T: {sizes}, dense workload, T and {lin['factor']}·T\n")
        parts.append(linearity_table(lin["rows"], lin["limit"]))
    if "compile_time" in results:
        ct = results["compile_time"]
        sizes = " ".join(f"{k}={v}" for k, v in ct["sizes"].items())
        parts.append(
            f"\n### First-call build time of a jitted gradient step, unidirectional stacks: {sizes} "
            f"(median of fresh builds, caches cleared)\n"
        )
        parts.append(compile_table(ct["rows"]))
        if ct["skipped"]:
            parts.append(f"\nskipped: {', '.join(ct['skipped'])}")
    if "training" in results:
        sizes, rates = results["training"]["sizes"], results["training"]["tokens_per_s"]
        parts.append(
            f"\n### Training throughput of `jaxrnn train` (V={sizes['vocabulary_size']}, n_a={sizes['hidden_size']}, "
            f"batch {sizes['batch_size']} × {sizes['chunk_length']} characters)\n"
        )
        parts.append("| gradient | tokens/s | relative to hand |\n|---|---:|---:|")
        parts += [f"| {name} | {rate:,.0f} | {rate / rates['hand']:.2f} |" for name, rate in rates.items()]
    if results["sweep"]:
        parts.append(f"\n### Scaling sweep ({results['workloads'][0]} workload)\n")
        parts.append(sweep_table(results["sweep"]))
    return "\n".join(parts)


def write_atomically(path: str, text: str) -> None:
    """Writes `text` to `path` through a temporary file in the same folder, then renames it."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_json(path: str, results: dict) -> None:
    write_atomically(path, json.dumps(results, indent=2) + "\n")


def plot(path: str, results: dict) -> bool:
    """Step time per variant for each size configuration, and the sweep when present.

    Returns False (and writes nothing) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sweep = results.get("sweep", [])
    axes_needed = 1 + bool(sweep)
    configs = results["configs"] + [results[k] for k in ("stack",) if k in results]
    size = (6 * axes_needed + max(0, len(configs) - 3), 4)
    figure, axes = plt.subplots(1, axes_needed, figsize=size, dpi=100, squeeze=False)
    bars = axes[0][0]
    names = list(dict.fromkeys(r["variant"] for c in configs for r in c["rows"]))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        times = [next((r["median_s"] * 1e3 for r in c["rows"] if r["variant"] == name), 0) for c in configs]
        bars.bar([j + i * width for j in range(len(configs))], times, width, label=name)
    labels = [f"{c['label']}\n{c['workload']}" for c in configs]
    bars.set_xticks([j + 0.4 - width / 2 for j in range(len(configs))], labels, fontsize=8)
    bars.set_ylabel("gradient step, median ms")
    bars.set_title(f"{results['machine']['device']}, {results['dtype']}")
    bars.legend(fontsize=8)
    if sweep:
        lines = axes[0][1]
        t_rows = [r for r in sweep if r["axis"] == "T"]
        for name in dict.fromkeys(r["variant"] for r in t_rows):
            points = [(r["sizes"]["T"], r["median_s"] * 1e3) for r in t_rows if r["variant"] == name]
            lines.plot(*zip(*points), marker="o", label=name)
        lines.set_xscale("log")
        lines.set_yscale("log")
        lines.set_xlabel("sequence length T")
        lines.set_ylabel("gradient step, median ms")
        lines.set_title("scaling with T")
        lines.legend(fontsize=8)
    figure.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".png")
    os.close(handle)
    try:
        figure.savefig(temporary)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    finally:
        plt.close(figure)
    return True
