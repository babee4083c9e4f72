"""A character-level language model trained with the library's RNN (vanilla, GRU or LSTM):
`jaxrnn train`, `jaxrnn eval` and `jaxrnn sample` (docs/training.md).

Modules: `config` (the run's settings), `corpus` (default corpus, files, vocabulary), `data`
and `dataset` (chunks for truncated BPTT, the held-out split), `model` (parameters and carried
state per cell), `optimizer` (optax, and its state in a checkpoint), `train` (loss, jit-compiled
train step, throughput), `loop` (the training loop), `evaluate` (held-out NLL), `parallel`
(the batch over a device mesh, multi-process), `signals` (SIGINT, SIGTERM), `peers` (noticing a
lost process), `checkpoint`, `sample`, `display`, and the commands `train_cli`, `eval_cli` and
`sample_cli`.
"""

from jaxrnn.charlm.config import TrainConfig
from jaxrnn.charlm.errors import CharLMError

__all__ = ["CharLMError", "TrainConfig"]
