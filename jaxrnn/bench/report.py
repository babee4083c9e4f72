"""Benchmark results as Markdown tables, JSON and a PNG plot."""

from __future__ import annotations

import json
import os
import tempfile


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def _mb(n_bytes: int | None) -> str:
    return "–" if n_bytes is None else f"{n_bytes / 2**20:.1f}"


def step_table(rows: list[dict]) -> str:
    """Rows of one size configuration: time, ratio to `hand`, FLOP/s, share of GEMM, memory."""
    lines = [
        "| variant | median ms | min–max ms | time / hand | GFLOP/s | % of GEMM | temp MiB | loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {_ms(r['median_s'])} | {_ms(r['min_s'])}–{_ms(r['max_s'])} | "
            f"{r['ratio_to_hand']:.2f} | {r['gflops']:.1f} | {r['percent_of_gemm']:.0f}% | "
            f"{_mb(r['temp_bytes'])} | {r['loss']:.5f}{'' if r['loss_matches'] else ' MISMATCH'} |"
        )
    return "\n".join(lines)


def sweep_table(rows: list[dict]) -> str:
    """One line per (sizes, variant) of the scaling sweep."""
    lines = [
        "| n_a | m | T | variant | median ms | time / hand | GFLOP/s | temp MiB |",
        "|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["sizes"]
        lines.append(
            f"| {s['n_a']} | {s['m']} | {s['T']} | {r['variant']} | {_ms(r['median_s'])} | "
            f"{r['ratio_to_hand']:.2f} | {r['gflops']:.1f} | {_mb(r['temp_bytes'])} |"
        )
    return "\n".join(lines)


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
    figure, axes = plt.subplots(1, axes_needed, figsize=(6 * axes_needed, 4), dpi=100, squeeze=False)
    bars = axes[0][0]
    configs = results["configs"]
    names = [r["variant"] for r in configs[0]["rows"]]
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        times = [next((r["median_s"] * 1e3 for r in c["rows"] if r["variant"] == name), 0) for c in configs]
        bars.bar([j + i * width for j in range(len(configs))], times, width, label=name)
    bars.set_xticks([j + 0.4 - width / 2 for j in range(len(configs))], [c["label"] for c in configs])
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
