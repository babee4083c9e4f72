"""Tiny character-level training runs shared by the charlm tests (small sizes: one compile, fast steps)."""

import os
import subprocess
import sys

from jaxrnn.charlm import parallel
from jaxrnn.charlm.checkpoint import CHECKPOINT_NAME, load_checkpoint
from jaxrnn.charlm.config import TrainConfig
from jaxrnn.charlm.dataset import prepare
from jaxrnn.charlm.loop import run_training
from jaxrnn.charlm.train import initial_state, state_from_checkpoint

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa quebec "
    "romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()
NAMES_TEXT = "".join(word + "\n" for word in WORDS)
STREAM_TEXT = " ".join(WORDS * 4) + "\n"

# Each line of NAMES_TEXT spans 1 to 3 chunks of 4 characters: carried states and resets both occur.
# The default held-out set: 2 of the 26 lines, or the last 10% of the stream.
TINY = dict(
    hidden_size=16,
    batch_size=4,
    chunk_length=4,
    sample_length=8,
    learning_rate=0.01,
    warmup_steps=0,
    temperature=1.0,
    eval_every=5,
)


def tiny_config(steps: int, lines: bool = True, **overrides) -> TrainConfig:
    return TrainConfig(**{**TINY, "lines": lines, "steps": steps, **overrides})


def text_of(config: TrainConfig) -> str:
    return NAMES_TEXT if config.lines else STREAM_TEXT


def run(config: TrainConfig, out_dir, resume: bool = False, on_step=None, devices=None, data=None):
    """Trains like `jaxrnn train` (from scratch, or from the checkpoint in `out_dir`); returns the RunResult."""
    data = data or prepare(config, text_of(config))
    mesh = parallel.batch_mesh(devices)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, CHECKPOINT_NAME)
    if resume:
        checkpoint = load_checkpoint(path)
        state = state_from_checkpoint(checkpoint, config, mesh)
        losses, validation = list(checkpoint.losses), checkpoint.validation.tolist()
    else:
        state, losses, validation = initial_state(config, len(data.vocabulary), mesh), [], []
    return run_training(config, data, state, losses, validation, mesh, path, on_step=on_step)


REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A shell starts background jobs with SIGINT ignored, and Python keeps an inherited "ignore": the
# child installs Python's own handler first, so it gets Ctrl-C as it would in a terminal (no
# preexec_fn: forking a multithreaded JAX process is unsafe).
LAUNCHER = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from jaxrnn.cli import main; sys.exit(main(sys.argv[1:]))"
)


def start_jaxrnn(arguments, env=None, stderr=subprocess.PIPE):
    """`jaxrnn ARGUMENTS` in a child process, its stdout (and stderr) piped, text mode."""
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, *arguments],
        cwd=REPOSITORY,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
