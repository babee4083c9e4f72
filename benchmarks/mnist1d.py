"""MNIST-1D (Greydanus 2020, arXiv 2011.14439) with jaxrnn: the published GRU protocol and better recipes.

    python benchmarks/mnist1d.py run gru-protocol --seed 0          # one run: one JSON file in --out/mnist1d_runs
    python benchmarks/mnist1d.py run torch-gru-protocol --seed 0    # the same protocol in PyTorch (a subprocess)
    python benchmarks/mnist1d.py run vanilla-best --set hidden=96 --validation   # try a change, scored on validation
    python benchmarks/mnist1d.py table                              # mnist1d.md, mnist1d.json, mnist1d.png

The data set is built offline by the `mnist1d` package (`make_dataset(get_dataset_args())`, seed 42:
4,000 training and 1,000 test sequences of 40 steps, one value per step; `pip install ".[mnist1d]"`).
The published protocol (the repository's `notebooks/models.py`, `train.py`): a bidirectional GRU of 6
units per direction reads each sequence, every step's output is flattened into one `Linear(2·6·40, 10)`,
Adam at lr 1e-2, batches of 100 taken in order from the unshuffled training set, 8,000 steps, the test
accuracy read at the end. A recipe below is that protocol with changes; `--set key=value` changes one more
field for a try, and `--validation` scores on the last 500 training sequences (trained on the other 3,500)
so that recipes are chosen without looking at the test set. Each run is timed from the start of the
process's work (data set built, compiling and the evaluations every 250 steps included).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.dirname(HERE)
VALIDATION = 500  # the last training sequences, held out by --validation

PROTOCOL = {
    "cell": "gru",
    "nonlinearity": "tanh",
    "hidden": 6,
    "layers": 1,
    "bidirectional": True,
    "head": "flatten",  # flatten: every step's states into one linear layer; mean, max: pooled over time
    "initialization": "pytorch",  # init_stack's "pytorch" or "jaxrnn", or "torch-seed" (see init_model)
    "identity_scale": None,  # IRNN: Waa = scale · I (vanilla cell)
    "lr": 1e-2,
    "schedule": "constant",  # or cosine: warmup, then a cosine down to lr / 100
    "warmup": 0,
    "weight_decay": 0.0,  # AdamW's, on the matrices
    "clip": None,  # global gradient norm
    "batch": 100,
    "steps": 8000,
    "batches": "in_order",  # the protocol's; or shuffled: a new permutation each epoch
    "dropout": 0.0,  # between stacked layers (rnn_stack's) and on the head's input
    "eval_every": 250,
}
BEST = PROTOCOL | {
    "hidden": 64,
    "head": "max",
    "initialization": "jaxrnn",
    "lr": 3e-3,
    "schedule": "cosine",
    "warmup": 200,
    "clip": 1.0,
    "steps": 3000,
    "batches": "shuffled",
}
RECIPES = {
    "gru-protocol": PROTOCOL,
    "gru-protocol-torch-weights": PROTOCOL | {"initialization": "torch-seed"},  # PyTorch's seed's initial weights
    "vanilla-protocol": PROTOCOL | {"cell": "vanilla"},
    "lstm-protocol": PROTOCOL | {"cell": "lstm"},
    "torch-gru-protocol": PROTOCOL | {"implementation": "torch"},
    "torch-vanilla-protocol": PROTOCOL | {"cell": "vanilla", "implementation": "torch"},
    "torch-lstm-protocol": PROTOCOL | {"cell": "lstm", "implementation": "torch"},
    # The protocol with the states max-pooled over time instead of flattened: the one change that matters most.
    "vanilla-protocol-max": PROTOCOL | {"cell": "vanilla", "head": "max"},
    "gru-protocol-max": PROTOCOL | {"head": "max"},
    # The best found within 10 minutes of this CPU per run (benchmarks/NOTES.md, "Published benchmarks"):
    # the states max-pooled over time, wider, and trained with warmup + cosine, clipping and shuffled batches.
    "vanilla-best": BEST | {"cell": "vanilla", "hidden": 128},
    "gru-best": BEST | {"cell": "gru"},
    "lstm-best": BEST | {"cell": "lstm"},
}
PUBLISHED = [  # Greydanus (2020), the repository's README: test accuracy, %
    ("logistic regression", 32.0),
    ("MLP", 68.0),
    ("CNN", 94.0),
    ("GRU", 91.0),
    ("human", 96.0),
]


def load_dataset(validation: bool = False, num_samples: int | None = None) -> dict:
    """MNIST-1D from `mnist1d.make_dataset` (offline): `x (N, 40)` float32, `y (N,)` int32, and the
    evaluation set `x_eval, y_eval`: the test set, or with `validation` the last 500 training sequences."""
    import numpy as np

    # This file is named mnist1d.py: run as a script, its folder comes first on sys.path and would
    # shadow the package.
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
    saved, sys.path[:] = sys.path[:], path
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    finally:
        sys.path[:] = saved
    args = get_dataset_args()
    if num_samples is not None:
        args.num_samples = num_samples
    data = make_dataset(args)
    x, y = data["x"].astype(np.float32), data["y"].astype(np.int32)
    x_eval, y_eval = data["x_test"].astype(np.float32), data["y_test"].astype(np.int32)
    if validation:
        keep = len(y) - min(VALIDATION, len(y) // 5)
        x, y, x_eval, y_eval = x[:keep], y[:keep], x[keep:], y[keep:]
    return {"x": x, "y": y, "x_eval": x_eval, "y_eval": y_eval}


def batch_order(recipe: dict, n: int, seed: int):
    """`(steps, batch)` indices into the training set: in order (the protocol's `x[bix:bix+100]`,
    `bix = step·100 mod N`) or a fresh permutation per epoch."""
    import numpy as np

    steps, batch = recipe["steps"], recipe["batch"]
    if recipe["batches"] == "in_order":
        return (np.arange(steps)[:, None] * batch + np.arange(batch)[None]) % n
    rng = np.random.default_rng(seed)
    epochs = -(-steps * batch // n)
    flat = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    return flat[: steps * batch].reshape(steps, batch)


def init_model(key, recipe: dict, T: int, seed: int, classes: int = 10) -> dict:
    """`{"rnn": rnn_stack layers, "W": (features, 10), "b": (10,)}`; the head drawn as `nn.Linear` draws it.

    `initialization`: `"jaxrnn"` or `"pytorch"` (`init_stack`'s), or `"torch-seed"`: the very weights that
    `mnist1d_reference_torch.py --seed seed` starts from (drawn by torch, converted by `jaxrnn.from_torch`).
    """
    import jax
    import jax.numpy as jnp

    import jaxrnn

    directions = 2 if recipe["bidirectional"] else 1
    features = directions * recipe["hidden"] * (T if recipe["head"] == "flatten" else 1)
    if recipe["initialization"] == "torch-seed":
        import torch

        path = os.path.join(HERE, "mnist1d_reference_torch.py")
        spec = importlib.util.spec_from_file_location("mnist1d_reference_torch", path)
        reference = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(reference)
        torch.manual_seed(seed)  # the reference's modules, drawn in its order: the recurrent layer, then the head
        rnn = reference.MODULES[recipe["cell"]](1, recipe["hidden"], batch_first=True, bidirectional=directions == 2)
        head = torch.nn.Linear(features, classes)
        layers, _ = jaxrnn.from_torch(rnn)
        W, b = (jnp.asarray(p.detach().numpy()) for p in (head.weight.T, head.bias))
        return {"rnn": layers, "W": W, "b": b}
    k_rnn, k_w, k_b = jax.random.split(key, 3)
    layers = jaxrnn.init_stack(
        k_rnn,
        1,
        recipe["hidden"],
        num_layers=recipe["layers"],
        bidirectional=recipe["bidirectional"],
        cell=recipe["cell"],
        initialization=recipe["initialization"],
    )
    if recipe["identity_scale"] is not None:
        eye = recipe["identity_scale"] * jnp.eye(recipe["hidden"])
        layers = jax.tree.map(lambda p: p | {"Waa": eye}, layers, is_leaf=lambda node: isinstance(node, dict))
    bound = features**-0.5
    W = jax.random.uniform(k_w, (features, classes), jnp.float32, -bound, bound)
    return {"rnn": layers, "W": W, "b": jax.random.uniform(k_b, (classes,), jnp.float32, -bound, bound)}


def logits(params: dict, x, recipe: dict, key=None):
    """Class scores `(B, 10)` for sequences `x (B, T)`; `key` (training only) draws the dropout."""
    import jax
    import jax.numpy as jnp

    import jaxrnn

    rate = recipe["dropout"] if key is not None else 0.0
    keys = jax.random.split(key) if rate > 0 else (None, None)
    states, _ = jaxrnn.rnn_stack(
        x[..., None],
        None,
        params["rnn"],
        cell=recipe["cell"],
        nonlinearity=recipe["nonlinearity"],
        dropout=rate if recipe["layers"] > 1 else 0.0,
        key=keys[0] if recipe["layers"] > 1 else None,
    )  # (B, T, directions · n_a)
    pooled = {
        "flatten": lambda: states.reshape(states.shape[0], -1),
        "mean": lambda: states.mean(axis=1),
        "max": lambda: states.max(axis=1),
    }[recipe["head"]]()
    if rate > 0:
        keep = jax.random.bernoulli(keys[1], 1 - rate, pooled.shape)
        pooled = jnp.where(keep, pooled / (1 - rate), 0)
    return pooled @ params["W"] + params["b"][None]


def optimizer(recipe: dict):
    """optax: Adam (or AdamW with weight decay on the matrices), a constant or warmup-cosine rate, clipping."""
    import jax
    import optax

    lr = recipe["lr"]
    if recipe["schedule"] == "cosine":
        lr = optax.warmup_cosine_decay_schedule(0.0, lr, recipe["warmup"], recipe["steps"], lr / 100)
    if recipe["weight_decay"]:
        matrices = lambda params: jax.tree.map(lambda p: p.ndim == 2 and p.shape[-1] != 1, params)
        step = optax.adamw(lr, weight_decay=recipe["weight_decay"], mask=matrices)
    else:
        step = optax.adam(lr)
    return step if recipe["clip"] is None else optax.chain(optax.clip_by_global_norm(recipe["clip"]), step)


def train(recipe: dict, data: dict, seed: int, log=print) -> dict:
    """Trains one model; returns the curve (every `eval_every` steps) and the final accuracies, in %."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    start = time.perf_counter()
    key = jax.random.key(seed)
    params = init_model(jax.random.fold_in(key, 0), recipe, data["x"].shape[1], seed)
    tx = optimizer(recipe)
    x, y = jnp.asarray(data["x"]), jnp.asarray(data["y"])
    x_eval, y_eval = jnp.asarray(data["x_eval"]), jnp.asarray(data["y_eval"])

    def loss(params, xb, yb, k):
        return optax.softmax_cross_entropy_with_integer_labels(logits(params, xb, recipe, k), yb).mean()

    @jax.jit
    def train_chunk(params, opt_state, indices, first_step):
        """`len(indices)` optimiser steps, one `lax.scan` over the rows of `indices (k, batch)`."""

        def one(carry, step_rows):
            params, opt_state = carry
            step, rows = step_rows
            value, grads = jax.value_and_grad(loss)(params, x[rows], y[rows], jax.random.fold_in(key, step + 1))
            with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes Python floats with int32 counts
                updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        steps = first_step + jnp.arange(indices.shape[0])
        (params, opt_state), values = jax.lax.scan(one, (params, opt_state), (steps, indices))
        return params, opt_state, values.mean()

    @jax.jit
    def correct(params, xs, ys):
        return logits(params, xs, recipe).argmax(-1) == ys

    # One call over the training and evaluation sets together: one compiled shape, not two.
    x_both, y_both = jnp.concatenate([x, x_eval]), jnp.concatenate([y, y_eval])
    accuracies = lambda params: np.split(100.0 * np.asarray(correct(params, x_both, y_both)), [len(y)])

    order = batch_order(recipe, len(data["y"]), seed)
    opt_state, curve, done = tx.init(params), [], 0
    while done < recipe["steps"]:
        k = min(recipe["eval_every"], recipe["steps"] - done)
        params, opt_state, train_loss = train_chunk(params, opt_state, jnp.asarray(order[done : done + k]), done)
        done += k
        on_train, on_eval = accuracies(params)
        point = {
            "step": done,
            "train_loss": float(train_loss),
            "train_accuracy": float(on_train.mean()),
            "eval_accuracy": float(on_eval.mean()),
            "elapsed_s": time.perf_counter() - start,
        }
        curve.append(point)
        if done % 1000 == 0 or done == recipe["steps"]:
            log(
                f"step {done}: loss {point['train_loss']:.4f}, train {point['train_accuracy']:.1f}%, "
                f"eval {point['eval_accuracy']:.1f}%, {time.perf_counter() - start:.0f} s"
            )
    if not np.isfinite(curve[-1]["train_loss"]):
        log("the training loss is not finite")
    return {"curve": curve, "accuracy": curve[-1]["eval_accuracy"], "train_s": time.perf_counter() - start}


def machine() -> dict:
    import jax
    import numpy as np

    from jaxrnn.bench.run import cpu_model

    facts = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "date": datetime.date.today().isoformat(),
        "load_average": os.getloadavg()[0],
    }
    try:
        import torch

        facts["torch"] = torch.__version__
    except ImportError:
        facts["torch"] = None
    return facts


def parse_settings(pairs: list[str]) -> dict:
    """`key=value` pairs into recipe fields (values read as JSON where they parse: 3e-3, null, true)."""
    changes = {}
    for pair in pairs:
        field, _, text = pair.partition("=")
        if field not in PROTOCOL:
            raise SystemExit(f"--set {pair}: {field!r} is not a recipe field; fields: {', '.join(PROTOCOL)}")
        try:
            changes[field] = json.loads(text)
        except json.JSONDecodeError:
            changes[field] = text
    return changes


def run(name: str, seed: int, changes: dict, validation: bool, out: str, num_samples: int | None = None) -> dict:
    """One run of a recipe; writes `out/mnist1d_runs/<name>[+changes][-validation]-seed<seed>.json`."""
    began = time.perf_counter()
    recipe = RECIPES[name] | changes
    if recipe.get("implementation") == "torch":
        command = [sys.executable, os.path.join(HERE, "mnist1d_reference_torch.py"), "--seed", str(seed)]
        command += ["--recipe", json.dumps(recipe)] + (["--validation"] if validation else [])
        command += [] if num_samples is None else ["--num-samples", str(num_samples)]
        done = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    else:
        log = lambda text: print(f"{name} seed {seed}: {text}", file=sys.stderr, flush=True)
        result = train(recipe, load_dataset(validation, num_samples), seed, log)
        result["implementation"] = "jaxrnn"
    tag = name + "".join(f"+{k}={v}" for k, v in sorted(changes.items())) + ("-validation" if validation else "")
    result |= {
        "recipe_name": name,
        "tag": tag,
        "changes": changes,
        "recipe": recipe,
        "seed": seed,
        "evaluated_on": "validation" if validation else "test",
        "wall_s": time.perf_counter() - began,
        "machine": machine(),
        "command": " ".join(
            ["python benchmarks/mnist1d.py run", name, "--seed", str(seed)]
            + [f"--set {k}={json.dumps(v)}" for k, v in changes.items()]
            + (["--validation"] if validation else [])
        ),
    }
    os.makedirs(os.path.join(out, "mnist1d_runs"), exist_ok=True)
    with open(os.path.join(out, "mnist1d_runs", f"{tag}-seed{seed}.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: result[k] for k in ("tag", "seed", "accuracy", "wall_s")}))
    return result


def describe(recipe: dict) -> str:
    """A recipe in a few words: what differs from the protocol."""
    directions = "bidirectional" if recipe["bidirectional"] else "unidirectional"
    cell = recipe["cell"] if recipe["cell"] != "vanilla" else f"vanilla {recipe['nonlinearity']}"
    words = [f"{cell}, {recipe['layers']}×{recipe['hidden']} {directions}, {recipe['head']} head"]
    if recipe["identity_scale"] is not None:
        words.append(f"Waa = {recipe['identity_scale']:g}·I")
    if recipe["initialization"] != "pytorch":
        words.append(f"{recipe['initialization']} init")
    lr = f"lr {recipe['lr']:g}" + (f" warmup {recipe['warmup']} + cosine" if recipe["schedule"] == "cosine" else "")
    words.append(lr + (f", weight decay {recipe['weight_decay']:g}" if recipe["weight_decay"] else ""))
    if recipe["clip"] is not None:
        words.append(f"clip {recipe['clip']:g}")
    if recipe["dropout"]:
        words.append(f"dropout {recipe['dropout']:g}")
    words.append(f"{recipe['steps']:,} × {recipe['batch']}" + (", shuffled" if recipe["batches"] != "in_order" else ""))
    return "; ".join(words)


def write_report(paths: list[str], out: str) -> None:
    """mnist1d.md (the table beside the published rows, and the tries on the validation split),
    mnist1d.json (every run) and mnist1d.png (test accuracy against steps)."""
    import numpy as np

    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            runs.append(json.load(f))
    tested = [r for r in runs if r["evaluated_on"] == "test"]
    if not tested:
        raise SystemExit(f"no test runs in {os.path.join(out, 'mnist1d_runs')}: run some first")
    m = max(tested, key=lambda r: r["machine"]["date"])["machine"]
    lines = [
        f"Machine: {m['cpu']} ({m['cpu_count']} cores, shared with other work: wall-clock times are indicative), "
        f"Python {m['python']}, jax {m['jax']}, torch {m['torch']}; {m['date']}. Test accuracy on MNIST-1D's "
        "1,000 test sequences after the last step (no early stopping); wall-clock per run, data set and "
        "compiling included.",
        "",
        "| run | implementation | recipe | test accuracy, % | seeds | per seed | wall-clock per run |",
        "|---|---|---|---:|---:|---|---:|",
    ]
    lines += [f"| {label} | published (Greydanus 2020) | — | {accuracy:.0f} | | | |" for label, accuracy in PUBLISHED]
    for tag, group in _by_tag(tested):
        accuracies = np.array([r["accuracy"] for r in group])
        spread = f" ± {accuracies.std(ddof=1):.1f}" if len(group) > 1 else ""
        recipe = describe(group[0]["recipe"])
        lines.append(
            f"| {tag} | {group[0]['implementation']} | {recipe} | {accuracies.mean():.1f}{spread} | {len(group)} | "
            f"{', '.join(f'{a:.1f}' for a in accuracies)} | {np.mean([r['wall_s'] for r in group]):.0f} s |"
        )
    tries = [r for r in runs if r["evaluated_on"] == "validation"]
    if tries:
        lines += [
            "",
            "Tries, scored on the validation split (the last 500 training sequences; trained on the other 3,500):",
            "",
            "| base | recipe | validation accuracy, % | best on the way | seed | wall-clock |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in (r for _, group in _by_tag(tries) for r in group):
            best = max(p["eval_accuracy"] for p in r["curve"])
            lines.append(
                f"| {r['recipe_name']} | {describe(r['recipe'])} | {r['accuracy']:.1f} | {best:.1f} | {r['seed']} | "
                f"{r['wall_s']:.0f} s |"
            )
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(out, "mnist1d.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "mnist1d.json"), "w", encoding="utf-8") as f:
        json.dump({"published": dict(PUBLISHED), "runs": runs}, f, indent=1)
    _plot(tested, os.path.join(out, "mnist1d.png"))


def _by_tag(runs: list[dict]) -> list[tuple[str, list[dict]]]:
    """Runs grouped by tag (a recipe and its changes: one group holds its seeds), in the order of RECIPES."""
    groups = {}
    for r in sorted(runs, key=lambda r: (list(RECIPES).index(r["recipe_name"]), r["tag"], r["seed"])):
        groups.setdefault(r["tag"], []).append(r)
    return list(groups.items())


def _plot(tested: list[dict], path: str) -> None:
    """Test accuracy against steps: the mean over seeds of each recipe, the seeds' range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(8, 5))
    for name, group in _by_tag(tested):
        length = min(len(r["curve"]) for r in group)
        steps = [p["step"] for p in group[0]["curve"][:length]]
        accuracy = np.array([[p["eval_accuracy"] for p in r["curve"][:length]] for r in group])
        style = "--" if name.startswith("torch") else ("-" if name.endswith("best") else ":")
        (line,) = axis.plot(steps, accuracy.mean(0), style, label=f"{name} ({len(group)})", lw=1.3)
        axis.fill_between(steps, accuracy.min(0), accuracy.max(0), color=line.get_color(), alpha=0.15)
    for label, published in PUBLISHED[2:4]:
        axis.axhline(published, color="grey", lw=0.8, ls="-.")
        axis.annotate(f"published {label} {published:.0f}%", (0, published), fontsize=7, va="bottom")
    axis.set(xlabel="training step", ylabel="test accuracy, % (mean over seeds; range shaded)", ylim=(40, 100))
    axis.set_title(f"MNIST-1D, jaxrnn and PyTorch on {tested[0]['machine']['cpu']} CPU")
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run", help="train one recipe once; writes one JSON file")
    one.add_argument("recipe", choices=list(RECIPES))
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="change recipe fields")
    one.add_argument("--validation", action="store_true", help="score on the last 500 training sequences")
    one.add_argument("--num-samples", type=int, help="a smaller data set (tests)")
    one.add_argument("--out", default=os.path.join(HERE, "results"))
    table = commands.add_parser("table", help="mnist1d.md, .json and .png from the runs in --out/mnist1d_runs")
    table.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.recipe, args.seed, parse_settings(args.set), args.validation, args.out, args.num_samples)
    else:
        write_report(sorted(glob.glob(os.path.join(args.out, "mnist1d_runs", "*.json"))), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
