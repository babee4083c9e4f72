"""Text for the character-level model: the default corpus, user files, and the vocabulary.

The default corpus is English prose every Python install carries: paragraphs of the standard
library's docstrings (module, class and function documentation of the modules in
`_docstrings.CORPUS_MODULES`), without code examples. It is built at run time and nothing is
downloaded. Docstrings change between Python releases, so the corpus keeps only the paragraphs
that Python 3.11, 3.12 and 3.13 all have, named by their digests in `_corpus_digests.py`:
the same 169,217 characters (94 distinct) under each, so a run started under one of them
continues under another.
"""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np

from jaxrnn.charlm import _corpus_digests
from jaxrnn.charlm._docstrings import paragraph_digest, pristine_prose_paragraphs
from jaxrnn.charlm.errors import CharLMError

# Below this the default corpus is not worth training on (Python run with -OO strips docstrings).
MINIMUM_DEFAULT_CORPUS = 20_000

# Input id of the start of a text or line: `jax.nn.one_hot` maps it to the zero vector, the
# course's `x_1 = 0`.
START = -1

DEFAULT_CORPUS_NAME = "the standard library's docstrings"


def default_corpus() -> str:
    """The default corpus: the paragraphs listed in `_corpus_digests`, in that order, one per line.

    Under a Python other than 3.11–3.13 some listed paragraphs may be missing; the corpus is
    then the ones found (`is_stable_default_corpus` tells).
    """
    found = {paragraph_digest(paragraph): paragraph for paragraph in pristine_prose_paragraphs()}
    corpus = "".join(found[d] + "\n" for d in _corpus_digests.PARAGRAPH_DIGESTS if d in found)
    if len(corpus) < MINIMUM_DEFAULT_CORPUS:
        raise CharLMError(
            f"the default corpus (standard-library docstrings) has only {len(corpus)} characters "
            f"(is Python running with -OO?); pass --data PATH"
        )
    return corpus


def is_stable_default_corpus(text: str) -> bool:
    """Whether `text` is the default corpus as Python 3.11–3.13 build it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest() == _corpus_digests.CORPUS_SHA256


def python_version() -> str:
    return ".".join(str(part) for part in sys.version_info[:3])


def read_corpus(path: str, flag: str = "--data") -> str:
    """The text of a UTF-8 file, with one clear `CharLMError` for each way it can be unusable.

    Args:
      path: a file path.
      flag: the option that named it, for the messages.

    Returns:
      The decoded text (line endings as in the file; a leading byte-order mark dropped).

    Raises:
      CharLMError: missing, not a regular file, unreadable, empty, binary (NUL bytes) or not UTF-8.
    """
    if not os.path.exists(path):
        raise CharLMError(f"{flag} {path}: no such file")
    if not os.path.isfile(path):
        raise CharLMError(f"{flag} {path}: not a regular file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise CharLMError(f"{flag} {path}: cannot read it ({err.strerror})") from None
    if b"\0" in raw:
        offset = raw.index(b"\0")
        raise CharLMError(f"{flag} {path}: looks binary (NUL byte at offset {offset}); expected UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CharLMError(
            f"{flag} {path}: not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start}); "
            f"convert it, e.g. iconv -t UTF-8"
        ) from None
    if not text.strip():
        raise CharLMError(f"{flag} {path}: empty (no characters other than whitespace)")
    return text


def text_lines(text: str) -> list[str]:
    """The non-blank lines of `text`, without line endings: the examples of `--lines` mode."""
    return [line for line in text.splitlines() if line.strip()]


class Vocabulary:
    """The characters of a corpus, each with an integer id (sorted by code point).

    Args:
      characters: the distinct characters, in id order.
    """

    def __init__(self, characters: str):
        if len(set(characters)) != len(characters) or not characters:
            raise ValueError(f"Vocabulary: characters must be distinct and non-empty; received {characters!r}")
        self.characters = characters
        self._ids = {c: i for i, c in enumerate(characters)}

    @classmethod
    def of(cls, text: str) -> Vocabulary:
        """The vocabulary of every character in `text`."""
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.characters)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.characters == other.characters

    def __hash__(self) -> int:
        return hash(self.characters)

    def __contains__(self, character: str) -> bool:
        return character in self._ids

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        """`text` -> int32 ids `(len(text),)`; `what` names the text in the error for unknown characters."""
        unknown = sorted(set(text) - set(self._ids))
        if unknown:
            raise CharLMError(f"{what} has characters outside the model's vocabulary: {''.join(unknown)!r}")
        return np.fromiter((self._ids[c] for c in text), np.int32, len(text))

    def decode(self, ids) -> str:
        """int ids -> text."""
        return "".join(self.characters[int(i)] for i in ids)
