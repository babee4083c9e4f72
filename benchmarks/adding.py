"""The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015): tanh RNN, IRNN, GRU, LSTM.

    python benchmarks/adding.py run irnn --T 200 --lr 1e-4     # one run: one JSON file in --out/adding_runs
    python benchmarks/adding.py table                          # adding.md, adding.json, adding.png

Each input sequence has T steps of two features: a value drawn uniformly from [0, 1), and a marker that
is 1 at two steps — one drawn uniformly from the first half, one from the second — and 0 elsewhere. The
target is the sum of the two marked values. Always answering 1 scores the baseline mean squared error
Var(u₁ + u₂) = 1/6 ≈ 0.167. The model is Le et al.'s: 100 hidden units, a linear output read from the
last state, the squared error as the loss. Training batches are drawn afresh at every step; the test set
is 2,000 fixed sequences (the same for every run of a T).

Cells: `tanh` (vanilla, tanh, jaxrnn's initialisation: Glorot `Wax`, orthogonal `Waa`); `irnn` (vanilla,
ReLU, `Waa = I`, zero bias, `Wax` normal with standard deviation 0.001: Le et al.'s IRNN); `gru` and
`lstm` (jaxrnn's initialisation; the LSTM's forget bias 1). Unlike Le et al. (SGD, batch 16, learning
rate and clipping tuned per model), every run here uses Adam, batches of 50 and clipping at global norm 1.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CELLS = {  # name: (jaxrnn cell, nonlinearity)
    "tanh": ("vanilla", "tanh"),
    "irnn": ("vanilla", "relu"),
    "gru": ("gru", "tanh"),
    "lstm": ("lstm", "tanh"),
}
BASELINE = 1 / 6  # the MSE of always answering 1
SOLVED = 0.01  # Le et al.'s threshold: below it, the problem counts as solved
TEST_SIZE = 2000


def adding_batch(key, m: int, T: int):
    """`m` sequences `x (m, T, 2)` (values, markers) and their targets `(m,)`."""
    import jax
    import jax.numpy as jnp

    k_values, k_first, k_second = jax.random.split(key, 3)
    values = jax.random.uniform(k_values, (m, T))
    first = jax.random.randint(k_first, (m,), 0, T // 2)
    second = jax.random.randint(k_second, (m,), T // 2, T)
    markers = jax.nn.one_hot(first, T) + jax.nn.one_hot(second, T)
    return jnp.stack([values, markers], axis=-1), (values * markers).sum(axis=-1)


def init_model(key, name: str, n_a: int = 100) -> dict:
    """`{"rnn": layer dict, "w": (n_a,), "b": ()}`; the output drawn as `nn.Linear(n_a, 1)` draws it."""
    import jax
    import jax.numpy as jnp

    import jaxrnn

    k_rnn, k_in, k_w, k_b = jax.random.split(key, 4)
    cell, _ = CELLS[name]
    if name == "irnn":
        layer = jaxrnn.init_parameters(k_rnn, 2, n_a, identity_scale=1.0)
        layer["Wax"] = 0.001 * jax.random.normal(k_in, (n_a, 2))
    else:
        layer = jaxrnn.init_parameters(k_rnn, 2, n_a, cell=cell)
    bound = n_a**-0.5
    w = jax.random.uniform(k_w, (n_a,), jnp.float32, -bound, bound)
    return {"rnn": layer, "w": w, "b": jax.random.uniform(k_b, (), jnp.float32, -bound, bound)}


def predict(params: dict, x, name: str):
    """The predicted sums `(m,)` for `x (m, T, 2)`: a linear read-out of the last state."""
    import jaxrnn

    cell, nonlinearity = CELLS[name]
    _, _, final = jaxrnn.rnn(x, None, params["rnn"], cell=cell, nonlinearity=nonlinearity, return_final_state=True)
    last = final.h if cell == "lstm" else final
    return last @ params["w"] + params["b"]


def train(name: str, T: int, lr: float, steps: int, seed: int, batch: int = 50, eval_every: int = 250, log=print):
    """Trains one model; returns the test MSE every `eval_every` steps."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    start = time.perf_counter()
    key = jax.random.key(seed)
    params = init_model(jax.random.fold_in(key, 0), name)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))
    x_test, y_test = adding_batch(jax.random.key(2**31 - 1), TEST_SIZE, T)

    def loss(params, x, y):
        return ((predict(params, x, name) - y) ** 2).mean()

    @jax.jit
    def train_chunk(params, opt_state, first_step):
        def one(carry, step):
            params, opt_state = carry
            x, y = adding_batch(jax.random.fold_in(key, step + 1), batch, T)
            value, grads = jax.value_and_grad(loss)(params, x, y)
            with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes Python floats with int32 counts
                updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        (params, opt_state), values = jax.lax.scan(one, (params, opt_state), first_step + jnp.arange(eval_every))
        return params, opt_state, values.mean()

    test_mse = jax.jit(loss)
    opt_state, curve, done = tx.init(params), [], 0
    while done < steps:
        params, opt_state, train_loss = train_chunk(params, opt_state, done)
        done += eval_every
        point = {"step": done, "train_mse": float(train_loss), "test_mse": float(test_mse(params, x_test, y_test))}
        curve.append(point | {"elapsed_s": time.perf_counter() - start})
        if done % 2000 == 0 or done >= steps:
            log(
                f"step {done}: train {point['train_mse']:.4f}, test {point['test_mse']:.4f}, "
                f"{time.perf_counter() - start:.0f} s"
            )
        if not np.isfinite(point["train_mse"]):
            log("the training loss is not finite: stopped")
            break
    finite = [p["test_mse"] for p in curve if np.isfinite(p["test_mse"])]
    solved = next((p["step"] for p in curve if p["test_mse"] < SOLVED), None)
    return {
        "curve": curve,
        "test_mse": curve[-1]["test_mse"],
        "best_test_mse": min(finite) if finite else None,
        "solved_at_step": solved,
        "train_s": time.perf_counter() - start,
    }


def machine() -> dict:
    import jax

    from jaxrnn.bench.run import cpu_model

    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "date": datetime.date.today().isoformat(),
        "load_average": os.getloadavg()[0],
    }


def run(name: str, T: int, lr: float, steps: int, seed: int, out: str, eval_every: int = 250) -> dict:
    """One run; writes `out/adding_runs/<name>-T<T>-lr<lr>-seed<seed>.json`."""
    began = time.perf_counter()
    log = lambda text: print(f"{name} T {T} lr {lr:g} seed {seed}: {text}", file=sys.stderr, flush=True)
    result = train(name, T, lr, steps, seed, eval_every=eval_every, log=log)
    result |= {
        "cell": name,
        "T": T,
        "lr": lr,
        "steps": steps,
        "seed": seed,
        "wall_s": time.perf_counter() - began,
        "machine": machine(),
        "command": f"python benchmarks/adding.py run {name} --T {T} --lr {lr:g} --steps {steps} --seed {seed}",
    }
    os.makedirs(os.path.join(out, "adding_runs"), exist_ok=True)
    with open(os.path.join(out, "adding_runs", f"{name}-T{T}-lr{lr:g}-seed{seed}.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: result[k] for k in ("cell", "T", "lr", "test_mse", "solved_at_step", "wall_s")}))
    return result


def render(runs: list[dict]) -> str:
    """The Markdown table: one row per run, by T, then cell, then learning rate."""
    m = runs[0]["machine"]
    lines = [
        f"Machine: {m['cpu']} ({m['cpu_count']} cores, shared with other work), Python {m['python']}, "
        f"jax {m['jax']}; {m['date']}. Adam, batch 50, clipping at global norm 1, 100 units; test MSE on "
        f"{TEST_SIZE:,} fixed sequences; baseline {BASELINE:.3f}, solved below {SOLVED}.",
        "",
        "| T | model | learning rate | steps | final test MSE | best test MSE | first below 0.01 | wall-clock |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = list(CELLS)
    for r in sorted(runs, key=lambda r: (r["T"], names.index(r["cell"]), -r["lr"], r["seed"])):
        solved = f"step {r['solved_at_step']:,}" if r["solved_at_step"] else "—"
        best = "—" if r["best_test_mse"] is None else f"{r['best_test_mse']:.4f}"
        lines.append(
            f"| {r['T']} | {r['cell']} | {r['lr']:g} | {r['curve'][-1]['step']:,} | {r['test_mse']:.4f} | {best} | "
            f"{solved} | {r['wall_s']:.0f} s |"
        )
    return "\n".join(lines)


def plot(runs: list[dict], path: str) -> None:
    """Test MSE against steps, one panel per T, one line per run (the plotted learning rates in the legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted({r["T"] for r in runs})
    colours = {"tanh": "tab:red", "irnn": "tab:blue", "gru": "tab:orange", "lstm": "tab:green"}
    figure, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 4), sharey=True, squeeze=False)
    for axis, T in zip(axes[0], lengths):
        seen = {}  # a cell's second learning rate dashed, its third dotted
        for r in sorted((r for r in runs if r["T"] == T), key=lambda r: (list(CELLS).index(r["cell"]), -r["lr"])):
            steps = [p["step"] for p in r["curve"]]
            mse = [p["test_mse"] for p in r["curve"]]
            style = ("-", "--", ":", "-.")[min(seen.setdefault(r["cell"], 0), 3)]
            seen[r["cell"]] += 1
            label = f"{r['cell']}, lr {r['lr']:g}"
            axis.plot(steps, mse, color=colours[r["cell"]], ls=style, label=label, lw=1.2)
        axis.axhline(BASELINE, color="grey", ls="--", lw=0.8)
        axis.axhline(SOLVED, color="grey", ls=":", lw=0.8)
        axis.set(title=f"T = {T}", xlabel="training step (batch 50)", yscale="log", ylim=(1e-4, 1))
        axis.legend(fontsize=7)
    axes[0][0].set_ylabel("test MSE (dashed: baseline 0.167; dotted: 0.01)")
    figure.suptitle(f"The adding problem, jaxrnn on {runs[0]['machine']['cpu']} CPU")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run", help="train one model once; writes one JSON file")
    one.add_argument("cell", choices=list(CELLS))
    one.add_argument("--T", type=int, default=200, help="sequence length")
    one.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    one.add_argument("--steps", type=int, default=10_000)
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--eval-every", type=int, default=250)
    one.add_argument("--out", default=os.path.join(HERE, "results"))
    table = commands.add_parser("table", help="adding.md, .json and .png from the runs in --out/adding_runs")
    table.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.cell, args.T, args.lr, args.steps, args.seed, args.out, args.eval_every)
        return 0
    runs = []
    for path in sorted(glob.glob(os.path.join(args.out, "adding_runs", "*.json"))):
        with open(path, encoding="utf-8") as f:
            runs.append(json.load(f))
    if not runs:
        raise SystemExit(f"no runs in {os.path.join(args.out, 'adding_runs')}: run some first")
    text = render(runs)
    print(text)
    with open(os.path.join(args.out, "adding.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "adding.json"), "w", encoding="utf-8") as f:
        json.dump({"runs": runs}, f, indent=1)
    plot(runs, os.path.join(args.out, "adding.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
