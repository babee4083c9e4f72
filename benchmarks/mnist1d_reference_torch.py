"""The PyTorch side of the MNIST-1D benchmark: the published protocol's model and loop, in PyTorch.

    python benchmarks/mnist1d_reference_torch.py --seed 0                     # nn.GRU, the published protocol
    python benchmarks/mnist1d_reference_torch.py --recipe '{"cell": "vanilla"}'

The MNIST-1D repository's `GRUBase` (`notebooks/models.py`) with `nn.GRU` — or `nn.RNN` (tanh) or
`nn.LSTM` for the other cells — `(1, 6, bidirectional=True, batch_first=True)`, a zero initial state,
every step's output flattened into `nn.Linear(2·6·40, 10)`; trained as its `train.py` trains it: Adam at
lr 1e-2, batches of 100 in order, the mean cross-entropy, accuracy on the test set every 250 steps. The
data come from `benchmarks/mnist1d.py` (`load_dataset`), so only the implementation differs. Usually run
through `python benchmarks/mnist1d.py run torch-gru-protocol`. Prints one JSON line. One thread by
default: at these sizes a second one never pays, and on a shared 2-core machine PyTorch's spinning
OpenMP workers made a step 28 times slower (25 against 719 ms). Needs torch
(`pip install ".[bench,mnist1d]"`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("mnist1d_benchmark", os.path.join(HERE, "mnist1d.py"))
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)

MODULES = {"vanilla": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class Classifier(nn.Module):
    """`GRUBase` of the MNIST-1D repository, for any of the three cells."""

    def __init__(self, cell: str, hidden: int, steps: int, bidirectional: bool = True, classes: int = 10):
        super().__init__()
        self.rnn = MODULES[cell](1, hidden, batch_first=True, bidirectional=bidirectional)
        self.linear = nn.Linear((2 if bidirectional else 1) * hidden * steps, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x (B, T)` → class scores `(B, 10)`."""
        states, _ = self.rnn(x.unsqueeze(-1))  # a zero initial state, as GRUBase's 0·randn
        return self.linear(states.reshape(states.shape[0], -1))


def accuracy(model: Classifier, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return 100.0 * float((model(x).argmax(-1) == y).float().mean())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", default="{}", help="JSON: protocol fields to change (cell, hidden, steps, ...)")
    parser.add_argument("--validation", action="store_true", help="score on the last 500 training sequences")
    parser.add_argument("--num-samples", type=int, help="a smaller data set (tests)")
    parser.add_argument("--threads", type=int, default=1, help="torch's intra-op threads (1: see the docstring)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = benchmark.PROTOCOL | json.loads(args.recipe)
    supported = {"cell", "hidden", "steps", "batch", "lr", "eval_every", "batches", "implementation"}
    changed = {k for k, v in recipe.items() if benchmark.PROTOCOL.get(k) != v} - supported
    if changed:
        raise SystemExit(f"mnist1d_reference_torch: runs the protocol only; cannot change {sorted(changed)}")

    start = time.perf_counter()
    data = benchmark.load_dataset(args.validation, args.num_samples)
    torch.manual_seed(args.seed)
    x, y = torch.as_tensor(data["x"]), torch.as_tensor(data["y"], dtype=torch.long)
    x_eval, y_eval = torch.as_tensor(data["x_eval"]), torch.as_tensor(data["y_eval"], dtype=torch.long)
    model = Classifier(recipe["cell"], recipe["hidden"], x.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), recipe["lr"])
    order = torch.as_tensor(benchmark.batch_order(recipe, len(y), args.seed))
    curve, losses = [], []
    for step in range(recipe["steps"]):
        rows = order[step]
        loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        if (step + 1) % recipe["eval_every"] == 0 or step + 1 == recipe["steps"]:
            curve.append(
                {
                    "step": step + 1,
                    "train_loss": float(np.mean(losses)),
                    "train_accuracy": accuracy(model, x, y),
                    "eval_accuracy": accuracy(model, x_eval, y_eval),
                    "elapsed_s": time.perf_counter() - start,
                }
            )
            losses = []
    result = {
        "implementation": f"PyTorch {torch.__version__} nn.{MODULES[recipe['cell']].__name__}",
        "curve": curve,
        "accuracy": curve[-1]["eval_accuracy"],
        "train_s": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
