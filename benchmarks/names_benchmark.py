"""The names benchmark: `jaxrnn train --lines` against the PyTorch reference, held-out NLL and wall-clock.

    python benchmarks/names_benchmark.py --data ../shared/data/names.txt             # every row, one after another
    python benchmarks/names_benchmark.py --data ../shared/data/names.txt --rows jaxrnn-defaults torch-reference

Each row is one training run in its own process, timed from start to end (start-up, compiling and
the held-out evaluations every 1,000 steps included), run one at a time. The held-out set is the
usual one: min(1000, 10%) of the names drawn from the seed, the same for every row; the measure is
the mean NLL per character over all of it, the end-of-name token included. Writes `names.md` and
`names.json` into `--out`. The PyTorch rows need torch (`pip install ".[bench]"`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.dirname(HERE)

SIZE = ["--hidden-size", "64", "--steps", "10000"]  # 64 units, 10,000 steps of 32 names
REFERENCE = ["--learning-rate", "0.0005", "--beta2", "0.99", "--weight-decay", "0.01"]
# The reference settings in jaxrnn train's terms: a constant rate, no clipping, a learned initial state.
REFERENCE_IN_JAXRNN = [*REFERENCE, "--schedule", "constant", "--warmup-steps", "0", "--clip", "none"]
REFERENCE_IN_JAXRNN += ["--learn-initial-state"]
# The best of the measurements in benchmarks/NOTES.md ("Training the character model") within 10 minutes.
BEST = ["--hidden-size", "512", "--steps", "50000", "--learning-rate", "0.002", "--weight-decay", "0.03"]

ROWS = {
    "torch-reference": ("PyTorch `nn.RNN`, reference settings", "torch", [*SIZE, *REFERENCE]),
    "jaxrnn-reference": ("jaxrnn, reference settings", "jaxrnn", [*SIZE, *REFERENCE_IN_JAXRNN]),
    "torch-jaxrnn-settings": ("PyTorch `nn.RNN`, jaxrnn's default settings", "torch", [*SIZE, "--jaxrnn-settings"]),
    "jaxrnn-defaults": ("jaxrnn, default settings", "jaxrnn", SIZE),
    "jaxrnn-best": ("jaxrnn, best within 10 minutes", "jaxrnn", BEST),
}


def _recorded(arguments: list[str], data: str, out: str) -> str:
    """The command as it can be rerun from the repository root: no machine-specific paths."""
    readable = {data: os.path.relpath(data, REPOSITORY), out: "OUT"}
    return " ".join(readable.get(a, os.path.relpath(a, REPOSITORY) if a.startswith(HERE) else a) for a in arguments)


def run_row(kind: str, flags: list[str], data: str) -> dict:
    """Runs one row in a fresh process; returns its held-out NLL, best NLL and wall-clock seconds."""
    with tempfile.TemporaryDirectory() as out:
        if kind == "torch":
            command = [sys.executable, os.path.join(HERE, "names_reference_torch.py"), "--data", data, *flags]
        else:
            command = [sys.executable, "-m", "jaxrnn", "train", "--data", data, "--lines", *flags]
            command += ["--eval-every", "1000", "--sample-length", "0", "--out", out]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        if kind == "torch":
            validation = json.loads(done.stdout.strip().splitlines()[-1])["validation"]
        else:
            import numpy as np

            with np.load(os.path.join(out, "checkpoint.npz")) as archive:
                validation = archive["validation"].tolist()
    last = validation[-1][1]
    return {
        "command": _recorded(command[1:], data, out),
        "heldout_nats": last,
        "heldout_bits": last / math.log(2),
        "best_nats": min(nll for _, nll in validation),
        "validation": validation,
        "wall_s": wall,
    }


def machine() -> dict:
    import jax

    facts = {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "date": datetime.date.today().isoformat(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        facts["torch"] = torch.__version__
    except ImportError:
        facts["torch"] = None
    return facts


def render(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu_count']}-core {m['processor']} CPU (shared with other work: wall-clock times are "
        f"indicative), Python {m['python']}, jax {m['jax']}, torch {m['torch']}; {m['date']}.",
        "",
        "| run | n_a | steps × batch | held-out NLL (nats/char) | bits/char | wall-clock |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        size = lambda flag, default, command=row["command"]: _flag_value(command.split(), flag, default)
        lines.append(
            f"| {row['label']} | {size('--hidden-size', '256')} | {int(size('--steps', '3000')):,} × "
            f"{size('--batch-size', '32')} | {row['heldout_nats']:.4f} | {row['heldout_bits']:.4f} | "
            f"{row['wall_s']:.0f} s |"
        )
    return "\n".join(lines)


def _flag_value(flags: list[str], flag: str, default: str) -> str:
    return flags[flags.index(flag) + 1] if flag in flags else default


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="names.txt, one name per line")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS), help="rows to run, in order")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="folder for names.md and names.json")
    args = parser.parse_args(argv)
    data = os.path.abspath(args.data)
    results = {"machine": machine(), "rows": []}
    for name in args.rows:
        label, kind, flags = ROWS[name]
        print(f"{label}: running", file=sys.stderr, flush=True)
        row = {"name": name, "label": label, **run_row(kind, flags, data)}
        print(f"  held-out {row['heldout_nats']:.4f} nats/char, {row['wall_s']:.0f} s", file=sys.stderr, flush=True)
        results["rows"].append(row)
    text = render(results)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "names.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "names.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
