"""`jaxrnn bench`: gradient-step time and memory of the hand VJP against its alternatives.

All variants of one table are built first, then timed in interleaved rounds (`timing.py`);
every variant's loss and gradients are checked against the oracle (`problem.py`), and a
disagreement is flagged in the table and makes the command exit with status 1.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp

from jaxrnn._measure import interleaved_timings
from jaxrnn.bench import options, report
from jaxrnn.bench.compile_time import compile_times
from jaxrnn.bench.linearity import FACTOR, LINEAR_LIMIT, linearity_rows, linearity_steps
from jaxrnn.bench.options import add_arguments
from jaxrnn.bench.precision import BASELINE, bf16_variants
from jaxrnn.bench.problem import GRADIENT_TOLERANCE, LOSS_TOLERANCE, Sizes, tolerance_key
from jaxrnn.bench.stacks import StackSizes, build_stack_variants
from jaxrnn.bench.timing import Progress, disagreements, time_variants
from jaxrnn.bench.variants import build_variants

__all__ = ["add_arguments", "main"]

# The default `jaxrnn train` model: characters of the default corpus, one chunk per step.
TRAIN_SIZES = {"vocabulary_size": 94, "hidden_size": 256, "batch_size": 32, "chunk_length": 32}
SWEEP_VARIANTS = ("hand", "hand-tm", "autodiff", "seed-scan", "torch")
LONG_VARIANTS = ("hand", "hand-ckpt", "autodiff")


def sweep_sizes(base: Sizes) -> list[tuple[str, Sizes]]:
    """T from ½ to 10 times `base.T`, then m (¼, 4 times) and n_a (¼, 2 times) around `base`:
    around R1, T 100 to 2000, m 16 and 256, n_a 64 and 512."""
    points = [("T", base._replace(T=max(1, base.T * k // 2))) for k in (1, 2, 5, 10, 20)]
    points += [("m", base._replace(m=max(1, base.m * k // 4))) for k in (1, 16)]
    points += [("n_a", base._replace(n_a=max(1, base.n_a * k // 4))) for k in (1, 8)]
    return points


def _layer_table(label, sizes, workload, names, args, device, progress, repeats=None, cell="vanilla") -> dict:
    label = label if cell == "vanilla" else f"{cell} {label}"
    title = f"{label}, {workload}"
    progress.describe(f"{title}: compiling {', '.join(names)}")
    variants, skipped, reference = build_variants(
        names, sizes, args.dtype, device, args.checkpoint_every, args.torch_device, workload=workload, cell=cell
    )
    timed = _timed(
        title, variants, reference, sizes, args, device, progress, repeats=repeats, flops=sizes.model_flops(cell)
    )
    return {"label": label, "cell": cell, "workload": workload, "sizes": sizes._asdict(), **timed, "skipped": skipped}


def _stack_table(sizes: StackSizes, names, args, device, progress) -> dict:
    label = "stack " + ":".join(map(str, sizes))
    progress.describe(f"{label}: compiling {', '.join(names)}")
    variants, skipped, reference = build_stack_variants(names, sizes, args.dtype, device, args.torch_device)
    timed = _timed(label, variants, reference, sizes, args, device, progress)
    return {"label": label, "workload": "dense", "sizes": sizes._asdict(), **timed, "skipped": skipped}


def _bf16_table(label, sizes, workload, args, device, progress) -> dict:
    title = f"bfloat16 {label}, {workload}"
    progress.describe(f"{title}: compiling")
    variants, reference, keys = bf16_variants(sizes, workload, device)
    tolerance_keys = {name: tolerance_key(key, device.platform) for name, key in keys.items()}
    timed = _timed(
        title,
        variants,
        reference,
        sizes,
        args,
        device,
        progress,
        dtype=jnp.float32,
        keys=tolerance_keys,
        baseline=BASELINE,
    )
    return {"label": f"bfloat16 {label}", "workload": workload, "sizes": sizes._asdict(), **timed, "skipped": []}


def _timed(
    title,
    variants,
    reference,
    sizes,
    args,
    device,
    progress,
    *,
    repeats=None,
    dtype=None,
    keys=None,
    baseline="hand",
    flops=None,
):
    """`time_variants` of one built table; by default in `args.dtype`, every variant held to `args.tolerance`."""
    progress.describe(f"{title}: timing")
    return time_variants(
        variants,
        reference,
        sizes.model_flops() if flops is None else flops,
        repeats=repeats or args.repeats,
        device=device,
        dtype=args.dtype if dtype is None else dtype,
        tolerance_keys=dict.fromkeys((v.name for v in variants), args.tolerance) if keys is None else keys,
        progress=progress,
        baseline=baseline,
    )


def _linearity(sizes: Sizes, args, device, progress) -> dict:
    progress.describe(f"linearity: compiling at T={sizes.T} and {FACTOR * sizes.T}")
    steps = linearity_steps(sizes, device)
    progress.describe("linearity: timing")
    timings = interleaved_timings(steps, args.repeats, warmup=1, on_round=progress.advance)
    return {"sizes": sizes._asdict(), "factor": FACTOR, "limit": LINEAR_LIMIT, "rows": linearity_rows(sizes, timings)}


def cpu_model() -> str:
    """The CPU's model name as `lscpu` prints it ("AMD EPYC", "Intel(R) Xeon(R) ..."): timings on one CPU
    kind say little about another, so every table names it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.SubprocessError, StopIteration):
        return platform.processor() or platform.machine()


def machine(device) -> dict:
    return {
        "device": getattr(device, "device_kind", device.platform),
        "platform": device.platform,
        "cpu_count": os.cpu_count(),
        "processor": cpu_model(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "date": datetime.date.today().isoformat(),
    }


def main(args: argparse.Namespace) -> int:
    plan = options.parse(args)
    args.dtype = jnp.dtype(args.dtype)
    device = jax.devices()[0]
    args.tolerance = tolerance_key(args.dtype, device.platform)
    sweep = sweep_sizes(plan.sweep_base) if args.sweep else []
    sweep_repeats = max(3, args.repeats // 3)
    compile_cells = len(plan.compile_lengths) * len(plan.compile_layers) * len(plan.compile_names)
    layer_tables = len(plan.configs) * len(plan.workloads)
    tables = layer_tables * (len(plan.cells) + args.bf16) + args.long + args.stack + args.linearity
    total = (
        args.repeats * tables + sweep_repeats * len(sweep) + compile_cells * args.compile_repeats * args.compile_time
    )
    results = {
        "machine": machine(device),
        "dtype": args.dtype.name,
        "workloads": plan.workloads,
        "tolerances": {"applied": args.tolerance, "loss": LOSS_TOLERANCE, "gradient": GRADIENT_TOLERANCE},
        "configs": [],
        "sweep": [],
    }
    with Progress(total) as progress:
        for cell in plan.cells:
            for label, sizes in plan.configs.items():
                for workload in plan.workloads:
                    table = _layer_table(label, sizes, workload, plan.names, args, device, progress, cell=cell)
                    results["configs"].append(table)
        first = plan.workloads[0]
        if args.long:
            label, sizes = plan.long
            results["long"] = _layer_table(f"long {label}", sizes, first, LONG_VARIANTS, args, device, progress)
        if args.stack:
            results["stack"] = _stack_table(plan.stack, plan.stack_names, args, device, progress)
        if args.bf16:
            results["bf16"] = [
                _bf16_table(label, sizes, workload, args, device, progress)
                for label, sizes in plan.configs.items()
                for workload in plan.workloads
            ]
        if args.linearity:
            results["linearity"] = _linearity(plan.linearity, args, device, progress)
        sweep_names = [n for n in plan.names if n in SWEEP_VARIANTS]
        for axis, sizes in sweep:
            label = f"{axis}: n_a={sizes.n_a} m={sizes.m} T={sizes.T}"
            measured = _layer_table(label, sizes, first, sweep_names, args, device, progress, sweep_repeats)
            results["sweep"] += [{**row, "axis": axis, "sizes": sizes._asdict()} for row in measured["rows"]]
        if args.compile_time:  # last: it clears JAX's caches
            results["compile_time"] = _compile_time(plan, args, progress)
    if args.train:
        from jaxrnn.charlm.train import training_throughput

        print("  training throughput: compiling and timing", file=sys.stderr, flush=True)
        results["training"] = {
            "sizes": TRAIN_SIZES,
            "tokens_per_s": training_throughput(repeats=args.repeats, **TRAIN_SIZES),
        }
    return _write(results, args.out)


def _compile_time(plan: options.Plan, args, progress) -> dict:
    progress.describe(f"compile time: building {', '.join(plan.compile_names)}")
    n_x, n_a, m = plan.compile_sizes
    rows, skipped = compile_times(
        plan.compile_names,
        n_x,
        n_a,
        m,
        plan.compile_lengths,
        plan.compile_layers,
        args.compile_repeats,
        on_sample=progress.advance,
    )
    return {"sizes": {"n_x": n_x, "n_a": n_a, "m": m}, "rows": rows, "skipped": skipped}


def _write(results: dict, out: str) -> int:
    text = report.render(results)
    print(text)
    report.write_atomically(os.path.join(out, "bench.md"), text + "\n")
    report.write_json(os.path.join(out, "bench.json"), results)
    if report.plot(os.path.join(out, "bench.png"), results):
        print(f"\nwrote {out}/bench.md, bench.json, bench.png")
    else:
        print(f"\nwrote {out}/bench.md, bench.json (matplotlib not installed: no plot)")
    found = disagreements(results)
    if found:
        print(
            "jaxrnn bench: these variants do not compute the oracle's loss or gradients (see the tables):\n  "
            + "\n  ".join(found),
            file=sys.stderr,
        )
        return 1
    return 0
