"""`jaxrnn bench`: gradient-step time and memory of the hand VJP against its alternatives.

All variants of one configuration are built first, then timed in interleaved rounds
(hand, autodiff, seed-scan, ..., GEMM, hand, autodiff, ...), so the drift of a shared
machine hits them alike; the table reports medians, min–max, ratios to `hand`, model
FLOP/s and their share of the square-GEMM throughput measured in the same rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys

import jax
import jax.numpy as jnp

from jaxrnn._measure import interleaved_timings
from jaxrnn.bench import report
from jaxrnn.bench.variants import Sizes, build_variants, gemm_variant

CONFIGS = {  # (n_x, n_a, n_y, m, T)
    "R1": Sizes(64, 256, 64, 64, 200),
    "R2": Sizes(128, 512, 128, 128, 100),
}
ALL_VARIANTS = ("hand", "autodiff", "seed-scan", "flax", "torch")
# The default `jaxrnn train` model: characters of the default corpus, one chunk per step.
TRAIN_SIZES = {"vocabulary_size": 94, "hidden_size": 256, "batch_size": 32, "chunk_length": 32}
# Every variant computes the same loss from the same numbers; relative agreement expected:
LOSS_TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2}


def sweep_sizes(base: Sizes) -> list[tuple[str, Sizes]]:
    """T from 100 to 2000, then m and n_a around `base`."""
    points = [("T", base._replace(T=T)) for T in (100, 200, 500, 1000, 2000)]
    points += [("m", base._replace(m=m)) for m in (16, 64, 256) if m != base.m]
    points += [("n_a", base._replace(n_a=n_a)) for n_a in (64, 256, 512) if n_a != base.n_a]
    return points


class Progress:
    """A rich progress bar when rich is installed, else one line per task."""

    def __init__(self, total: int):
        self.total = total
        self._rich = None
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        try:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        except ImportError:
            return self
        self._rich = self._stack.enter_context(
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
        )
        self._task = self._rich.add_task("benchmark", total=self.total)
        return self

    def describe(self, text: str) -> None:
        if self._rich is None:
            print(f"  {text}", file=sys.stderr, flush=True)
        else:
            self._rich.update(self._task, description=text)

    def advance(self, _round: int | None = None) -> None:
        if self._rich is not None:
            self._rich.advance(self._task)

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)


def measure(label, sizes, names, args, device, progress) -> dict:
    progress.describe(f"{label}: compiling {', '.join(names)}")
    variants, skipped = build_variants(names, sizes, args.dtype, device, args.checkpoint_every, args.torch_device)
    gemm, gemm_flops = gemm_variant(device, dtype=args.dtype)
    progress.describe(f"{label}: timing")
    runs = {v.name: v.step for v in variants} | {"GEMM": gemm}
    timings = interleaved_timings(runs, args.repeats, warmup=2, on_round=progress.advance)
    gemm_gflops = gemm_flops / timings["GEMM"].median / 1e9
    hand = timings.get("hand", timings[variants[0].name]).median
    reference_loss = variants[0].loss
    rows = []
    for v in variants:
        t = timings[v.name]
        gflops = sizes.model_flops() / t.median / 1e9
        rows.append(
            {
                "variant": v.name,
                "median_s": t.median,
                "min_s": t.low,
                "max_s": t.high,
                "ratio_to_hand": t.median / hand,
                "gflops": gflops,
                "percent_of_gemm": 100 * gflops / gemm_gflops,
                "temp_bytes": v.temp_bytes,
                "loss": v.loss,
                "loss_matches": abs(v.loss - reference_loss) <= LOSS_TOLERANCE[args.dtype.name] * abs(reference_loss),
                "samples_s": list(t.samples),
            }
        )
    return {"label": label, "sizes": sizes._asdict(), "gemm_gflops": gemm_gflops, "rows": rows, "skipped": skipped}


def machine(device) -> dict:
    return {
        "device": getattr(device, "device_kind", device.platform),
        "platform": device.platform,
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "date": datetime.date.today().isoformat(),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configs",
        default="R1,R2",
        help="comma-separated size configurations: R1, R2, or n_x:n_a:n_y:m:T (default R1,R2)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(ALL_VARIANTS),
        help=f"comma-separated, from {', '.join((*ALL_VARIANTS, 'hand-ckpt'))} (default: all but hand-ckpt)",
    )
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per configuration (default 15)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="(default float32)")
    parser.add_argument("--long", action="store_true", help="add a long sequence: hand vs hand-ckpt vs autodiff")
    parser.add_argument("--long-config", default="64:256:64:64:2000", help="sizes of --long, n_x:n_a:n_y:m:T")
    parser.add_argument("--checkpoint-every", type=int, default=50, help="segment length of hand-ckpt (default 50)")
    parser.add_argument("--sweep", action="store_true", help="add a scaling sweep over T, m and n_a around R1")
    parser.add_argument(
        "--train",
        action="store_true",
        help="add the training throughput of jaxrnn train: hand vs autodiff gradient (tokens/s)",
    )
    parser.add_argument("--torch-device", default="cpu", help="device for the PyTorch variant (cpu or cuda)")
    parser.add_argument("--out", default="bench-results", help="folder for bench.md, bench.json, bench.png")


def _parse_configs(text: str) -> dict[str, Sizes]:
    configs = {}
    for item in filter(None, text.split(",")):
        if item in CONFIGS:
            configs[item] = CONFIGS[item]
            continue
        parts = item.split(":")
        if len(parts) != 5 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise SystemExit(
                f"jaxrnn bench: --configs item {item!r} is neither R1, R2 nor n_x:n_a:n_y:m:T with positive ints"
            )
        configs[item] = Sizes(*map(int, parts))
    if not configs:
        raise SystemExit("jaxrnn bench: --configs is empty")
    return configs


def main(args: argparse.Namespace) -> int:
    configs = _parse_configs(args.configs)
    names = [n for n in args.variants.split(",") if n]
    unknown = sorted(set(names) - {*ALL_VARIANTS, "hand-ckpt"})
    if unknown:
        raise SystemExit(f"jaxrnn bench: unknown --variants {unknown}; choose from {[*ALL_VARIANTS, 'hand-ckpt']}")
    if args.repeats < 1 or args.checkpoint_every < 1:
        raise SystemExit("jaxrnn bench: --repeats and --checkpoint-every must be positive ints")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as err:
        raise SystemExit(f"jaxrnn bench: cannot create --out folder {args.out!r}: {err.strerror}") from None
    if not os.access(args.out, os.W_OK):
        raise SystemExit(f"jaxrnn bench: --out folder {args.out!r} is not writable")
    args.dtype = jnp.dtype(args.dtype)
    device = jax.devices()[0]
    sweep = sweep_sizes(CONFIGS["R1"]) if args.sweep else []
    sweep_names = [n for n in names if n in ("hand", "autodiff", "seed-scan", "torch")]
    long_names = ["hand", "hand-ckpt", "autodiff"]
    total = args.repeats * len(configs) + (args.repeats * args.long) + max(3, args.repeats // 3) * len(sweep)
    results = {"machine": machine(device), "dtype": args.dtype.name, "configs": [], "sweep": []}
    with Progress(total) as progress:
        for label, sizes in configs.items():
            results["configs"].append(measure(label, sizes, names, args, device, progress))
        if args.long:
            ((long_label, long_sizes),) = _parse_configs(args.long_config).items()
            results["long"] = measure(f"long {long_label}", long_sizes, long_names, args, device, progress)
        sweep_args = argparse.Namespace(**{**vars(args), "repeats": max(3, args.repeats // 3)})
        for axis, sizes in sweep:
            label = f"{axis}: n_a={sizes.n_a} m={sizes.m} T={sizes.T}"
            measured = measure(label, sizes, sweep_names, sweep_args, device, progress)
            results["sweep"] += [{**row, "axis": axis, "sizes": sizes._asdict()} for row in measured["rows"]]
    if args.train:
        from jaxrnn.charlm.train import training_throughput

        print("  training throughput: compiling and timing", file=sys.stderr, flush=True)
        results["training"] = {
            "sizes": TRAIN_SIZES,
            "tokens_per_s": training_throughput(repeats=args.repeats, **TRAIN_SIZES),
        }
    text = render(results)
    print(text)
    report.write_atomically(os.path.join(args.out, "bench.md"), text + "\n")
    report.write_json(os.path.join(args.out, "bench.json"), results)
    if report.plot(os.path.join(args.out, "bench.png"), results):
        print(f"\nwrote {args.out}/bench.md, bench.json, bench.png")
    else:
        print(f"\nwrote {args.out}/bench.md, bench.json (matplotlib not installed: no plot)")
    return 0


def render(results: dict) -> str:
    m = results["machine"]
    parts = [
        f"Machine: {m['device']} ({m['platform']}), {m['cpu_count']} CPU cores, {m['processor']}; "
        f"jax {m['jax']}, Python {m['python']}; {m['date']}; dtype {results['dtype']}.",
    ]
    for config in results["configs"] + ([results["long"]] if "long" in results else []):
        s = config["sizes"]
        parts.append(
            f"\n### {config['label']}: n_x={s['n_x']} n_a={s['n_a']} n_y={s['n_y']} m={s['m']} T={s['T']} "
            f"(GEMM ceiling measured in the same rounds: {config['gemm_gflops']:.0f} GFLOP/s)\n"
        )
        parts.append(report.step_table(config["rows"]))
        if config["skipped"]:
            parts.append(f"\nskipped: {', '.join(config['skipped'])}")
    if "training" in results:
        sizes, rates = results["training"]["sizes"], results["training"]["tokens_per_s"]
        parts.append(
            f"\n### Training throughput of `jaxrnn train` (V={sizes['vocabulary_size']}, n_a={sizes['hidden_size']}, "
            f"batch {sizes['batch_size']} × {sizes['chunk_length']} characters)\n"
        )
        parts.append("| gradient | tokens/s | relative to hand |\n|---|---:|---:|")
        parts += [f"| {name} | {rate:,.0f} | {rate / rates['hand']:.2f} |" for name, rate in rates.items()]
    if results["sweep"]:
        parts.append("\n### Scaling sweep\n")
        parts.append(report.sweep_table(results["sweep"]))
    return "\n".join(parts)
