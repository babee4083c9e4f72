"""The PyTorch reference of the names benchmark: `nn.RNN` + `Linear`, trained like `jaxrnn train --lines`.

    python benchmarks/names_reference_torch.py --data ../shared/data/names.txt            # the reference settings
    python benchmarks/names_reference_torch.py --data ../shared/data/names.txt --jaxrnn-settings

The same model as jaxrnn's (one-hot characters into `nn.RNN(V, n_a, tanh)`, a `Linear(n_a, V)`
head, a learned initial state `h0`), on the same data: the held-out split, the batches (the
same lines in the same order, bucketed by length) and the held-out measure come from
`jaxrnn.charlm`, so only the implementation differs. The reference settings are the usual
PyTorch ones for this data set: `AdamW(model.parameters(), lr 5e-4, betas (0.9, 0.99),
weight_decay 0.01)`, a constant learning rate, no clipping, and the mean cross-entropy of each
batch. `--jaxrnn-settings` trains with `jaxrnn train`'s defaults instead (peak learning rate
0.01, 100 warmup steps then a cosine down to a tenth, clipping at global norm 1, weight decay on
the matrices only, the loss scaled per character of the data), to compare implementations at
equal settings. Prints one JSON line: held-out NLL (nats and bits per character), wall-clock.
Needs torch (`pip install ".[bench]"`).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from torch import nn

from jaxrnn.charlm.config import TrainConfig
from jaxrnn.charlm.dataset import prepare, read_texts
from jaxrnn.charlm.train import FINAL_LEARNING_RATE


class CharacterRNN(nn.Module):
    """`a_t = tanh(W_ih x_t + b_ih + W_hh a_{t-1} + b_hh)`, `o_t = W a_t + b`: the jaxrnn model in PyTorch."""

    def __init__(self, vocabulary_size: int, hidden_size: int):
        super().__init__()
        self.vocabulary_size = vocabulary_size
        self.rnn = nn.RNN(vocabulary_size, hidden_size, nonlinearity="tanh", batch_first=True)
        self.head = nn.Linear(hidden_size, vocabulary_size)
        self.h0 = nn.Parameter(torch.zeros(1, 1, hidden_size))

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor | None):
        """`inputs (B, W)` ids (-1: the zero input), `hidden (1, B, n_a)` or None (start from `h0`)."""
        x = nn.functional.one_hot(inputs.clamp(min=0), self.vocabulary_size).float()
        x = x * (inputs >= 0).unsqueeze(-1).float()  # START (-1) is the zero vector, as in jaxrnn
        if hidden is None:
            hidden = self.h0.expand(1, inputs.shape[0], -1).contiguous()
        states, _ = self.rnn(x, hidden)
        return self.head(states), states


def last_states(states: torch.Tensor, lengths: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
    """The state after each row's last real step `(1, B, n_a)`; rows without one keep `previous`."""
    index = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, states.shape[-1])
    last = states.gather(1, index).transpose(0, 1)
    if previous is None:
        return last
    return torch.where((lengths > 0).view(1, -1, 1), last, previous)


def masked_targets(targets: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
    """Targets with -100 (PyTorch's ignore_index) under the padding."""
    positions = np.arange(targets.shape[1])[None]
    return torch.as_tensor(np.where(positions < lengths[:, None], targets, -100), dtype=torch.long)


def heldout_nll(model: CharacterRNN, heldout) -> float:
    """The mean NLL per character over jaxrnn's held-out set, read exactly as `jaxrnn.charlm.evaluate` reads it."""
    total = 0.0
    with torch.no_grad():
        for batch in heldout.batches:
            hidden = None
            for chunk in batch:
                logits, states = model(torch.as_tensor(chunk.inputs, dtype=torch.long), hidden)
                targets = masked_targets(chunk.targets, chunk.lengths)
                loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
                total += float(loss)
                hidden = last_states(states, torch.as_tensor(chunk.lengths, dtype=torch.long), hidden)
    return total / heldout.characters


def optimizer_and_schedule(model: CharacterRNN, args, config: TrainConfig):
    if not args.jaxrnn_settings:
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=args.learning_rate, betas=(0.9, args.beta2), weight_decay=args.weight_decay
        )
        return optimizer, None
    matrices = [model.rnn.weight_ih_l0, model.rnn.weight_hh_l0, model.head.weight]
    others = [p for p in model.parameters() if all(p is not m for m in matrices)]
    groups = [{"params": matrices, "weight_decay": config.weight_decay}, {"params": others, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, config.beta2))
    warmup, steps = config.warmup_steps, config.steps

    def factor(step: int) -> float:  # jaxrnn.charlm.train.learning_rate_schedule
        if step < warmup:
            return step / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return FINAL_LEARNING_RATE + (1 - FINAL_LEARNING_RATE) * 0.5 * (1 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="names.txt, one name per line")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--beta2", type=float, default=0.99)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--jaxrnn-settings", action="store_true", help="jaxrnn train's optimiser defaults instead")
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    config = TrainConfig(
        data=args.data,
        lines=True,
        hidden_size=args.hidden_size,
        batch_size=args.batch_size,
        steps=args.steps,
        seed=args.seed,
    )
    data = prepare(config, *read_texts(config))
    torch.manual_seed(args.seed)
    model = CharacterRNN(len(data.vocabulary), args.hidden_size)
    optimizer, schedule = optimizer_and_schedule(model, args, config)
    hidden, validation = None, []
    for step in range(args.steps):
        chunk = data.train.chunk(step)
        if chunk.reset:
            hidden = None
        logits, states = model(torch.as_tensor(chunk.inputs, dtype=torch.long), hidden)
        targets = masked_targets(chunk.targets, chunk.lengths)
        if args.jaxrnn_settings:  # Σ losses / (m × mean characters per line), as jaxrnn
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
            loss = loss / data.train.loss_scale
        else:  # the mean over the batch's characters
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if args.jaxrnn_settings:
            nn.utils.clip_grad_norm_(model.parameters(), config.clip_value)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        lengths = torch.as_tensor(chunk.lengths, dtype=torch.long)
        hidden = last_states(states.detach(), lengths, None if hidden is None else hidden.detach())
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            validation.append((step + 1, heldout_nll(model, data.heldout)))
    nll = validation[-1][1]
    result = {
        "implementation": f"PyTorch {torch.__version__} nn.RNN",
        "settings": "jaxrnn defaults" if args.jaxrnn_settings else "reference",
        "hidden_size": args.hidden_size,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "heldout_nats": nll,
        "heldout_bits": nll / math.log(2),
        "best_nats": min(v for _, v in validation),
        "validation": validation,
        "wall_s": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
