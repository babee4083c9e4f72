"""The options of `jaxrnn bench`, and what they ask for once checked (`Plan`)."""

from __future__ import annotations

import argparse
import os
from typing import NamedTuple

from jaxrnn.bench.compile_time import COMPILE_VARIANTS
from jaxrnn.bench.linearity import FACTOR
from jaxrnn.bench.problem import GATES, WORKLOADS, Sizes
from jaxrnn.bench.stacks import STACK_VARIANTS, StackSizes
from jaxrnn.bench.variants import ALL_VARIANTS, OPTIONAL_VARIANTS

CONFIGS = {  # (n_x, n_a, n_y, m, T)
    "R1": Sizes(64, 256, 64, 64, 200),
    "R2": Sizes(128, 512, 128, 128, 100),
}
EXTRAS = ("long", "train", "sweep", "stack", "compile_time", "bf16", "linearity")
CELLS = tuple(GATES)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--configs", default="R1,R2", help="comma-separated sizes: R1, R2, or n_x:n_a:n_y:m:T (default R1,R2)")
    add(
        "--cells",
        default=",".join(CELLS),
        help="comma-separated cells of the single-layer tables: vanilla, gru, lstm (default all three; "
        "seed-scan runs for vanilla only)",
    )
    add(
        "--workload",
        default=",".join(WORKLOADS),
        help="comma-separated: ce (mean cross-entropy on y; a gets no cotangent) and/or dense "
        "(Σ a⊙g_a + Σ y⊙g_y with fixed random g_a, g_y) (default ce,dense)",
    )
    add(
        "--variants",
        default=",".join(ALL_VARIANTS),
        help=f"comma-separated, from {', '.join((*ALL_VARIANTS, *OPTIONAL_VARIANTS))} (default: all but hand-ckpt; "
        "hand-ce runs in the ce workload only); --sweep, --stack and --compile-time take those of theirs listed here",
    )
    add("--repeats", type=int, default=15, help="timed rounds per table (default 15)")
    add(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="of every table but --bf16's (default float32)",
    )
    add("--long", action="store_true", help="add a long sequence: hand vs hand-ckpt vs autodiff")
    add(
        "--long-config",
        default="64:256:64:64:2000",
        help="sizes of --long, n_x:n_a:n_y:m:T (default 64:256:64:64:2000)",
    )
    add("--checkpoint-every", type=int, default=50, help="segment length of hand-ckpt (default 50)")
    add("--sweep", action="store_true", help="add a scaling sweep over T, m and n_a (first workload)")
    add("--sweep-config", default="R1", help="the sizes --sweep varies around: R1, R2 or n_x:n_a:n_y:m:T (default R1)")
    add("--train", action="store_true", help="add the training throughput of jaxrnn train: hand vs autodiff (tokens/s)")
    add(
        "--stack",
        action="store_true",
        help="add a bidirectional stack without a head (dense loss on the top outputs): rnn_stack (hand, with "
        "masks, autodiff), Flax nn.Bidirectional stacked, torch nn.RNN(num_layers, bidirectional=True)",
    )
    add(
        "--stack-config",
        default="64:256:64:200:2",
        help="sizes of --stack, n_x:n_a:m:T:layers (default 64:256:64:200:2)",
    )
    add(
        "--compile-time",
        action="store_true",
        help="add the first-call build time (trace + lower, XLA compile) of a jitted gradient step of "
        "unidirectional stacks: hand vs autodiff vs Flax",
    )
    add("--compile-config", default="64:256:64", help="sizes of --compile-time, n_x:n_a:m (default 64:256:64)")
    add("--compile-lengths", default="100,1000", help="sequence lengths of --compile-time (default 100,1000)")
    add("--compile-layers", default="1,2,3", help="layer counts of --compile-time (default 1,2,3)")
    add("--compile-repeats", type=int, default=3, help="fresh builds per cell of --compile-time, median (default 3)")
    add(
        "--bf16",
        action="store_true",
        help="add, for each configuration and workload, the step in bfloat16 (hand, autodiff) next to hand in "
        "float32, with each one's largest gradient error against float32 autodiff on the same rounded inputs",
    )
    add(
        "--linearity",
        action="store_true",
        help=f"add the time at T and {FACTOR}T of jax.grad of rnn, of rnn_autodiff and of grad-of-grad through "
        f"rnn (ratio ≈ {FACTOR} when linear in T)",
    )
    add(
        "--linearity-config",
        default="16:64:16:16:500",
        help="sizes of --linearity at T, n_x:n_a:n_y:m:T (default 16:64:16:16:500)",
    )
    add(
        "--all",
        action="store_true",
        help="all tables: --long --train --sweep --stack --compile-time --bf16 --linearity",
    )
    add("--torch-device", default="cpu", help="device for the PyTorch variants (cpu, or cuda for cuDNN)")
    add("--out", default="bench-results", help="folder for bench.md, bench.json, bench.png")


class Plan(NamedTuple):
    """The checked options: sizes as `Sizes`/`StackSizes`, lists as lists."""

    configs: dict[str, Sizes]
    cells: list[str]
    workloads: list[str]
    names: list[str]
    long: tuple[str, Sizes]
    sweep_base: Sizes
    stack: StackSizes
    stack_names: list[str]
    compile_sizes: tuple[int, int, int]
    compile_lengths: list[int]
    compile_layers: list[int]
    compile_names: list[str]
    linearity: Sizes


def parse(args: argparse.Namespace) -> Plan:
    """Checks every option (exits with a message naming the bad one) and switches on `--all`'s
    tables in `args`; creates `--out`."""
    names = _choices("--variants", args.variants, (*ALL_VARIANTS, *OPTIONAL_VARIANTS))
    if args.repeats < 1 or args.checkpoint_every < 1 or args.compile_repeats < 1:
        _fail("--repeats, --checkpoint-every and --compile-repeats must be positive ints")
    if args.all:
        for extra in EXTRAS:
            setattr(args, extra, True)
    plan = Plan(
        configs=_configs("--configs", args.configs),
        cells=_choices("--cells", args.cells, CELLS),
        workloads=_choices("--workload", args.workload, WORKLOADS),
        names=names,
        long=_one_config("--long-config", args.long_config),
        sweep_base=_one_config("--sweep-config", args.sweep_config)[1],
        stack=StackSizes(*_ints("--stack-config", args.stack_config, "n_x:n_a:m:T:layers")),
        stack_names=[n for n in STACK_VARIANTS if n in names] or ["hand"],
        compile_sizes=_ints("--compile-config", args.compile_config, "n_x:n_a:m"),
        compile_lengths=_int_list("--compile-lengths", args.compile_lengths),
        compile_layers=_int_list("--compile-layers", args.compile_layers),
        compile_names=[n for n in COMPILE_VARIANTS if n in names] or ["hand"],
        linearity=Sizes(*_ints("--linearity-config", args.linearity_config, "n_x:n_a:n_y:m:T")),
    )
    _check_out(args.out)
    return plan


def _fail(message: str):
    raise SystemExit(f"jaxrnn bench: {message}")


def _ints(option: str, text: str, fields: str) -> tuple[int, ...]:
    parts = text.split(":")
    if len(parts) != len(fields.split(":")) or not all(p.isdigit() and int(p) > 0 for p in parts):
        _fail(f"{option} {text!r} is not {fields} with positive ints")
    return tuple(map(int, parts))


def _int_list(option: str, text: str) -> list[int]:
    items = [item for item in text.split(",") if item]
    if not items or not all(item.isdigit() and int(item) > 0 for item in items):
        _fail(f"{option} {text!r} is not a comma-separated list of positive ints")
    return [int(item) for item in items]


def _configs(option: str, text: str) -> dict[str, Sizes]:
    configs = {}
    for item in filter(None, text.split(",")):
        if item in CONFIGS:
            configs[item] = CONFIGS[item]
            continue
        parts = item.split(":")
        if len(parts) != 5 or not all(p.isdigit() and int(p) > 0 for p in parts):
            _fail(f"{option} item {item!r} is neither R1, R2 nor n_x:n_a:n_y:m:T with positive ints")
        configs[item] = Sizes(*map(int, parts))
    if not configs:
        _fail(f"{option} is empty")
    return configs


def _one_config(option: str, text: str) -> tuple[str, Sizes]:
    configs = _configs(option, text)
    if len(configs) != 1:
        _fail(f"{option} takes one size configuration; received {text!r}")
    return next(iter(configs.items()))


def _choices(option: str, text: str, allowed) -> list[str]:
    chosen = [item for item in text.split(",") if item]
    unknown = sorted(set(chosen) - set(allowed))
    if unknown:
        _fail(f"unknown {option} {unknown}; choose from {list(allowed)}")
    if not chosen:
        _fail(f"{option} is empty")
    return chosen


def _check_out(folder: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        _fail(f"cannot create --out folder {folder!r}: {err.strerror}")
    if not os.access(folder, os.W_OK):
        _fail(f"--out folder {folder!r} is not writable")
