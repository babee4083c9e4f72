"""A character-level language model trained with the seed's RNN: `jaxrnn train` and `jaxrnn sample`.

Modules: `corpus` (default corpus, files, vocabulary), `data` (chunks for truncated BPTT),
`train` (optimiser, loss, jit-compiled train step, throughput), `loop` (the training loop),
`parallel` (the batch over a device mesh, multi-process), `checkpoint`, `sample`, `display`,
and the commands `train_cli` and `sample_cli`.
"""

from jaxrnn.charlm.config import TrainConfig
from jaxrnn.charlm.errors import CharLMError

__all__ = ["CharLMError", "TrainConfig"]
